/* Write a frame body and checksum it at the same time.
 *
 * An append spends its time in two passes over the same bytes: the CRC-32C
 * and the kernel's copy into the page cache (pwritev). They are independent,
 * so for large bodies a helper thread runs the pwritev while the calling
 * thread computes the CRC: on the 2-core machines this project targets that
 * turns two sequential passes into two concurrent ones. Small bodies are
 * written inline (a thread start costs ~20 us).
 */
#ifndef ARROWLOG_PWRITE_CRC_H
#define ARROWLOG_PWRITE_CRC_H

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/uio.h>
#include <unistd.h>

#include "crc32c.h"

#define ARROWLOG_PARALLEL_MIN (256 * 1024)
#define ARROWLOG_IOV_MAX 1024

typedef struct {
    int fd;
    struct iovec *iov;
    int cnt;
    long offset;
    int err;
} arrowlog_pwritev_job;

/* pwritev all of iov[0..cnt) at offset, retrying short writes and EINTR.
 * Modifies iov. Returns 0 or an errno. */
static int arrowlog_pwritev_all(int fd, struct iovec *iov, int cnt, long offset) {
    int first = 0;
    while (first < cnt) {
        int n = cnt - first;
        if (n > ARROWLOG_IOV_MAX) n = ARROWLOG_IOV_MAX;
        ssize_t w = pwritev(fd, iov + first, n, offset);
        if (w < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        offset += w;
        while (first < cnt && (size_t)w >= iov[first].iov_len) {
            w -= (ssize_t)iov[first].iov_len;
            first++;
        }
        if (first < cnt && w > 0) {
            iov[first].iov_base = (char *)iov[first].iov_base + w;
            iov[first].iov_len -= (size_t)w;
        }
    }
    return 0;
}

static void *arrowlog_pwritev_thread(void *arg) {
    arrowlog_pwritev_job *job = (arrowlog_pwritev_job *)arg;
    job->err = arrowlog_pwritev_all(job->fd, job->iov, job->cnt, job->offset);
    return NULL;
}

/* Write iov[0..cnt) (the body, `total` bytes) at `offset` and return in
 * *crc the CRC-32C of the body continued from `crc_in`. `check` holds the
 * same pieces as iov, untouched by the write. Returns 0 or an errno. */
static int arrowlog_write_body_crc(int fd, struct iovec *iov, const struct iovec *check, int cnt, long offset,
                                   size_t total, uint32_t crc_in, uint32_t *crc) {
    uint32_t c = crc_in;
    if (total >= ARROWLOG_PARALLEL_MIN) {
        arrowlog_pwritev_job job = {fd, iov, cnt, offset, 0};
        pthread_t thread;
        if (pthread_create(&thread, NULL, arrowlog_pwritev_thread, &job) == 0) {
            for (int i = 0; i < cnt; i++) c = arrowlog_crc32c(c, check[i].iov_base, check[i].iov_len);
            pthread_join(thread, NULL);
            *crc = c;
            return job.err;
        }
    }
    for (int i = 0; i < cnt; i++) c = arrowlog_crc32c(c, check[i].iov_base, check[i].iov_len);
    *crc = c;
    return arrowlog_pwritev_all(fd, iov, cnt, offset);
}

#endif
