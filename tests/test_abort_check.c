/*
 * tests/test_abort_check.c - the check of the heap at abort (modes/debug.c):
 * the debug hooks' SIGABRT handler reports the damaged blocks of the block
 * registry (the C library's blocks), so that an abort of the C library's
 * allocator over its own damaged chunk headers ("malloc(): corrupted top
 * size"), or any abort, names the block that was written past its end.
 *  - a block written past its end, then abort(): reported as "abort: buffer
 *    overflow" with its size and serial, in every domain, a registry block
 *    and a small one (a pool block where the mode has pools), then one line
 *    of totals; more than 8 damaged blocks: 8 reports and the count;
 *  - a pool block written into the next one's header: one report, its own;
 *  - threads freeing and allocating under the check: only the planted
 *    damage is reported;
 *  - glibc's own abort over the top chunk a block overflowed into;
 *  - an abort with every block intact prints nothing of ours;
 *  - the debug layer's own report and abort: no second report;
 *  - a block reported and leaked (the program went on) is not reported
 *    again at abort or at exit, only counted as reported before;
 *  - a program's SIGABRT handler set before the hooks go in is kept;
 *  - SIGABRT sent by raise() or kill() still kills the process, unless a
 *    handler the program set later calls ours and goes on.
 * The harness's death tests reset SIGABRT to its default in the child, so
 * the children here put the handler back first.
 */
#include "debug_layout.h"
#include "domains.h"
#include "harness.h"
#include "pm_internal.h"
#include "sanitizers.h"

#include <pthread.h>
#include <signal.h>
#include <fcntl.h>
#include <stdatomic.h>

static struct sigaction installed; /* SIGABRT's action at start-up */

static void restore_handler(void) { sigaction(SIGABRT, &installed, NULL); }

/* A block the registry holds (the C library's) in domain d: the raw
 * domain's in every debug mode, and a block too big for the pools. */
static unsigned char *libc_block(int d, size_t *n)
{
    *n = d == PM_DOMAIN_RAW ? 40 : 1000;
    return pm_t_domains[d].malloc(*n);
}

#define NEED_DEBUG()                                                               \
    do {                                                                           \
        if (!pm_debug_enabled())                                                   \
            PM_SKIP("no debug hooks in this mode");                                \
    } while (0)

static void test_handler_installed(void)
{
    NEED_DEBUG();
    PM_CHECK(!(installed.sa_flags & SA_SIGINFO));
    PM_CHECK(installed.sa_handler != SIG_DFL && installed.sa_handler != SIG_IGN);
}

typedef struct damage {
    unsigned char *p[12];
    size_t n[12];
    int count;
    int d; /* the domain of p[0] (reported_then_abort) */
} damage;

/* The report's line of dm's block k, written 1 byte past its end, from
 * entry ("abort", "exit", "pm_mem_free"). */
static void overflow_line(char *want, size_t size, const char *entry, const damage *dm, int k)
{
    snprintf(want, size,
             "pymalloc: %s: buffer overflow: 1 byte written past the end of a %zu-byte block "
             "(serial %llu)",
             entry, dm->n[k], (unsigned long long)trailer_serial(dm->p[k], dm->n[k]));
}

/* dm's first block, in domain d: a small one (a pool block in
 * pymalloc_debug, and the mem and obj domains' in debug) or the C
 * library's (libc_block). */
static void first_block(damage *dm, int small, int d)
{
    if (small)
        dm->p[0] = pm_t_domains[d].malloc(dm->n[0] = 24);
    else
        dm->p[0] = libc_block(d, &dm->n[0]);
    PM_CHECK(dm->p[0] != NULL);
}

static void overflow_then_abort(void *arg)
{
    damage *dm = arg;
    restore_handler();
    for (int i = 0; i < dm->count; i++)
        dm->p[i][dm->n[i]] = 0; /* one byte past the end */
    abort();
}

