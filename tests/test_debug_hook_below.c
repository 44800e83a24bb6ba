/*
 * tests/test_debug_hook_below.c - a hook of the program's own under the
 * debug hooks (set before pm_setup_debug_hooks, which wraps it) that calls
 * the pm_* API of another domain is the program's code: its calls are
 * served as any other, checked, not as a signal handler's. Before
 * 2026-12-06 the debug hooks called it inside their busy part, so every
 * such call was taken for a handler's: its blocks came from the 256 KiB
 * early arena, unchecked (a mem domain sent to pm_obj_malloc failed with
 * ENOMEM after about 1,500 blocks of 100 bytes), its realloc of a block
 * made outside failed, and past 16 frees in one call the rest were dropped
 * (a leak).
 *
 * Each case runs in a fresh child (the hooks go in before the first
 * allocation), on the mode this test runs under without its debug hooks
 * (malloc for malloc and malloc_debug, else pymalloc), with the debug
 * hooks wrapping the hook.
 */
#include "harness.h"
#include "pymalloc.h"
#include "sanitizers.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <unistd.h>

static const char *base_mode(void)
{
    const char *m = pm_t_env_mode();
    return strncmp(m, "malloc", 6) == 0 ? "malloc" : "pymalloc";
}

/* Reports the handler received (the test goes on: the block is leaked). */
static pm_error_report seen[8];
static int n_seen;
static void keep_report(const pm_error_report *r, void *ctx)
{
    (void)ctx;
    if (n_seen < 8)
        seen[n_seen] = *r;
    n_seen++;
}

/* The mem domain sent to the obj domain's public API (as a program may send
 * one family of its allocations to another). */
static void *f_malloc(void *c, size_t n) { (void)c; return pm_obj_malloc(n); }
static void *f_calloc(void *c, size_t k, size_t n) { (void)c; return pm_obj_calloc(k, n); }
static void *f_realloc(void *c, void *p, size_t n) { (void)c; return pm_obj_realloc(p, n); }
static void f_free(void *c, void *p) { (void)c; pm_obj_free(p); }

static void set_up(const pm_allocator *hook)
{
    PM_CHECK(pm_set_mode(base_mode()) == 0);
    PM_CHECK(pm_set_allocator(PM_DOMAIN_MEM, hook) == 0);
    PM_CHECK(pm_setup_debug_hooks() == 0);
    PM_CHECK(pm_debug_enabled() == 1);
    pm_set_error_handler(keep_report, NULL);
}

enum { N = 10000 };
static unsigned char *blocks[N];

static void child_forward(void *arg)
{
    (void)arg;
    pm_allocator fwd = {NULL, f_malloc, f_calloc, f_realloc, f_free};
    set_up(&fwd);
    /* 1 MB in all: more than the early arena holds. */
    int failed = 0, unchecked = 0;
    for (int i = 0; i < N; i++) {
        blocks[i] = pm_mem_malloc(100);
        if (blocks[i] == NULL) {
            failed++;
            continue;
        }
        memset(blocks[i], i & 0xff, 100);
        unchecked += pm_check_block(blocks[i]) != 0;
    }
    PM_CHECK(failed == 0);
    PM_CHECK(unchecked == 0);
    /* A block grown to 5 MiB through both domains, its bytes kept. */
    unsigned char *g = pm_mem_calloc(1, 10);
    PM_CHECK(g != NULL);
    for (size_t size = 20; g != NULL && size <= ((size_t)5 << 20); size *= 2) {
        unsigned char *q = pm_mem_realloc(g, size);
        PM_CHECK(q != NULL);
        if (q == NULL)
            break;
        PM_CHECK(q[size / 2 - 1] == 0);
        memset(q + size / 2, 0, size - size / 2);
        g = q;
    }
    pm_mem_free(g);
    for (int i = 0; i < N; i++)
        if (blocks[i] != NULL) {
            PM_CHECK(blocks[i][99] == (unsigned char)(i & 0xff));
            pm_mem_free(blocks[i]);
        }
    PM_CHECK(n_seen == 0);
    /* The mem domain's own checks still run: one byte past a block. */
    unsigned char *p = pm_mem_malloc(24);
    PM_CHECK(p != NULL);
    ((volatile unsigned char *)p)[24] = 'x';
    pm_mem_free(p);
    PM_CHECK(n_seen == 1);
    PM_CHECK(seen[0].error == PM_ERR_BUFFER_OVERFLOW);
    PM_CHECK(seen[0].size == 24 && seen[0].offset == 24);
    PM_CHECK(seen[0].entry != NULL && strcmp(seen[0].entry, "pm_mem_free") == 0);
}

