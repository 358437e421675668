/* CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of
 * arrowlog frames and of Kafka record batches v2.
 *
 * x86-64 with SSE4.2 uses the crc32 instruction. One crc32q issues per
 * cycle but has a 3-cycle latency, so a single dependency chain runs at 8
 * bytes every 3 cycles (~8 GB/s); three chains over three lanes of a block
 * run at 8 bytes a cycle, and the lanes' CRCs are then combined with a
 * multiplication by x^(8*lane) mod P (the zlib crc32_combine method); each
 * lane prefetches ahead, so data that is not in the CPU caches (a segment
 * read for the first time) runs at 16-25 GB/s instead of 9-16 on a loaded
 * 2-core machine (cache-resident data: ~33). CPUs with AVX-512 and
 * VPCLMULQDQ fold inputs of 512 bytes or more with carry-less multiplication
 * instead (below): ~70 GB/s cache-resident, ~31-34 GB/s from memory. Other
 * CPUs use slicing-by-8 tables (~1.5 GB/s). The choice is made at first use.
 *
 * The running value is the finalised CRC, so crc32c_update(crc32c_update(0,
 * a), b) == crc32c_update(0, a || b), matching the crc32c and google-crc32c
 * packages' `value=` argument.
 */
#ifndef ARROWLOG_CRC32C_H
#define ARROWLOG_CRC32C_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint32_t arrowlog_crc32c_table[8][256];
static int arrowlog_crc32c_mode = 0; /* 0 unknown, else what arrowlog_crc32c_is_hw chose */
/* The mode is published after the tables and constants it needs (two threads
 * may make the first call at once, without the GIL): release and acquire. */
#if defined(__GNUC__)
#define ARROWLOG_CRC_MODE() __atomic_load_n(&arrowlog_crc32c_mode, __ATOMIC_ACQUIRE)
#define ARROWLOG_CRC_SET_MODE(m) __atomic_store_n(&arrowlog_crc32c_mode, (m), __ATOMIC_RELEASE)
#else
#define ARROWLOG_CRC_MODE() (arrowlog_crc32c_mode)
#define ARROWLOG_CRC_SET_MODE(m) (arrowlog_crc32c_mode = (m))
#endif

static void arrowlog_crc32c_init_table(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        arrowlog_crc32c_table[0][n] = c;
    }
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = arrowlog_crc32c_table[0][n];
        for (int k = 1; k < 8; k++) {
            c = arrowlog_crc32c_table[0][c & 0xff] ^ (c >> 8);
            arrowlog_crc32c_table[k][n] = c;
        }
    }
}

static uint32_t arrowlog_crc32c_sw(uint32_t crc, const uint8_t *p, size_t n) {
    crc = ~crc;
    while (n && ((uintptr_t)p & 7)) { crc = arrowlog_crc32c_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8); n--; }
    while (n >= 8) {
        uint64_t w; memcpy(&w, p, 8);
        w ^= crc;
        crc = arrowlog_crc32c_table[7][w & 0xff] ^ arrowlog_crc32c_table[6][(w >> 8) & 0xff] ^
              arrowlog_crc32c_table[5][(w >> 16) & 0xff] ^ arrowlog_crc32c_table[4][(w >> 24) & 0xff] ^
              arrowlog_crc32c_table[3][(w >> 32) & 0xff] ^ arrowlog_crc32c_table[2][(w >> 40) & 0xff] ^
              arrowlog_crc32c_table[1][(w >> 48) & 0xff] ^ arrowlog_crc32c_table[0][w >> 56];
        p += 8; n -= 8;
    }
    while (n--) crc = arrowlog_crc32c_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

/* a*b mod P in the reflected representation (bit 31 is x^0). */
static uint32_t arrowlog_crc32c_multmodp(uint32_t a, uint32_t b) {
    uint32_t m = 1u << 31, p = 0;
    for (;;) {
        if (a & m) {
            p ^= b;
            if ((a & (m - 1)) == 0) break;
        }
        m >>= 1;
        b = (b & 1) ? (b >> 1) ^ 0x82F63B78u : b >> 1;
    }
    return p;
}