static void test_overflow_reported_at_abort(void)
{
    NEED_DEBUG();
    /* A block of the registry (the C library's), then a small one: a pool
     * block in pymalloc_debug (and the mem and obj domains in debug). */
    for (int small = 0; small < 2; small++)
        for (int d = 0; d < PM_DOMAIN_COUNT; d++) {
            damage dm = {.count = 1};
            first_block(&dm, small, d);
            pm_death_result r;
            pm_death(overflow_then_abort, &dm, &r);
            PM_CHECK(!r.exited && r.signal == SIGABRT);
            char want[200];
            overflow_line(want, sizeof want, "abort", &dm, 0);
            PM_CHECK_STR(r.output, want);
            PM_CHECK_STR(r.output, "at p+");
            PM_CHECK_STR(r.output, "pymalloc: abort: 1 damaged block among the ");
            PM_CHECK(strstr(r.output, "busy") == NULL);
            pm_t_domains[d].free(dm.p[0]); /* intact in this process */
        }
}

/* Two neighbouring 24-byte pool blocks (64-byte pool blocks), or NULL. */
static unsigned char *pool_pair(void)
{
    unsigned char *a = block_run(24, 64, 2);
    if (a != NULL && (!pm_i_pool_owns(a - 16) || !pm_i_pool_owns(a + 64 - 16))) {
        pm_mem_free(a);
        pm_mem_free(a + 64);
        return NULL;
    }
    return a;
}

static void overflow_into_next_then_abort(void *arg)
{
    unsigned char *a = arg;
    restore_handler();
    memset(a + 24, 'O', 16 + 12); /* a's pad and serial, then b's size and API */
    abort();
}

/* The child aborted with one report at abort, the overflow (at least 16
 * bytes) of block a of n bytes, and the totals line of one damaged block. */
static void overflow_reported_once(const pm_death_result *r, const unsigned char *a, size_t n)
{
    PM_CHECK(!r->exited && r->signal == SIGABRT);
    char want[200];
    snprintf(want, sizeof want,
             "pymalloc: abort: buffer overflow: at least 16 bytes written past the end of a "
             "%zu-byte block (serial %llu)",
             n, (unsigned long long)trailer_serial(a, n));
    PM_CHECK_STR(r->output, want);
    PM_CHECK_STR(r->output, "pymalloc: abort: 1 damaged block among the ");
    int lines = 0;
    for (const char *s = r->output; (s = strstr(s, "pymalloc: abort: ")) != NULL; s++)
        lines++;
    PM_CHECK_EQ(lines, 2); /* the overflow's report, and the totals */
    if (pm_t_cur_failed)
        fprintf(stderr, "%s\n", r->output);
}

/* A write past the end of a pool block into the next one's header: one
 * report, of the block that overflowed (the next block's damage is the
 * same bug). */
static void test_pool_overflow_into_next_reported_once(void)
{
    NEED_DEBUG();
    unsigned char *a = pool_pair();
    if (a == NULL)
        PM_SKIP("no two neighbouring pool blocks in this mode");
    pm_death_result r;
    pm_death(overflow_into_next_then_abort, a, &r);
    overflow_reported_once(&r, a, 24);
    pm_mem_free(a);
    pm_mem_free(a + 64);
}

/* The same for two neighbouring blocks of the C library (registry blocks
 * in every debug mode): a's trailer, b's chunk header and b's whole
 * header overwritten. b was reported too, as an underflow it never had,
 * and counted (the registry's blocks were not blamed at abort). */
static unsigned char *libc_pair[2];

static void overflow_into_next_libc_then_abort(void *arg)
{
    (void)arg;
    restore_handler();
    memset(libc_pair[0] + 600, 'x', (size_t)(libc_pair[1] - (libc_pair[0] + 600)));
    abort();
}

/* An error handler that returns: the call goes on as in
 * PYMALLOC_ON_ERROR=report, the damaged block leaked. */
static void go_on(const pm_error_report *r, void *ctx)
{
    (void)r;
    (void)ctx;
}

