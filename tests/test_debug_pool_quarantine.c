/*
 * tests/test_debug_pool_quarantine.c - PYMALLOC_QUARANTINE_POOLS=on: freed
 * pool blocks (the mem and obj domains of pymalloc_debug and debug) go to
 * the debug hooks' quarantine too, so that the two bugs LIFO reuse hides
 * are found (run with the variable set, by CTest):
 *  - a held block's address is not handed out again: a second free of it,
 *    after as many mallocs of its size as one likes, is a double free, with
 *    its size and serial, whose dump says the quarantine holds it;
 *  - a write into a held block is found when it leaves (pm_trim, or the
 *    frees that push it out), reported as a use after free of that block
 *    with size, serial and offset; the block is leaked and stays freed;
 *  - at exit every held block is checked whole (death test);
 *  - a realloc that moves a pool block holds the old one;
 *  - an intact block that left goes back to its pool (the next malloc of
 *    its size takes it);
 *  - threads freeing each other's blocks while another trims: no report;
 *  - a fork child frees and trims;
 *  - with the variable off (the default), or PYMALLOC_QUARANTINE=0, no
 *    pool block is held (a child run of this program); an unknown value
 *    stops the process with a message naming on and off.
 * Skipped (77) without debug hooks, in malloc_debug (no pool blocks: its
 * blocks are held anyway), and under valgrind (memcheck: no quarantine).
 */
#include "debug_layout.h"
#include "domains.h"
#include "harness.h"
#include "recorder.h"
#include "quarantine.h"
#include "pm_debug.h"
#include "pm_internal.h"

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/time.h>
#include <sys/wait.h>

/* Whether the mem domain hands out pool blocks (pymalloc_debug, debug). */
static int pool_blocks(void)
{
    unsigned char *p = pm_mem_malloc(24);
    int pool = p != NULL && pm_i_pool_owns(p - 16);
    pm_mem_free(p);
    pm_trim();
    return pool;
}

#define NEED()                                                                      \
    do {                                                                            \
        if (!pm_debug_enabled())                                                    \
            PM_SKIP("no debug hooks in this mode");                                 \
        if (pm_t_under_valgrind())                                                  \
            PM_SKIP("no quarantine under memcheck, which reports such writes");     \
        if (!pool_blocks())                                                         \
            PM_SKIP("no pool blocks in this mode");                                 \
    } while (0)

/* The pool domains (mem, obj) and sizes up to the largest pool request. */
static const size_t sizes[] = {0, 1, 24, 100, 512};
#define NSIZES (sizeof sizes / sizeof sizes[0])

/* A held pool block is not handed out again; a second free of it after
 * 300 mallocs of its size is a double free. */
static void test_double_free_after_mallocs(void)
{
    NEED();
    for (int d = PM_DOMAIN_MEM; d <= PM_DOMAIN_OBJ; d++) {
        const pm_t_domain *D = &pm_t_domains[d];
        for (size_t k = 0; k < NSIZES; k++) {
            size_t n = sizes[k];
            enum { N = 300 };
            static unsigned char *others[N];
            start();
            unsigned char *p = D->malloc(n);
            PM_CHECK(p != NULL && pm_i_pool_owns(p - 16));
            uint64_t serial = trailer_serial(p, n);
            D->free(p);
            PM_CHECK_EQ(held_blocks(), 1);
            PM_CHECK_EQ(count_not(p - 16, n + 32, 0xDD), 0);
            for (int i = 0; i < N; i++) {
                others[i] = D->malloc(n);
                PM_CHECK(others[i] != p);
            }
            int saved = quiet_begin();
            D->free(p);
            quiet_end(saved);
            PM_CHECK_EQ(S.calls, 1);
            PM_CHECK_EQ(S.r.error, PM_ERR_DOUBLE_FREE);
            PM_CHECK(S.r.address == p);
            PM_CHECK_EQ(S.r.size, n);
            PM_CHECK_EQ(S.r.serial, serial);
            PM_CHECK_EQ(S.r.api_found, D->name[0]);
            char line[160];
            snprintf(line, sizeof line,
                     "pm_%s_free: double free: the %zu-byte block (serial %llu) at %p was "
                     "already freed",
                     D->name, n, (unsigned long long)serial, (void *)p);
            PM_CHECK_STR(S.message, line);
            for (int i = 0; i < N; i++)
                D->free(others[i]);
            PM_CHECK_EQ(S.calls, 1);
        }
    }
    start();
    pm_set_error_handler(NULL, NULL);
}

