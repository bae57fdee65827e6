/*
 * Classifies the sentences of an SST-2 style TSV (header line, sentence in the first column) with a model blob
 * through the C API, and prints one line per sentence:
 *     <row> <label> <logit bits, hex, comma-separated> <logits, %a>
 * Each sentence goes through albert_edge_classify_text and through albert_edge_tokenize + albert_edge_classify;
 * the two must give the same bits (exit 1 otherwise).
 *
 *     classify BLOB TSV [LIMIT]
 */
#include "common.h"

#define MAX_LOGITS 64

static void fail(const char *what, albert_edge_status s) {
    fprintf(stderr, "error: %s: %s (%s)\n", what, albert_edge_status_name(s), albert_edge_status_message(s));
    exit(1);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s BLOB TSV [LIMIT]\n", argv[0]);
        return 2;
    }
    long limit = argc > 3 ? atol(argv[3]) : -1;
    if (albert_edge_model_size() != sizeof(albert_edge_model)) {
        fprintf(stderr, "error: albert_edge.h does not belong to this libalbert_edge.a\n");
        return 1;
    }

    size_t blob_len;
    uint8_t *blob = read_file(argv[1], &blob_len, 0);
    static albert_edge_model model;
    albert_edge_status s = albert_edge_open(&model, blob, blob_len);
    if (s != ALBERT_EDGE_OK) fail(argv[1], s);
    albert_edge_config c;
    if ((s = albert_edge_get_config(&model, &c)) != ALBERT_EDGE_OK) fail("albert_edge_get_config", s);
    if (c.num_labels > MAX_LOGITS) fail("too many labels", ALBERT_EDGE_ERR_OTHER);
    uint32_t precision = c.int8_weights ? ALBERT_EDGE_PRECISION_INT8 : ALBERT_EDGE_PRECISION_F32;

    /* One scratch buffer for the text path, one arena + ids for the ids path: sized up front for the longest
     * input (max_position_embeddings tokens) and a text line of up to 64 KiB. */
    size_t max_line = 1 << 16;
    size_t scratch_len = albert_edge_text_scratch_size(&model, 0, max_line, precision);
    size_t ws_len = albert_edge_tokenizer_workspace_size(&model, max_line);
    size_t arena_len = albert_edge_scratch_size(&model, c.max_position_embeddings, precision);
    if (!scratch_len || !ws_len || !arena_len) fail("sizes", ALBERT_EDGE_ERR_NO_TOKENIZER);
    uint8_t *scratch = malloc(scratch_len), *ws = malloc(ws_len), *arena = malloc(arena_len);
    uint32_t *ids = malloc(c.max_position_embeddings * sizeof *ids);
    uint32_t *types = malloc(c.max_position_embeddings * sizeof *types);
    char *line = malloc(max_line + 2);
    if (!scratch || !ws || !arena || !ids || !types || !line) return 2;
    fprintf(stderr, "blob: %zu bytes, %u labels, text scratch %zu B, arena %zu B\n", blob_len, c.num_labels,
            scratch_len, arena_len);

    FILE *tsv = fopen(argv[2], "r");
    if (!tsv) {
        fprintf(stderr, "error: cannot read %s\n", argv[2]);
        return 2;
    }
    long row = -1;
    while ((limit < 0 || row < limit) && fgets(line, (int)max_line + 2, tsv)) {
        if (row++ < 0) continue; /* header */
        size_t n = strcspn(line, "\t\r\n");
        while (n > 0 && (line[n - 1] == ' ' || line[n - 1] == '\t')) n--;

        float logits[MAX_LOGITS], again[MAX_LOGITS];
        s = albert_edge_classify_text(&model, precision, line, n, NULL, 0, 0, scratch, scratch_len, logits,
                                      MAX_LOGITS);
        if (s != ALBERT_EDGE_OK) fail("albert_edge_classify_text", s);
        size_t n_ids;
        s = albert_edge_tokenize(&model, line, n, NULL, 0, 0, ws, ws_len, ids, types, c.max_position_embeddings,
                                 &n_ids);
        if (s != ALBERT_EDGE_OK) fail("albert_edge_tokenize", s);
        s = albert_edge_classify(&model, precision, ids, types, NULL, n_ids, arena, arena_len, again, c.num_labels);
        if (s != ALBERT_EDGE_OK) fail("albert_edge_classify", s);

        size_t best = 0;
        for (size_t i = 0; i < c.num_labels; i++) {
            if (f32_bits(logits[i]) != f32_bits(again[i])) {
                fprintf(stderr, "error: row %ld: classify_text and tokenize + classify differ\n", row);
                return 1;
            }
            if (logits[i] > logits[best]) best = i;
        }
        const char *label;
        size_t label_len;
        if ((s = albert_edge_label(&model, (uint32_t)best, &label, &label_len)) != ALBERT_EDGE_OK) fail("label", s);
        printf("%ld %.*s ", row, (int)label_len, label);
        for (size_t i = 0; i < c.num_labels; i++) printf("%s%08x", i ? "," : "", (unsigned)f32_bits(logits[i]));
        for (size_t i = 0; i < c.num_labels; i++) printf("%s%a", i ? "," : " ", (double)logits[i]);
        printf("\n");
    }
    fclose(tsv);
    return 0;
}
