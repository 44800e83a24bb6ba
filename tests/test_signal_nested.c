/*
 * tests/test_signal_nested.c - pm_* calls from a signal handler that
 * interrupts its own thread inside pymalloc.
 *
 * A profiling timer's handler allocates, reallocates, checks and frees
 * blocks through the pm_* API of every domain, on whichever thread it
 * interrupts, while that thread (main alone, or one of three threads)
 * churns blocks of every size through the same API: pool blocks and big
 * ones, raw blocks (the registry's in every debug mode), realloc, calloc
 * and pm_check_block. In the debug modes the handler also frees a block
 * its thread handed it (made outside the handler), checks the live blocks
 * its thread shows it, and keeps a few blocks across signals, freed by a
 * later signal or by the thread after the run (outside any handler). Every
 * block is filled with its own byte and checked before it is freed.
 *
 * In the debug modes the interrupted call may hold a registry stripe's
 * lock (or be inside the C library's allocator): a handler's call that
 * waited for it hung for ever. Each case runs in a child with a deadline
 * (alarm): a hang is a failure ("hung"), never a stuck test.
 *
 * What the handler may call depends on the mode: in the debug modes
 * anything (nothing nested may wait for its own thread); in pymalloc and
 * default mode pool sizes in mem and obj (the pools guard themselves),
 * and in every mode sizes the C library's thread cache serves (warmed up
 * before the timer starts, never allocated by the threads), as
 * tests/override/prog_signals.c does: a handler that reaches glibc's
 * arena lock while its thread holds it hangs under glibc alone. Blocks of
 * a thread cache (the pools', glibc's) the handler keeps past its return,
 * or frees though they were made outside it, may meet a fast path of the
 * same size class it interrupted (pool.h): the handler keeps and is given
 * only blocks that are in no such cache, the debug modes' big blocks (the
 * C library's: the hooks call into it only where a nested call is
 * served without it).
 */
#define _GNU_SOURCE 1
#include "harness.h"
#include "domains.h"
#include "pm_internal.h" /* pm_i_early_owns: the blocks of nested calls */

#include <pthread.h>
#include <sys/time.h>
#include <time.h>

#define SLOTS 128
#define KEEP 8
#define SHOWN 8
#define RUN_SECONDS 3
#define DEADLINE 60

static int debug_on, pools_on;
static volatile sig_atomic_t handled, bad, nested_fail, outside_freed, early_blocks;

/* What the thread shows its handler: a block to free (made outside the
 * handler), live blocks to check. */
static __thread void *volatile gift;
static __thread int gift_dom;
static __thread void *volatile shown[SHOWN];
/* Blocks the handler keeps across signals (its domain per slot). */
static __thread void *kept[KEEP];
static __thread int kept_dom[KEEP];
static __thread size_t kept_n[KEEP];
static __thread unsigned hcount;

/* Sizes glibc's thread cache serves the handler in every mode (the
 * threads never allocate them). */
static const size_t hsizes[] = {600, 650, 700, 800};
#define HSIZES (sizeof hsizes / sizeof hsizes[0])

static int filled(const unsigned char *p, size_t n, unsigned char c)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != c)
            return 0;
    return 1;
}

/* A size for the handler's block number k in domain dom: anything in a
 * debug mode; else one that cannot reach a lock its thread may hold: a
 * pool size in mem and obj where they are pools, else a size of glibc's
 * thread cache. `pooled`: only pool sizes (or nothing: 0). */
static size_t handler_size(unsigned k, int dom, int pooled)
{
    if (debug_on) {
        switch (k % 4) {
        case 0: return 1 + k % 512;            /* a pool block */
        case 1: return 1100 + (k * 37) % 4000; /* the threads' big sizes */
        case 2: return hsizes[k % HSIZES];
        default: return k % 64;
        }
    }
    if (pools_on && dom != PM_DOMAIN_RAW)
        return 1 + k % 512;
    return pooled ? 0 : hsizes[k % HSIZES];
}