static void double_free_child(void *arg)
{
    (void)arg;
    unsigned char *p = pm_mem_malloc(40);
    pm_mem_free(p);
    unsigned char *q = pm_mem_malloc(40); /* without the quarantine: p again */
    pm_mem_free(p);
    pm_mem_free(q);
}

/* The report of a double free says where the block's memory is. */
static void test_double_free_dump(void)
{
    NEED();
    pm_death_result r;
    pm_death(double_free_child, NULL, &r);
    PM_CHECK(!r.exited);
    PM_CHECK_EQ(r.signal, SIGABRT);
    PM_CHECK_STR(r.output, "pymalloc: pm_mem_free: double free: the 40-byte block (serial ");
    PM_CHECK_STR(r.output, ": API 'm', 40 bytes, serial ");
    PM_CHECK_STR(r.output, "; the quarantine holds its memory (not read).");
}

/* A write after the free, at the first byte and at the last of the first
 * bytes checked (64, or the data and the 16 bytes after if fewer), found
 * by pm_trim; the block stays freed (a second free is a double free). */
static void test_write_found_by_trim(void)
{
    NEED();
    for (int d = PM_DOMAIN_MEM; d <= PM_DOMAIN_OBJ; d++) {
        const pm_t_domain *D = &pm_t_domains[d];
        for (size_t k = 0; k < NSIZES; k++) {
            size_t n = sizes[k];
            size_t last = (n + 16 < 64 ? n + 16 : 64) - 1;
            /* its header's first and last bytes (filled by its free too,
             * checked while held), its data's first byte, the last checked */
            ptrdiff_t at[4] = {-16, -1, 0, (ptrdiff_t)last};
            for (int w = 0; w < 4; w++) {
                start();
                unsigned char *p = D->malloc(n);
                memset(p, 'a', n);
                uint64_t serial = trailer_serial(p, n);
                D->free(p);
                unsigned char *q = D->malloc(n); /* the write would land in q without */
                PM_CHECK(q != NULL && q != p);
                p[at[w]] = 'x';
                int saved = quiet_begin();
                PM_CHECK_EQ(pm_trim(), 1);
                quiet_end(saved);
                PM_CHECK_EQ(S.calls, 1);
                PM_CHECK_EQ(S.r.error, PM_ERR_USE_AFTER_FREE);
                PM_CHECK(S.r.address == p);
                PM_CHECK_EQ(S.r.size, n);
                PM_CHECK_EQ(S.r.serial, serial);
                PM_CHECK_EQ(S.r.offset, at[w]);
                PM_CHECK_EQ(S.r.api_found, D->name[0]);
                char line[200];
                snprintf(line, sizeof line,
                         "pymalloc: pm_trim: use after free: the freed %zu-byte block (serial "
                         "%llu) at %p was written after its free (the 0xDD its free wrote at "
                         "p%+td was overwritten)",
                         n, (unsigned long long)serial, (void *)p, at[w]);
                PM_CHECK_STR(S.message, line);
                PM_CHECK_EQ(held_blocks(), 0);
                PM_CHECK_EQ(pm_check_block(q), 0);
                D->free(q);
                keep(p);
                saved = quiet_begin();
                D->free(p); /* leaked, and still freed */
                quiet_end(saved);
                PM_CHECK_EQ(S.calls, 2);
                PM_CHECK_EQ(S.r.error, PM_ERR_DOUBLE_FREE);
                PM_CHECK_EQ(S.r.serial, serial);
            }
        }
    }
    start();
    pm_set_error_handler(NULL, NULL);
}

/* A write into a held block found by the free that pushes it out (the
 * quarantine holds at most 16,384 blocks): named by that free. */
