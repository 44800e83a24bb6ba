/*
 * src/fmt.c - formatting into a caller's buffer, with no allocation.
 *
 * Reports and statistics are produced inside malloc and free, so they can
 * use neither stdio nor anything else that might allocate. A pm_i_buf is a
 * stack buffer that flushes itself to a file descriptor with write(2) when
 * it fills up (or truncates silently when it has no descriptor).
 */
#include "pm_internal.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void pm_i_nopipe_begin(pm_i_nopipe *g)
{
    sigset_t pipe_set, pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    g->masked = pthread_sigmask(SIG_BLOCK, &pipe_set, &g->old) == 0;
    g->was_pending =
        g->masked && sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1;
}

void pm_i_nopipe_end(pm_i_nopipe *g)
{
    if (!g->masked)
        return;
    int saved = errno;
    sigset_t pipe_set, pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    if (!g->was_pending && sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1) {
        static const struct timespec zero = {0, 0};
        while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR)
            ;
    }
    pthread_sigmask(SIG_SETMASK, &g->old, NULL);
    errno = saved;
}

/* How long a write to a descriptor in non-blocking mode waits for room,
 * without progress, before the rest is given up. */
#define WRITE_STALL_MS 1000

/* fd + 1 of the descriptor a write last gave up on after waiting
 * WRITE_STALL_MS (0 if none): later writes to it do not wait again until
 * one of them makes progress, so that a reader that stopped reading costs
 * the process one wait, not one per report. */
static _Atomic int write_stalled;

static long long ms_since(const struct timespec *t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long long)(now.tv_sec - t0->tv_sec) * 1000 + (now.tv_nsec - t0->tv_nsec) / 1000000;
}

/* fd took no more bytes (EAGAIN): 1 once it can take some, 0 if it still
 * cannot WRITE_STALL_MS after *since (the call's last progress; a signal
 * that interrupts poll does not restart the wait). */
static int wait_writable(int fd, const struct timespec *since)
{
    if (atomic_load_explicit(&write_stalled, memory_order_relaxed) == fd + 1)
        return 0;
    for (;;) {
        long long left = WRITE_STALL_MS - ms_since(since);
        if (left <= 0)
            break;
        struct pollfd pfd = {fd, POLLOUT, 0};
        int r = poll(&pfd, 1, (int)left);
        if (r > 0)
            return (pfd.revents & POLLOUT) != 0;
        if (r == 0 || errno != EINTR)
            break;
    }
    atomic_store_explicit(&write_stalled, fd + 1, memory_order_relaxed);
    return 0;
}

/* Write all of s to fd, or give up at the first error. A pipe nobody reads
 * any more (stderr into `| head`, say) must not kill the program with
 * SIGPIPE from inside its malloc, or at exit after it chose its status.
 * A descriptor in non-blocking mode (O_NONBLOCK, which a file description
 * shared with another process can have: a pipe to a reader that set it)
 * whose pipe or socket is full is waited on with poll, as a blocking one
 * would be, for up to WRITE_STALL_MS without progress in all (signals
 * that interrupt the wait included); after such a wait ends without
 * room, the writes to that descriptor give up at once until one makes
 * progress again. Before, the write failed with EAGAIN and the report, or
 * the summary at exit, was lost whole while the process went on to abort
 * or exit 1. */
_Atomic int pm_i_stderr_fd = 2;

void pm_i_write_all(int fd, const char *s, size_t n)
{
    pm_i_nopipe g;
    pm_i_nopipe_begin(&g);
    struct timespec since = {0, 0};
    int waiting = 0;
    while (n > 0) {
        ssize_t w = write(fd, s, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (!waiting) {
                    clock_gettime(CLOCK_MONOTONIC, &since);
                    waiting = 1;
                }
                if (wait_writable(fd, &since))
                    continue;
            }
            break;
        }
        waiting = 0;
        if (w > 0 && atomic_load_explicit(&write_stalled, memory_order_relaxed) == fd + 1)
            atomic_store_explicit(&write_stalled, 0, memory_order_relaxed);
        s += w;
        n -= (size_t)w;
    }
    pm_i_nopipe_end(&g);
}

void pm_i_buf_init(pm_i_buf *b, char *storage, size_t cap, int fd)
{
    b->p = storage;
    b->len = 0;
    b->cap = cap;
    b->fd = fd;
}