static void test_mem_sent_to_obj(void)
{
    pm_death_result r;
    pm_death(child_forward, NULL, &r);
    PM_CHECK(r.exited && r.exit_status == 0);
}

/* A tracing hook on the mem domain: a note per malloc in a table it grows
 * with pm_raw_realloc, a big pm_raw_malloc once, and every 20th free it
 * frees the 20 raw blocks it made meanwhile, in that one call. */
static pm_allocator below;
static uintptr_t *table;
static size_t notes, cap, grow_failed;
static void *big;
static void *raws[20];
static int n_raws;

static void *t_malloc(void *c, size_t n)
{
    (void)c;
    void *p = below.malloc(below.ctx, n);
    if (notes == cap) {
        size_t more = cap ? cap * 2 : 64;
        uintptr_t *t = pm_raw_realloc(table, more * sizeof *t);
        if (t == NULL) {
            grow_failed++;
            return p;
        }
        table = t;
        cap = more;
    }
    table[notes++] = (uintptr_t)p;
    if (big == NULL)
        big = pm_raw_malloc((size_t)300 << 10);
    return p;
}
static void *t_calloc(void *c, size_t k, size_t n) { (void)c; return below.calloc(below.ctx, k, n); }
static void *t_realloc(void *c, void *p, size_t n) { (void)c; return below.realloc(below.ctx, p, n); }
static void t_free(void *c, void *p)
{
    (void)c;
    below.free(below.ctx, p);
    raws[n_raws++] = pm_raw_malloc(40);
    if (n_raws == 20) {
        for (int i = 0; i < 20; i++)
            pm_raw_free(raws[i]);
        /* Freed, each of them: a check of one now is a report. */
        int live = 0;
        for (int i = 0; i < 20; i++) {
            int before = n_seen;
            live += pm_check_block(raws[i]) == 0 && n_seen == before;
        }
        PM_CHECK(live == 0);
        n_seen = 0;
        n_raws = 0;
    }
}

static void child_tracing(void *arg)
{
    (void)arg;
    PM_CHECK(pm_set_mode(base_mode()) == 0);
    PM_CHECK(pm_get_allocator(PM_DOMAIN_MEM, &below) == 0);
    pm_allocator hook = {NULL, t_malloc, t_calloc, t_realloc, t_free};
    set_up(&hook);
    enum { M = 20000 };
    int failed = 0;
    for (int i = 0; i < M; i++) {
        void *p = pm_mem_malloc(32);
        failed += p == NULL;
        pm_mem_free(p);
    }
    PM_CHECK(failed == 0);
    PM_CHECK(notes == M && grow_failed == 0);
    PM_CHECK(big != NULL);
    PM_CHECK(n_seen == 0);
    /* The table is a checked raw block: one byte past it is found. */
    ((volatile unsigned char *)table)[cap * sizeof *table] = 'x';
    PM_CHECK(pm_check_block(table) == -1);
    PM_CHECK(n_seen == 1 && seen[0].error == PM_ERR_BUFFER_OVERFLOW &&
             seen[0].size == cap * sizeof *table);
    pm_raw_free(big);
}

static void test_tracing_hook(void)
{
    pm_death_result r;
    pm_death(child_tracing, NULL, &r);
    PM_CHECK(r.exited && r.exit_status == 0);
}

/* A signal handler that interrupts the hook (raised from inside it, once)
 * and allocates through the mem domain: served through the hooks and the
 * hook again, no hang, no report. */