/* The same after 100 other damaged blocks were reported (and leaked) while
 * the program went on: the check at abort met each of them, and the list
 * of the blocks it had met, 64 long, was full of them by the time it met
 * the pair: the overflow was reported twice, through each block. */
static void overflow_into_next_libc_after_reports(void *arg)
{
    pm_set_error_handler(go_on, NULL);
    int err = dup(2), null = open("/dev/null", O_WRONLY); /* (the reports: 50 KB) */
    dup2(null, 2);
    for (int i = 0; i < 100; i++) {
        unsigned char *p = pm_raw_malloc(40);
        p[40] = 0;
        pm_raw_free(p); /* reported; leaked */
    }
    dup2(err, 2);
    overflow_into_next_libc_then_abort(arg);
}

static void test_libc_overflow_into_next_reported_once(void)
{
    NEED_DEBUG();
    unsigned char *a = pm_raw_malloc(600), *b = pm_raw_malloc(600);
    PM_CHECK(a != NULL && b != NULL);
    if (b < a) {
        unsigned char *t = a;
        a = b;
        b = t;
    }
    if (b - a > 700) {
        pm_raw_free(a);
        pm_raw_free(b);
        PM_SKIP("the two blocks are not neighbours");
    }
    libc_pair[0] = a;
    libc_pair[1] = b;
    pm_death_result r;
    pm_death(overflow_into_next_libc_then_abort, NULL, &r);
    overflow_reported_once(&r, a, 600);
    pm_death(overflow_into_next_libc_after_reports, NULL, &r);
    overflow_reported_once(&r, a, 600);
    PM_CHECK_STR(r.output, "; 100 damaged blocks reported before, not again");
    pm_raw_free(a);
    pm_raw_free(b);
}

/* One thread aborts (a failed assert) while main returns: the process dies
 * of SIGABRT, as without the hooks. Their check at abort, in the aborting
 * thread, reads the whole heap; main's exit went on meanwhile and ended
 * the process with status 0 (a third of the runs with 200,000 blocks). */
static _Atomic int abort_started;
static void *abort_now(void *arg)
{
    (void)arg;
    atomic_store(&abort_started, 1);
    abort();
}

static void abort_while_main_exits(void *arg)
{
    (void)arg;
    restore_handler();
    pthread_t th;
    pthread_create(&th, NULL, abort_now, NULL);
    while (!atomic_load(&abort_started))
        ;
    usleep(1000);
    exit(0);
}

static void test_abort_while_main_exits(void)
{
    NEED_DEBUG();
    /* A heap for the check at abort to read, made here: the check at exit
     * of the child, a fork child, leaves out the pages it shares with this
     * process (modes/debug.c: shared_since_fork), so main's exit is quick */
    enum { HEAP = 200000 };
    static void *heap[HEAP];
    int n = pm_t_under_valgrind() ? HEAP / 20 : HEAP, runs = pm_t_under_valgrind() ? 1 : 5;
    for (int i = 0; i < n; i++)
        heap[i] = pm_raw_malloc(32 + (size_t)i % 1000);
    for (int i = 0; i < runs; i++) {
        pm_death_result r;
        pm_death(abort_while_main_exits, NULL, &r);
        PM_CHECK(!r.exited && r.signal == SIGABRT);
        if (pm_t_cur_failed) {
            fprintf(stderr, "run %d: %s %d\n%s\n", i, r.exited ? "exit status" : "signal",
                    r.exited ? r.exit_status : r.signal, r.output);
            break;
        }
    }
    for (int i = 0; i < n; i++)
        pm_raw_free(heap[i]);
}

/* The same when the abort comes while main's exit runs the library's work
 * at exit (its check of the heap, long here: the blocks are the child's
 * own): the work waits for the check at abort when it is done, before
 * glibc's exit goes on to _exit (before, the exit went on, status 0). */
static _Atomic int exit_started;
static void note_exit_started(void) { atomic_store(&exit_started, 1); }

static void *abort_once_exiting(void *arg)
{
    (void)arg;
    while (!atomic_load(&exit_started))
        ;
    usleep(20000);
    abort();
}

