/*
 * tests/test_threads.c - several threads mixing all three domains.
 *
 * Each thread keeps slots of blocks in random domains, fills every block
 * with a pattern derived from its address and checks it before each
 * realloc/free; some blocks are handed to another thread to free (through a
 * lock-free mailbox per thread). Meanwhile one thread keeps wrapping and
 * unwrapping a domain with a counting hook, and the main thread forks a
 * child that must be able to allocate.
 */
#include "counting_hook.h"
#include "domains.h"
#include "harness.h"

#include <pthread.h>
#include <sched.h>
#include <stdint.h>

#define NTHREADS 4
#define SLOTS 64
#define ITERS 10000
#define MAILBOX 256

typedef struct block {
    unsigned char *p;
    size_t n;
    int d;
} block;

typedef struct mailbox {
    _Atomic(block *) cell[MAILBOX];
} mailbox;

static mailbox boxes[NTHREADS];
static atomic_int errors, stop_hooks;

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void fill(block *b)
{
    for (size_t i = 0; i < b->n; i++)
        b->p[i] = (unsigned char)(((uintptr_t)b->p >> 4) + i);
}

static int intact(const block *b, size_t n)
{
    for (size_t i = 0; i < n && i < b->n; i++)
        if (b->p[i] != (unsigned char)(((uintptr_t)b->p >> 4) + i))
            return 0;
    return 1;
}

static size_t pick_size(uint64_t *s)
{
    uint64_t r = rnd(s) % 100;
    if (r < 70)
        return rnd(s) % 513;
    if (r < 95)
        return rnd(s) % 4096;
    return rnd(s) % 200000;
}

/* Free b in its own domain after checking it; b itself came from libc. */
static void release(block *b)
{
    if (!intact(b, b->n))
        atomic_fetch_add(&errors, 1);
    pm_t_domains[b->d].free(b->p);
    free(b);
}

static void drain(int me)
{
    for (int i = 0; i < MAILBOX; i++) {
        block *b = atomic_exchange(&boxes[me].cell[i], NULL);
        if (b != NULL)
            release(b);
    }
}

static void *worker(void *arg)
{
    int me = (int)(intptr_t)arg;
    uint64_t s = 0x9E3779B97F4A7C15ull * (uint64_t)(me + 1);
    block *slot[SLOTS] = {0};
    for (int it = 0; it < ITERS; it++) {
        int k = (int)(rnd(&s) % SLOTS);
        block *b = slot[k];
        uint64_t op = rnd(&s) % 10;
        if (b == NULL) {
            b = malloc(sizeof *b);
            b->d = (int)(rnd(&s) % PM_DOMAIN_COUNT);
            b->n = pick_size(&s);
            b->p = op < 7 ? pm_t_domains[b->d].malloc(b->n) : pm_t_domains[b->d].calloc(b->n, 1);
            if (b->p == NULL) {
                atomic_fetch_add(&errors, 1);
                free(b);
                continue;
            }
            if (op >= 7)
                for (size_t i = 0; i < b->n; i++)
                    if (b->p[i] != 0) {
                        atomic_fetch_add(&errors, 1);
                        break;
                    }
            fill(b);
            slot[k] = b;
        } else if (op < 3) {
            size_t n = pick_size(&s);
            if (!intact(b, b->n))
                atomic_fetch_add(&errors, 1);
            unsigned char *old_first = b->p;
            size_t keep = n < b->n ? n : b->n;
            unsigned char *q = pm_t_domains[b->d].realloc(b->p, n);
            if (q == NULL) {
                atomic_fetch_add(&errors, 1);
                continue;
            }
            /* Contents survive up to the smaller size (pattern of old address). */
            for (size_t i = 0; i < keep; i++)
                if (q[i] != (unsigned char)(((uintptr_t)old_first >> 4) + i)) {
                    atomic_fetch_add(&errors, 1);
                    break;
                }
            b->p = q;
            b->n = n;
            fill(b);
        } else if (op < 6) {
            /* Hand it to another thread. */
            int to = (me + 1 + (int)(rnd(&s) % (NTHREADS - 1))) % NTHREADS;
            int cell = (int)(rnd(&s) % MAILBOX);
            block *old = atomic_exchange(&boxes[to].cell[cell], b);
            if (old != NULL)
                release(old); /* freed by a thread that did not allocate it */
            slot[k] = NULL;
        } else {
            release(b);
            slot[k] = NULL;
        }
        if (it % 512 == 0)
            drain(me);
    }
    for (int k = 0; k < SLOTS; k++)
        if (slot[k] != NULL)
            release(slot[k]);
    return NULL;
}