void pm_i_buf_flush(pm_i_buf *b)
{
    if (b->fd >= 0 && b->len > 0) {
        int saved = errno;
        pm_i_write_all(b->fd, b->p, b->len);
        errno = saved;
        b->len = 0;
    }
}

void pm_i_buf_char(pm_i_buf *b, char c)
{
    if (b->len == b->cap)
        pm_i_buf_flush(b);
    if (b->len < b->cap)
        b->p[b->len++] = c;
}

void pm_i_buf_mem(pm_i_buf *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        pm_i_buf_char(b, s[i]);
}

void pm_i_buf_str(pm_i_buf *b, const char *s)
{
    pm_i_buf_mem(b, s, strlen(s));
}

/* A value from outside (an environment variable), shown on one line: a
 * byte below 0x20, 0x7f and a backslash escaped (\n, \t, \\, \xNN),
 * and only the first `max` bytes, then "...": a message naming a bad value
 * stays one line, of bounded length, with no control sequence reaching
 * the terminal. */
void pm_i_buf_shown(pm_i_buf *b, const char *s, size_t max)
{
    static const char digits[] = "0123456789abcdef";
    size_t i = 0;
    for (; i < max && s[i] != '\0'; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != 0x7f && c != '\\') {
            pm_i_buf_char(b, (char)c);
            continue;
        }
        pm_i_buf_char(b, '\\');
        if (c == '\n' || c == '\t' || c == '\\') {
            pm_i_buf_char(b, c == '\n' ? 'n' : c == '\t' ? 't' : '\\');
        } else {
            pm_i_buf_char(b, 'x');
            pm_i_buf_char(b, digits[c >> 4]);
            pm_i_buf_char(b, digits[c & 15]);
        }
    }
    if (s[i] != '\0')
        pm_i_buf_str(b, "...");
}

void pm_i_buf_u64_right(pm_i_buf *b, uint64_t v, int width)
{
    char tmp[20];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    for (int pad = width - n; pad > 0; pad--)
        pm_i_buf_char(b, ' ');
    while (n > 0)
        pm_i_buf_char(b, tmp[--n]);
}

void pm_i_buf_u64(pm_i_buf *b, uint64_t v) { pm_i_buf_u64_right(b, v, 0); }

void pm_i_buf_i64(pm_i_buf *b, int64_t v)
{
    if (v < 0) {
        pm_i_buf_char(b, '-');
        pm_i_buf_u64(b, (uint64_t)0 - (uint64_t)v);
    } else {
        pm_i_buf_u64(b, (uint64_t)v);
    }
}

void pm_i_buf_hex(pm_i_buf *b, uint64_t v, int min_digits)
{
    static const char digits[] = "0123456789abcdef";
    char tmp[16];
    int n = 0;
    do {
        tmp[n++] = digits[v & 15];
        v >>= 4;
    } while (v != 0);
    for (; n < min_digits && n < 16; n++)
        tmp[n] = '0';
    while (n > 0)
        pm_i_buf_char(b, tmp[--n]);
}

void pm_i_buf_ptr(pm_i_buf *b, const void *p)
{
    pm_i_buf_str(b, "0x");
    pm_i_buf_hex(b, (uint64_t)(uintptr_t)p, 1);
}

void pm_i_buf_u64_grouped(pm_i_buf *b, uint64_t v, int width)
{
    char tmp[32];
    int n = 0, digits = 0;
    do {
        if (digits > 0 && digits % 3 == 0)
            tmp[n++] = ',';
        tmp[n++] = (char)('0' + v % 10);
        digits++;
        v /= 10;
    } while (v != 0);
    for (int pad = width - n; pad > 0; pad--)
        pm_i_buf_char(b, ' ');
    while (n > 0)
        pm_i_buf_char(b, tmp[--n]);
}

void pm_i_buf_pad_to(pm_i_buf *b, size_t col)
{
    /* Find the current column: characters since the last newline that is
     * still in the buffer (lines are never longer than a buffer). */
    size_t start = b->len;
    while (start > 0 && b->p[start - 1] != '\n')
        start--;
    for (size_t c = b->len - start; c < col; c++)
        pm_i_buf_char(b, ' ');
}