static volatile sig_atomic_t raised, handler_ok;
static void on_usr1(int sig)
{
    (void)sig;
    unsigned char *p = pm_mem_malloc(50);
    if (p != NULL) {
        memset(p, 1, 50);
        handler_ok = pm_check_block(p) == 0;
        pm_mem_free(p);
    }
}

static void *s_malloc(void *c, size_t n)
{
    (void)c;
    if (!raised) {
        raised = 1;
        raise(SIGUSR1);
    }
    return pm_obj_malloc(n);
}

static void child_signal(void *arg)
{
    (void)arg;
    pm_allocator hook = {NULL, s_malloc, f_calloc, f_realloc, f_free};
    set_up(&hook);
    signal(SIGUSR1, on_usr1);
    void *p = pm_mem_malloc(10);
    PM_CHECK(p != NULL && raised && handler_ok);
    pm_mem_free(p);
    PM_CHECK(n_seen == 0);
}

static void test_signal_in_hook(void)
{
    /* (The handler's block comes from the C library in malloc mode: TSan
     * reports any malloc in a handler.) */
    if (PM_T_TSAN && strcmp(base_mode(), "malloc") == 0)
        PM_SKIP("TSan reports the handler's malloc of the C library");
    PM_CHECK(pm_t_child_within(child_signal, NULL, 20));
}

/* A realloc whose allocator below moves the block while another thread,
 * memory exhausted, fills the debug hooks' registry: the realloc reserved
 * a record for the new address before the move, so it finds one (before
 * 2026-12-07 the filler's blocks took every slot, and the realloc, its old
 * block gone, aborted: "out of memory for the block registry"). The
 * allocator below hands out its blocks from a static arena, so that only
 * the registry needs new memory; its realloc always moves, and lets the
 * filler run meanwhile. */
enum { ARENA = 16 << 20, FILL_TRIES = 100000 };
static unsigned char arena[ARENA] __attribute__((aligned(16)));
static _Atomic size_t arena_top;
static void *bump(size_t n)
{
    size_t sz = (n + 15) & ~(size_t)15, at = atomic_fetch_add(&arena_top, sz);
    if (n > ARENA || at + sz > ARENA) {
        errno = ENOMEM;
        return NULL;
    }
    return arena + at;
}
static void *b_malloc(void *c, size_t n) { (void)c; return bump(n); }
static void *b_calloc(void *c, size_t k, size_t n)
{
    (void)c;
    return k != 0 && n > SIZE_MAX / k ? NULL : bump(k * n); /* never used before: zero */
}
static void b_free(void *c, void *p) { (void)c; (void)p; }
static _Atomic int fill_go, fill_done, fill_refused;
static void *b_realloc(void *c, void *p, size_t n)
{
    (void)c;
    unsigned char *q = bump(n);
    if (q == NULL)
        return NULL;
    size_t left = (size_t)(arena + ARENA - (unsigned char *)p);
    memcpy(q, p, n < left ? n : left); /* (past the old block: the arena's bytes) */
    atomic_store(&fill_go, 1);
    while (!atomic_load(&fill_done))
        sched_yield();
    return q;
}

static void *filler(void *arg)
{
    (void)arg;
    while (!atomic_load(&fill_go))
        sched_yield();
    int refused = 0;
    for (int i = 0; i < FILL_TRIES; i++)
        refused += pm_mem_malloc(16) == NULL; /* kept: the registry fills */
    atomic_store(&fill_refused, refused);
    atomic_store(&fill_done, 1);
    return NULL;
}

/* RLIMIT_AS's soft limit at what is mapped now (on), or back (off). */
static void no_new_mappings(int on)
{
    static struct rlimit old;
    if (on) {
        PM_CHECK_EQ(getrlimit(RLIMIT_AS, &old), 0);
        struct rlimit rl = old;
        rl.rlim_cur = pm_t_mapped_bytes();
        PM_CHECK(rl.rlim_cur > 0);
        PM_CHECK_EQ(setrlimit(RLIMIT_AS, &rl), 0);
    } else {
        PM_CHECK_EQ(setrlimit(RLIMIT_AS, &old), 0);
    }
}

