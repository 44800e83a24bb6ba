/*
 * tests/test_debug_serial_signal.c - serial numbers stay unique when a
 * signal handler allocates while its thread is taking a serial.
 *
 * A SIGPROF handler (each thread's own POSIX timer, every 20 us; 200 us
 * under valgrind) makes a
 * block through pm_mem_malloc, notes its serial and frees it before it
 * returns (what README, "Signal handlers", says is safe), while its
 * thread (main alone, or each of two threads) allocates and frees pool
 * blocks through pm_mem_* in a loop, noting the serial of every block it
 * gets. At the end every serial noted, the handlers' and the threads',
 * must appear once: two blocks with one serial are a duplicate.
 *
 * It failed in the debug modes over the pools (pymalloc_debug, debug) when
 * the handler interrupted the fast path's serial bump, a load of the
 * counter (one thread: the process-wide counter; more: the thread's run)
 * then a store of it plus one: the handler's block took the same number
 * as the interrupted one (3 to 30 duplicates in every round, with one
 * thread or two; once 15,629 with two, a renewed run's numbers handed out
 * twice). Blocks a handler gets while its thread is past the fast
 * paths (early-arena blocks, with no serial) are left out.
 *
 * The modes without the debug hooks skip: no serials.
 */
#define _GNU_SOURCE 1
#include "debug_layout.h"
#include "harness.h"
#include "pm_internal.h"
#include "pymalloc.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#define PERIOD_NS 20000 /* each thread's timer */
#define ROUNDS 3
#define ROUND_MS 1000
#define ROUND_MAX_MS 20000 /* a round goes on until its handler has a serial */
#define DEADLINE 60
#define MAX_THREADS 2
#define SLOTS 64
#define LOG_MAX (1u << 19) /* serials a thread notes per round */
#define SIG_LOG_MAX (1u << 16) /* its handler's */
#define HANDLER_SIZE 40

static const size_t sizes[] = {8, 24, 56, 100, 200, 480};
#define NSIZES (sizeof sizes / sizeof sizes[0])

/* Each thread's log (index: its tid) and its handler's. Only the thread
 * writes the first, only its handler (which SIGPROF does not interrupt)
 * the second. */
static uint64_t logs[MAX_THREADS][LOG_MAX];
static unsigned log_len[MAX_THREADS];
static uint64_t sig_logs[MAX_THREADS][SIG_LOG_MAX];
static volatile sig_atomic_t sig_log_len[MAX_THREADS];
static volatile sig_atomic_t handled;
static uint64_t all[MAX_THREADS * (LOG_MAX + SIG_LOG_MAX)];
static __thread int my_tid = -1;
/* Serials a thread notes in a round, and its timer's period: fewer and
 * slower under valgrind, where a signal costs far more and the two threads
 * run one at a time (a round took over a minute). */
static unsigned log_max = LOG_MAX;
static long period_ns = PERIOD_NS;

static void on_prof(int sig)
{
    (void)sig;
    int saved = errno;
    int t = my_tid;
    if (t >= 0) {
        unsigned char *p = pm_mem_malloc(HANDLER_SIZE);
        if (p != NULL && !pm_i_early_owns(p) && sig_log_len[t] < (sig_atomic_t)SIG_LOG_MAX)
            sig_logs[t][sig_log_len[t]++] = trailer_serial(p, HANDLER_SIZE);
        pm_mem_free(p);
        handled++;
    }
    errno = saved;
}

/* At least ROUND_MS or log_max serials, and then until the thread's
 * handler has noted one (at most ROUND_MAX_MS): under valgrind, which
 * delivers a signal only between its own blocks of code, a handler came in
 * 8 to 28 times a second in malloc_debug, mostly while its thread was
 * inside the hooks (its block then comes from the early arena, no serial),
 * and a round whose handler noted none failed (seen once, on a busy
 * machine). Serials past log_max are not noted. */
