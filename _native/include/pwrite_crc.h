/* Write a frame body and checksum it in one pass over memory.
 *
 * An append makes two passes over the same bytes: the CRC-32C and the
 * kernel's copy into the page cache (pwritev). Done one after the other over
 * a whole multi-megabyte body, each pass reads it from memory. Here the body
 * goes in slices of ARROWLOG_CRC_STEP bytes: checksum a slice, then write it
 * while it is still in the CPU cache, so each byte comes from memory once.
 * A slice is 2 MiB: ext4 (Linux 6.18) copies into large folios, where
 * 256 KiB slices cost a third more kernel time per byte. Measured on a
 * 2-core AMD EPYC, a 132 MB body in 8 MiB frames into a preallocated file
 * (min of 11 runs): 25 ms in 256 KiB slices, 19.6 in 1 MiB, 18.5 in 2 MiB;
 * produce_batch's 1 M x 100 B row (thread CPU, medians of 7, interleaved):
 * 1 MiB 26.3-27.6 ms, 2 MiB 25.4-26.1, 4 MiB 25.3-27.1. A helper
 * thread checksumming while one pwritev writes the whole body: 19.8 ms at
 * best and far worse when the other core is busy (both read the body from
 * memory). docs/DURABILITY.md, "Appending in bulk".
 */
#ifndef ARROWLOG_PWRITE_CRC_H
#define ARROWLOG_PWRITE_CRC_H

#include <errno.h>
#include <stdint.h>
#include <sys/uio.h>
#include <unistd.h>

#include "crc32c.h"

#define ARROWLOG_IOV_MAX 1024
#ifndef ARROWLOG_CRC_STEP
#define ARROWLOG_CRC_STEP (2048 * 1024)
#endif
#define ARROWLOG_CRC_SLICE_IOV 64  /* pieces gathered into one slice's pwritev at most */

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

/* Write the pieces check[0..cnt) back to back at `offset` and return in *crc
 * their CRC-32C continued from `crc_in`. Returns 0 or an errno.
 *
 * The body is cut into slices of ARROWLOG_CRC_STEP bytes counted from its
 * start, not from each piece's: a slice gathers the pieces (or parts of
 * pieces) it spans into one pwritev, each part checksummed just before. An
 * IPC message is ~20 pieces, most of them a few bytes of metadata or
 * padding: one syscall per STEP bytes, not one per piece. */
static int arrowlog_write_body_crc(int fd, const struct iovec *check, int cnt, long offset, uint32_t crc_in,
                                   uint32_t *crc) {
    struct iovec slice[ARROWLOG_CRC_SLICE_IOV];
    int parts = 0;
    size_t pending = 0;
    uint32_t c = crc_in;
    for (int i = 0; i < cnt; i++) {
        const char *base = (const char *)check[i].iov_base;
        size_t len = check[i].iov_len, done = 0;
        while (done < len) {
            size_t step = len - done;
            if (step > ARROWLOG_CRC_STEP - pending) step = ARROWLOG_CRC_STEP - pending;
            c = arrowlog_crc32c(c, base + done, step);
            slice[parts].iov_base = (void *)(base + done);
            slice[parts].iov_len = step;
            parts++;
            pending += step;
            done += step;
            if (pending == ARROWLOG_CRC_STEP || parts == ARROWLOG_CRC_SLICE_IOV) {
                int err = arrowlog_pwritev_all(fd, slice, parts, offset);
                if (err) return err;
                offset += (long)pending;
                parts = 0;
                pending = 0;
            }
        }
    }
    if (parts) {
        int err = arrowlog_pwritev_all(fd, slice, parts, offset);
        if (err) return err;
    }
    *crc = c;
    return 0;
}

#endif