static void on_prof(int sig)
{
    (void)sig;
    int saved = errno;
    unsigned k = ++hcount;
    /* Blocks made and freed here, last first (a handler's printf); in the
     * modes without debug hooks, a size of glibc's cache only once each. */
    enum { MINE = 6 };
    void *mine[MINE];
    size_t n[MINE];
    int dom[MINE];
    for (int i = 0; i < MINE; i++) {
        dom[i] = (int)((k + (unsigned)i) % PM_DOMAIN_COUNT);
        n[i] = handler_size(k * 7 + (unsigned)i, dom[i], 0);
        if (!debug_on && !(pools_on && dom[i] != PM_DOMAIN_RAW))
            n[i] = hsizes[(unsigned)i % HSIZES]; /* (glibc's calloc takes its lock) */
        int zeroed = (i & 1) && (debug_on || (pools_on && dom[i] != PM_DOMAIN_RAW));
        mine[i] = zeroed ? pm_t_domains[dom[i]].calloc(1, n[i]) : pm_t_domains[dom[i]].malloc(n[i]);
        if (mine[i] == NULL) {
            bad = __LINE__;
            continue;
        }
        if (zeroed && !filled(mine[i], n[i], 0))
            bad = __LINE__;
        if (pm_i_early_owns(mine[i]))
            early_blocks++; /* served as nested (the debug modes) */
        memset(mine[i], 0x40 + i, n[i]);
    }
    /* A block made here grown (or shrunk) here: always possible. The last
     * one made, so that every block is still freed before those made
     * before it: a handler delivered inside a fast malloc of its thread
     * must give a size class's blocks back in that order (pool.h; before,
     * the first block was reallocated here, its old block freed while the
     * later ones were live, and in debug mode three threads' run once
     * found a live block in a bin: a block handed out twice). */
    const int L = MINE - 1;
    size_t m = handler_size(k * 11, dom[L], 1);
    if (mine[L] != NULL && m != 0 && (debug_on || n[L] <= 512)) {
        void *q = pm_t_domains[dom[L]].realloc(mine[L], m);
        if (q == NULL) {
            bad = __LINE__;
        } else {
            if (!filled(q, n[L] < m ? n[L] : m, (unsigned char)(0x40 + L)))
                bad = __LINE__;
            memset(q, 0x40 + L, m);
            mine[L] = q;
            n[L] = m;
        }
    }
    for (int i = 0; i < MINE; i++)
        if (mine[i] != NULL && debug_on && pm_check_block(mine[i]) != 0)
            bad = __LINE__;
    for (int i = MINE - 1; i >= 0; i--) {
        if (mine[i] == NULL)
            continue;
        if (!filled(mine[i], n[i], (unsigned char)(0x40 + i)))
            bad = __LINE__;
        pm_t_domains[dom[i]].free(mine[i]);
    }
    /* A block kept across signals: the oldest goes, a new one comes. */
    int slot = (int)(k % KEEP);
    if (kept[slot] != NULL) {
        if (!filled(kept[slot], kept_n[slot], (unsigned char)slot))
            bad = __LINE__;
        pm_t_domains[kept_dom[slot]].free(kept[slot]);
        kept[slot] = NULL;
    }
    kept_dom[slot] = (int)(k % PM_DOMAIN_COUNT);
    /* (Big blocks: a block of a pool's thread cache kept past the handler's
     * return may be one the interrupted fast path was taking: pool.h) */
    kept_n[slot] = debug_on ? 1100 + (k * 13) % 4000 : 0;
    if (kept_n[slot] != 0) {
        kept[slot] = pm_t_domains[kept_dom[slot]].malloc(kept_n[slot]);
        if (kept[slot] == NULL)
            bad = __LINE__;
        else
            memset(kept[slot], slot, kept_n[slot]);
    }
    /* The thread's live blocks, checked; its gift freed. */
    if (debug_on) {
        for (int i = 0; i < SHOWN; i++) {
            void *p = shown[i];
            if (p != NULL && pm_check_block(p) != 0) {
                if (errno != EDEADLK)
                    bad = __LINE__;
                nested_fail++;
            }
        }
    }
    void *g = gift;
    if (g != NULL) {
        gift = NULL;
        pm_t_domains[gift_dom].free(g);
        outside_freed++;
    }
    handled++;
    errno = saved;
}

struct churn_arg {
    unsigned seed;
    unsigned long sum;
};