static void test_write_found_by_free(void)
{
    NEED();
    start();
    unsigned char *p = pm_obj_malloc(32);
    uint64_t serial = trailer_serial(p, 32);
    pm_obj_free(p);
    p[5] = 0;
    enum { N = 20000 };
    static unsigned char *b[N];
    for (int i = 0; i < N; i++)
        b[i] = pm_obj_malloc(32);
    int saved = quiet_begin();
    for (int i = 0; i < N && S.calls == 0; i++) {
        pm_obj_free(b[i]);
        b[i] = NULL;
    }
    quiet_end(saved);
    PM_CHECK_EQ(S.calls, 1);
    PM_CHECK_EQ(S.r.error, PM_ERR_USE_AFTER_FREE);
    PM_CHECK(S.r.address == p);
    PM_CHECK_EQ(S.r.serial, serial);
    PM_CHECK_EQ(S.r.offset, 5);
    PM_CHECK_STR(S.message, "pymalloc: pm_obj_free: use after free: the freed 32-byte block");
    keep(p);
    for (int i = 0; i < N; i++)
        pm_obj_free(b[i]);
    PM_CHECK_EQ(S.calls, 1);
    start();
    pm_set_error_handler(NULL, NULL);
}

/* An intact block goes back to its pool when it leaves: the next malloc
 * of its size takes it, and it is a new, live block. */
static void test_back_to_pool(void)
{
    NEED();
    start();
    unsigned char *p = pm_mem_malloc(56);
    pm_mem_free(p);
    PM_CHECK_EQ(held_blocks(), 1);
    PM_CHECK_EQ(pm_trim(), 1);
    PM_CHECK_EQ(held_blocks(), 0);
    unsigned char *q = pm_mem_malloc(56);
    PM_CHECK(q == p);
    PM_CHECK_EQ(count_not(q, 56, 0xCD), 0);
    PM_CHECK_EQ(pm_check_block(q), 0);
    pm_mem_free(q);
    PM_CHECK_EQ(S.calls, 0);
    start();
    pm_set_error_handler(NULL, NULL);
}

/* A realloc into another size class holds the old block: a write through
 * the old pointer is found. */
static void test_realloc_holds_old_block(void)
{
    NEED();
    start();
    unsigned char *p = pm_mem_malloc(40);
    for (int i = 0; i < 40; i++)
        p[i] = (unsigned char)i;
    uint64_t serial = trailer_serial(p, 40);
    unsigned char *q = pm_mem_realloc(p, 200);
    PM_CHECK(q != NULL && q != p);
    for (int i = 0; i < 40; i++)
        if (q[i] != (unsigned char)i) {
            PM_CHECK_EQ(q[i], (unsigned char)i);
            break;
        }
    PM_CHECK_EQ(held_blocks(), 1);
    p[10] = 'x';
    int saved = quiet_begin();
    pm_trim();
    quiet_end(saved);
    PM_CHECK_EQ(S.calls, 1);
    PM_CHECK_EQ(S.r.error, PM_ERR_USE_AFTER_FREE);
    PM_CHECK(S.r.address == p);
    PM_CHECK_EQ(S.r.serial, serial);
    PM_CHECK_EQ(S.r.offset, 10);
    keep(p);
    pm_mem_free(q);
    start();
    pm_set_error_handler(NULL, NULL);
}

/* At exit every held block is checked whole: a write past the first 64
 * bytes checked when a block leaves is found there. */
static void exit_child(void *arg)
{
    (void)arg;
    unsigned char *p = pm_mem_malloc(300);
    pm_mem_free(p);
    p[300 + 15] = 'x';
    exit(0);
}

static void test_found_at_exit(void)
{
    NEED();
    pm_death_result r;
    pm_death(exit_child, NULL, &r);
    PM_CHECK(!r.exited);
    PM_CHECK_EQ(r.signal, SIGABRT);
    PM_CHECK_STR(r.output, "pymalloc: exit: use after free: the freed 300-byte block (serial ");
    PM_CHECK_STR(r.output, "(the 0xDD its free wrote at p+315 was overwritten)");
    PM_CHECK_STR(r.output, "    Freed block, held in the quarantine, at p=");
    PM_CHECK_STR(r.output, "; 1 freed block written after its free among the ");
}

/* Pool block A written past its end into the header and first bytes of B
 * after it, which the quarantine holds: A's overflow, found when B leaves
 * (pm_trim), or at exit; not a use after free of B (before: "use after
 * free" of B when it left, and at exit both reports for one bug). B stays
 * leaked and freed. */
