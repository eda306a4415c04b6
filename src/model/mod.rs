//! A loaded xlmr model: the memory-mapped GGUF file, its hyperparameters and tokenizer,
//! and the tasks built on the encoder (fill-mask, embeddings, hidden states).

pub mod config;
pub mod encoder;
pub mod pack_cache;
pub mod packed;
pub mod profile;
pub mod weights;

use crate::error::{Error, Result};
use crate::gguf::{keys, GgufFile};
use crate::heads::comet::{CometConfig, CometHead};
use crate::heads::{Head, HeadInfo};
use crate::kernels::softmax_inplace;
use crate::tokenizer::Tokenizer;
use config::ModelConfig;
use encoder::{forward, mlm_logits, Batch, Scratch};
use packed::PackedWeights;
use profile::Profile;
use std::path::{Path, PathBuf};
use weights::Weights;

/// Inputs run together in one forward pass (after sorting by length).
pub const DEFAULT_BATCH: usize = 8;

/// `<mask>` rows scored by the MLM decoder in one pass (their logits take
/// rows x vocab x 4 bytes: 32 MB on XL).
const MLM_ROWS_PER_PASS: usize = 32;

pub struct Model {
    file: GgufFile,
    pub config: ModelConfig,
    pub tokenizer: Tokenizer,
    /// Inputs per forward pass.
    pub batch_size: usize,
    /// The task head of a fine-tuned checkpoint, if the file has one.
    pub head: Option<HeadInfo>,
    /// What a COMET model file says about its metric (`crate::heads::comet`).
    pub comet: Option<CometConfig>,
    /// The encoder's matrices in the GEMM kernels' layout, when packed at load.
    packed: Option<PackedWeights>,
    /// Work buffers of finished forward passes, reused by the next ones (one per
    /// concurrent caller).
    scratch_pool: std::sync::Mutex<Vec<Scratch>>,
}

/// One fill-mask candidate, as transformers' fill-mask pipeline reports it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Prediction {
    pub score: f32,
    pub token: u32,
    pub token_str: String,
    pub sequence: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pooling {
    /// The first token's (`<s>`) final hidden state.
    Cls,
    /// Mean over the input's tokens (special tokens included, padding excluded).
    Mean,
    /// Every token's final hidden state.
    None,
}

/// How [`Model::load_with`] loads a model.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Directory of the packed-weights cache ([`pack_cache`]); `None`: pack at every load.
    pub pack_cache: Option<PathBuf>,
}

impl LoadOptions {
    /// Options from the environment: `XLMR_PACK_CACHE` names the cache directory.
    pub fn from_env() -> Self {
        LoadOptions { pack_cache: pack_cache::dir_from_env() }
    }
}

