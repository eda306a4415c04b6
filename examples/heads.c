/*
 * heads.c: run a fine-tuned xlmr model through the C API, whatever its task head.
 *
 *   heads MODEL.gguf TEXT [PAIR_OR_CONTEXT]
 *
 * sequence classification: every label of TEXT (or of the pair TEXT, PAIR), best first;
 * token classification: the entities of TEXT (aggregation simple);
 * question answering: the 2 best answers to the question TEXT in the context;
 * multiple choice: TEXT is the prompt, the rest of the arguments the choices.
 * Output: one tab-separated record per line (tests/c_api.rs reads it).
 */
#include <stdio.h>
#include <stdlib.h>

#include "xlmr.h"

static int fail(const char *what, xlmr_status status) {
    fprintf(stderr, "%s: %s: %s\n", what, xlmr_status_string(status), xlmr_last_error());
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL.gguf TEXT [PAIR_OR_CONTEXT | CHOICE...]\n", argv[0]);
        return 2;
    }
    xlmr_model *model = NULL;
    xlmr_status status = xlmr_model_load(argv[1], xlmr_model_default_params(), &model);
    if (status != XLMR_STATUS_OK) return fail("load", status);

    int rc = 0;
    const char *text = argv[2];
    const char *second = argc > 3 ? argv[3] : NULL;
    printf("head\t%d\t%zu\n", xlmr_model_head_kind(model), xlmr_model_n_labels(model));
    switch (xlmr_model_head_kind(model)) {
    case XLMR_HEAD_SEQUENCE_CLASSIFICATION: {
        xlmr_classify_result *result = NULL;
        status = xlmr_classify(model, &text, second ? &second : NULL, 1, XLMR_TOP_K_ALL, XLMR_FUNCTION_DEFAULT, false, &result);
        if (status != XLMR_STATUS_OK) { rc = fail("classify", status); break; }
        for (size_t r = 0; r < xlmr_classify_n_labels(result, 0); r++) {
            xlmr_label_score l;
            if (xlmr_classify_get(result, 0, r, &l) == XLMR_STATUS_OK) printf("label\t%s\t%.6f\n", l.label, l.score);
        }
        xlmr_classify_free(result);
        break;
    }
    case XLMR_HEAD_TOKEN_CLASSIFICATION: {
        xlmr_entities *entities = NULL;
        status = xlmr_token_classify(model, &text, 1, XLMR_AGGREGATION_SIMPLE, NULL, 0, false, &entities);
        if (status != XLMR_STATUS_OK) { rc = fail("token_classify", status); break; }
        for (size_t i = 0; i < xlmr_entities_n_entities(entities, 0); i++) {
            xlmr_entity e;
            if (xlmr_entities_get(entities, 0, i, &e) == XLMR_STATUS_OK)
                printf("entity\t%s\t%.6f\t%zu\t%zu\t%s\n", e.label, e.score, e.start, e.end, e.word);
        }
        xlmr_entities_free(entities);
        break;
    }
    case XLMR_HEAD_QUESTION_ANSWERING: {
        if (!second) { fprintf(stderr, "question answering needs a context\n"); rc = 2; break; }
        xlmr_answers *answers = NULL;
        xlmr_qa_params params = xlmr_qa_default_params();
        params.top_k = 2;
        status = xlmr_answer(model, &text, &second, 1, params, &answers);
        if (status != XLMR_STATUS_OK) { rc = fail("answer", status); break; }
        for (size_t r = 0; r < xlmr_answers_n_answers(answers, 0); r++) {
            xlmr_qa_answer a;
            if (xlmr_answers_get(answers, 0, r, &a) == XLMR_STATUS_OK)
                printf("answer\t%.6f\t%zu\t%zu\t%s\n", a.score, a.start, a.end, a.answer);
        }
        xlmr_answers_free(answers);
        break;
    }
    case XLMR_HEAD_MULTIPLE_CHOICE: {
        size_t n = (size_t)(argc - 3);
        float *scores = malloc((n ? n : 1) * sizeof *scores);
        size_t best = 0;
        status = xlmr_multiple_choice(model, text, (const char *const *)(argv + 3), n, false, scores, &best);
        if (status != XLMR_STATUS_OK) rc = fail("multiple_choice", status);
        else for (size_t i = 0; i < n; i++) printf("choice\t%zu\t%.6f\t%d\n", i, scores[i], i == best);
        free(scores);
        break;
    }
    default:
        fprintf(stderr, "this model has no task head\n");
        rc = 2;
    }

    /* Asking for another head's task is an error status, not a crash. */
    xlmr_answers *none = NULL;
    const char *q = "?";
    xlmr_status other = xlmr_answer(model, &q, &q, 1, xlmr_qa_default_params(), &none);
    if (other != XLMR_STATUS_OK) printf("error\t%s\t%s\n", xlmr_status_string(other), xlmr_last_error());
    xlmr_answers_free(none);

    xlmr_model_free(model);
    return rc;
}
