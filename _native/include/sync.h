/* Cross-process publication of a partition's state through a shared mapping.
 *
 * The writer (holding the partition's append lock) publishes with a seqlock:
 * seq becomes odd, the fields are stored, seq becomes even. Readers copy the
 * fields and retry while seq is odd or changed, so they never see a torn
 * state and never block a writer. After publishing, the writer bumps a futex
 * word and wakes waiters only when a reader has announced itself, so an idle
 * log costs no syscall per append and a waiting reader costs no CPU.
 */
#ifndef ARROWLOG_SYNC_H
#define ARROWLOG_SYNC_H

#include <stdint.h>
#include <string.h>
#include <errno.h>
#include <time.h>
#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

static inline uint64_t arrowlog_load_u64(const volatile uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void arrowlog_store_u64(volatile uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline uint32_t arrowlog_load_u32(const volatile uint32_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void arrowlog_store_u32(volatile uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline uint32_t arrowlog_add_u32(volatile uint32_t *p, uint32_t v) { return __atomic_add_fetch(p, v, __ATOMIC_ACQ_REL); }
static inline uint32_t arrowlog_sub_u32(volatile uint32_t *p, uint32_t v) { return __atomic_sub_fetch(p, v, __ATOMIC_ACQ_REL); }
static inline void arrowlog_fence(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

/* seqlock write side: the caller holds the append lock. */
static inline void arrowlog_seq_begin(volatile uint64_t *seq) {
    __atomic_store_n(seq, *seq + 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
}
static inline void arrowlog_seq_end(volatile uint64_t *seq) {
    __atomic_store_n(seq, *seq + 1, __ATOMIC_RELEASE);
}

/* seqlock read side: copy n bytes at src into dst; returns 1 when consistent. */
static inline int arrowlog_seq_read(const volatile uint64_t *seq, void *dst, const volatile void *src, size_t n) {
    for (int tries = 0; tries < 1000000; tries++) {
        uint64_t s1 = __atomic_load_n(seq, __ATOMIC_ACQUIRE);
        if (s1 & 1) { continue; }
        memcpy(dst, (const void *)src, n);
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        uint64_t s2 = __atomic_load_n(seq, __ATOMIC_RELAXED);
        if (s1 == s2) return 1;
    }
    return 0; /* a writer died between begin and end: the caller recovers */
}

/* Wait while *word == expected, at most timeout_ms (negative: forever).
 * Returns 0 when woken or the value changed, ETIMEDOUT, or EINTR. */
static inline int arrowlog_futex_wait(volatile uint32_t *word, uint32_t expected, double timeout_ms) {
#ifdef __linux__
    struct timespec ts, *tsp = NULL;
    if (timeout_ms >= 0) {
        ts.tv_sec = (time_t)(timeout_ms / 1000.0);
        ts.tv_nsec = (long)((timeout_ms - ts.tv_sec * 1000.0) * 1e6);
        tsp = &ts;
    }
    long rc = syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT, expected, tsp, NULL, 0);
    if (rc == -1) {
        if (errno == EAGAIN) return 0;
        return errno;
    }
    return 0;
#else
    struct timespec ts = {0, 200000};
    (void)word; (void)expected; (void)timeout_ms;
    nanosleep(&ts, NULL);
    return 0;
#endif
}

static inline void arrowlog_futex_wake(volatile uint32_t *word) {
#ifdef __linux__
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE, 0x7fffffff, NULL, NULL, 0);
#else
    (void)word;
#endif
}

#endif