/* x^bits mod P. */
static uint32_t arrowlog_crc32c_xpow(size_t bits) {
    uint32_t x2n = 1u << 30;  /* x^1 */
    uint32_t p = 1u << 31;    /* x^0 */
    while (bits) {
        if (bits & 1) p = arrowlog_crc32c_multmodp(x2n, p);
        x2n = arrowlog_crc32c_multmodp(x2n, x2n);
        bits >>= 1;
    }
    return p;
}

/* x^(8*n) mod P: the operator that shifts a CRC register over n zero bytes. */
static uint32_t arrowlog_crc32c_shift_op(size_t n) {
    return arrowlog_crc32c_xpow(n * 8);
}

#define ARROWLOG_CRC_LONG 8192
#define ARROWLOG_CRC_SHORT 256  /* lanes are multiples of 64: the loop below steps a line at a time */
#define ARROWLOG_CRC_PREFETCH 2048
/* The shift operators for a lane, as byte tables (the multiplication is
 * linear in its second argument): 4 lookups instead of a 32-step loop. */
static uint32_t arrowlog_crc32c_long_tbl[4][256], arrowlog_crc32c_short_tbl[4][256];

static void arrowlog_crc32c_init_shift(uint32_t tbl[4][256], size_t lane) {
    uint32_t op = arrowlog_crc32c_shift_op(lane);
    for (int k = 0; k < 4; k++)
        for (uint32_t v = 0; v < 256; v++) tbl[k][v] = arrowlog_crc32c_multmodp(op, v << (8 * k));
}