static void abort_while_exit_work_runs(void *arg)
{
    int n = (int)(intptr_t)arg;
    restore_handler();
    for (int i = 0; i < n; i++)
        (void)pm_raw_malloc(32 + (size_t)i % 1000); /* live at exit */
    atexit(note_exit_started); /* (run before the library's work) */
    pthread_t th;
    pthread_create(&th, NULL, abort_once_exiting, NULL);
    exit(0);
}

static void test_abort_while_exit_work_runs(void)
{
    NEED_DEBUG();
    if (PM_T_ASAN)
        PM_SKIP("LeakSanitizer's check at exit ends the child first (its blocks are live)");
    int n = pm_t_under_valgrind() ? 20000 : 400000;
    pm_death_result r;
    pm_death(abort_while_exit_work_runs, (void *)(intptr_t)n, &r);
    PM_CHECK(!r.exited && r.signal == SIGABRT);
    if (pm_t_cur_failed)
        fprintf(stderr, "%s %d\n%s\n", r.exited ? "exit status" : "signal",
                r.exited ? r.exit_status : r.signal, r.output);
}

/* Threads that keep freeing and allocating blocks while another aborts:
 * the blocks they free under the check (filled with 0xDD) are not taken
 * for damage; only the planted overflow is reported. */
static _Atomic int churn_stop;
static void *churn(void *arg)
{
    (void)arg;
    void *q[64] = {0};
    for (unsigned i = 0; !atomic_load_explicit(&churn_stop, memory_order_relaxed); i++) {
        unsigned k = i % 64;
        pm_mem_free(q[k]);
        q[k] = pm_mem_malloc(200 + (i * 7) % 280); /* long fills */
    }
    return NULL;
}

static void abort_under_churn(void *arg)
{
    (void)arg;
    restore_handler();
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, churn, NULL);
    unsigned char *live[2000];
    for (int i = 0; i < 2000; i++)
        live[i] = pm_mem_malloc(8 + (size_t)(i * 13) % 400);
    unsigned char *p = pm_mem_malloc(40);
    usleep(2000);
    p[40] = 0;
    abort();
    (void)live;
}

static void test_abort_under_churn(void)
{
    NEED_DEBUG();
    for (int round = 0; round < 30; round++) {
        pm_death_result r;
        pm_death(abort_under_churn, NULL, &r);
        PM_CHECK(!r.exited && r.signal == SIGABRT);
        PM_CHECK_STR(r.output, "pymalloc: abort: buffer overflow: 1 byte written past the end of "
                               "a 40-byte block");
        PM_CHECK_STR(r.output, "pymalloc: abort: 1 damaged block among the ");
        if (pm_t_cur_failed)
            break;
    }
}

/* A clean program whose thread that allocates and frees C library blocks
 * (the registry's) gets SIGABRT, often with a stripe locked, which the
 * check at abort skips: nothing of pymalloc's is printed. Before 2026-12-07 a
 * check at abort that found a stripe busy printed a line of totals all
 * the same ("0 damaged blocks among the ... (1 of 64 parts of the block
 * registry were busy and not checked)"), at random (found by an audit,
 * CPython killed by SIGABRT). */
static void *raw_churn(void *arg)
{
    (void)arg;
    void *q[64] = {0};
    for (unsigned i = 0; !atomic_load_explicit(&churn_stop, memory_order_relaxed); i++) {
        unsigned k = i % 64;
        pm_raw_free(q[k]);
        q[k] = pm_raw_malloc(8 + (i * 7) % 120);
    }
    return NULL;
}

static void clean_abort_under_churn(void *arg)
{
    int to_churner = *(const int *)arg;
    restore_handler();
    pthread_t th;
    pthread_create(&th, NULL, raw_churn, NULL);
    usleep(3000);
    if (!to_churner)
        abort(); /* the check runs while the other thread churns */
    /* (delivered to the churning thread, often inside the registry with a
     * stripe locked: the check skips that stripe) */
    pthread_kill(th, SIGABRT);
    pthread_join(th, NULL);
}