static void churn(int t)
{
    unsigned s = (unsigned)t * 2654435761u + 12345u;
    void *slot[SLOTS] = {0};
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (unsigned long it = 0;; it++) {
        if ((it & 63) == 0) {
            clock_gettime(CLOCK_MONOTONIC, &now);
            long ms = (now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000;
            if ((log_len[t] >= log_max || ms >= ROUND_MS) &&
                (sig_log_len[t] > 0 || ms >= ROUND_MAX_MS))
                break;
        }
        s = s * 1103515245u + 12345u;
        unsigned k = (s >> 8) % SLOTS;
        size_t n = sizes[(s >> 20) % NSIZES];
        pm_mem_free(slot[k]);
        unsigned char *p = pm_mem_malloc(n);
        slot[k] = p;
        if (p == NULL)
            _exit(3);
        if (log_len[t] < log_max)
            logs[t][log_len[t]++] = trailer_serial(p, n);
    }
    for (unsigned k = 0; k < SLOTS; k++)
        pm_mem_free(slot[k]);
}

/* SIGPROF every period_ns to this thread. */
static void *thread_main(void *arg)
{
    int t = (int)(intptr_t)arg;
    my_tid = t;
    timer_t timer = pm_t_thread_timer_start(period_ns);
    churn(t);
    pm_t_thread_timer_stop(timer);
    return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void workload(int threads)
{
    pm_t_prof_handler(on_prof, NULL);
    pm_t_prof_mask(SIG_BLOCK); /* each thread unblocks it for its timer */
    int nt = threads == 0 ? 1 : threads;
    if (threads == 0) {
        thread_main((void *)(intptr_t)0);
    } else {
        pthread_t tid[MAX_THREADS];
        for (int i = 0; i < threads; i++)
            if (pthread_create(&tid[i], NULL, thread_main, (void *)(intptr_t)i) != 0)
                _exit(3);
        for (int i = 0; i < threads; i++)
            pthread_join(tid[i], NULL);
    }
    /* Every serial noted, sorted. */
    size_t m = 0, from_handlers = 0;
    for (int i = 0; i < nt; i++) {
        memcpy(all + m, logs[i], log_len[i] * sizeof *all);
        m += log_len[i];
        memcpy(all + m, sig_logs[i], (size_t)sig_log_len[i] * sizeof *all);
        m += (size_t)sig_log_len[i];
        from_handlers += (size_t)sig_log_len[i];
    }
    qsort(all, m, sizeof *all, cmp_u64);
    size_t dup = 0, zero = 0;
    for (size_t i = 0; i < m; i++) {
        zero += all[i] == 0;
        dup += i > 0 && all[i] == all[i - 1];
    }
    if (dup != 0 || zero != 0 || from_handlers == 0)
        fprintf(stderr,
                "    %zu duplicate serials, %zu zero, among %zu (%zu from %d signals' "
                "handlers)\n",
                dup, zero, m, from_handlers, (int)handled);
    _exit(dup != 0 || zero != 0 ? 4 : from_handlers == 0 ? 6 : 0);
}

static void workload_of(void *threads) { workload((int)(intptr_t)threads); }

/* ROUNDS children, each with a deadline; stops at the first that fails. */
static void run_case(int threads)
{
    PM_CHECK(pm_t_rounds(workload_of, (void *)(intptr_t)threads, ROUNDS, DEADLINE));
}

static void one_thread(void) { run_case(0); }
static void two_threads(void) { run_case(2); }

int main(void)
{
    if (!pm_debug_enabled()) {
        puts("skipped: no serials in this mode");
        return 77;
    }
    if (PM_T_TSAN) {
        puts("skipped: TSan defers signals to its own safe points");
        return 77;
    }
    if (pm_t_under_valgrind()) {
        log_max = LOG_MAX / 16;
        period_ns = 10 * PERIOD_NS;
    }
    fprintf(stderr, "mode %s\n", pm_mode_name());
    PM_RUN(one_thread);
    PM_RUN(two_threads);
    return pm_test_done();
}
