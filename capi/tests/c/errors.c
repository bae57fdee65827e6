/*
 * Every C API function with bad arguments: NULL pointers, short and misaligned buffers, overlapping buffers,
 * unopened models, damaged blobs. Each call must return its documented status. Prints one line per check that
 * fails and exits 1 if any did.
 *
 *     errors INT8_BLOB [FP32_BLOB]      (the f32 blob, when given, checks ALBERT_EDGE_ERR_NOT_INT8)
 */
#include "common.h"

static int failures, checks;

#define EXPECT(call, want)                                                                                     \
    do {                                                                                                       \
        albert_edge_status got_ = (call);                                                                      \
        checks++;                                                                                              \
        if (got_ != (want)) {                                                                                  \
            failures++;                                                                                        \
            printf("FAIL line %d: %s\n  returned %s, expected %s\n", __LINE__, #call,                          \
                   albert_edge_status_name(got_), albert_edge_status_name(want));                              \
        }                                                                                                      \
    } while (0)

#define TRUE(cond)                                                                                             \
    do {                                                                                                       \
        checks++;                                                                                              \
        if (!(cond)) {                                                                                         \
            failures++;                                                                                        \
            printf("FAIL line %d: %s\n", __LINE__, #cond);                                                     \
        }                                                                                                      \
    } while (0)

/* CRC-32 (zlib's), to damage a blob in ways the checksum does not catch. */
static uint32_t crc32(const uint8_t *p, size_t n) {
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1)));
    }
    return ~c;
}

static void put_u32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }

static void reseal(uint8_t *blob, size_t len) { put_u32(blob + 12, crc32(blob + 16, len - 16)); }