static void test_clean_abort_under_churn_is_silent(void)
{
    NEED_DEBUG();
    /* TSan runs a SIGABRT's handler at once, wherever the thread is, even
     * inside its own code for an atomic with that atomic's lock held: the
     * check's own atomic on that stripe's lock then waits for ever (seen in
     * CI, 1 round in about 600). So under TSan the signal is not sent to
     * the churning thread: the main thread aborts while it churns. */
    for (int round = 0; round < 60; round++) {
        int to_churner = !PM_T_TSAN && round % 2;
        pm_death_result r;
        pm_death(clean_abort_under_churn, &to_churner, &r);
        PM_CHECK(!r.exited && r.signal == SIGABRT);
        PM_CHECK(strstr(r.output, "pymalloc") == NULL);
        if (pm_t_cur_failed) {
            fprintf(stderr, "round %d: %s\n", round, r.output);
            break;
        }
    }
}

static void test_many_damaged_blocks(void)
{
    NEED_DEBUG();
    damage dm = {.count = 10};
    for (int i = 0; i < dm.count; i++) {
        dm.p[i] = libc_block(PM_DOMAIN_RAW, &dm.n[i]);
        PM_CHECK(dm.p[i] != NULL);
    }
    pm_death_result r;
    pm_death(overflow_then_abort, &dm, &r);
    PM_CHECK(!r.exited && r.signal == SIGABRT);
    PM_CHECK_STR(r.output, "pymalloc: abort: 10 damaged blocks (the first 8 reported) among the ");
    int reports = 0;
    for (const char *s = r.output; (s = strstr(s, "pymalloc: abort: buffer overflow")) != NULL; s++)
        reports++;
    PM_CHECK_EQ(reports, 8);
    for (int i = 0; i < dm.count; i++)
        pm_raw_free(dm.p[i]);
}

/* glibc's abort: a block carved from the top chunk, written 64 bytes past
 * its end (through its trailer into the top chunk's size), then a request
 * served from the top chunk. */
static void overflow_into_top(void *arg)
{
    (void)arg;
    restore_handler();
    size_t n = 40000; /* no free chunk this big: carved from the top */
    unsigned char *p = pm_raw_malloc(n);
    memset(p + n, 0x41, 64);
    __asm__ volatile("" ::"r"(p) : "memory");
    void *q = pm_raw_malloc(100000); /* from the top chunk: glibc aborts */
    __asm__ volatile("" ::"r"(q) : "memory");
    fprintf(stderr, "glibc did not abort\n");
    abort();
}

static void test_glibc_abort_names_the_block(void)
{
    NEED_DEBUG();
#ifndef __GLIBC__
    PM_SKIP("glibc's heap checks only");
#endif
    if (PM_T_ASAN || PM_T_TSAN || pm_t_under_valgrind())
        PM_SKIP("the sanitizers' and valgrind's allocators are not glibc's");
    pm_death_result r;
    pm_death(overflow_into_top, NULL, &r);
    PM_CHECK(!r.exited && r.signal == SIGABRT);
    PM_CHECK_STR(r.output, "malloc(): corrupted top size");
    PM_CHECK(strstr(r.output, "glibc did not abort") == NULL);
    PM_CHECK_STR(r.output, "pymalloc: abort: buffer overflow: at least 16 bytes written past "
                           "the end of a 40000-byte block (serial ");
    PM_CHECK_STR(r.output, "pymalloc: abort: 1 damaged block among the ");
}

static void clean_abort(void *arg)
{
    (void)arg;
    restore_handler();
    void *p = pm_raw_malloc(100), *q = pm_mem_malloc(2000);
    __asm__ volatile("" ::"r"(p), "r"(q) : "memory");
    abort();
}

static void test_clean_abort_is_silent(void)
{
    NEED_DEBUG();
    pm_death_result r;
    pm_death(clean_abort, NULL, &r);
    PM_CHECK(!r.exited && r.signal == SIGABRT);
    PM_CHECK(strstr(r.output, "pymalloc") == NULL);
}