static inline uint32_t arrowlog_crc32c_shift(const uint32_t tbl[4][256], uint32_t c) {
    return tbl[0][c & 0xff] ^ tbl[1][(c >> 8) & 0xff] ^ tbl[2][(c >> 16) & 0xff] ^ tbl[3][c >> 24];
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
__attribute__((target("sse4.2")))
static uint64_t arrowlog_crc32c_hw3(uint64_t c0, const uint8_t **pp, size_t *np, size_t lane,
                                    const uint32_t tbl[4][256]) {
    const uint8_t *p = *pp;
    size_t n = *np;
    while (n >= 3 * lane) {
        uint64_t c1 = 0, c2 = 0;
        const uint8_t *end = p + lane;
        while (p < end) {
            /* One cache line per lane per step, each lane's line ARROWLOG_CRC_PREFETCH
             * ahead asked for: data that is not in the cache (a first read of a
             * segment) otherwise stalls the three chains on DRAM latency, which
             * the hardware prefetcher alone does not hide for three streams. */
            __builtin_prefetch(p + ARROWLOG_CRC_PREFETCH);
            __builtin_prefetch(p + lane + ARROWLOG_CRC_PREFETCH);
            __builtin_prefetch(p + 2 * lane + ARROWLOG_CRC_PREFETCH);
            for (int k = 0; k < 8; k++) {
                uint64_t a, b, d;
                memcpy(&a, p, 8); memcpy(&b, p + lane, 8); memcpy(&d, p + 2 * lane, 8);
                c0 = __builtin_ia32_crc32di(c0, a);
                c1 = __builtin_ia32_crc32di(c1, b);
                c2 = __builtin_ia32_crc32di(c2, d);
                p += 8;
            }
        }
        c0 = arrowlog_crc32c_shift(tbl, (uint32_t)c0) ^ (uint32_t)c1;
        c0 = arrowlog_crc32c_shift(tbl, (uint32_t)c0) ^ (uint32_t)c2;
        p += 2 * lane;
        n -= 3 * lane;
    }
    *pp = p;
    *np = n;
    return c0;
}

__attribute__((target("sse4.2")))
static uint32_t arrowlog_crc32c_hw(uint32_t crc, const uint8_t *p, size_t n) {
    uint64_t c = (uint32_t)~crc;
    while (n && ((uintptr_t)p & 7)) { c = __builtin_ia32_crc32qi((uint32_t)c, *p++); n--; }
    c = arrowlog_crc32c_hw3(c, &p, &n, ARROWLOG_CRC_LONG, arrowlog_crc32c_long_tbl);
    c = arrowlog_crc32c_hw3(c, &p, &n, ARROWLOG_CRC_SHORT, arrowlog_crc32c_short_tbl);
    while (n >= 32) {
        uint64_t a, b, d, e;
        memcpy(&a, p, 8); memcpy(&b, p + 8, 8); memcpy(&d, p + 16, 8); memcpy(&e, p + 24, 8);
        c = __builtin_ia32_crc32di(c, a);
        c = __builtin_ia32_crc32di(c, b);
        c = __builtin_ia32_crc32di(c, d);
        c = __builtin_ia32_crc32di(c, e);
        p += 32; n -= 32;
    }
    while (n >= 8) { uint64_t w; memcpy(&w, p, 8); c = __builtin_ia32_crc32di(c, w); p += 8; n -= 8; }
    while (n--) c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
    return ~(uint32_t)c;
}
#define ARROWLOG_CRC32C_HAVE_HW 1

/* With AVX-512 and VPCLMULQDQ, long inputs are folded instead: four 64-byte
 * accumulators each take the next 64 bytes after a carry-less multiplication
 * that moves them 256 bytes on (the method of Intel's "Fast CRC Computation
 * for Generic Polynomials Using PCLMULQDQ", sixteen 16-byte lanes wide), then
 * fold into one 16-byte value whose CRC the crc32 instruction finishes. Each
 * fold by d bits multiplies the two 64-bit halves of a lane by x^(d+31) and
 * x^(d-33) mod P (bit-reflected; computed at first use). ~70 GB/s on
 * cache-resident data here, and ~33 GB/s from memory, which is about what one
 * core can read (the crc32 lanes above: ~34 and ~16-25). */
#if defined(__GNUC__) && (__GNUC__ >= 10 || defined(__clang__))
#include <immintrin.h>
#define ARROWLOG_CRC32C_HAVE_FOLD 1
#define ARROWLOG_CRC_FOLD_MIN 512
static uint64_t arrowlog_crc32c_fold_k[5][2];  /* by 2048, 512, 384, 256 and 128 bits */

static void arrowlog_crc32c_init_fold(void) {
    static const size_t bits[5] = {2048, 512, 384, 256, 128};
    for (int i = 0; i < 5; i++) {
        arrowlog_crc32c_fold_k[i][0] = arrowlog_crc32c_xpow(bits[i] + 31);
        arrowlog_crc32c_fold_k[i][1] = arrowlog_crc32c_xpow(bits[i] - 33);
    }
}

#define ARROWLOG_FOLD_TARGET __attribute__((target("sse4.2,pclmul,avx512f,avx512vl,vpclmulqdq")))
ARROWLOG_FOLD_TARGET
static inline __m512i arrowlog_crc32c_fold512(__m512i x, __m512i k, __m512i y) {
    /* 0x96: a ^ b ^ c */
    return _mm512_ternarylogic_epi64(_mm512_clmulepi64_epi128(x, k, 0x00), _mm512_clmulepi64_epi128(x, k, 0x11), y,
                                     0x96);
}

ARROWLOG_FOLD_TARGET
static inline __m128i arrowlog_crc32c_fold128(__m128i x, const uint64_t k[2], __m128i y) {
    __m128i kk = _mm_set_epi64x((long long)k[1], (long long)k[0]);
    return _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x, kk, 0x00), _mm_clmulepi64_si128(x, kk, 0x11)), y);
}

