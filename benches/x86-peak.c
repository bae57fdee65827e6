/* The int8 multiply-add bound of one x86-64 core, measured: independent chains of the instructions an int8 GEMM is
 * made of, timed in thread CPU time (steadier than wall time on a shared machine).
 *   - AVX-512 VNNI: vpdpbusd zmm, 64 u8 x s8 multiply-adds per instruction;
 *   - AVX2: vpmaddubsw + vpmaddwd (by ones) + vpaddd, 32 multiply-adds per three instructions (the sequence an
 *     AVX2-only CPU uses; albert-edge's AVX2 kernels add a vpsignb to it).
 *
 *   gcc -O2 -mavx512f -mavx512bw -mavx512vnni -mavx2 -o target/x86-peak benches/x86-peak.c && target/x86-peak
 */
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#define ITERS 20000000L
#define CHAINS 12

static double cpu_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

__attribute__((target("avx512f,avx512bw,avx512vnni"), noinline)) static int64_t vnni(long iters, int seed) {
    __m512i a = _mm512_set1_epi8((char)(seed | 1)), b = _mm512_set1_epi8((char)(seed + 3)), acc[CHAINS];
    for (int i = 0; i < CHAINS; i++) acc[i] = _mm512_set1_epi32(i);
    for (long n = 0; n < iters; n++)
#pragma GCC unroll 12
        for (int i = 0; i < CHAINS; i++) acc[i] = _mm512_dpbusd_epi32(acc[i], a, b);
    int64_t s = 0;
    for (int i = 0; i < CHAINS; i++) s += _mm512_reduce_add_epi32(acc[i]);
    return s;
}

/* One operand is loaded each step (as a GEMM loads its activations) so that nothing can be hoisted out of the loop;
 * six chains with six weight registers fit in the 16 ymm registers of AVX2. */
__attribute__((target("avx2"), noinline)) static int64_t avx2(long iters, int seed) {
    static int8_t buf[16 * 32];
    for (int i = 0; i < (int)sizeof buf; i++) buf[i] = (int8_t)(i * 7 + seed);
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i b[6], acc[6];
    for (int i = 0; i < 6; i++) b[i] = _mm256_set1_epi8((char)(seed + 3 + i)), acc[i] = _mm256_set1_epi32(i);
    for (long n = 0; n < iters * 2; n++) {
        __m256i x = _mm256_loadu_si256((const __m256i *)(buf + (n & 15) * 32));
#pragma GCC unroll 6
        for (int i = 0; i < 6; i++)
            acc[i] = _mm256_add_epi32(acc[i], _mm256_madd_epi16(_mm256_maddubs_epi16(x, b[i]), ones));
    }
    int64_t s = 0;
    for (int i = 0; i < 6; i++) {
        int32_t v[8];
        _mm256_storeu_si256((__m256i *)v, acc[i]);
        for (int j = 0; j < 8; j++) s += v[j];
    }
    return s;
}

int main(void) {
    for (int round = 0; round < 3; round++) {
        double t = cpu_seconds();
        int64_t s = vnni(ITERS, round);
        double v = ITERS * CHAINS * 64.0 / (cpu_seconds() - t) / 1e9;
        t = cpu_seconds();
        s += avx2(ITERS, round);
        double w = ITERS * CHAINS * 32.0 / (cpu_seconds() - t) / 1e9;
        printf("AVX-512 VNNI %.1f GMAC/s, AVX2 %.1f GMAC/s (one core; checksum %lld)\n", v, w, (long long)s);
    }
    return 0;
}