static void *churn(void *varg)
{
    struct churn_arg *arg = varg;
    unsigned s = arg->seed;
    unsigned char *slot[SLOTS] = {0};
    size_t size[SLOTS] = {0};
    int sdom[SLOTS] = {0};
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long i = 0;; i++) {
        if ((i & 1023) == 0) {
            clock_gettime(CLOCK_MONOTONIC, &t);
            if (t.tv_sec - t0.tv_sec >= RUN_SECONDS)
                break;
        }
        s = s * 1103515245u + 12345u;
        unsigned k = (s >> 8) % SLOTS;
        unsigned char c = (unsigned char)(k + 1);
        const pm_t_domain *d = &pm_t_domains[sdom[k]];
        if (slot[k] != NULL && !filled(slot[k], size[k], c)) {
            bad = __LINE__;
            break;
        }
        arg->sum += size[k];
        size_t n = (s >> 16) % 4 == 0 ? 1100 + (s >> 12) % 4000 : (s >> 16) % 520;
        if (k < SHOWN)
            shown[k] = NULL; /* freed or grown below */
        if (slot[k] != NULL && (s >> 28) < 2) { /* realloc */
            unsigned char *q = d->realloc(slot[k], n + 1);
            if (q == NULL) {
                bad = __LINE__;
                break;
            }
            slot[k] = q;
            size[k] = n + 1;
            memset(q, c, n + 1);
        } else {
            if (slot[k] != NULL && debug_on && (s >> 26) % 8 == 0 &&
                pm_check_block(slot[k]) != 0)
                bad = __LINE__;
            if (gift == NULL && slot[k] != NULL && (s >> 27) % 4 == 1 &&
                debug_on &&
                (!pools_on || sdom[k] == PM_DOMAIN_RAW || size[k] > 512)) {
                /* Not a pool block (pool.h: a handler's free of one may flush
                 * the bin the interrupted fast path is taking a block from;
                 * the pools' and glibc's thread caches share that limit). */
                gift_dom = sdom[k];
                gift = slot[k]; /* the handler may free it, or the end */
                slot[k] = NULL;
            }
            d->free(slot[k]);
            sdom[k] = (int)((s >> 24) % PM_DOMAIN_COUNT);
            d = &pm_t_domains[sdom[k]];
            slot[k] = (s >> 20) % 4 == 0 ? d->calloc(1, n) : d->malloc(n);
            if (slot[k] == NULL) {
                bad = __LINE__;
                break;
            }
            memset(slot[k], c, n);
            size[k] = n;
        }
        if (k < SHOWN)
            shown[k] = slot[k];
    }
    pm_t_prof_mask(SIG_BLOCK);
    for (int i = 0; i < SHOWN; i++)
        shown[i] = NULL;
    for (int k = 0; k < SLOTS; k++)
        pm_t_domains[sdom[k]].free(slot[k]);
    if (gift != NULL)
        pm_t_domains[gift_dom].free(gift);
    gift = NULL;
    /* The handler's kept blocks, freed outside any handler. */
    for (int i = 0; i < KEEP; i++) {
        if (kept[i] != NULL && !filled(kept[i], kept_n[i], (unsigned char)i))
            bad = __LINE__;
        pm_t_domains[kept_dom[i]].free(kept[i]);
        kept[i] = NULL;
    }
    return NULL;
}

/* glibc's thread cache holds blocks of the handler's libc sizes for this
 * thread (three of each, through every domain, as the mode gives them to
 * the C library). */
static void warm_up(void)
{
    for (int d = 0; d < PM_DOMAIN_COUNT; d++) {
        for (unsigned i = 0; i < HSIZES; i++) {
            void *w[3];
            for (int j = 0; j < 3; j++)
                w[j] = pm_t_domains[d].malloc(hsizes[i]);
            for (int j = 0; j < 3; j++)
                pm_t_domains[d].free(w[j]);
        }
    }
}

static void *thread_main(void *arg)
{
    warm_up();
    pm_t_prof_mask(SIG_UNBLOCK);
    return churn(arg);
}

/* The workload with `threads` churning threads (0: main itself), in this
 * process; exits 0 when every check held. */
