/*
 * tests/test_signal_free.c - a signal handler's free of pool blocks its
 * thread made (outside the handler), delivered while that thread churns
 * blocks of the same size classes through the fast paths.
 *
 * A SIGPROF handler (each thread's own timer, every 20 us) takes the
 * block its thread left in a single-slot mailbox (an atomic exchange) and
 * frees it, while the thread
 * (main alone, or each of three threads) frees and allocates blocks of a
 * few pool sizes through pm_mem_* and pm_obj_*, one free then one malloc,
 * with an extra free now and then, so that its cache's bin climbs to full
 * and sits there (a handler's free then takes the slow path, which gives
 * half the bin back to the pools) while fast mallocs take blocks from it.
 * Every live block holds a pattern of its owner and slot in words 2 to 5
 * and its last word, checked before it is freed (by
 * the thread or the handler) and when a malloc returns a block (a block
 * handed out twice still shows the pattern of the slot holding it).
 *
 * It failed in pymalloc mode when the handler's slow path flushed the bin
 * that the interrupted fast malloc was taking its block from: the fast
 * path then stored its stale link back into the bin, and the blocks given
 * back to their pools were handed out again while the thread held them.
 * The workload is probabilistic: each case runs ROUNDS children (a
 * deadline each: a hang is a failure) and fails at the first damage;
 * before the fix every run failed in its first round. (A first version,
 * with a profiling interval timer, ITIMER_PROF, which fires at the
 * kernel's tick, a few hundred times a second, and bursts that left the
 * bin's count where the handler's frees put it, failed in no run of 36
 * rounds.)
 *
 * The modes whose mem and obj domains are libc's alone (malloc) skip: a
 * handler's free that meets glibc's own thread cache mid-update is glibc's
 * matter, not ours.
 */
#define _GNU_SOURCE 1
#include "debug_layout.h" /* VALGRIND_MAKE_MEM_DEFINED */
#include "harness.h"
#include "pymalloc.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/time.h>
#include <time.h>

#define SLOTS 256
#define MIN_LIVE 32
#define DRIFT 64 /* iterations per extra free */
#define PERIOD_NS 20000 /* each thread's timer */
#define ROUNDS 3
#define ROUND_MS 1000
#define DEADLINE 60

/* Sizes of pool classes with small bins (their bins fill after few frees). */
static const size_t sizes[] = {512, 496, 448, 400, 384, 320};
#define NSIZES (sizeof sizes / sizeof sizes[0])

static volatile sig_atomic_t handled, freed, bad;
static _Atomic unsigned long damaged;

/* The thread's mailbox: a block for its handler to free (NULL: none). */
static __thread void *_Atomic mailbox;
static __thread int mailbox_obj;
static __thread size_t mailbox_n;

static uint64_t tag_of(unsigned tid, unsigned slot, uint32_t gen)
{
    return ((uint64_t)0xA5 << 56) | ((uint64_t)tid << 48) | ((uint64_t)slot << 32) | gen;
}

/* The pattern: words 2 to 5 and the last (few stores: the thread spends
 * its time in the allocator, where the handler's signal must land). */
static void fill(void *p, size_t n, uint64_t tag)
{
    uint64_t *w = p;
    for (size_t i = 2; i < 6; i++)
        w[i] = tag ^ i;
    w[n / 8 - 1] = tag ^ (n / 8 - 1);
}

static int intact(const void *p, size_t n, uint64_t tag)
{
    const uint64_t *w = p;
    for (size_t i = 2; i < 6; i++)
        if (w[i] != (tag ^ i))
            return 0;
    return w[n / 8 - 1] == (tag ^ (n / 8 - 1));
}

static void on_prof(int sig)
{
    (void)sig;
    int saved = errno;
    void *p = atomic_exchange_explicit(&mailbox, NULL, memory_order_relaxed);
    if (p != NULL) {
        /* Made outside the handler: every word past the link still one value. */
        const uint64_t *w = p;
        uint64_t tag = w[2] ^ 2;
        if (!intact(p, mailbox_n, tag) || (tag >> 56) != 0xA5)
            bad = __LINE__;
        if (mailbox_obj)
            pm_obj_free(p);
        else
            pm_mem_free(p);
        freed++;
    }
    handled++;
    errno = saved;
}

/* Check and free every live block of the thread's slots. */
static void free_all(void *slot[SLOTS], const uint64_t tag[SLOTS], size_t size, int obj)
{
    for (unsigned k = 0; k < SLOTS; k++) {
        if (slot[k] == NULL)
            continue;
        if (!intact(slot[k], size, tag[k])) {
            bad = __LINE__;
            atomic_fetch_add(&damaged, 1);
        }
        obj ? pm_obj_free(slot[k]) : pm_mem_free(slot[k]);
        slot[k] = NULL;
    }
}

struct churn_arg {
    unsigned tid;
    unsigned long ops;
};

