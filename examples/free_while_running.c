/*
 * free_while_running: N threads call embed and fill-mask on one model while the main
 * thread frees it. Every call that succeeds must give exactly the single-threaded result;
 * every call that fails must fail only because the model was freed
 * (XLMR_STATUS_INVALID_ARGUMENT, after the free began); nothing may crash or leak.
 *
 *   free_while_running MODEL.gguf [N_THREADS [CALLS_BEFORE_FREE]]
 *
 * Prints "free_while_running ok <threads> <calls ok> <calls refused>" and exits 0, or names
 * the first problem and exits 1.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "xlmr.h"

#define TOP_K 3
#define MAX_THREADS 16
/* Each worker stops after this many calls even if the free never came (it always does). */
#define MAX_CALLS 10000

static const char *text = "Hello world, this is a test.";
static const char *masked = "The capital of France is <mask>.";

typedef struct {
    float *embedding;
    uint32_t ids[TOP_K];
    float scores[TOP_K];
} outcome;

static xlmr_model *model;
static size_t dim;
static outcome expected;
static atomic_int free_started;
static atomic_int calls_ok;
static atomic_int calls_refused;
static atomic_int problems;

/* One embed or fill-mask call (by parity of `k`): 1 = matched the reference, 0 = refused
 * because the model is gone, -1 = anything else. */
static int call(int k) {
    int before_free = !atomic_load(&free_started);
    xlmr_status status;
    int same = 1;
    if (k % 2 == 0) {
        xlmr_embeddings *emb = NULL;
        status = xlmr_embed(model, &text, 1, XLMR_POOLING_CLS, true, false, &emb);
        if (status == XLMR_STATUS_OK) {
            const float *vec = NULL;
            size_t n = 0;
            same = xlmr_embeddings_get(emb, 0, &vec, &n) == XLMR_STATUS_OK && n == 1 &&
                   memcmp(vec, expected.embedding, dim * sizeof(float)) == 0;
        }
        xlmr_embeddings_free(emb);
    } else {
        xlmr_fill_mask_result *fill = NULL;
        status = xlmr_fill_mask(model, &masked, 1, TOP_K, false, &fill);
        for (size_t r = 0; status == XLMR_STATUS_OK && r < TOP_K; r++) {
            xlmr_prediction p;
            same = same && xlmr_fill_mask_get(fill, 0, 0, r, &p) == XLMR_STATUS_OK &&
                   p.token_id == expected.ids[r] && p.score == expected.scores[r];
        }
        xlmr_fill_mask_free(fill);
    }
    if (status == XLMR_STATUS_OK) {
        if (!same) fprintf(stderr, "call %d: result differs from the single-threaded one\n", k);
        return same ? 1 : -1;
    }
    if (status == XLMR_STATUS_INVALID_ARGUMENT && !before_free) return 0;
    fprintf(stderr, "call %d: status %s (%s)%s\n", k, xlmr_status_string(status), xlmr_last_error(),
            before_free ? " before the free" : "");
    return -1;
}

static void *worker(void *arg) {
    (void)arg;
    for (int k = 0; k < MAX_CALLS; k++) {
        int r = call(k);
        if (r < 0) atomic_fetch_add(&problems, 1);
        if (r <= 0) {
            if (r == 0) atomic_fetch_add(&calls_refused, 1);
            break;
        }
        atomic_fetch_add(&calls_ok, 1);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2 || argc > 4) {
        fprintf(stderr, "usage: %s MODEL.gguf [N_THREADS [CALLS_BEFORE_FREE]]\n", argv[0]);
        return 2;
    }
    int n_threads = argc > 2 ? atoi(argv[2]) : 8;
    int calls_before_free = argc > 3 ? atoi(argv[3]) : 16;
    if (n_threads < 1 || n_threads > MAX_THREADS || calls_before_free < 0) {
        fprintf(stderr, "N_THREADS must be 1..%d\n", MAX_THREADS);
        return 2;
    }
    xlmr_model_params params = xlmr_model_default_params();
    params.n_threads = 2;
    if (xlmr_model_load(argv[1], params, &model) != XLMR_STATUS_OK) {
        fprintf(stderr, "load: %s\n", xlmr_last_error());
        return 1;
    }
    xlmr_model_info info;
    if (xlmr_model_get_info(model, &info) != XLMR_STATUS_OK) return 1;
    dim = info.hidden_size;

    /* The reference, computed by this thread alone. */
    xlmr_embeddings *emb = NULL;
    const float *vec = NULL;
    size_t n = 0;
    if (xlmr_embed(model, &text, 1, XLMR_POOLING_CLS, true, false, &emb) != XLMR_STATUS_OK ||
        xlmr_embeddings_get(emb, 0, &vec, &n) != XLMR_STATUS_OK)
        return 1;
    expected.embedding = malloc(dim * sizeof(float));
    memcpy(expected.embedding, vec, dim * sizeof(float));
    xlmr_embeddings_free(emb);
    xlmr_fill_mask_result *fill = NULL;
    if (xlmr_fill_mask(model, &masked, 1, TOP_K, false, &fill) != XLMR_STATUS_OK) return 1;
    for (size_t r = 0; r < TOP_K; r++) {
        xlmr_prediction p;
        if (xlmr_fill_mask_get(fill, 0, 0, r, &p) != XLMR_STATUS_OK) return 1;
        expected.ids[r] = p.token_id;
        expected.scores[r] = p.score;
    }
    xlmr_fill_mask_free(fill);

    pthread_t threads[MAX_THREADS];
    for (int t = 0; t < n_threads; t++)
        if (pthread_create(&threads[t], NULL, worker, NULL) != 0) return 1;
    /* Free while the workers are mid-stream: after some calls, not before any. */
    while (atomic_load(&calls_ok) < calls_before_free && atomic_load(&problems) == 0) {
        struct timespec pause = {0, 100000};
        nanosleep(&pause, NULL);
    }
    atomic_store(&free_started, 1);
    xlmr_model_free(model);
    /* A second free of the same pointer is refused, not a double free. */
    xlmr_model_free(model);
    int refused_after = *xlmr_last_error() != '\0';
    for (int t = 0; t < n_threads; t++) pthread_join(threads[t], NULL);
    free(expected.embedding);

    int ok = atomic_load(&calls_ok), refused = atomic_load(&calls_refused);
    if (atomic_load(&problems) || !refused_after || refused != n_threads) {
        printf("free_while_running failed: %d problems, %d of %d threads refused, double free %s\n",
               atomic_load(&problems), refused, n_threads, refused_after ? "refused" : "NOT refused");
        return 1;
    }
    printf("free_while_running ok %d %d %d\n", n_threads, ok, refused);
    return 0;
}