static void workload(int threads)
{
    pm_t_prof_mask(SIG_BLOCK); /* threads unblock it after their warm-up */
    pm_t_prof_start(on_prof, 500, NULL);
    struct churn_arg args[3];
    pthread_t tid[3];
    if (threads == 0) {
        args[0].seed = 1;
        args[0].sum = 0;
        thread_main(&args[0]);
    } else {
        for (int i = 0; i < threads; i++) {
            args[i].seed = 7u * (unsigned)i + 3u;
            args[i].sum = 0;
            if (pthread_create(&tid[i], NULL, thread_main, &args[i]) != 0)
                _exit(3);
        }
        for (int i = 0; i < threads; i++)
            pthread_join(tid[i], NULL);
    }
    pm_t_prof_stop();
    fprintf(stderr,
            "    %d signals handled, %d blocks made outside freed by the handler, "
            "%d checks refused (EDEADLK), %d handler's blocks from the early arena, "
            "%lu heap errors\n",
            (int)handled, (int)outside_freed, (int)nested_fail, (int)early_blocks,
            pm_error_count(PM_ERR_NONE));
    /* In the debug modes many signals land in a busy part of the hooks
     * (nested calls); without them, none can. */
    if (debug_on ? handled >= 200 && early_blocks == 0 : early_blocks != 0)
        bad = __LINE__;
    if (bad)
        fprintf(stderr, "    a check failed at line %d\n", (int)bad);
    _exit(bad ? 4 : pm_error_count(PM_ERR_NONE) != 0 ? 5 : handled == 0 ? 6 : 0);
}

static void workload_of(void *threads) { workload((int)(intptr_t)threads); }

/* Run the workload in a child with a deadline: a hang is a failure (a
 * handler's pm_* call that waited for a lock its own thread held). */
static void run_case(int threads)
{
    PM_CHECK(pm_t_child_within(workload_of, (void *)(intptr_t)threads, DEADLINE));
}

static void one_thread(void) { run_case(0); }
static void three_threads(void) { run_case(3); }

/* The other lock holders: pm_get_stats (every pool lock), pm_trim (the
 * arena lock, to count the arenas it gave back) and fork (every lock, in
 * its prepare handlers, in a process that has had a second thread), again
 * and again, while the timer's handler allocates and frees pool blocks of
 * every class. Each holder counts itself busy before it takes its first
 * lock, so that the handler is served without them; before, the
 * statistics did only once they held every lock, trim and fork not at all,
 * and a handler's malloc delivered in between waited for its own thread's
 * lock. Pool blocks only, where the pools serve mem and obj: glibc's fork
 * holds its malloc's locks around the fork itself (after the prepare
 * handlers, outside any call of ours), where a handler that reaches
 * glibc's malloc hangs under glibc alone. */
static void on_prof_holders(int sig)
{
    (void)sig;
    int saved = errno;
    unsigned k = ++hcount;
    void *b[6];
    for (int i = 0; i < 6; i++) {
        b[i] = pm_t_domains[1 + i % 2].malloc(1 + (k * 6 + (unsigned)i) * 37 % 512);
        if (b[i] == NULL)
            bad = __LINE__;
    }
    for (int i = 6; i-- > 0;)
        pm_t_domains[1 + i % 2].free(b[i]);
    handled++;
    errno = saved;
}

static void *nothing(void *arg) { return arg; }

static void lock_holders_of(void *unused)
{
    (void)unused;
    handled = 0;
    pthread_t t; /* so that fork takes the locks (pm_internal.h) */
    if (pthread_create(&t, NULL, nothing, NULL) != 0 || pthread_join(t, NULL) != 0)
        _exit(3);
    pm_t_prof_start(on_prof_holders, 200, NULL);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    long rounds = 0;
    do {
        struct pm_stats st;
        if (pm_get_stats(&st) != 0)
            _exit(3);
        void *keep = pm_mem_malloc(100);
        pm_mem_free(keep);
        pm_trim();
        if (rounds % 64 == 0) {
            pid_t pid = fork();
            if (pid == 0)
                _exit(0);
            if (pid < 0 || pm_t_wait(pid) != 0)
                _exit(4);
        }
        rounds++;
        clock_gettime(CLOCK_MONOTONIC, &t1);
    } while (t1.tv_sec - t0.tv_sec < RUN_SECONDS);
    pm_t_prof_stop();
    fprintf(stderr, "    %ld rounds, %d signals handled\n", rounds, (int)handled);
    _exit(bad ? 5 : handled == 0 ? 6 : 0);
}