static void test_overflow_into_held_block(void)
{
    NEED();
    if (overflow_into_held_found(24, 64) != 0)
        PM_SKIP("no two 24-byte pool blocks 64 bytes apart");
}

static void overflow_into_held_at_exit(void *arg)
{
    (void)arg;
    uint64_t sa, sb;
    if (held_after_overflow(24, 64, &sa, &sb) == NULL)
        _exit(77);
    fprintf(stderr, "serials %llu %llu\n", (unsigned long long)sa, (unsigned long long)sb);
    exit(0);
}

static void test_overflow_into_held_block_at_exit(void)
{
    NEED();
    pm_death_result r;
    pm_death(overflow_into_held_at_exit, NULL, &r);
    if (r.exited && r.exit_status == 77)
        PM_SKIP("no two 24-byte pool blocks 64 bytes apart");
    PM_CHECK(!r.exited);
    PM_CHECK_EQ(r.signal, SIGABRT);
    overflow_into_held_output(r.output, 24, "exit");
    PM_CHECK_STR(r.output, "pymalloc: exit: 1 damaged block, never freed,");
}

/* A signal handler that mallocs and frees a block of the size the
 * interrupted thread is taking from its cache: each block is handed out
 * once. Before, dbg_malloc's fast path took the block without marking the
 * thread busy; the handler's free put its block in the quarantine and
 * another from it on the list, and the interrupted malloc then handed out
 * the held block (found later as a "use after free" of a live block, or
 * its bytes changed under the program). */
static volatile sig_atomic_t prof_calls;

static void on_prof(int sig)
{
    (void)sig;
    int e = errno;
    prof_calls++;
    pm_mem_free(pm_mem_malloc(40));
    errno = e;
}

static void test_signal_handler_mallocs(void)
{
    NEED();
    start();
    struct sigaction sa, old_sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_prof;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGPROF, &sa, &old_sa);
    struct itimerval it = {{0, 200}, {0, 200}}, off = {{0, 0}, {0, 0}};
    prof_calls = 0;
    setitimer(ITIMER_PROF, &it, NULL);
    enum { RING = 64 };
    unsigned char *ring[RING] = {0};
    size_t bad = 0;
    /* Until 200 signals came (the profiling timer's signals come at the
     * clock tick: 250 a second of CPU time), at most 40,000,000 rounds. */
    for (unsigned i = 0; i < 40000000 && prof_calls < 200; i++) {
        unsigned char **slot = &ring[i % RING];
        if (*slot != NULL) {
            if (count_not(*slot, 40, (unsigned char)(uintptr_t)*slot) != 0)
                bad++;
            pm_mem_free(*slot);
        }
        *slot = pm_mem_malloc(40);
        memset(*slot, (unsigned char)(uintptr_t)*slot, 40);
    }
    setitimer(ITIMER_PROF, &off, NULL);
    sigaction(SIGPROF, &old_sa, NULL);
    for (int k = 0; k < RING; k++)
        pm_mem_free(ring[k]);
    PM_CHECK(prof_calls >= 200);
    PM_CHECK_EQ(bad, 0);
    PM_CHECK_EQ(S.calls, 0);
    if (S.calls != 0)
        fprintf(stderr, "%s\n", S.message);
    start();
    pm_set_error_handler(NULL, NULL);
}

/* An error handler that leaves by longjmp from the report of a held block
 * leaves no block of its batch out of both the quarantine and its pool:
 * the intact ones went back, a second damaged one is held again and
 * reported by the next pm_trim (before, the rest of the batch of 8 was
 * leaked, and the second damaged block never reported). */
static jmp_buf trim_jump;

static void jump_out(const pm_error_report *r, void *ctx)
{
    (void)r;
    (void)ctx;
    S.calls++;
    longjmp(trim_jump, 1);
}

/* pm_trim, whose report's handler may leave by longjmp to here. */
static __attribute__((noinline)) void trim_catching(void)
{
    if (setjmp(trim_jump) == 0)
        pm_trim();
}

