/*
 * embed_and_fill: load an xlmr GGUF model, tokenize and embed a sentence, fill a mask.
 *
 *   embed_and_fill MODEL.gguf [TEXT [MASKED_TEXT]]
 *
 * Output, one record per line, tab-separated (floats printed with 9 significant digits,
 * enough to read back the exact float):
 *   info      hidden  layers  vocab  max_tokens  has_mlm_head
 *   tokens    n       id id id ...
 *   embedding dim     v v v ...            (mean pooling, not normalized)
 *   fill      mask    rank  token_id  score  token_str  sequence
 */
#include <stdio.h>
#include <stdlib.h>

#include "xlmr.h"

#define CHECK(call)                                                              \
    do {                                                                         \
        xlmr_status status_ = (call);                                            \
        if (status_ != XLMR_STATUS_OK) {                                         \
            fprintf(stderr, "%s failed: %s: %s\n", #call,                        \
                    xlmr_status_string(status_), xlmr_last_error());             \
            exit(1);                                                             \
        }                                                                        \
    } while (0)

int main(int argc, char **argv) {
    if (argc < 2 || argc > 4) {
        fprintf(stderr, "usage: %s MODEL.gguf [TEXT [MASKED_TEXT]]\n", argv[0]);
        return 2;
    }
    const char *text = argc > 2 ? argv[2] : "Hello world, this is a test.";
    const char *masked = argc > 3 ? argv[3] : "The capital of France is <mask>.";

    printf("version\t%s\t%d.%d.%d\n", xlmr_version(), XLMR_VERSION_MAJOR, XLMR_VERSION_MINOR,
           XLMR_VERSION_PATCH);

    xlmr_model_params params = xlmr_model_default_params();
    params.n_threads = 2;
    xlmr_model *model = NULL;
    CHECK(xlmr_model_load(argv[1], params, &model));

    xlmr_model_info info;
    CHECK(xlmr_model_get_info(model, &info));
    printf("info\t%zu\t%zu\t%zu\t%zu\t%d\n", info.hidden_size, info.n_layers, info.vocab_size,
           info.max_tokens, info.has_mlm_head ? 1 : 0);

    /* Tokenize. */
    xlmr_tokens *tokens = NULL;
    CHECK(xlmr_tokenize(model, &text, 1, false, &tokens));
    const uint32_t *ids = NULL;
    size_t n_ids = 0;
    CHECK(xlmr_tokens_get(tokens, 0, &ids, &n_ids));
    printf("tokens\t%zu\t", n_ids);
    for (size_t i = 0; i < n_ids; i++) printf(i ? " %u" : "%u", ids[i]);
    printf("\n");
    xlmr_tokens_free(tokens);

    /* Embed: one mean-pooled vector. */
    xlmr_embeddings *emb = NULL;
    CHECK(xlmr_embed(model, &text, 1, XLMR_POOLING_MEAN, false, false, &emb));
    const float *vec = NULL;
    size_t n_vectors = 0;
    CHECK(xlmr_embeddings_get(emb, 0, &vec, &n_vectors));
    size_t dim = xlmr_embeddings_dim(emb);
    printf("embedding\t%zu\t", dim);
    for (size_t i = 0; i < n_vectors * dim; i++) printf(i ? " %.9g" : "%.9g", vec[i]);
    printf("\n");
    xlmr_embeddings_free(emb);

    /* Fill the mask: top 5. */
    xlmr_fill_mask_result *fill = NULL;
    CHECK(xlmr_fill_mask(model, &masked, 1, 5, false, &fill));
    for (size_t m = 0; m < xlmr_fill_mask_n_masks(fill, 0); m++) {
        for (size_t r = 0; r < xlmr_fill_mask_n_predictions(fill, 0, m); r++) {
            xlmr_prediction p;
            CHECK(xlmr_fill_mask_get(fill, 0, m, r, &p));
            printf("fill\t%zu\t%zu\t%u\t%.9g\t%s\t%s\n", m, r, p.token_id, p.score, p.token_str,
                   p.sequence);
        }
    }
    xlmr_fill_mask_free(fill);

    /* Errors come back as a status and a message, never a crash. */
    const char *no_mask = "no mask here";
    xlmr_fill_mask_result *unused = NULL;
    xlmr_status status = xlmr_fill_mask(model, &no_mask, 1, 5, false, &unused);
    printf("error\t%s\t%s\n", xlmr_status_string(status), xlmr_last_error());

    xlmr_model_free(model);
    return unused == NULL && status == XLMR_STATUS_INPUT ? 0 : 1;
}
