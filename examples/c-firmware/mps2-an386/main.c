/*
 * albert-edge from C on QEMU's mps2-an386 (Cortex-M4F): the model blob linked in place, one static scratch
 * buffer, on-device tokenization and int8 classification through libalbert_edge.a, results through
 * semihosting in the Rust firmware's format:
 *     result <i> label=<name> bits=<f32 bits, hex> ids=<token ids>
 * Exits 0 when every sentence was classified.
 */
#include <stdint.h>
#include <string.h>

#include "albert_edge.h"

void semihosting_write(const char *s);
extern const uint8_t model_blob[], model_blob_end[];

/* The Rust firmware's sizes: inputs truncated to 64 tokens, words of up to 64 bytes. */
#define MAX_SEQ 64
#define MAX_WORD_BYTES 64
/* albert_edge_text_scratch_size(&model, MAX_SEQ, MAX_WORD_BYTES, INT8) for the MCU blob, checked at start. */
#define SCRATCH_BYTES 83939

static albert_edge_model model;
static uint8_t scratch[SCRATCH_BYTES] __attribute__((aligned(16)));
static uint32_t ids[MAX_SEQ], types[MAX_SEQ];

/* The Rust firmware's sentences (examples/firmware/common/src/lib.rs). */
static const char *const SENTENCES[] = {
    "it's a charming and often affecting journey.",
    "unflinchingly bleak and desperate",
    "the acting, costumes, music, cinematography and sound are all astounding given the production's austere "
    "locales.",
    "Caf\xc3\xa9 society, na\xc3\xafve and \xe2\x80\x9csmart\xe2\x80\x9d: a 1,000,000-dollar movie that looks like "
    "it cost $12.50.",
    "[CLS] it is what it is [SEP] and [MASK] is not",
    "a long, long, winding and ultimately pointless story about nothing much at all, told by people who clearly "
    "had more fun making it than anyone will have watching it, with jokes that land about as often as the plot "
    "makes sense, which is to say rarely, if ever, over two hours and twenty minutes that feel like a week.",
};

static char line[2048];
static size_t at;

static void put(const char *s, size_t n) {
    for (size_t i = 0; i < n && at + 1 < sizeof line; i++) line[at++] = s[i];
}
static void puts_(const char *s) { put(s, strlen(s)); }
static void put_u32(uint32_t v) {
    char buf[10];
    size_t n = 0;
    do buf[sizeof buf - ++n] = (char)('0' + v % 10); while ((v /= 10) && n < sizeof buf);
    put(buf + sizeof buf - n, n);
}
static void put_hex(uint32_t v) {
    for (int s = 28; s >= 0; s -= 4) line[at < sizeof line - 1 ? at++ : at] = "0123456789abcdef"[(v >> s) & 15];
}
static void flush(void) {
    line[at++] = '\n';
    line[at] = 0;
    semihosting_write(line);
    at = 0;
}

static int fail(const char *what, albert_edge_status s) {
    puts_("error: ");
    puts_(what);
    puts_(": ");
    puts_(albert_edge_status_name(s));
    puts_(" (");
    puts_(albert_edge_status_message(s));
    puts_(")");
    flush();
    return 1;
}

int main(void) {
    albert_edge_status s = albert_edge_open(&model, model_blob, (size_t)(model_blob_end - model_blob));
    if (s != ALBERT_EDGE_OK) return fail("albert_edge_open", s);
    albert_edge_config c;
    if ((s = albert_edge_get_config(&model, &c)) != ALBERT_EDGE_OK) return fail("albert_edge_get_config", s);
    size_t need = albert_edge_text_scratch_size(&model, MAX_SEQ, MAX_WORD_BYTES, ALBERT_EDGE_PRECISION_INT8);
    puts_("C firmware: mps2-an386 (Cortex-M4F), blob ");
    put_u32((uint32_t)(model_blob_end - model_blob));
    puts_(" bytes, scratch=");
    put_u32(SCRATCH_BYTES);
    puts_(" needed=");
    put_u32((uint32_t)need);
    puts_(" model=");
    put_u32(sizeof model);
    flush();
    if (need == 0 || need > sizeof scratch || c.num_labels > 8) return fail("scratch", ALBERT_EDGE_ERR_ARENA_TOO_SMALL);

    for (uint32_t i = 0; i < sizeof SENTENCES / sizeof *SENTENCES; i++) {
        const char *text = SENTENCES[i];
        float logits[8];
        s = albert_edge_classify_text(&model, ALBERT_EDGE_PRECISION_INT8, text, strlen(text), NULL, 0, MAX_SEQ,
                                      scratch, sizeof scratch, logits, 8);
        if (s != ALBERT_EDGE_OK) return fail("albert_edge_classify_text", s);
        /* The ids, for the report (the tokenizer's workspace is the same scratch buffer). */
        size_t n;
        s = albert_edge_tokenize(&model, text, strlen(text), NULL, 0, MAX_SEQ, scratch, sizeof scratch, ids, types,
                                 MAX_SEQ, &n);
        if (s != ALBERT_EDGE_OK) return fail("albert_edge_tokenize", s);

        uint32_t best = 0;
        for (uint32_t k = 1; k < c.num_labels; k++)
            if (logits[k] > logits[best]) best = k;
        const char *label;
        size_t label_len;
        if ((s = albert_edge_label(&model, best, &label, &label_len)) != ALBERT_EDGE_OK) return fail("label", s);
        puts_("result ");
        put_u32(i);
        puts_(" label=");
        put(label, label_len);
        puts_(" bits=");
        for (uint32_t k = 0; k < c.num_labels; k++) {
            uint32_t bits;
            memcpy(&bits, &logits[k], 4);
            if (k) puts_(",");
            put_hex(bits);
        }
        puts_(" ids=");
        for (size_t k = 0; k < n; k++) {
            if (k) puts_(",");
            put_u32(ids[k]);
        }
        flush();
    }
    return 0;
}