/* Blocks of n-byte requests the pools count in use, not cached. */
static size_t in_use_of(size_t n)
{
    struct pm_stats st;
    pm_i_pool_flush_thread_cache();
    if (pm_get_stats(&st) != 0)
        return 0;
    for (int c = 0; c < PM_STATS_NCLASSES; c++)
        if (st.classes[c].size >= n + 32)
            return st.classes[c].blocks_in_use - st.classes[c].blocks_cached;
    return 0;
}

static void test_longjmp_from_report(void)
{
    NEED();
    start();
    size_t before = in_use_of(40);
    unsigned char *p[8];
    for (int i = 0; i < 8; i++)
        p[i] = pm_mem_malloc(40);
    for (int i = 0; i < 8; i++)
        pm_mem_free(p[i]);
    PM_CHECK_EQ(held_blocks(), 8);
    PM_CHECK_EQ(in_use_of(40), before + 8);
    p[0][3] = 1;
    p[5][7] = 1;
    memset(&S, 0, sizeof S);
    pm_set_error_handler(jump_out, NULL);
    int saved = quiet_begin();
    trim_catching();
    quiet_end(saved);
    PM_CHECK_EQ(S.calls, 1);
    /* The other damaged block is held again (before: in neither place,
     * never reported), the intact ones went back. */
    PM_CHECK_EQ(held_blocks(), 1);
    PM_CHECK_EQ(in_use_of(40), before + 2);
    keep(p[0]);
    keep(p[5]);
    watch();
    saved = quiet_begin();
    PM_CHECK_EQ(pm_trim(), 1);
    quiet_end(saved);
    PM_CHECK_EQ(S.calls, 1);
    PM_CHECK_EQ(S.r.error, PM_ERR_USE_AFTER_FREE);
    PM_CHECK(S.r.address == p[5]);
    PM_CHECK_EQ(S.r.offset, 7);
    PM_CHECK_EQ(held_blocks(), 0);
    start();
    pm_set_error_handler(NULL, NULL);
}

/* The statistics count the held pool blocks. */
static void test_stats(void)
{
    NEED();
    start();
    enum { N = 10 };
    unsigned char *p[N];
    for (int i = 0; i < N; i++)
        p[i] = pm_mem_malloc(64);
    for (int i = 0; i < N; i++)
        pm_mem_free(p[i]);
    size_t blocks, bytes, budget;
    PM_CHECK_EQ(pm_i_debug_quarantine_stats(&blocks, &bytes, &budget), 1);
    PM_CHECK_EQ(blocks, N);
    PM_CHECK_EQ(bytes, N * (64 + 32));
    PM_CHECK_EQ(budget, (size_t)1 << 20);
    start();
    pm_set_error_handler(NULL, NULL);
}

/* Threads that free each other's blocks of every pool size while another
 * trims: no report, and nothing left held after the last trim. */
enum { T_ROUNDS = 100000, T_SLOTS = 256 };
static _Atomic(unsigned char *) handoff[T_SLOTS];

static void *churn(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    for (int i = 0; i < T_ROUNDS; i++) {
        seed = seed * 1103515245u + 12345u;
        size_t n = (seed >> 8) % 513;
        unsigned slot = (seed >> 4) % T_SLOTS;
        const pm_t_domain *D = &pm_t_domains[PM_DOMAIN_MEM + (slot & 1)]; /* a slot's domain */
        unsigned char *p = D->malloc(n);
        if (p == NULL)
            return (void *)1;
        memset(p, (int)(seed & 0x7f), n);
        unsigned char *old = atomic_exchange(&handoff[slot], p);
        if (old != NULL)
            D->free(old);
    }
    return NULL;
}

static void test_threads(void)
{
    NEED();
    start();
    PM_CHECK(churn_while_trimming(churn));
    for (int k = 0; k < T_SLOTS; k++)
        pm_t_domains[PM_DOMAIN_MEM + (k & 1)].free(atomic_exchange(&handoff[k], NULL));
    PM_CHECK_EQ(S.calls, 0);
    start();
    pm_set_error_handler(NULL, NULL);
}

/* A fork child (after a thread, so that fork takes the quarantine's lock)
 * holds, trims and reports as its parent does. */
static void *nothing(void *arg) { return arg; }

