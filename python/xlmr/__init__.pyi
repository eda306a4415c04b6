# Type stubs of the `xlmr` package (editors complete and check the API from these).
import os
from typing import Any, Literal, Optional, Sequence, Union, overload

import numpy as np
import numpy.typing as npt

__version__: str
DEFAULT_BATCH_SIZE: int

_Path = Union[str, os.PathLike[str]]
_F32 = npt.NDArray[np.float32]
_Pair = Union[str, tuple[str, str], dict[str, str]]

class Model:
    def __init__(self, path: _Path, n_threads: Optional[int] = None, pack_cache: Optional[_Path] = None) -> None: ...
    def close(self) -> None: ...
    @property
    def closed(self) -> bool: ...
    def __enter__(self) -> "Model": ...
    def __exit__(self, *exc: object) -> None: ...
    @property
    def info(self) -> dict[str, Any]: ...
    def get_sentence_embedding_dimension(self) -> int: ...
    @property
    def max_seq_length(self) -> int: ...
    @overload
    def tokenize(self, texts: str, truncate: bool = False) -> list[int]: ...
    @overload
    def tokenize(self, texts: Sequence[str], truncate: bool = False) -> list[list[int]]: ...
    @overload
    def embed(self, texts: str, pooling: Literal["mean", "cls", "none"] = "mean", normalize: bool = False, truncate: bool = False, batch_size: int = 8) -> _F32: ...
    @overload
    def embed(self, texts: Sequence[str], pooling: Literal["mean", "cls"] = "mean", normalize: bool = False, truncate: bool = False, batch_size: int = 8) -> _F32: ...
    @overload
    def embed(self, texts: Sequence[str], pooling: Literal["none"], normalize: bool = False, truncate: bool = False, batch_size: int = 8) -> list[_F32]: ...
    def encode(
        self,
        sentences: Union[str, Sequence[str]],
        prompt: Optional[str] = None,
        batch_size: int = 32,
        show_progress_bar: Optional[bool] = None,
        output_value: Literal["sentence_embedding", "token_embeddings"] = "sentence_embedding",
        precision: Literal["float32"] = "float32",
        convert_to_numpy: bool = True,
        convert_to_tensor: bool = False,
        normalize_embeddings: bool = False,
        **kwargs: Any,
    ) -> Union[_F32, list[_F32], Any]: ...
    @overload
    def hidden_states(self, texts: str, layers: Optional[Union[int, Sequence[int]]] = None, truncate: bool = False, batch_size: int = 8) -> _F32: ...
    @overload
    def hidden_states(self, texts: Sequence[str], layers: Optional[Union[int, Sequence[int]]] = None, truncate: bool = False, batch_size: int = 8) -> list[_F32]: ...
    def fill_mask(self, texts: Union[str, Sequence[str]], top_k: int = 5, truncate: bool = False, batch_size: int = 8) -> list[Any]: ...
    def classify(
        self,
        texts: Union[_Pair, Sequence[_Pair]],
        text_pair: Optional[str] = None,
        top_k: Union[None, int, Literal["all"]] = None,
        function_to_apply: Optional[Literal["softmax", "sigmoid", "none"]] = None,
        truncate: bool = False,
        batch_size: int = 8,
    ) -> Any: ...
    def token_classify(
        self,
        texts: Union[str, Sequence[str]],
        aggregation_strategy: Literal["none", "simple", "first", "average", "max"] = "simple",
        ignore_labels: Optional[Sequence[str]] = None,
        truncate: bool = False,
        batch_size: int = 8,
    ) -> list[Any]: ...
    def answer(
        self,
        question: Union[str, Sequence[str]],
        context: Union[str, Sequence[str]],
        top_k: Optional[int] = None,
        max_seq_len: int = 384,
        doc_stride: Optional[int] = None,
        max_answer_len: int = 15,
        handle_impossible_answer: bool = False,
        batch_size: int = 8,
    ) -> Any: ...
    def multiple_choice(
        self,
        prompt: Union[str, Sequence[str]],
        choices: Union[Sequence[str], Sequence[Sequence[str]]],
        truncate: bool = False,
        batch_size: int = 8,
    ) -> Any: ...

    def score(self, samples: Sequence[dict[str, str]], batch_size: int = 8) -> Prediction: ...

class Prediction(dict[str, Any]):
    scores: list[float]
    system_score: float
    metadata: Prediction

def convert(
    src_dir: _Path, dst: _Path, type: Literal["f32", "f16", "q8_0", "q4_0", "q4_k"] = "q8_0", progress: bool = True, encoder: Optional[_Path] = None
) -> dict[str, Any]: ...
