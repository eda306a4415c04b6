/*
 * threads: several threads share one model; each must get exactly the results of a
 * single-threaded run.
 *
 *   threads MODEL.gguf [N_THREADS [ROUNDS]]
 *
 * Prints "threads ok <threads> <calls>" and exits 0, or names the first mismatch and
 * exits 1.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xlmr.h"

#define N_TEXTS 3
#define TOP_K 5
#define MAX_THREADS 16

static const char *texts[N_TEXTS] = {
    "Hello world, this is a test.",
    "Bonjour le monde, ceci est un essai un peu plus long que le premier.",
    "xlmr",
};
static const char *masked[N_TEXTS] = {
    "The capital of France is <mask>.",
    "Paris est la <mask> de la France.",
    "<mask> <mask> and more.",
};

/* What one call pair (embed + fill-mask) gives for one text. */
typedef struct {
    float *embedding; /* dim floats */
    uint32_t ids[8][TOP_K];
    float scores[8][TOP_K];
    size_t n_masks;
} outcome;

typedef struct {
    xlmr_model *model;
    size_t dim;
    int id;
    int rounds;
    const outcome *expected;
    int failures;
    int calls;
} worker;

/* Runs embed + fill-mask for text i; returns 0 on success. */
static int compute(xlmr_model *model, size_t dim, int i, outcome *out) {
    xlmr_embeddings *emb = NULL;
    if (xlmr_embed(model, &texts[i], 1, XLMR_POOLING_CLS, true, false, &emb) != XLMR_STATUS_OK) {
        fprintf(stderr, "embed: %s\n", xlmr_last_error());
        return 1;
    }
    const float *vec = NULL;
    size_t n = 0;
    if (xlmr_embeddings_get(emb, 0, &vec, &n) != XLMR_STATUS_OK || n != 1) return 1;
    out->embedding = malloc(dim * sizeof(float));
    memcpy(out->embedding, vec, dim * sizeof(float));
    xlmr_embeddings_free(emb);

    xlmr_fill_mask_result *fill = NULL;
    if (xlmr_fill_mask(model, &masked[i], 1, TOP_K, false, &fill) != XLMR_STATUS_OK) {
        fprintf(stderr, "fill-mask: %s\n", xlmr_last_error());
        return 1;
    }
    out->n_masks = xlmr_fill_mask_n_masks(fill, 0);
    for (size_t m = 0; m < out->n_masks && m < 8; m++) {
        for (size_t r = 0; r < TOP_K; r++) {
            xlmr_prediction p;
            if (xlmr_fill_mask_get(fill, 0, m, r, &p) != XLMR_STATUS_OK) return 1;
            out->ids[m][r] = p.token_id;
            out->scores[m][r] = p.score;
        }
    }
    xlmr_fill_mask_free(fill);
    return 0;
}

static int same(const outcome *a, const outcome *b, size_t dim) {
    if (a->n_masks != b->n_masks) return 0;
    if (memcmp(a->embedding, b->embedding, dim * sizeof(float)) != 0) return 0;
    for (size_t m = 0; m < a->n_masks && m < 8; m++)
        if (memcmp(a->ids[m], b->ids[m], sizeof a->ids[m]) != 0 ||
            memcmp(a->scores[m], b->scores[m], sizeof a->scores[m]) != 0)
            return 0;
    return 1;
}

static void *run_worker(void *arg) {
    worker *w = arg;
    for (int round = 0; round < w->rounds; round++) {
        int i = (w->id + round) % N_TEXTS; /* threads work on different texts at once */
        outcome got = {0};
        if (compute(w->model, w->dim, i, &got) != 0 || !same(&got, &w->expected[i], w->dim)) {
            fprintf(stderr, "thread %d round %d text %d: differs from the single-threaded result\n",
                    w->id, round, i);
            w->failures++;
        }
        free(got.embedding);
        w->calls += 2;
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2 || argc > 4) {
        fprintf(stderr, "usage: %s MODEL.gguf [N_THREADS [ROUNDS]]\n", argv[0]);
        return 2;
    }
    int n_threads = argc > 2 ? atoi(argv[2]) : 4;
    int rounds = argc > 3 ? atoi(argv[3]) : 3;
    if (n_threads < 1 || n_threads > MAX_THREADS || rounds < 1) {
        fprintf(stderr, "N_THREADS must be 1..%d and ROUNDS at least 1\n", MAX_THREADS);
        return 2;
    }

    xlmr_model_params params = xlmr_model_default_params();
    params.n_threads = 2;
    xlmr_model *model = NULL;
    if (xlmr_model_load(argv[1], params, &model) != XLMR_STATUS_OK) {
        fprintf(stderr, "load: %s\n", xlmr_last_error());
        return 1;
    }
    xlmr_model_info info;
    if (xlmr_model_get_info(model, &info) != XLMR_STATUS_OK) return 1;

    /* The reference: each text computed once, by this thread alone. */
    outcome expected[N_TEXTS] = {{0}};
    for (int i = 0; i < N_TEXTS; i++)
        if (compute(model, info.hidden_size, i, &expected[i]) != 0) return 1;

    pthread_t threads[MAX_THREADS];
    worker workers[MAX_THREADS];
    for (int t = 0; t < n_threads; t++) {
        workers[t] = (worker){model, info.hidden_size, t, rounds, expected, 0, 0};
        if (pthread_create(&threads[t], NULL, run_worker, &workers[t]) != 0) return 1;
    }
    int failures = 0, calls = 0;
    for (int t = 0; t < n_threads; t++) {
        pthread_join(threads[t], NULL);
        failures += workers[t].failures;
        calls += workers[t].calls;
    }

    for (int i = 0; i < N_TEXTS; i++) free(expected[i].embedding);
    xlmr_model_free(model);
    if (failures) {
        printf("threads failed %d of %d calls\n", failures, calls);
        return 1;
    }
    printf("threads ok %d %d\n", n_threads, calls);
    return 0;
}