/* Keeps wrapping and unwrapping every domain. A hook's ctx must stay valid
 * while other threads may still be inside it, so each domain's hook is set
 * up once and only the table entry is toggled. */
static void *hooker(void *arg)
{
    (void)arg;
    static counting_hook h[PM_DOMAIN_COUNT];
    pm_allocator hooked[PM_DOMAIN_COUNT];
    for (int d = 0; d < PM_DOMAIN_COUNT; d++) {
        counting_hook_install(&h[d], (pm_domain)d);
        pm_get_allocator((pm_domain)d, &hooked[d]);
    }
    long rounds = 0;
    while (!atomic_load(&stop_hooks)) {
        for (int d = 0; d < PM_DOMAIN_COUNT; d++) {
            pm_set_allocator((pm_domain)d, &hooked[d]);
            void *p = pm_t_domains[d].malloc(32);
            pm_t_domains[d].free(p);
            pm_set_allocator((pm_domain)d, &h[d].below);
        }
        rounds++;
    }
    for (int d = 0; d < PM_DOMAIN_COUNT; d++)
        if (atomic_load(&h[d].mallocs) < rounds)
            atomic_fetch_add(&errors, 1);
    return NULL;
}

static void test_threads_mix_domains(void)
{
    pthread_t t[NTHREADS], h;
    atomic_store(&stop_hooks, 0);
    pthread_create(&h, NULL, hooker, NULL);
    for (int i = 0; i < NTHREADS; i++)
        pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i);
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(t[i], NULL);
    atomic_store(&stop_hooks, 1);
    pthread_join(h, NULL);
    for (int i = 0; i < NTHREADS; i++)
        drain(i);
    PM_CHECK_EQ(atomic_load(&errors), 0);
}

/* fork() while other threads allocate: the child can allocate in every domain. */
static void child_allocates(void *arg)
{
    (void)arg;
    for (int round = 0; round < 100; round++)
        for (int d = 0; d < PM_DOMAIN_COUNT; d++) {
            void *p = pm_t_domains[d].malloc((size_t)round * 7 + 1);
            if (p == NULL)
                _exit(3);
            memset(p, 1, (size_t)round * 7 + 1);
            p = pm_t_domains[d].realloc(p, 1000);
            pm_t_domains[d].free(p);
        }
    _exit(0);
}

static void test_fork_while_threads_allocate(void)
{
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    /* gcc 12's ASan does not hold its own allocator lock across fork(): a
     * child forked while another thread is inside ASan's malloc can hang in
     * its first allocation (seen here, outside pymalloc's code). Nor does
     * its TSan (LLVM's runtime took its allocator's and stack depot's locks
     * around fork only in 2024): test_threads.malloc_debug hung once in 2026-12-07's
     * CI (300 s), and passed in 16 s in 22 runs after. Covered by the normal
     * and valgrind runs instead. */
    PM_SKIP("fork while threads allocate is not reliable under ASan or TSan");
#endif
    pthread_t t[NTHREADS - 1];
    for (int i = 0; i < NTHREADS - 1; i++)
        pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i);
    for (int k = 0; k < 5; k++) {
        pm_death_result r;
        pm_death(child_allocates, NULL, &r);
        PM_CHECK(r.exited);
        PM_CHECK_EQ(r.exit_status, 0);
    }
    for (int i = 0; i < NTHREADS - 1; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < NTHREADS; i++)
        drain(i);
    PM_CHECK_EQ(atomic_load(&errors), 0);
}