static void child_realloc_while_registry_fills(void *arg)
{
    (void)arg;
    pm_allocator bumper = {NULL, b_malloc, b_calloc, b_realloc, b_free};
    set_up(&bumper);
    unsigned char *p = pm_mem_malloc(50);
    PM_CHECK(p != NULL);
    memset(p, 'r', 50);
    pthread_t t;
    PM_CHECK_EQ(pthread_create(&t, NULL, filler, NULL), 0);
    no_new_mappings(1); /* the registry cannot grow */
    unsigned char *q = pm_mem_realloc(p, 100);
    PM_CHECK_EQ(pthread_join(t, NULL), 0);
    no_new_mappings(0);
    PM_CHECK(atomic_load(&fill_refused) > 0); /* the registry did fill */
    PM_CHECK(q != NULL && q != p);
    if (q == NULL)
        return;
    int kept = 1;
    for (int i = 0; i < 50; i++)
        kept &= q[i] == 'r';
    PM_CHECK(kept);
    PM_CHECK_EQ(pm_check_block(q), 0);
    pm_mem_free(q);
    PM_CHECK_EQ(n_seen, 0);
}

static void test_realloc_while_registry_fills(void)
{
    if (PM_T_ASAN || PM_T_TSAN)
        PM_SKIP("the sanitizers' allocators map their own memory");
    if (pm_t_under_valgrind())
        PM_SKIP("valgrind's address space is its own");
    PM_CHECK(pm_t_child_within(child_realloc_while_registry_fills, NULL, 60));
}

/* The registry's stripes, chosen: a hook that hands out 64-byte blocks on
 * pages of a static arena whose stripe is the one asked for (the top 6 bits
 * of the page's multiplicative hash, as modes/debug_registry.h's
 * pm_i_reg_hash; each test checks that the stripe it filled is full, so a
 * change of the hash is seen). Its realloc moves into stripe `into`, and,
 * in the thread marked `pausing`, waits there for `go`. */
enum { SARENA = 32 << 20, SPAGE = 4096, SSLOT = 64 };
static unsigned char sarena[SARENA] __attribute__((aligned(4096)));
static int stripe_of(const void *a)
{
    return (int)((((uint64_t)(uintptr_t)a >> 12) * UINT64_C(0x9E3779B97F4A7C15)) >> 58);
}
static size_t st_cursor[64], st_page[64], st_used[64];
static pthread_mutex_t st_mu = PTHREAD_MUTEX_INITIALIZER;
static _Atomic int st_target, st_into, st_paused, st_go;
static __thread int st_pausing;
static void *st_take(int st, size_t n)
{
    void *p = NULL;
    pthread_mutex_lock(&st_mu);
    if (n <= SSLOT && (st_page[st] == 0 || st_used[st] + SSLOT > SPAGE)) {
        size_t off = st_cursor[st];
        while (off < SARENA && stripe_of(sarena + off) != st)
            off += SPAGE;
        st_cursor[st] = off + SPAGE;
        st_page[st] = off < SARENA ? off + 1 : 0;
        st_used[st] = 0;
    }
    if (n <= SSLOT && st_page[st] != 0) {
        p = sarena + st_page[st] - 1 + st_used[st];
        st_used[st] += SSLOT;
    }
    pthread_mutex_unlock(&st_mu);
    if (p == NULL)
        errno = ENOMEM;
    return p;
}
static void *st_malloc(void *c, size_t n) { (void)c; return st_take(atomic_load(&st_target), n); }
static void *st_calloc(void *c, size_t k, size_t n)
{
    (void)c;
    return k != 0 && n > SSLOT / k ? NULL : st_take(atomic_load(&st_target), k * n);
}
static void st_free(void *c, void *p) { (void)c; (void)p; }
static void *st_realloc(void *c, void *p, size_t n)
{
    (void)c;
    unsigned char *q = st_take(atomic_load(&st_into), n);
    if (q == NULL)
        return NULL;
    memcpy(q, p, n < SSLOT ? n : SSLOT);
    if (st_pausing) {
        atomic_store(&st_paused, 1);
        while (!atomic_load(&st_go))
            sched_yield();
    }
    return q;
}
static const pm_allocator st_hook = {NULL, st_malloc, st_calloc, st_realloc, st_free};

