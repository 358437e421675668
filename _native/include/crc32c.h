/* CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of
 * arrowlog frames and of Kafka record batches v2.
 *
 * x86-64 with SSE4.2 uses the crc32 instruction. One crc32q issues per
 * cycle but has a 3-cycle latency, so a single dependency chain runs at 8
 * bytes every 3 cycles (~8 GB/s); three chains over three lanes of a block
 * run at 8 bytes a cycle, and the lanes' CRCs are then combined with a
 * multiplication by x^(8*lane) mod P (the zlib crc32_combine method); each
 * lane prefetches ahead, so data that is not in the CPU caches (a segment
 * read for the first time) runs at 16-19 GB/s instead of 9-14 on a loaded
 * 2-core machine (cache-resident data: ~33). Other
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
#include <string.h>

static uint32_t arrowlog_crc32c_table[8][256];
static int arrowlog_crc32c_mode = 0; /* 0 unknown, 1 software, 2 hardware */

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

/* x^(8*n) mod P: the operator that shifts a CRC register over n zero bytes. */
static uint32_t arrowlog_crc32c_shift_op(size_t n) {
    uint32_t x2n = 1u << 30;  /* x^1 */
    uint32_t p = 1u << 31;    /* x^0 */
    size_t bits = n * 8;
    while (bits) {
        if (bits & 1) p = arrowlog_crc32c_multmodp(x2n, p);
        x2n = arrowlog_crc32c_multmodp(x2n, x2n);
        bits >>= 1;
    }
    return p;
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
#endif

/* 1 if the hardware path is in use (for tests and `arrowlog bench`). */
static int arrowlog_crc32c_is_hw(void) {
    if (arrowlog_crc32c_mode == 0) {
        arrowlog_crc32c_init_table();
        arrowlog_crc32c_init_shift(arrowlog_crc32c_long_tbl, ARROWLOG_CRC_LONG);
        arrowlog_crc32c_init_shift(arrowlog_crc32c_short_tbl, ARROWLOG_CRC_SHORT);
        arrowlog_crc32c_mode = 1;
#ifdef ARROWLOG_CRC32C_HAVE_HW
        __builtin_cpu_init();
        if (__builtin_cpu_supports("sse4.2")) arrowlog_crc32c_mode = 2;
#endif
    }
    return arrowlog_crc32c_mode == 2;
}

static inline uint32_t arrowlog_crc32c(uint32_t crc, const void *data, size_t n) {
    if (arrowlog_crc32c_mode == 0) arrowlog_crc32c_is_hw();
#ifdef ARROWLOG_CRC32C_HAVE_HW
    if (arrowlog_crc32c_mode == 2) return arrowlog_crc32c_hw(crc, (const uint8_t *)data, n);
#endif
    return arrowlog_crc32c_sw(crc, (const uint8_t *)data, n);
}

/* Force the software path (tests compare both paths against the oracle). */
static inline uint32_t arrowlog_crc32c_software(uint32_t crc, const void *data, size_t n) {
    if (arrowlog_crc32c_mode == 0) arrowlog_crc32c_is_hw();
    return arrowlog_crc32c_sw(crc, (const uint8_t *)data, n);
}

#endif