/* A child forked by a process that has had threads (none left running:
 * TSan does not let a child of a multi-threaded fork start threads), whose
 * own threads then allocate: every lock the fork's prepare handler took
 * (pools, table, mode) is free again in the child, for any of its threads.
 * The child's threads also free the parent's blocks, read the statistics
 * and trim. (The pools' child handler once renewed its locks by assigning
 * them: correct, but TSan saw them still held by the forking thread and
 * took the child's threads' locking for a double lock.) */
#define CHILD_THREADS 3
static void *parent_worker(void *arg)
{
    block *keep = arg;
    for (int i = 0; i < SLOTS; i++) {
        int d = i % PM_DOMAIN_COUNT;
        size_t n = (size_t)i * 37 % 2000 + 1;
        keep[i] = (block){pm_t_domains[d].malloc(n), n, d};
        if (keep[i].p != NULL)
            fill(&keep[i]);
    }
    return NULL;
}

static void *child_worker(void *arg)
{
    uint64_t s = (uintptr_t)arg * 0x9E3779B97F4A7C15u + 1;
    block b[SLOTS] = {{0}};
    for (int it = 0; it < 2000; it++) {
        block *x = &b[rnd(&s) % SLOTS];
        if (x->p != NULL) {
            if (!intact(x, x->n))
                atomic_fetch_add(&errors, 1);
            pm_t_domains[x->d].free(x->p);
        }
        x->d = (int)(rnd(&s) % PM_DOMAIN_COUNT);
        x->n = pick_size(&s);
        x->p = pm_t_domains[x->d].malloc(x->n);
        if (x->p == NULL)
            atomic_fetch_add(&errors, 1);
        else
            fill(x);
    }
    for (int i = 0; i < SLOTS; i++)
        if (b[i].p != NULL)
            pm_t_domains[b[i].d].free(b[i].p);
    return NULL;
}

static void child_threads(void *arg)
{
    block *keep = arg;
    pthread_t t[CHILD_THREADS];
    for (int i = 0; i < CHILD_THREADS; i++)
        PM_CHECK_EQ(pthread_create(&t[i], NULL, child_worker, (void *)(intptr_t)(i + 1)), 0);
    for (int i = 0; i < SLOTS; i++) /* the parent's blocks, made by a thread gone */
        if (keep[i].p != NULL) {
            PM_CHECK(intact(&keep[i], keep[i].n));
            pm_t_domains[keep[i].d].free(keep[i].p);
        }
    struct pm_stats st;
    PM_CHECK_EQ(pm_get_stats(&st), 0);
    pm_trim();
    for (int i = 0; i < CHILD_THREADS; i++)
        PM_CHECK_EQ(pthread_join(t[i], NULL), 0);
    PM_CHECK_EQ(atomic_load(&errors), 0);
}

static void test_fork_child_starts_threads(void)
{
    static block keep[SLOTS];
    pthread_t t;
    PM_CHECK_EQ(pthread_create(&t, NULL, parent_worker, keep), 0);
    PM_CHECK_EQ(pthread_join(t, NULL), 0);
    atomic_store(&errors, 0);
    for (int k = 0; k < 3; k++)
        PM_CHECK(pm_t_child_within(child_threads, keep, 120));
    for (int i = 0; i < SLOTS; i++)
        if (keep[i].p != NULL) {
            PM_CHECK(intact(&keep[i], keep[i].n));
            pm_t_domains[keep[i].d].free(keep[i].p);
        }
}

/* The work at exit (PYMALLOC_STATS's table, report mode's summary) on a
 * thread that never called pymalloc, the set-up having run on another:
 * main starts a thread that allocates first, waits for it through a
 * relaxed flag (no happens-before) and returns. The options the set-up
 * wrote were read at exit without acquiring them (a data race under TSan,
 * whose report makes the process exit 66, in the modes without the debug
 * hooks). In a fresh process (the set-up runs once per process). */
static atomic_int idle_main_ready;

static void *first_user(void *arg)
{
    (void)arg;
    for (int d = 0; d < PM_DOMAIN_COUNT; d++)
        for (size_t n = 0; n <= 1024; n += 64)
            pm_t_domains[d].free(pm_t_domains[d].malloc(n));
    atomic_store_explicit(&idle_main_ready, 1, memory_order_relaxed);
    for (;;)
        pause(); /* still running at exit: no join, no synchronization */
    return NULL;
}