ARROWLOG_FOLD_TARGET
static uint32_t arrowlog_crc32c_fold(uint32_t crc, const uint8_t *p, size_t n) {
    uint64_t c;
    __m512i k = _mm512_broadcast_i32x4(_mm_set_epi64x((long long)arrowlog_crc32c_fold_k[0][1],
                                                      (long long)arrowlog_crc32c_fold_k[0][0]));
    __m512i x0 = _mm512_loadu_si512(p), x1 = _mm512_loadu_si512(p + 64), x2 = _mm512_loadu_si512(p + 128),
            x3 = _mm512_loadu_si512(p + 192);
    __m128i l0, l1, l2, l3;
    x0 = _mm512_xor_si512(x0, _mm512_castsi128_si512(_mm_cvtsi32_si128((int)~crc)));
    p += 256;
    n -= 256;
    while (n >= 256) {
        x0 = arrowlog_crc32c_fold512(x0, k, _mm512_loadu_si512(p));
        x1 = arrowlog_crc32c_fold512(x1, k, _mm512_loadu_si512(p + 64));
        x2 = arrowlog_crc32c_fold512(x2, k, _mm512_loadu_si512(p + 128));
        x3 = arrowlog_crc32c_fold512(x3, k, _mm512_loadu_si512(p + 192));
        p += 256;
        n -= 256;
    }
    k = _mm512_broadcast_i32x4(_mm_set_epi64x((long long)arrowlog_crc32c_fold_k[1][1],
                                              (long long)arrowlog_crc32c_fold_k[1][0]));
    x0 = arrowlog_crc32c_fold512(x0, k, x1);
    x0 = arrowlog_crc32c_fold512(x0, k, x2);
    x0 = arrowlog_crc32c_fold512(x0, k, x3);
    l0 = _mm512_extracti32x4_epi32(x0, 0);
    l1 = _mm512_extracti32x4_epi32(x0, 1);
    l2 = _mm512_extracti32x4_epi32(x0, 2);
    l3 = _mm512_extracti32x4_epi32(x0, 3);
    l3 = arrowlog_crc32c_fold128(l0, arrowlog_crc32c_fold_k[2], l3);
    l3 = arrowlog_crc32c_fold128(l1, arrowlog_crc32c_fold_k[3], l3);
    l3 = arrowlog_crc32c_fold128(l2, arrowlog_crc32c_fold_k[4], l3);
    c = _mm_crc32_u64(0, (uint64_t)_mm_extract_epi64(l3, 0));
    c = _mm_crc32_u64(c, (uint64_t)_mm_extract_epi64(l3, 1));
    return arrowlog_crc32c_hw(~(uint32_t)c, p, n);  /* the last < 256 bytes */
}
#endif
#endif

/* 1 if a hardware path is in use (for tests and `arrowlog bench`). Modes: 1
 * software, 2 crc32 lanes, 3 crc32 lanes and folding for long inputs. The
 * environment variable ARROWLOG_CRC32C=lanes keeps a CPU that could fold on
 * the crc32 lanes (tests check both paths against the oracle). */
static int arrowlog_crc32c_is_hw(void) {
    if (ARROWLOG_CRC_MODE() == 0) {
        int mode = 1;
        arrowlog_crc32c_init_table();
        arrowlog_crc32c_init_shift(arrowlog_crc32c_long_tbl, ARROWLOG_CRC_LONG);
        arrowlog_crc32c_init_shift(arrowlog_crc32c_short_tbl, ARROWLOG_CRC_SHORT);
#ifdef ARROWLOG_CRC32C_HAVE_HW
        __builtin_cpu_init();
        if (__builtin_cpu_supports("sse4.2")) mode = 2;
#ifdef ARROWLOG_CRC32C_HAVE_FOLD
        if (mode == 2 && __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("avx512f") &&
            __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("vpclmulqdq")) {
            const char *force = getenv("ARROWLOG_CRC32C");
            if (force == NULL || strcmp(force, "lanes") != 0) {
                arrowlog_crc32c_init_fold();
                mode = 3;
            }
        }
#endif
#endif
        ARROWLOG_CRC_SET_MODE(mode);
    }
    return ARROWLOG_CRC_MODE() >= 2;
}

static inline uint32_t arrowlog_crc32c(uint32_t crc, const void *data, size_t n) {
    int mode = ARROWLOG_CRC_MODE();
    if (mode == 0) {
        arrowlog_crc32c_is_hw();
        mode = ARROWLOG_CRC_MODE();
    }
#ifdef ARROWLOG_CRC32C_HAVE_FOLD
    if (mode == 3 && n >= ARROWLOG_CRC_FOLD_MIN) return arrowlog_crc32c_fold(crc, (const uint8_t *)data, n);
#endif
#ifdef ARROWLOG_CRC32C_HAVE_HW
    if (mode >= 2) return arrowlog_crc32c_hw(crc, (const uint8_t *)data, n);
#endif
    return arrowlog_crc32c_sw(crc, (const uint8_t *)data, n);
}

/* Force the software path (tests compare both paths against the oracle). */
static inline uint32_t arrowlog_crc32c_software(uint32_t crc, const void *data, size_t n) {
    arrowlog_crc32c_is_hw();
    return arrowlog_crc32c_sw(crc, (const uint8_t *)data, n);
}

#endif
