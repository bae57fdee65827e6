/* Helpers shared by the host C tests: reading a file into 16-byte aligned memory, printing float bits. */
#ifndef ALBERT_EDGE_TEST_COMMON_H
#define ALBERT_EDGE_TEST_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "albert_edge.h"

/* The whole file at `path`, 16-byte aligned, with `extra` spare bytes after it; exits on failure. */
static inline uint8_t *read_file(const char *path, size_t *len, size_t extra) {
    FILE *f = fopen(path, "rb");
    if (!f || fseek(f, 0, SEEK_END) != 0) {
        fprintf(stderr, "error: cannot read %s\n", path);
        exit(2);
    }
    long n = ftell(f);
    rewind(f);
    uint8_t *bytes = aligned_alloc(16, ((size_t)n + extra + 15) / 16 * 16);
    if (!bytes || fread(bytes, 1, (size_t)n, f) != (size_t)n) {
        fprintf(stderr, "error: cannot read %s\n", path);
        exit(2);
    }
    fclose(f);
    *len = (size_t)n;
    return bytes;
}

/* The bits of an f32, as the Rust side prints them (`{:08x}` of `to_bits`). */
static inline uint32_t f32_bits(float v) {
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    return bits;
}

#endif