static int idle_main(void)
{
    pthread_t t;
    if (pthread_create(&t, NULL, first_user, NULL) != 0)
        return 2;
    while (!atomic_load_explicit(&idle_main_ready, memory_order_relaxed))
        sched_yield();
    return 0; /* exit's work: the statistics table, on this thread */
}

static void run_idle_main(void *arg)
{
    (void)arg;
    setenv("PYMALLOC_STATS", "1", 1);
    setenv("PYMALLOC_ON_ERROR", "report", 1);
    execl("/proc/self/exe", "test_threads", "idle-main", (char *)NULL);
    _exit(127);
}

/* Under valgrind, /proc/self/exe is valgrind's own program (and a child
 * it execs runs without it anyway): the runs in a fresh process are for
 * the native and TSan builds. */
#define NEED_OWN_EXE()                                                              \
    do {                                                                            \
        if (pm_t_under_valgrind())                                                  \
            PM_SKIP("under valgrind (/proc/self/exe is valgrind's)");               \
    } while (0)

static void test_exit_work_on_a_thread_that_never_allocated(void)
{
    NEED_OWN_EXE();
    pm_death_result r;
    pm_death(run_idle_main, NULL, &r);
    PM_CHECK(r.exited);
    PM_CHECK_EQ(r.exit_status, 0);
    PM_CHECK_STR(r.output, "Small block threshold = ");
    PM_CHECK_STR(r.output, "\n# raw blocks allocated total       =");
    PM_CHECK(strstr(r.output, "ThreadSanitizer") == NULL);
}

/* pm_set_mode (allowed until the first allocation) on one thread while
 * another prints and reads the statistics: the statistics' look at the
 * debug hooks' quarantine read what the mode's installation wrote, with no
 * synchronization (a data race under TSan). In a fresh process: nothing
 * may be allocated for pm_set_mode to go on. */
static atomic_int modes_started, modes_stop;

static void *mode_setter(void *arg)
{
    (void)arg;
    static const char *const modes[] = {"pymalloc_debug", "malloc_debug", "pymalloc", "malloc"};
    for (unsigned i = 0; !atomic_load(&modes_stop); i++) {
        if (pm_set_mode(modes[i % 4]) != 0)
            _exit(3);
        atomic_store(&modes_started, 1);
    }
    return NULL;
}

static int modes_vs_stats(void)
{
    int fd = open("/dev/null", O_WRONLY);
    struct pm_stats st;
    if (fd < 0 || pm_get_stats(&st) != 0) /* (the set-up, on this thread) */
        return 2;
    pthread_t t;
    if (pthread_create(&t, NULL, mode_setter, NULL) != 0)
        return 2;
    while (!atomic_load(&modes_started))
        sched_yield();
    for (int i = 0; i < 2000; i++) {
        pm_print_stats(fd);
        if (pm_get_stats(&st) != 0)
            return 4;
    }
    atomic_store(&modes_stop, 1);
    pthread_join(t, NULL);
    return 0;
}

static void run_modes_vs_stats(void *arg)
{
    (void)arg;
    execl("/proc/self/exe", "test_threads", "modes-vs-stats", (char *)NULL);
    _exit(127);
}

static void test_set_mode_while_stats_are_read(void)
{
    NEED_OWN_EXE();
    pm_death_result r;
    pm_death(run_modes_vs_stats, NULL, &r);
    PM_CHECK(r.exited);
    PM_CHECK_EQ(r.exit_status, 0);
    PM_CHECK(strstr(r.output, "ThreadSanitizer") == NULL);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "idle-main") == 0)
        return idle_main();
    if (argc > 1 && strcmp(argv[1], "modes-vs-stats") == 0)
        return modes_vs_stats();
    pm_t_pin_env(NULL);
    PM_RUN(test_exit_work_on_a_thread_that_never_allocated);
    PM_RUN(test_set_mode_while_stats_are_read);
    PM_RUN(test_threads_mix_domains);
    PM_RUN(test_fork_while_threads_allocate);
    PM_RUN(test_fork_child_starts_threads);
    return pm_test_done();
}