static void *churn(void *varg)
{
    struct churn_arg *arg = varg;
    unsigned s = arg->tid * 2654435761u + 12345u;
    void *slot[SLOTS] = {0};
    uint64_t tag[SLOTS] = {0};
    uint32_t gen = 0;
    unsigned live = 0;
    size_t size = sizes[0];
    int obj = 0;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (unsigned long it = 0;; it++) {
        if ((it & 1023) == 0) {
            clock_gettime(CLOCK_MONOTONIC, &t);
            if ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 >= ROUND_MS)
                break;
        }
        if ((it & 0xFFFF) == 0) {
            /* Another class, another domain: free them all first. */
            free_all(slot, tag, size, obj);
            live = 0;
            size = sizes[(it >> 16) % NSIZES];
            obj = (int)((it >> 16) / NSIZES) & 1;
        }
        /* Free one block, make one: the bin's count stays where it is
         * (n, n + 1) but for an extra free every DRIFT iterations (and the
         * handler's), which push it up by one each until it is full; then
         * every malloc takes its block from a full bin, until the next extra
         * free. When few blocks are left live, make them all again. */
        s = s * 1103515245u + 12345u;
        unsigned k = (s >> 20) % SLOTS;
        if (it % DRIFT == 0) {
            if (live <= MIN_LIVE) {
                for (unsigned j = 0; j < SLOTS; j++) {
                    if (slot[j] != NULL)
                        continue;
                    void *p = obj ? pm_obj_malloc(size) : pm_mem_malloc(size);
                    if (p == NULL) {
                        bad = __LINE__;
                        break;
                    }
                    tag[j] = tag_of(arg->tid, j, ++gen);
                    fill(p, size, tag[j]);
                    slot[j] = p;
                    live++;
                }
            }
            while (slot[k] == NULL)
                k = (k + 1) % SLOTS;
            if (!intact(slot[k], size, tag[k])) {
                bad = __LINE__;
                atomic_fetch_add(&damaged, 1);
            }
            obj ? pm_obj_free(slot[k]) : pm_mem_free(slot[k]);
            slot[k] = NULL;
            live--;
            continue;
        }
        while (slot[k] == NULL)
            k = (k + 1) % SLOTS;
        {
            if (!intact(slot[k], size, tag[k])) {
                bad = __LINE__;
                atomic_fetch_add(&damaged, 1);
            }
            /* The handler gets it instead if it took the last. */
            if (atomic_load_explicit(&mailbox, memory_order_relaxed) == NULL) {
                mailbox_obj = obj;
                mailbox_n = size;
                atomic_signal_fence(memory_order_seq_cst);
                atomic_store_explicit(&mailbox, slot[k], memory_order_relaxed);
            } else {
                obj ? pm_obj_free(slot[k]) : pm_mem_free(slot[k]);
            }
            slot[k] = NULL;
        }
        {
            void *p = obj ? pm_obj_malloc(size) : pm_mem_malloc(size);
            if (p == NULL) {
                bad = __LINE__;
                continue;
            }
            /* A block handed out twice: it still holds a live slot's pattern.
             * (A new block's bytes are undefined to memcheck: read through a
             * copy made defined.) */
            uint64_t old;
            memcpy(&old, (const unsigned char *)p + 16, sizeof old);
            (void)VALGRIND_MAKE_MEM_DEFINED(&old, sizeof old);
            old ^= 2;
            unsigned os = (unsigned)(old >> 32) & 0xFFFF;
            if ((old >> 56) == 0xA5 && ((old >> 48) & 0xFF) == arg->tid && os < SLOTS &&
                slot[os] == p) {
                bad = __LINE__;
                atomic_fetch_add(&damaged, 1);
            }
            tag[k] = tag_of(arg->tid, k, ++gen);
            fill(p, size, tag[k]);
            slot[k] = p;
        }
        arg->ops++;
    }
    /* The handler's last block, then ours. */
    void *m = atomic_exchange(&mailbox, NULL);
    if (m != NULL)
        mailbox_obj ? pm_obj_free(m) : pm_mem_free(m);
    free_all(slot, tag, size, obj);
    return NULL;
}

/* SIGPROF every PERIOD_NS to this thread. */
static void *thread_main(void *arg)
{
    timer_t timer = pm_t_thread_timer_start(PERIOD_NS);
    void *r = churn(arg);
    pm_t_thread_timer_stop(timer);
    return r;
}

static void workload(int threads)
{
    pm_t_prof_handler(on_prof, NULL);
    pm_t_prof_mask(SIG_BLOCK); /* each thread unblocks it for its timer */
    struct churn_arg args[3] = {{0, 0}, {1, 0}, {2, 0}};
    pthread_t tid[3];
    if (threads == 0) {
        thread_main(&args[0]);
    } else {
        for (int i = 0; i < threads; i++)
            if (pthread_create(&tid[i], NULL, thread_main, &args[i]) != 0)
                _exit(3);
        for (int i = 0; i < threads; i++)
            pthread_join(tid[i], NULL);
    }
    if (bad)
        fprintf(stderr, "    damage: check at line %d failed, %lu damaged blocks seen "
                        "(%d signals, %d blocks freed by the handler)\n",
                (int)bad, atomic_load(&damaged), (int)handled, (int)freed);
    _exit(bad ? 4 : pm_error_count(PM_ERR_NONE) != 0 ? 5 : handled == 0 ? 6 : 0);
}

static void workload_of(void *threads) { workload((int)(intptr_t)threads); }

/* ROUNDS children, each with a deadline; stops at the first that fails. */
static void run_case(int threads)
{
    PM_CHECK(pm_t_rounds(workload_of, (void *)(intptr_t)threads, ROUNDS, DEADLINE));
}

static void one_thread(void) { run_case(0); }
static void three_threads(void) { run_case(3); }

int main(void)
{
    pm_t_pin_env(NULL);
    const char *mode = pm_mode_name();
    int pools_on = strcmp(mode, "pymalloc") == 0 || strcmp(mode, "pymalloc_debug") == 0;
    if (!pools_on && !pm_debug_enabled()) {
        puts("skipped: mem and obj are the C library's (its thread cache is not ours)");
        return 77;
    }
    if (PM_T_TSAN) {
        puts("skipped: TSan defers signals to its own safe points");
        return 77;
    }
    fprintf(stderr, "mode %s\n", mode);
    PM_RUN(one_thread);
    PM_RUN(three_threads);
    return pm_test_done();
}
