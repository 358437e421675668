/* Kafka's default partitioner hash: MurmurHash2, 32-bit, seed 0x9747b28c,
 * exactly as org.apache.kafka.common.utils.Utils.murmur2 computes it (the
 * tail bytes are mixed in the Java switch's order). The partition of a keyed
 * record is (murmur2(key) & 0x7fffffff) % num_partitions (Utils.toPositive).
 */
#ifndef ARROWLOG_MURMUR2_H
#define ARROWLOG_MURMUR2_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline uint32_t arrowlog_murmur2(const void *key, size_t len) {
    const uint32_t m = 0x5bd1e995u;
    const int r = 24;
    const uint8_t *data = (const uint8_t *)key;
    uint32_t h = 0x9747b28cu ^ (uint32_t)len;
    size_t n4 = len / 4;
    for (size_t i = 0; i < n4; i++) {
        uint32_t k;
        memcpy(&k, data + 4 * i, 4); /* little-endian load, as Java assembles it */
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        k = __builtin_bswap32(k);
#endif
        k *= m; k ^= k >> r; k *= m;
        h *= m; h ^= k;
    }
    const uint8_t *tail = data + 4 * n4;
    switch (len & 3) {
        case 3: h ^= (uint32_t)tail[2] << 16; /* fall through */
        case 2: h ^= (uint32_t)tail[1] << 8;  /* fall through */
        case 1: h ^= (uint32_t)tail[0]; h *= m;
    }
    h ^= h >> 13; h *= m; h ^= h >> 15;
    return h;
}

static inline int32_t arrowlog_murmur2_partition(const void *key, size_t len, int32_t n) {
    return (int32_t)((arrowlog_murmur2(key, len) & 0x7fffffffu) % (uint32_t)n);
}

#endif