/* Two reallocs under way whose new blocks fall in one stripe S, memory
 * exhausted: the first is paused in the hook while S fills (a freed
 * record forgotten on the way, which makes a hole), then the second
 * starts. It must see S short and fail cleanly, leaving the first the
 * slot S kept for it. Before 2026-12-07 the hole cleared S's short bit,
 * the second realloc counted on the one slot too, and the process aborted
 * ("out of memory for the block registry", found by a review). */
static unsigned char *r1_old, *r1_new;
static void *r1_thread(void *arg)
{
    (void)arg;
    st_pausing = 1;
    r1_new = pm_mem_realloc(r1_old, 20);
    return NULL;
}

static void child_two_reallocs_one_stripe(void *arg)
{
    (void)arg;
    int S = stripe_of(sarena), T = (S + 1) % 64;
    atomic_store(&st_target, T);
    atomic_store(&st_into, S);
    set_up(&st_hook);
    r1_old = pm_mem_malloc(16);
    unsigned char *p2 = pm_mem_malloc(16);
    PM_CHECK(r1_old != NULL && p2 != NULL);
    memset(r1_old, '1', 16);
    memset(p2, '2', 16);
    pthread_t t;
    PM_CHECK_EQ(pthread_create(&t, NULL, r1_thread, NULL), 0);
    while (!atomic_load(&st_paused))
        sched_yield();
    no_new_mappings(1);
    atomic_store(&st_target, S);
    pm_mem_free(pm_mem_malloc(16)); /* a freed record in S */
    int live = 0;
    for (int i = 0; i < 255; i++)
        live += pm_mem_malloc(16) != NULL;
    errno = 0;
    unsigned char *q2 = pm_mem_realloc(p2, 20);
    int e2 = errno;
    atomic_store(&st_go, 1);
    PM_CHECK_EQ(pthread_join(t, NULL), 0);
    PM_CHECK_EQ(live, 255);
    PM_CHECK(q2 == NULL && e2 == ENOMEM); /* S short: a clean failure */
    PM_CHECK(r1_new != NULL);
    PM_CHECK(pm_mem_malloc(16) == NULL); /* S is full: the stripes are as chosen */
    no_new_mappings(0);
    PM_CHECK_EQ(pm_check_block(p2), 0);
    PM_CHECK(p2[0] == '2' && p2[15] == '2');
    if (r1_new != NULL) {
        PM_CHECK_EQ(pm_check_block(r1_new), 0);
        PM_CHECK(r1_new[0] == '1' && r1_new[15] == '1');
    }
    PM_CHECK_EQ(n_seen, 0);
}

/* The debug hooks installed with memory exhausted: the registry's stripes
 * have no table. A realloc whose block the hook would move into one moves
 * by the hooks' malloc, copy and free instead (into a stripe that has a
 * table); before 2026-12-07 such a stripe was never marked short, the
 * hook's realloc moved the block there, and the realloc, its old block
 * gone, aborted (found by a review). */
static void child_realloc_into_stripe_without_table(void *arg)
{
    (void)arg;
    int S = stripe_of(sarena), T = (S + 1) % 64;
    atomic_store(&st_target, T);
    atomic_store(&st_into, S);
    PM_CHECK(pm_set_mode(base_mode()) == 0);
    PM_CHECK(pm_set_allocator(PM_DOMAIN_MEM, &st_hook) == 0);
    no_new_mappings(1);
    PM_CHECK(pm_setup_debug_hooks() == 0);
    no_new_mappings(0);
    pm_set_error_handler(keep_report, NULL);
    unsigned char *p = pm_mem_malloc(16); /* T's table, made now */
    PM_CHECK(p != NULL);
    memset(p, 'p', 16);
    no_new_mappings(1);
    unsigned char *q = pm_mem_realloc(p, 20); /* by malloc, copy, free: into T */
    atomic_store(&st_target, S);
    void *x = pm_mem_malloc(16);
    /* S has no table, as chosen, unless the stripes had theirs before the
     * fork: in the debug modes, the test's own first call installed the
     * mode's hooks, with memory to spare */
    if (strstr(pm_t_env_mode(), "debug") == NULL)
        PM_CHECK(x == NULL);
    no_new_mappings(0);
    PM_CHECK(q != NULL);
    if (q != NULL) {
        PM_CHECK_EQ(pm_check_block(q), 0);
        PM_CHECK(q[0] == 'p' && q[15] == 'p');
    }
    PM_CHECK_EQ(n_seen, 0);
}