static void lock_holders(void)
{
    if (!pools_on)
        PM_SKIP("the pools serve neither mem nor obj");
    PM_CHECK(pm_t_child_within(lock_holders_of, NULL, DEADLINE));
}

/* The check of the heap at exit (the debug modes) walks every block with
 * the pools' arena lock or a registry stripe's held, a million blocks long
 * here, while the timer's handler allocates and frees blocks of every
 * domain. The exiting thread keeps its signals blocked meanwhile (they
 * come after it): before, a handler's malloc that needed the lock the
 * walk held waited for its own thread, and exit hung. */
static void on_prof_exit(int sig)
{
    (void)sig;
    int saved = errno;
    unsigned k = ++hcount;
    for (int d = 0; d < PM_DOMAIN_COUNT; d++) {
        if (PM_T_ASAN && d == PM_DOMAIN_RAW)
            continue; /* (see exit_check_with_handler) */
        void *p = pm_t_domains[d].malloc(1 + (k * 3 + (unsigned)d) * 37 % 512);
        void *q = PM_T_ASAN ? NULL : pm_t_domains[d].malloc(1100 + (k * 13) % 4000);
        pm_t_domains[d].free(q);
        pm_t_domains[d].free(p);
    }
    handled++;
    errno = saved;
}

static void exit_check_of(void *unused)
{
    (void)unused;
    /* (Under valgrind, whose check is some 50 times slower, fewer.) */
    int N = pm_i_pool_valgrind(NULL) ? 1 << 15 : 1 << 20;
    void **keep = pm_t_domains[PM_DOMAIN_RAW].malloc((size_t)N * sizeof *keep);
    if (keep == NULL)
        _exit(3);
    for (int i = 0; i < N; i++) {
        /* Pool blocks (in the pools' modes), and registry blocks. */
        keep[i] = i % 64 == 0 ? pm_t_domains[PM_DOMAIN_RAW].malloc(700)
                              : pm_t_domains[1 + i % 2].malloc(1 + (size_t)i % 300);
        if (keep[i] == NULL)
            _exit(3);
    }
    handled = 0;
    pm_t_prof_start(on_prof_exit, 200, NULL);
    exit(0); /* the blocks live: the check reads them all */
}

static void exit_check_with_handler(void)
{
    if (!debug_on)
        PM_SKIP("no check of the heap at exit");
    /* Under ASan, LeakSanitizer's own check at exit (after ours) holds the
     * sanitizer allocator's locks, and a handler that reaches that
     * allocator then hangs under ASan alone: there the handler allocates
     * pool blocks only. */
    if (PM_T_ASAN && !pools_on)
        PM_SKIP("under ASan every block of this mode is the sanitizer's");
    PM_CHECK(pm_t_child_within(exit_check_of, NULL, DEADLINE));
}

static int skip_sanitized(void)
{
    /* A handler's call that reaches the C library is the sanitizer's
     * allocator there, whose locks are not ours to guard; in the debug
     * modes nested calls never reach it. TSan defers signals to its own
     * safe points and reports a handler's malloc. */
    return PM_T_TSAN || (PM_T_ASAN && !debug_on);
}

int main(void)
{
    pm_t_pin_env(NULL);
    debug_on = pm_debug_enabled();
    const char *mode = pm_mode_name();
    pools_on = strcmp(mode, "pymalloc") == 0 || strcmp(mode, "pymalloc_debug") == 0;
    if (skip_sanitized()) {
        puts("skipped: the handler's calls reach the sanitizer's allocator");
        return 77;
    }
    fprintf(stderr, "mode %s, debug hooks %s\n", mode, debug_on ? "on" : "off");
    PM_RUN(one_thread);
    PM_RUN(three_threads);
    PM_RUN(lock_holders);
    PM_RUN(exit_check_with_handler);
    return pm_test_done();
}