static void report_then_abort(void *arg)
{
    (void)arg;
    restore_handler();
    size_t n;
    unsigned char *p = libc_block(PM_DOMAIN_RAW, &n);
    p[n] = 0;
    pm_raw_free(p); /* reported, then abort() */
}

static void test_own_report_not_repeated(void)
{
    NEED_DEBUG();
    pm_death_result r;
    pm_death(report_then_abort, NULL, &r);
    PM_CHECK(!r.exited && r.signal == SIGABRT);
    PM_CHECK_STR(r.output, "pymalloc: pm_raw_free: buffer overflow: 1 byte written past the end");
    PM_CHECK(strstr(r.output, "pymalloc: abort") == NULL);
}

/* Block dm->p[0] written past its end and freed (reported, leaked: the
 * handler returns), then abort(); or, with a second block written past its
 * end and never freed, exit(). */
static void reported_then_abort(void *arg)
{
    damage *dm = arg;
    restore_handler();
    pm_set_error_handler(go_on, NULL);
    for (int i = 0; i < dm->count; i++)
        dm->p[i][dm->n[i]] = 0;
    pm_t_domains[dm->d].free(dm->p[0]); /* reported; leaked */
    if (dm->count > 1)
        exit(0);
    abort();
}

static int count_of(const char *s, const char *what)
{
    int n = 0;
    for (; (s = strstr(s, what)) != NULL; s++)
        n++;
    return n;
}

/* A damaged block reported (and leaked) by its free is not reported again
 * by the check at abort, nor at exit: the totals line counts it as
 * reported before (before, the check at abort reported it a second
 * time). */
static void test_leaked_block_not_reported_again(void)
{
    NEED_DEBUG();
    for (int small = 0; small < 2; small++)
        for (int d = 0; d < PM_DOMAIN_COUNT; d++) {
            damage dm = {.count = 1, .d = d};
            first_block(&dm, small, d);
            pm_death_result r;
            pm_death(reported_then_abort, &dm, &r);
            PM_CHECK(!r.exited && r.signal == SIGABRT);
            char entry[32], want[200];
            snprintf(entry, sizeof entry, "pm_%s_free", pm_t_domains[d].name);
            overflow_line(want, sizeof want, entry, &dm, 0);
            PM_CHECK_STR(r.output, want);
            PM_CHECK_EQ(count_of(r.output, "buffer overflow"), 1);
            PM_CHECK_STR(r.output, "pymalloc: abort: 0 damaged blocks among the ");
            PM_CHECK_STR(r.output, " live blocks checked; 1 damaged block reported before, not "
                                   "again; if the C library's allocator aborted");
            if (pm_t_cur_failed) {
                fprintf(stderr, "%s\n", r.output);
                return;
            }
            pm_t_domains[d].free(dm.p[0]); /* intact in this process */
        }
    /* At exit: the other block, never freed, is reported; the first not. */
    damage dm = {.count = 2};
    dm.p[0] = libc_block(PM_DOMAIN_RAW, &dm.n[0]);
    dm.p[1] = libc_block(PM_DOMAIN_RAW, &dm.n[1]);
    pm_death_result r;
    pm_death(reported_then_abort, &dm, &r);
    PM_CHECK(r.exited);
    PM_CHECK_EQ(count_of(r.output, "buffer overflow"), 2);
    char want[200];
    overflow_line(want, sizeof want, "exit", &dm, 1);
    PM_CHECK_STR(r.output, want);
    PM_CHECK_STR(r.output, "pymalloc: exit: 1 damaged block, never freed, among the ");
    PM_CHECK_STR(r.output, " live blocks checked; 1 damaged block reported before, not again\n");
    if (pm_t_cur_failed)
        fprintf(stderr, "%s\n", r.output);
    pm_raw_free(dm.p[0]);
    pm_raw_free(dm.p[1]);
}

/* SIGABRT sent by raise or kill (not abort(), which raises it again if a
 * handler returns) still kills the process after the check. */