/* Reallocs one after another, each moving a block into stripe S, which
 * cannot grow, then two at once: S is short from the first that could not
 * grow it, so the two find room or fail cleanly. Before 2026-12-07 (e21be51
 * of that day) a realloc's own record left the bit clear, the sequence
 * drained S to its last slot, and the two both counted on it: abort
 * (found by a review). */
static _Atomic int ra_start;
static unsigned char *ra_old, *ra_new;
static void *ra_thread(void *arg)
{
    (void)arg;
    while (!atomic_load(&ra_start))
        sched_yield();
    st_pausing = 1;
    ra_new = pm_mem_realloc(ra_old, 20);
    atomic_store(&st_paused, 1); /* (also when it moved by copy, not pausing) */
    return NULL;
}

static void child_sequential_reallocs_then_two(void *arg)
{
    (void)arg;
    int S = stripe_of(sarena), T = (S + 1) % 64;
    atomic_store(&st_target, T);
    atomic_store(&st_into, S);
    set_up(&st_hook);
    static unsigned char *p[100];
    for (int i = 0; i < 100; i++) {
        p[i] = pm_mem_malloc(16);
        PM_CHECK(p[i] != NULL);
        memset(p[i], 'a' + i % 26, 16);
    }
    atomic_store(&st_target, S);
    for (int i = 0; i < 191; i++) /* S to three quarters of its first table */
        PM_CHECK(pm_mem_malloc(16) != NULL);
    ra_old = p[98];
    pthread_t t; /* (its stack mapped before the limit) */
    PM_CHECK_EQ(pthread_create(&t, NULL, ra_thread, NULL), 0);
    no_new_mappings(1);
    for (int i = 0; i < 64; i++) { /* one at a time, each into S */
        unsigned char *q = pm_mem_realloc(p[i], 20);
        if (q != NULL)
            p[i] = q;
    }
    atomic_store(&ra_start, 1);
    while (!atomic_load(&st_paused))
        sched_yield();
    unsigned char *qb = pm_mem_realloc(p[99], 20);
    atomic_store(&st_go, 1);
    PM_CHECK_EQ(pthread_join(t, NULL), 0);
    no_new_mappings(0);
    if (ra_new != NULL)
        p[98] = ra_new;
    if (qb != NULL)
        p[99] = qb;
    int whole = 0;
    for (int i = 0; i < 100; i++)
        whole += pm_check_block(p[i]) == 0 && p[i][0] == 'a' + i % 26 && p[i][15] == 'a' + i % 26;
    PM_CHECK_EQ(whole, 100);
    PM_CHECK_EQ(n_seen, 0);
}

static void test_reallocs_into_short_stripes(void)
{
    if (PM_T_ASAN || PM_T_TSAN)
        PM_SKIP("the sanitizers' allocators map their own memory");
    if (pm_t_under_valgrind())
        PM_SKIP("valgrind's address space is its own");
    PM_CHECK(pm_t_child_within(child_two_reallocs_one_stripe, NULL, 60));
    PM_CHECK(pm_t_child_within(child_realloc_into_stripe_without_table, NULL, 60));
    PM_CHECK(pm_t_child_within(child_sequential_reallocs_then_two, NULL, 60));
}

int main(void)
{
    pm_t_pin_env(NULL);
    PM_RUN(test_mem_sent_to_obj);
    PM_RUN(test_tracing_hook);
    PM_RUN(test_signal_in_hook);
    PM_RUN(test_realloc_while_registry_fills);
    PM_RUN(test_reallocs_into_short_stripes);
    return pm_test_done();
}