static void test_fork_child(void)
{
    NEED();
    start();
    pthread_t t;
    PM_CHECK_EQ(pthread_create(&t, NULL, nothing, NULL), 0);
    pthread_join(t, NULL);
    unsigned char *held = pm_mem_malloc(24);
    pm_mem_free(held);
    pid_t pid = pm_t_fork();
    if (pid == 0) {
        unsigned char *p = pm_mem_malloc(24);
        if (p == held)
            _exit(10);
        pm_mem_free(p);
        if (held_blocks() != 2)
            _exit(11);
        p[1] = 0;
        int saved = quiet_begin();
        pm_trim();
        quiet_end(saved);
        _exit(S.calls == 1 && S.r.error == PM_ERR_USE_AFTER_FREE && S.r.address == p ? 0 : 12);
    }
    int status = pm_t_wait(pid);
    PM_CHECK(WIFEXITED(status));
    PM_CHECK_EQ(WEXITSTATUS(status), 0);
    PM_CHECK_EQ(held_blocks(), 1);
    start();
    pm_set_error_handler(NULL, NULL);
}

/* `test_debug_pool_quarantine not-held`: a freed pool block goes back at
 * once (the variable off or unset, or no budget). */
static int not_held(void)
{
    watch();
    unsigned char *p = pm_mem_malloc(24);
    if (p == NULL || !pm_i_pool_owns(p - 16))
        return 10;
    pm_mem_free(p);
    if (held_blocks() != 0)
        return 11;
    unsigned char *q = pm_mem_malloc(24);
    pm_mem_free(q);
    return q == p && S.calls == 0 ? 0 : 12;
}

/* Run this program again with PYMALLOC_QUARANTINE_POOLS=pools (NULL:
 * unset) and PYMALLOC_QUARANTINE=budget (NULL: unset), argument `not-held`,
 * in the current mode (pm_death: its status and output in r). */
struct again {
    const char *pools, *budget;
};

static void again_child(void *arg)
{
    const struct again *a = arg;
    if (a->pools != NULL)
        setenv("PYMALLOC_QUARANTINE_POOLS", a->pools, 1);
    else
        unsetenv("PYMALLOC_QUARANTINE_POOLS");
    if (a->budget != NULL)
        setenv("PYMALLOC_QUARANTINE", a->budget, 1);
    else
        unsetenv("PYMALLOC_QUARANTINE");
    execl("/proc/self/exe", "test_debug_pool_quarantine", "not-held", (char *)NULL);
    _exit(127);
}

static int run_again(const char *pools, const char *budget, pm_death_result *r)
{
    struct again a = {pools, budget};
    pm_death(again_child, &a, r);
    return r->exited ? r->exit_status : 128 + r->signal;
}

static void test_off(void)
{
    NEED();
    pm_death_result r;
    PM_CHECK_EQ(run_again(NULL, NULL, &r), 0);
    PM_CHECK_EQ(run_again("", NULL, &r), 0);
    PM_CHECK_EQ(run_again("off", NULL, &r), 0);
    PM_CHECK_EQ(run_again("on", "0", &r), 0);
    PM_CHECK_EQ(run_again("on", "off", &r), 0);
    PM_CHECK_EQ(run_again("yes", NULL, &r), 1);
    PM_CHECK_STR(r.output,
                 "pymalloc: PYMALLOC_QUARANTINE_POOLS=yes: unknown value (valid: on, off)");
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "not-held") == 0)
        return not_held();
    static const char *const pinned[] = {"PYMALLOC_QUARANTINE_POOLS=on", NULL};
    pm_t_pin_env(pinned); /* (ctest sets it too) */
    pm_debug_enabled(); /* the mode is installed */
    PM_RUN(test_double_free_after_mallocs);
    PM_RUN(test_double_free_dump);
    PM_RUN(test_write_found_by_trim);
    PM_RUN(test_write_found_by_free);
    PM_RUN(test_back_to_pool);
    PM_RUN(test_realloc_holds_old_block);
    PM_RUN(test_found_at_exit);
    PM_RUN(test_overflow_into_held_block);
    PM_RUN(test_overflow_into_held_block_at_exit);
    PM_RUN(test_signal_handler_mallocs);
    PM_RUN(test_longjmp_from_report);
    PM_RUN(test_stats);
    PM_RUN(test_threads);
    PM_RUN(test_fork_child);
    PM_RUN(test_off);
    return pm_test_done();
}