static const char TEXT[] = "it 's a charming and often affecting journey .";
#define TEXT_LEN (sizeof TEXT - 1)

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s INT8_BLOB [FP32_BLOB]\n", argv[0]);
        return 2;
    }
    size_t len;
    uint8_t *blob = read_file(argv[1], &len, 16);
    static albert_edge_model model, closed;
    albert_edge_config c;
    const uint32_t I8 = ALBERT_EDGE_PRECISION_INT8, F32 = ALBERT_EDGE_PRECISION_F32;

    /* ---- status names and messages ---- */
    for (int32_t s = ALBERT_EDGE_OK; s <= ALBERT_EDGE_ERR_OTHER; s++) {
        TRUE(strncmp(albert_edge_status_name(s), "ALBERT_EDGE_", 12) == 0);
        TRUE(strlen(albert_edge_status_message(s)) > 5);
    }
    TRUE(strcmp(albert_edge_status_name(ALBERT_EDGE_ERR_CHECKSUM_MISMATCH), "ALBERT_EDGE_ERR_CHECKSUM_MISMATCH") == 0);
    TRUE(strcmp(albert_edge_status_name(-1), "ALBERT_EDGE_UNKNOWN_STATUS") == 0);
    TRUE(strcmp(albert_edge_status_name(ALBERT_EDGE_ERR_OTHER + 1), "ALBERT_EDGE_UNKNOWN_STATUS") == 0);
    TRUE(strcmp(albert_edge_status_message(1000), "unknown status code") == 0);
    TRUE(albert_edge_model_size() == sizeof(albert_edge_model));

    /* ---- albert_edge_open ---- */
    EXPECT(albert_edge_open(NULL, blob, len), ALBERT_EDGE_ERR_NULL_POINTER);
    EXPECT(albert_edge_open(&model, NULL, len), ALBERT_EDGE_ERR_NULL_POINTER);
    EXPECT(albert_edge_open((albert_edge_model *)((uint8_t *)&model + 4), blob, len), ALBERT_EDGE_ERR_MISALIGNED);
    memmove(blob + 1, blob, len); /* a misaligned copy */
    EXPECT(albert_edge_open(&model, blob + 1, len), ALBERT_EDGE_ERR_MISALIGNED);
    memmove(blob, blob + 1, len);
    EXPECT(albert_edge_open(&model, blob, 0), ALBERT_EDGE_ERR_TRUNCATED);
    EXPECT(albert_edge_open(&model, blob, 100), ALBERT_EDGE_ERR_TRUNCATED);
    EXPECT(albert_edge_open(&model, blob, len - 1), ALBERT_EDGE_ERR_TRUNCATED);
    blob[0] ^= 1;
    EXPECT(albert_edge_open(&model, blob, len), ALBERT_EDGE_ERR_BAD_MAGIC);
    blob[0] ^= 1;
    blob[8] ^= 0x40; /* format version */
    EXPECT(albert_edge_open(&model, blob, len), ALBERT_EDGE_ERR_UNSUPPORTED_VERSION);
    blob[8] ^= 0x40;
    blob[len / 2] ^= 0x10; /* a weight byte */
    EXPECT(albert_edge_open(&model, blob, len), ALBERT_EDGE_ERR_CHECKSUM_MISMATCH);
    blob[len / 2] ^= 0x10;
    /* Damage the checksum does not catch (resealed): a config value, a tensor entry, labels, tokenizer. */
    uint8_t *bad = read_file(argv[1], &len, 0);
    put_u32(bad + 32, 0); /* hidden_size */
    reseal(bad, len);
    EXPECT(albert_edge_open(&model, bad, len), ALBERT_EDGE_ERR_BAD_CONFIG);
    uint32_t table, labels, tok, tok_len;
    memcpy(bad, blob, len);
    memcpy(&table, blob + 72, 4);
    put_u32(bad + table + 4, 12345); /* the first tensor's dim0 */
    reseal(bad, len);
    EXPECT(albert_edge_open(&model, bad, len), ALBERT_EDGE_ERR_BAD_TENSOR);
    memcpy(bad, blob, len);
    memcpy(&labels, blob + 76, 4);
    bad[labels] = 0xff, bad[labels + 1] = 0xff; /* the first label's length */
    reseal(bad, len);
    EXPECT(albert_edge_open(&model, bad, len), ALBERT_EDGE_ERR_BAD_LABELS);
    memcpy(bad, blob, len);
    memcpy(&tok, blob + 84, 4);
    memcpy(&tok_len, blob + 88, 4);
    bad[tok] ^= 0xff; /* the tokenizer section's magic */
    reseal(bad, len);
    EXPECT(albert_edge_open(&model, bad, len), ALBERT_EDGE_ERR_BAD_TOKENIZER);
    /* A blob without a tokenizer: the text functions say so. */
    memcpy(bad, blob, len);
    put_u32(bad + 84, 0), put_u32(bad + 88, 0);
    reseal(bad, len);
    static albert_edge_model no_tok;
    EXPECT(albert_edge_open(&no_tok, bad, len), ALBERT_EDGE_OK);

    /* A failed open leaves the model closed, even one that was open. */
    EXPECT(albert_edge_open(&model, blob, len), ALBERT_EDGE_OK);
    EXPECT(albert_edge_open(&model, blob, 10), ALBERT_EDGE_ERR_TRUNCATED);
    EXPECT(albert_edge_get_config(&model, &c), ALBERT_EDGE_ERR_NOT_OPEN);
    EXPECT(albert_edge_open(&model, blob, len + 16), ALBERT_EDGE_OK); /* bytes after the blob are ignored */

    /* ---- albert_edge_get_config, albert_edge_label ---- */
    EXPECT(albert_edge_get_config(NULL, &c), ALBERT_EDGE_ERR_NULL_POINTER);
    EXPECT(albert_edge_get_config(&model, NULL), ALBERT_EDGE_ERR_NULL_POINTER);
    EXPECT(albert_edge_get_config(&closed, &c), ALBERT_EDGE_ERR_NOT_OPEN);
    EXPECT(albert_edge_get_config((const albert_edge_model *)((uint8_t *)&model + 1), &c), ALBERT_EDGE_ERR_MISALIGNED);
    EXPECT(albert_edge_get_config(&model, &c), ALBERT_EDGE_OK);
    TRUE(c.num_labels == 2 && c.int8_weights == 1 && c.has_tokenizer == 1 && c.vocab_size > 1000);
    TRUE(c.hidden_size % c.num_attention_heads == 0 && c.layer_norm_eps > 0 && c.hidden_act <= 2);
    TRUE(c.format_version == 1 || c.format_version == 2);
    albert_edge_config c2;
    EXPECT(albert_edge_get_config(&no_tok, &c2), ALBERT_EDGE_OK);
    TRUE(c2.has_tokenizer == 0 && c2.vocab_size == c.vocab_size);

    const char *name;
    size_t name_len;
    EXPECT(albert_edge_label(&model, 0, &name, &name_len), ALBERT_EDGE_OK);
    TRUE(name_len == 8 && memcmp(name, "negative", 8) == 0);
    EXPECT(albert_edge_label(&model, 1, &name, &name_len), ALBERT_EDGE_OK);
    TRUE(name_len == 8 && memcmp(name, "positive", 8) == 0);
    EXPECT(albert_edge_label(&model, 2, &name, &name_len), ALBERT_EDGE_ERR_BAD_ARGUMENT);
    EXPECT(albert_edge_label(&model, 0, NULL, &name_len), ALBERT_EDGE_ERR_NULL_POINTER);
    EXPECT(albert_edge_label(&model, 0, &name, NULL), ALBERT_EDGE_ERR_NULL_POINTER);
    EXPECT(albert_edge_label(NULL, 0, &name, &name_len), ALBERT_EDGE_ERR_NULL_POINTER);
    EXPECT(albert_edge_label(&closed, 0, &name, &name_len), ALBERT_EDGE_ERR_NOT_OPEN);

    /* ---- sizes: 0 for anything invalid ---- */
    size_t arena_len = albert_edge_scratch_size(&model, 32, I8);
    TRUE(arena_len > 0 && albert_edge_scratch_size(&model, 32, F32) > arena_len);
    TRUE(albert_edge_scratch_size(&model, 31, I8) <= arena_len);
    TRUE(albert_edge_scratch_size(&model, c.max_position_embeddings, I8) > 0);
    TRUE(albert_edge_scratch_size(&model, c.max_position_embeddings + 1, I8) == 0);
    TRUE(albert_edge_scratch_size(&model, 0, I8) == 0);
    TRUE(albert_edge_scratch_size(&model, 32, 7) == 0);
    TRUE(albert_edge_scratch_size(NULL, 32, I8) == 0);
    TRUE(albert_edge_scratch_size(&closed, 32, I8) == 0);
    size_t ws_len = albert_edge_tokenizer_workspace_size(&model, 64);
    TRUE(ws_len > 0 && albert_edge_tokenizer_workspace_size(&model, 128) > ws_len);
    TRUE(albert_edge_tokenizer_workspace_size(&no_tok, 64) == 0);
    TRUE(albert_edge_tokenizer_workspace_size(NULL, 64) == 0);
    TRUE(albert_edge_tokenizer_workspace_size(&closed, 64) == 0);
    size_t text_len = albert_edge_text_scratch_size(&model, 32, 64, I8);
    TRUE(text_len >= arena_len + 8 * 32 && text_len >= ws_len);
    TRUE(albert_edge_text_scratch_size(&model, 0, 64, I8) == albert_edge_text_scratch_size(&model, 1u << 30, 64, I8));
    TRUE(albert_edge_text_scratch_size(&model, 32, 64, 2) == 0);
    TRUE(albert_edge_text_scratch_size(&no_tok, 32, 64, I8) == 0);
    TRUE(albert_edge_text_scratch_size(NULL, 32, 64, I8) == 0);

    /* ---- albert_edge_tokenize ---- */
    uint8_t *ws = malloc(ws_len + 8);
    uint32_t ids[64], types[64];
    size_t n = 99;
    EXPECT(albert_edge_tokenize(&model, TEXT, TEXT_LEN, NULL, 0, 0, ws, ws_len, ids, types, 64, &n), ALBERT_EDGE_OK);
    TRUE(n >= 5 && ids[0] == 2 && ids[n - 1] == 3 && types[n - 1] == 0);
    size_t single = n;
    uint32_t pair_ids[64], pair_types[64];
    EXPECT(albert_edge_tokenize(&model, TEXT, TEXT_LEN, "so good", 7, 0, ws, ws_len, pair_ids, pair_types, 64, &n),
           ALBERT_EDGE_OK);
    TRUE(n > single && pair_types[0] == 0 && pair_types[n - 1] == 1 && pair_ids[n - 1] == 3);
    TRUE(memcmp(pair_ids, ids, (single - 1) * 4) == 0);
    size_t pair_n = n;
    EXPECT(albert_edge_tokenize(&model, TEXT, TEXT_LEN, NULL, 0, 5, ws, ws_len, ids, types, 64, &n), ALBERT_EDGE_OK);
    TRUE(n == 5 && ids[4] == 3); /* truncated */
    EXPECT(albert_edge_tokenize(&model, NULL, 0, NULL, 0, 0, ws, ws_len, ids, types, 64, &n), ALBERT_EDGE_OK);
    TRUE(n == 2); /* [CLS] [SEP] */
    n = 99;
    EXPECT(albert_edge_tokenize(&model, TEXT, TEXT_LEN, NULL, 0, 0, ws, ws_len, ids, types, 4, &n),
           ALBERT_EDGE_ERR_OUTPUT_TOO_SMALL);
    TRUE(n == single); /* the count needed */
    EXPECT(albert_edge_tokenize(&model, TEXT, TEXT_LEN, NULL, 0, 0, ws, ws_len, NULL, NULL, 0, &n),
           ALBERT_EDGE_ERR_OUTPUT_TOO_SMALL);
    EXPECT(albert_edge_tokenize(&model, TEXT, TEXT_LEN, NULL, 0, 0, ws, 16, ids, types, 64, &n),
           ALBERT_EDGE_ERR_ARENA_TOO_SMALL);
    TRUE(n == 0);
    EXPECT(albert_edge_tokenize(&model, NULL, 5, NULL, 0, 0, ws, ws_len, ids, types, 64, &n),
           ALBERT_EDGE_ERR_NULL_POINTER);
    EXPECT(albert_edge_tokenize(&model, TEXT, TEXT_LEN, NULL, 3, 0, ws, ws_len, ids, types, 64, &n),
           ALBERT_EDGE_ERR_NULL_POINTER);
    EXPECT(albert_edge_tokenize(&model, TEXT, TEXT_LEN, NULL, 0, 0, NULL, ws_len, ids, types, 64, &n),
           ALBERT_EDGE_ERR_NULL_POINTER);
    EXPECT(albert_edge_tokenize(&model, TEXT, TEXT_LEN, NULL, 0, 0, ws, ws_len, NULL, types, 64, &n),
           ALBERT_EDGE_ERR_NULL_POINTER);
    EXPECT(albert_edge_tokenize(&model, TEXT, TEXT_LEN, NULL, 0, 0, ws, ws_len, ids, NULL, 64, &n),
           ALBERT_EDGE_ERR_NULL_POINTER);
    EXPECT(albert_edge_tokenize(&model, TEXT, TEXT_LEN, NULL, 0, 0, ws, ws_len, ids, types, 64, NULL),
           ALBERT_EDGE_ERR_NULL_POINTER);
    EXPECT(albert_edge_tokenize(NULL, TEXT, TEXT_LEN, NULL, 0, 0, ws, ws_len, ids, types, 64, &n),
           ALBERT_EDGE_ERR_NULL_POINTER);
    EXPECT(albert_edge_tokenize(&closed, TEXT, TEXT_LEN, NULL, 0, 0, ws, ws_len, ids, types, 64, &n),
           ALBERT_EDGE_ERR_NOT_OPEN);
    EXPECT(albert_edge_tokenize(&no_tok, TEXT, TEXT_LEN, NULL, 0, 0, ws, ws_len, ids, types, 64, &n),
           ALBERT_EDGE_ERR_NO_TOKENIZER);
    EXPECT(albert_edge_tokenize(&model, TEXT, TEXT_LEN, NULL, 0, 0, ws, ws_len, (uint32_t *)((uint8_t *)ids + 2),
                                types, 32, &n),
           ALBERT_EDGE_ERR_MISALIGNED);
    EXPECT(albert_edge_tokenize(&model, TEXT, TEXT_LEN, NULL, 0, 0, ws, ws_len, ids, ids + 32, 64, &n),
           ALBERT_EDGE_ERR_BAD_ARGUMENT); /* overlapping outputs */
    EXPECT(albert_edge_tokenize(&model, (const char *)ws, 8, NULL, 0, 0, ws, ws_len, ids, types, 64, &n),
           ALBERT_EDGE_ERR_BAD_ARGUMENT); /* text inside the workspace */

    /* ---- albert_edge_classify ---- */
    EXPECT(albert_edge_tokenize(&model, TEXT, TEXT_LEN, NULL, 0, 0, ws, ws_len, ids, types, 64, &n), ALBERT_EDGE_OK);
    uint8_t *arena = malloc(albert_edge_scratch_size(&model, c.max_position_embeddings, F32) + 8);
    float logits[4], ref[4], f32_logits[4];
    EXPECT(albert_edge_classify(&model, I8, ids, NULL, NULL, n, arena, arena_len, ref, 2), ALBERT_EDGE_OK);
    TRUE(ref[0] < ref[1]); /* positive */
    EXPECT(albert_edge_classify(&model, I8, ids, types, NULL, n, arena + 1, arena_len, logits, 4), ALBERT_EDGE_OK);
    TRUE(memcmp(logits, ref, 8) == 0); /* any arena alignment, type ids 0 = NULL */
    uint32_t mask[64];
    for (size_t i = 0; i < 64; i++) mask[i] = 1;
    EXPECT(albert_edge_classify(&model, I8, ids, types, mask, n, arena, arena_len, logits, 2), ALBERT_EDGE_OK);
    TRUE(memcmp(logits, ref, 8) == 0); /* mask of ones = NULL */
    EXPECT(albert_edge_classify(&model, F32, ids, NULL, NULL, n, arena, albert_edge_scratch_size(&model, n, F32),
                                f32_logits, 2),
           ALBERT_EDGE_OK);
    TRUE(f32_logits[0] < f32_logits[1]);
    EXPECT(albert_edge_classify(&model, I8, pair_ids, pair_types, NULL, pair_n, arena, arena_len, logits, 2),
           ALBERT_EDGE_OK);
    EXPECT(albert_edge_classify(&model, I8, ids, NULL, NULL, n, arena, albert_edge_scratch_size(&model, n, I8) - 1,
                                logits, 2),
           ALBERT_EDGE_ERR_ARENA_TOO_SMALL);
    EXPECT(albert_edge_classify(&model, I8, ids, NULL, NULL, n, arena, arena_len, logits, 1),
           ALBERT_EDGE_ERR_OUTPUT_TOO_SMALL);
    EXPECT(albert_edge_classify(&model, 9, ids, NULL, NULL, n, arena, arena_len, logits, 2),
           ALBERT_EDGE_ERR_BAD_ARGUMENT);
    EXPECT(albert_edge_classify(&model, I8, ids, NULL, NULL, 0, arena, arena_len, logits, 2), ALBERT_EDGE_ERR_BAD_INPUT);
    uint32_t bad_ids[3] = {2, c.vocab_size, 3}, bad_types[3] = {0, 2, 0}, bad_mask[3] = {1, 2, 1};
    EXPECT(albert_edge_classify(&model, I8, bad_ids, NULL, NULL, 3, arena, arena_len, logits, 2),
           ALBERT_EDGE_ERR_BAD_INPUT);
    EXPECT(albert_edge_classify(&model, I8, ids, bad_types, NULL, 3, arena, arena_len, logits, 2),
           ALBERT_EDGE_ERR_BAD_INPUT);
    EXPECT(albert_edge_classify(&model, I8, ids, NULL, bad_mask, 3, arena, arena_len, logits, 2),
           ALBERT_EDGE_ERR_BAD_INPUT);
    uint32_t *long_ids = calloc(c.max_position_embeddings + 1, 4);
    EXPECT(albert_edge_classify(&model, I8, long_ids, NULL, NULL, c.max_position_embeddings + 1, arena, arena_len,
                                logits, 2),
           ALBERT_EDGE_ERR_SEQUENCE_TOO_LONG);
    EXPECT(albert_edge_classify(&model, I8, NULL, NULL, NULL, n, arena, arena_len, logits, 2),
           ALBERT_EDGE_ERR_NULL_POINTER);
    EXPECT(albert_edge_classify(&model, I8, ids, NULL, NULL, n, NULL, arena_len, logits, 2),
           ALBERT_EDGE_ERR_NULL_POINTER);
    EXPECT(albert_edge_classify(&model, I8, ids, NULL, NULL, n, arena, arena_len, NULL, 2),
           ALBERT_EDGE_ERR_NULL_POINTER);
    EXPECT(albert_edge_classify(NULL, I8, ids, NULL, NULL, n, arena, arena_len, logits, 2),
           ALBERT_EDGE_ERR_NULL_POINTER);
    EXPECT(albert_edge_classify(&closed, I8, ids, NULL, NULL, n, arena, arena_len, logits, 2),
           ALBERT_EDGE_ERR_NOT_OPEN);
    EXPECT(albert_edge_classify(&model, I8, (const uint32_t *)((const uint8_t *)ids + 1), NULL, NULL, n, arena,
                                arena_len, logits, 2),
           ALBERT_EDGE_ERR_MISALIGNED);
    EXPECT(albert_edge_classify(&model, I8, ids, NULL, NULL, n, arena, arena_len, (float *)(arena + 4), 2),
           ALBERT_EDGE_ERR_BAD_ARGUMENT); /* logits inside the arena */
    EXPECT(albert_edge_classify(&model, I8, ids, NULL, NULL, n, blob + 4096, arena_len, logits, 2),
           ALBERT_EDGE_ERR_BAD_ARGUMENT); /* arena over the blob */
    EXPECT(albert_edge_classify(&model, I8, ids, NULL, NULL, n, (uint8_t *)&model, sizeof model, logits, 2),
           ALBERT_EDGE_ERR_BAD_ARGUMENT); /* arena over the model */
    EXPECT(albert_edge_classify(&no_tok, I8, ids, NULL, NULL, n, arena, arena_len, logits, 2), ALBERT_EDGE_OK);
    TRUE(memcmp(logits, ref, 8) == 0); /* token ids need no tokenizer */

    /* ---- albert_edge_classify_text ---- */
    size_t sl = albert_edge_text_scratch_size(&model, 0, 64, I8);
    uint8_t *scratch = malloc(sl + 8);
    EXPECT(albert_edge_classify_text(&model, I8, TEXT, TEXT_LEN, NULL, 0, 0, scratch, sl, logits, 2), ALBERT_EDGE_OK);
    TRUE(memcmp(logits, ref, 8) == 0);
    EXPECT(albert_edge_classify_text(&model, I8, TEXT, TEXT_LEN, NULL, 0, 0, scratch + 3, sl, logits, 2),
           ALBERT_EDGE_OK);
    TRUE(memcmp(logits, ref, 8) == 0);
    size_t small = albert_edge_text_scratch_size(&model, 16, 64, I8);
    EXPECT(albert_edge_classify_text(&model, I8, TEXT, TEXT_LEN, NULL, 0, 16, scratch + 1, small, logits, 2),
           ALBERT_EDGE_OK);
    TRUE(memcmp(logits, ref, 8) == 0); /* 12 tokens: not truncated at 16 */
    EXPECT(albert_edge_classify_text(&model, I8, TEXT, TEXT_LEN, "so good", 7, 0, scratch, sl, logits, 2),
           ALBERT_EDGE_OK);
    float pair_ref[2];
    EXPECT(albert_edge_classify(&model, I8, pair_ids, pair_types, NULL, pair_n, arena, arena_len, pair_ref, 2),
           ALBERT_EDGE_OK);
    TRUE(memcmp(logits, pair_ref, 8) == 0);
    EXPECT(albert_edge_classify_text(&model, F32, TEXT, TEXT_LEN, NULL, 0, 0, scratch,
                                     albert_edge_text_scratch_size(&model, 0, 64, F32) <= sl + 8
                                         ? albert_edge_text_scratch_size(&model, 0, 64, F32)
                                         : 0,
                                     logits, 2),
           albert_edge_text_scratch_size(&model, 0, 64, F32) <= sl + 8 ? ALBERT_EDGE_OK
                                                                       : ALBERT_EDGE_ERR_ARENA_TOO_SMALL);
    EXPECT(albert_edge_classify_text(&model, I8, TEXT, TEXT_LEN, NULL, 0, 0, scratch, 100, logits, 2),
           ALBERT_EDGE_ERR_ARENA_TOO_SMALL);
    EXPECT(albert_edge_classify_text(&model, I8, TEXT, TEXT_LEN, NULL, 0, 16, scratch, 3 + 8 * 16, logits, 2),
           ALBERT_EDGE_ERR_ARENA_TOO_SMALL); /* room for the ids only */
    EXPECT(albert_edge_classify_text(&model, I8, TEXT, TEXT_LEN, NULL, 0, 0, scratch, sl, logits, 1),
           ALBERT_EDGE_ERR_OUTPUT_TOO_SMALL);
    EXPECT(albert_edge_classify_text(&model, 5, TEXT, TEXT_LEN, NULL, 0, 0, scratch, sl, logits, 2),
           ALBERT_EDGE_ERR_BAD_ARGUMENT);
    EXPECT(albert_edge_classify_text(&model, I8, NULL, 4, NULL, 0, 0, scratch, sl, logits, 2),
           ALBERT_EDGE_ERR_NULL_POINTER);
    EXPECT(albert_edge_classify_text(&model, I8, TEXT, TEXT_LEN, NULL, 1, 0, scratch, sl, logits, 2),
           ALBERT_EDGE_ERR_NULL_POINTER);
    EXPECT(albert_edge_classify_text(&model, I8, TEXT, TEXT_LEN, NULL, 0, 0, NULL, sl, logits, 2),
           ALBERT_EDGE_ERR_NULL_POINTER);
    EXPECT(albert_edge_classify_text(&model, I8, TEXT, TEXT_LEN, NULL, 0, 0, scratch, sl, NULL, 2),
           ALBERT_EDGE_ERR_NULL_POINTER);
    EXPECT(albert_edge_classify_text(NULL, I8, TEXT, TEXT_LEN, NULL, 0, 0, scratch, sl, logits, 2),
           ALBERT_EDGE_ERR_NULL_POINTER);
    EXPECT(albert_edge_classify_text(&closed, I8, TEXT, TEXT_LEN, NULL, 0, 0, scratch, sl, logits, 2),
           ALBERT_EDGE_ERR_NOT_OPEN);
    EXPECT(albert_edge_classify_text(&no_tok, I8, TEXT, TEXT_LEN, NULL, 0, 0, scratch, sl, logits, 2),
           ALBERT_EDGE_ERR_NO_TOKENIZER);
    EXPECT(albert_edge_classify_text(&model, I8, TEXT, TEXT_LEN, NULL, 0, 0, scratch, sl, (float *)(scratch + 64), 2),
           ALBERT_EDGE_ERR_BAD_ARGUMENT);
    EXPECT(albert_edge_classify_text(&model, I8, TEXT, TEXT_LEN, NULL, 0, 0, scratch, sl, (float *)(logits) + 0, 2),
           ALBERT_EDGE_OK);
    EXPECT(albert_edge_classify_text(&model, I8, TEXT, TEXT_LEN, NULL, 0, 0, scratch, sl,
                                     (float *)((uint8_t *)logits + 2), 2),
           ALBERT_EDGE_ERR_MISALIGNED);

    /* ---- an f32 blob: int8 precision refused ---- */
    if (argc > 2) {
        size_t f32_len;
        uint8_t *f32_blob = read_file(argv[2], &f32_len, 0);
        static albert_edge_model fp;
        EXPECT(albert_edge_open(&fp, f32_blob, f32_len), ALBERT_EDGE_OK);
        albert_edge_config fc;
        EXPECT(albert_edge_get_config(&fp, &fc), ALBERT_EDGE_OK);
        TRUE(fc.int8_weights == 0);
        uint32_t two[2] = {2, 3};
        size_t fl = albert_edge_scratch_size(&fp, 2, F32);
        uint8_t *fa = malloc(fl);
        EXPECT(albert_edge_classify(&fp, I8, two, NULL, NULL, 2, fa, fl, logits, 4), ALBERT_EDGE_ERR_NOT_INT8);
        EXPECT(albert_edge_classify(&fp, F32, two, NULL, NULL, 2, fa, fl, logits, 4), ALBERT_EDGE_OK);
        EXPECT(albert_edge_classify_text(&fp, I8, "x", 1, NULL, 0, 0, fa, fl, logits, 4), ALBERT_EDGE_ERR_NOT_INT8);
    } else {
        printf("(no f32 blob given: ALBERT_EDGE_ERR_NOT_INT8 not checked)\n");
    }

    printf("%d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}