static void raise_abrt(void *arg)
{
    restore_handler();
    if (arg != NULL)
        kill(getpid(), SIGABRT);
    else
        raise(SIGABRT);
    fprintf(stderr, "still running after SIGABRT\n");
}

static void test_raised_sigabrt_still_kills(void)
{
    NEED_DEBUG();
    for (int k = 0; k < 2; k++) {
        pm_death_result r;
        pm_death(raise_abrt, k ? (void *)1 : NULL, &r);
        PM_CHECK(!r.exited && r.signal == SIGABRT);
        PM_CHECK(strstr(r.output, "still running") == NULL);
    }
}

/* A crash reporter set after the hooks, calling the handler before it
 * (theirs) and then going on: the process survives its raise(SIGABRT),
 * and keeps its handler. */
static struct sigaction chained_prev;
static volatile sig_atomic_t chained_calls;

static void chained(int sig)
{
    chained_calls++;
    if (!(chained_prev.sa_flags & SA_SIGINFO) && chained_prev.sa_handler != SIG_DFL &&
        chained_prev.sa_handler != SIG_IGN)
        chained_prev.sa_handler(sig);
}

static void chain_then_raise(void *arg)
{
    (void)arg;
    restore_handler();
    struct sigaction sa, now;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = chained;
    sigaction(SIGABRT, &sa, &chained_prev);
    raise(SIGABRT);
    raise(SIGABRT);
    sigaction(SIGABRT, NULL, &now);
    _exit(chained_calls == 2 && now.sa_handler == chained ? 0 : 5);
}

static void test_chained_handler_survives(void)
{
    NEED_DEBUG();
    pm_death_result r;
    pm_death(chain_then_raise, NULL, &r);
    PM_CHECK(r.exited);
    PM_CHECK_EQ(r.exit_status, 0);
}

static void mine(int sig) { (void)sig; }

static void program_handler_then_debug(void *arg)
{
    (void)arg;
    struct sigaction sa, now;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = mine;
    sigaction(SIGABRT, &sa, NULL);
    if (pm_setup_debug_hooks() != 0 || !pm_debug_enabled())
        _exit(3);
    sigaction(SIGABRT, NULL, &now);
    _exit(now.sa_handler == mine ? 0 : 4);
}

/* Hooks set up at run time (pm_setup_debug_hooks, before any block) over
 * a program's SIGABRT handler leave it in place. */
static void test_program_handler_kept(void)
{
    if (pm_debug_enabled())
        PM_SKIP("the hooks went in at start-up");
    PM_CHECK(installed.sa_handler == SIG_DFL);
    pm_death_result r;
    pm_death(program_handler_then_debug, NULL, &r);
    PM_CHECK(r.exited);
    PM_CHECK_EQ(r.exit_status, 0);
}

int main(void)
{
    pm_t_pin_env(NULL);
    pm_debug_enabled(); /* the mode is installed; nothing allocated yet */
    sigaction(SIGABRT, NULL, &installed);
    PM_RUN(test_program_handler_kept); /* first: hooks go in before any block */
    PM_RUN(test_handler_installed);
    PM_RUN(test_glibc_abort_names_the_block);
    PM_RUN(test_overflow_reported_at_abort);
    PM_RUN(test_pool_overflow_into_next_reported_once);
    PM_RUN(test_libc_overflow_into_next_reported_once);
    PM_RUN(test_abort_under_churn);
    PM_RUN(test_abort_while_main_exits);
    PM_RUN(test_abort_while_exit_work_runs);
    PM_RUN(test_many_damaged_blocks);
    PM_RUN(test_clean_abort_is_silent);
    PM_RUN(test_clean_abort_under_churn_is_silent);
    PM_RUN(test_own_report_not_repeated);
    PM_RUN(test_leaked_block_not_reported_again);
    PM_RUN(test_raised_sigabrt_still_kills);
    PM_RUN(test_chained_handler_survives);
    return pm_test_done();
}