impl Model {
    /// Opens and validates a GGUF file written by `xlmr convert`, with the options in the
    /// environment ([`LoadOptions::from_env`]).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        Self::load_with(path, &LoadOptions::from_env())
    }

    /// [`Self::load`] with explicit options.
    pub fn load_with(path: impl AsRef<Path>, options: &LoadOptions) -> Result<Self> {
        let file = GgufFile::open(path)?;
        let config = ModelConfig::from_gguf(&file)?;
        let tokenizer = Tokenizer::from_json(file.get_str(keys::TOKENIZER_HF_JSON)?, config.max_tokens)?;
        // Validate every tensor now, so that a bad file fails at load, not mid-run.
        let weights = Weights::load(&file, &config)?;
        let head = HeadInfo::from_gguf(&file)?;
        if let Some(info) = &head {
            Head::load(&file, config.hidden, info)?;
        }
        let comet = CometConfig::from_gguf(&file, config.layers + 1)?;
        if let Some(cfg) = &comet {
            CometHead::load(&file, config.hidden, cfg)?;
        }
        let packed = PackedWeights::build(&file, &weights, options.pack_cache.as_deref())?;
        drop(weights);
        Ok(Model { file, config, tokenizer, batch_size: DEFAULT_BATCH, head, comet, packed, scratch_pool: Default::default() })
    }

    /// Whether the encoder's weights were packed at load (see [`packed`]).
    pub fn is_packed(&self) -> bool {
        self.packed.is_some()
    }

    /// How the encoder's weights are held, for logs: packed at load, mapped from the
    /// packed-weights cache, or used in place from the GGUF mapping.
    pub fn weights_mode(&self) -> &'static str {
        match &self.packed {
            Some(p) if p.from_cache() => "packed, mapped from the packed-weights cache",
            Some(_) => "packed for the GEMM kernels",
            None => "used in place from the memory map",
        }
    }

    /// Whether the packed weights are mapped from the packed-weights cache ([`pack_cache`]).
    pub fn is_packed_from_cache(&self) -> bool {
        self.packed.as_ref().is_some_and(PackedWeights::from_cache)
    }

    pub fn weights(&self) -> Weights<'_> {
        Weights::load(&self.file, &self.config).expect("validated at load")
    }

    /// The COMET modules' weights; `None` for files that are not COMET models.
    pub fn comet_head(&self) -> Option<CometHead<'_>> {
        self.comet.as_ref().map(|cfg| CometHead::load(&self.file, self.config.hidden, cfg).expect("validated at load"))
    }

    /// The task head's weights; `None` for files without one.
    pub fn head_weights(&self) -> Option<Head<'_>> {
        self.head.as_ref().map(|info| Head::load(&self.file, self.config.hidden, info).expect("validated at load"))
    }

    pub fn file(&self) -> &GgufFile {
        &self.file
    }

    /// Tokenizes every input first, so a bad input fails the call before any compute.
    pub fn tokenize_all(&self, texts: &[impl AsRef<str>], truncate: bool) -> Result<Vec<Vec<u32>>> {
        texts
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let t = t.as_ref();
                if t.trim().is_empty() {
                    return Err(Error::Input(format!("input {} is empty", i + 1)));
                }
                let ids = self.tokenizer.encode(t, truncate).map_err(|e| Error::Input(format!("input {}: {e}", i + 1)))?;
                if let Some(&bad) = ids.iter().find(|&&id| id as usize >= self.config.vocab) {
                    return Err(Error::Input(format!("input {}: token id {bad} is outside the model's vocabulary", i + 1)));
                }
                Ok(ids)
            })
            .collect()
    }

    /// Runs the encoder over `seqs` in batches of similar length and calls
    /// `visit(input_index, batch, row_in_batch, hidden_index, states)` for each wanted
    /// hidden-state index (`wanted(i)`), where `states` is `[b * t, hidden]`.
    pub fn run_batches(
        &self,
        seqs: &[Vec<u32>],
        wanted: impl Fn(usize) -> bool,
        visit: impl FnMut(usize, &Batch, usize, usize, &[f32]),
    ) {
        self.run_batches_profiled(seqs, wanted, visit, None)
    }

    /// [`Model::run_batches`], adding each op's time to `profile` when given.
    pub fn run_batches_profiled(
        &self,
        seqs: &[Vec<u32>],
        wanted: impl Fn(usize) -> bool,
        mut visit: impl FnMut(usize, &Batch, usize, usize, &[f32]),
        mut profile: Option<&mut Profile>,
    ) {
        let w = self.weights();
        let mut order: Vec<usize> = (0..seqs.len()).collect();
        order.sort_by_key(|&i| seqs[i].len());
        let pooled = self.scratch_pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut scratch = pooled.unwrap_or_else(|| Scratch::new(&self.config, 0));
        for group in order.chunks(self.batch_size.max(1)) {
            let refs: Vec<&[u32]> = group.iter().map(|&i| seqs[i].as_slice()).collect();
            let batch = Batch::new(&refs, self.config.pad_id);
            scratch.resize(&self.config, batch.b * batch.t);
            scratch.profile = profile.as_ref().map(|_| Profile::default());
            forward(&w, self.packed.as_ref(), &self.config, &batch, &mut scratch, |layer, states| {
                if wanted(layer) {
                    for (row, &input) in group.iter().enumerate() {
                        visit(input, &batch, row, layer, states);
                    }
                }
            });
            if let (Some(total), Some(p)) = (profile.as_deref_mut(), scratch.profile.take()) {
                for (op, st) in p.ops {
                    total.add(op, st.time, st.ops, st.weight_bytes);
                }
            }
        }
        self.scratch_pool.lock().unwrap_or_else(|e| e.into_inner()).push(scratch);
    }

    /// Top-`top_k` predictions for every `<mask>` of every input.
    pub fn fill_mask(&self, texts: &[impl AsRef<str>], top_k: usize, truncate: bool) -> Result<Vec<Vec<Vec<Prediction>>>> {
        self.check_mlm_head()?;
        let seqs = self.tokenize_all(texts, truncate)?;
        self.fill_mask_tokens(&seqs, top_k)
    }

    /// Fill-mask needs the MLM head; a model converted without it says so.
    pub fn check_mlm_head(&self) -> Result<()> {
        if !self.config.has_mlm_head {
            return Err(Error::Input("this model has no MLM head (converted from XLMRobertaXLModel or a fine-tuned task architecture); fill-mask needs ...ForMaskedLM".into()));
        }
        Ok(())
    }

    /// `fill_mask` on already-tokenized inputs (e.g. those of several server requests run
    /// as one batch).
    pub fn fill_mask_tokens(&self, seqs: &[Vec<u32>], top_k: usize) -> Result<Vec<Vec<Vec<Prediction>>>> {
        self.check_mlm_head()?;
        for (i, s) in seqs.iter().enumerate() {
            if !s.contains(&self.config.mask_id) {
                return Err(Error::Input(format!("input {} has no <mask> token", i + 1)));
            }
        }
        let c = &self.config;
        let last = c.layers;
        let mut results: Vec<Vec<Vec<Prediction>>> = vec![Vec::new(); seqs.len()];
        let w = self.weights();
        let mut rows: Vec<Vec<f32>> = vec![Vec::new(); seqs.len()];
        self.run_batches(&seqs, |l| l == last, |input, batch, row, _, states| {
            for (pos, &id) in seqs[input].iter().enumerate() {
                if id == c.mask_id {
                    let r = row * batch.t + pos;
                    rows[input].extend_from_slice(&states[r * c.hidden..(r + 1) * c.hidden]);
                }
            }
        });
        // Every mask of every input goes through the decoder together, MLM_ROWS_PER_PASS
        // rows at a time: the 250880-row decoder is streamed once per pass, not per input.
        let masks: Vec<(usize, usize)> =
            seqs.iter().enumerate().flat_map(|(i, s)| s.iter().enumerate().filter(|&(_, &id)| id == c.mask_id).map(move |(p, _)| (i, p))).collect();
        let x = rows.concat();
        for (pass, chunk) in masks.chunks(MLM_ROWS_PER_PASS).enumerate() {
            let r0 = pass * MLM_ROWS_PER_PASS;
            let logits = mlm_logits(&w, c, &x[r0 * c.hidden..(r0 + chunk.len()) * c.hidden], chunk.len());
            for (j, &(input, pos)) in chunk.iter().enumerate() {
                let several_masks = seqs[input].iter().filter(|&&id| id == c.mask_id).count() > 1;
                let mut probs = logits[j * c.vocab..(j + 1) * c.vocab].to_vec();
                softmax_inplace(&mut probs);
                let mut idx: Vec<usize> = (0..c.vocab).collect();
                let k = top_k.min(c.vocab);
                idx.select_nth_unstable_by(k.saturating_sub(1), |&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
                idx.truncate(k);
                idx.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
                let preds = idx
                    .into_iter()
                    .map(|id| {
                        let mut filled = seqs[input].clone();
                        filled[pos] = id as u32;
                        Ok(Prediction {
                            score: probs[id],
                            token: id as u32,
                            token_str: self.tokenizer.token_str(id as u32),
                            // As transformers' pipeline: special tokens are kept in the
                            // sequence when the input has several masks.
                            sequence: self.tokenizer.decode(&filled, !several_masks)?,
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                results[input].push(preds);
            }
        }
        Ok(results)
    }

    /// One vector per input (`Cls`, `Mean`), or one per token (`None`).
    pub fn embed(&self, texts: &[impl AsRef<str>], pooling: Pooling, normalize: bool, truncate: bool) -> Result<Vec<Vec<Vec<f32>>>> {
        let seqs = self.tokenize_all(texts, truncate)?;
        Ok(self.embed_tokens(&seqs, pooling, normalize))
    }

    /// `embed` on already-tokenized inputs (e.g. those of several server requests run as
    /// one batch).
    pub fn embed_tokens(&self, seqs: &[Vec<u32>], pooling: Pooling, normalize: bool) -> Vec<Vec<Vec<f32>>> {
        let h = self.config.hidden;
        let last = self.config.layers;
        let mut out: Vec<Vec<Vec<f32>>> = vec![Vec::new(); seqs.len()];
        self.run_batches(&seqs, |l| l == last, |input, batch, row, _, states| {
            let len = seqs[input].len();
            let tokens = &states[row * batch.t * h..(row * batch.t + len) * h];
            out[input] = match pooling {
                Pooling::Cls => vec![tokens[..h].to_vec()],
                Pooling::Mean => {
                    let mut mean = vec![0.0f32; h];
                    for tok in tokens.chunks_exact(h) {
                        mean.iter_mut().zip(tok).for_each(|(m, v)| *m += v);
                    }
                    mean.iter_mut().for_each(|m| *m /= len as f32);
                    vec![mean]
                }
                Pooling::None => tokens.chunks_exact(h).map(|t| t.to_vec()).collect(),
            };
        });
        if normalize {
            out.iter_mut().flatten().for_each(|v| l2_normalize(v));
        }
        out
    }

    /// `[input][k][token][hidden]` for each requested hidden-state index `layers[k]`
    /// (0 = embeddings, `config.layers` = after the final LayerNorm); all when `None`.
    pub fn hidden_states(&self, texts: &[impl AsRef<str>], layers: Option<&[usize]>, truncate: bool) -> Result<Vec<Vec<Vec<Vec<f32>>>>> {
        let seqs = self.tokenize_all(texts, truncate)?;
        self.hidden_states_tokens(&seqs, layers)
    }

    /// `hidden_states` on already-tokenized inputs.
    pub fn hidden_states_tokens(&self, seqs: &[Vec<u32>], layers: Option<&[usize]>) -> Result<Vec<Vec<Vec<Vec<f32>>>>> {
        let all: Vec<usize> = (0..=self.config.layers).collect();
        let layers = layers.unwrap_or(&all);
        if let Some(&bad) = layers.iter().find(|&&l| l > self.config.layers) {
            return Err(Error::Input(format!("layer {bad} does not exist (0 = embeddings ... {} = final)", self.config.layers)));
        }
        let h = self.config.hidden;
        let mut out: Vec<Vec<Vec<Vec<f32>>>> = vec![vec![Vec::new(); layers.len()]; seqs.len()];
        self.run_batches(&seqs, |l| layers.contains(&l), |input, batch, row, layer, states| {
            let len = seqs[input].len();
            let tokens = &states[row * batch.t * h..(row * batch.t + len) * h];
            for (k, _) in layers.iter().enumerate().filter(|(_, &l)| l == layer) {
                out[input][k] = tokens.chunks_exact(h).map(|t| t.to_vec()).collect();
            }
        });
        Ok(out)
    }
}

/// Scales `v` to unit L2 norm (a zero vector stays zero).
pub fn l2_normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= norm);
}
