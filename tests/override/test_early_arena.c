/*
 * tests/override/test_early_arena.c - the early arena (src/early.c) as an
 * allocator: space comes back whatever the order of frees, blocks never
 * overlap, bad frees are ignored, threads and fork are safe.
 *
 * The debug modes serve a signal handler's allocations from this arena. It
 * used to reclaim only the last block handed out, so a handler that kept
 * blocks across signals, or freed them first-allocated first, used it up
 * in a few thousand signals, and then every allocation of every handler
 * failed (preload_prog_signal_queue shows it from the outside).
 */
#include "../harness.h"
#include "pm_override.h"

#include <malloc.h>
#include <pthread.h>
#include <stdint.h>

static int aligned(const void *p, size_t a) { return ((uintptr_t)p & (a - 1)) == 0; }

typedef struct {
    unsigned char *p;
    size_t n;
    unsigned char fill;
} blk;

static uint64_t next_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static int intact(const blk *b)
{
    for (size_t i = 0; i < b->n; i++)
        if (b->p[i] != b->fill)
            return 0;
    return 1;
}

/* `ops` random allocations and frees (frees in random order, sizes up to
 * 3000, sometimes aligned to 64 or 4096), at most `live` blocks at once,
 * each filled and checked before it is freed. The count of failures. */
static int churn(uint64_t seed, long ops, int live)
{
    blk b[64] = {{0}};
    int failures = 0;
    uint64_t s = seed;
    if (live > 64)
        live = 64;
    for (long i = 0; i < ops; i++) {
        int k = (int)(next_rand(&s) % (uint64_t)live);
        if (b[k].p != NULL) {
            if (!intact(&b[k]))
                failures++;
            pm_i_early_free(b[k].p);
            b[k].p = NULL;
        }
        uint64_t r = next_rand(&s);
        size_t n = (size_t)(r % 3000);
        size_t a = (r >> 20) % 16 == 0 ? 4096 : (r >> 20) % 4 == 0 ? 64 : 16;
        unsigned char *p = pm_i_early_alloc(n, a);
        if (p == NULL || !pm_i_early_owns(p) || !aligned(p, a) || pm_i_early_size(p) != n) {
            failures++;
            continue;
        }
        for (size_t j = 0; j < n; j++)
            if (p[j] != 0)
                return failures + 1; /* handed out dirty */
        b[k] = (blk){p, n, (unsigned char)(r >> 40)};
        memset(p, b[k].fill, n);
    }
    for (int k = 0; k < live; k++)
        if (b[k].p != NULL) {
            if (!intact(&b[k]))
                failures++;
            pm_i_early_free(b[k].p);
        }
    return failures;
}

/* Blocks kept and freed in any order: all the space comes back. */
static void test_space_comes_back(void)
{
    size_t used0 = pm_i_early_used();
    PM_CHECK_EQ(churn(1, 40000, 40), 0);
    PM_CHECK_EQ(pm_i_early_used(), used0);
    /* a queue: first allocated, first freed (what ran out before) */
    void *q[8] = {0};
    for (int i = 0; i < 20000; i++) {
        pm_i_early_free(q[i % 8]);
        q[i % 8] = pm_i_early_alloc(700 + (size_t)(i % 5) * 100, 16);
        PM_CHECK(q[i % 8] != NULL);
        if (q[i % 8] == NULL)
            return;
    }
    for (int i = 0; i < 8; i++)
        pm_i_early_free(q[i]);
    PM_CHECK_EQ(pm_i_early_used(), used0);
    /* the whole arena is usable again: one block of most of it */
    void *big = pm_i_early_alloc(PM_I_EARLY_SIZE - 64 * 1024, 16);
    PM_CHECK(big != NULL);
    pm_i_early_free(big);
    PM_CHECK_EQ(pm_i_early_used(), used0);
}

/* A double free, an interior pointer, a pointer into free space: ignored,
 * and the arena goes on working (nothing merged twice, no list broken). */
static void test_bad_frees_are_ignored(void)
{
    size_t used0 = pm_i_early_used();
    unsigned char *a = pm_i_early_alloc(100, 16);
    unsigned char *b = pm_i_early_alloc(200, 16);
    unsigned char *c = pm_i_early_alloc(300, 16);
    PM_CHECK(a != NULL && b != NULL && c != NULL);
    size_t used = pm_i_early_used();
    pm_i_early_free(b + 16); /* interior */
    pm_i_early_free(b + 1);
    PM_CHECK_EQ(pm_i_early_used(), used);
    PM_CHECK_EQ(pm_i_early_size(b + 16), 0);
    pm_i_early_free(b);
    size_t after_b = pm_i_early_used();
    PM_CHECK(after_b < used);
    pm_i_early_free(b); /* double free */
    PM_CHECK_EQ(pm_i_early_used(), after_b);
    PM_CHECK_EQ(pm_i_early_size(b), 0);
    memset(a, 0xaa, 100);
    memset(c, 0xcc, 300);
    unsigned char *d = pm_i_early_alloc(150, 16); /* fits where b was */
    PM_CHECK(d != NULL && d > a && d < c);
    pm_i_early_free(b); /* b's old address: not a block (d's starts elsewhere or is d) */
    PM_CHECK(d == b || pm_i_early_used() > after_b);
    if (d != b) {
        memset(d, 0xdd, 150);
        pm_i_early_free(d);
    }
    pm_i_early_free(pm_i_early_arena + PM_I_EARLY_SIZE - 16); /* above top */
    for (int i = 0; i < 100; i++)
        PM_CHECK(a[i] == 0xaa);
    for (int i = 0; i < 300; i++)
        PM_CHECK(c[i] == 0xcc);
    pm_i_early_free(c);
    pm_i_early_free(a);
    PM_CHECK_EQ(pm_i_early_used(), used0);
    PM_CHECK_EQ(churn(2, 20000, 16), 0); /* still sound */
    PM_CHECK_EQ(pm_i_early_used(), used0);
}

/* A block of 0 bytes (malloc(0) in the set-up or, in the debug modes, in
 * a signal handler) when the arena's top sits 32 bytes (a tag and a
 * header) under its end: its address was the arena's end, which the arena
 * did not own, so free() passed it on to the mode, and on to libc in the
 * modes without debug hooks, which was handed a pointer into the library's
 * static data (pymalloc mode: glibc's "free(): invalid pointer", an abort).
 * Each block handed out lies inside the arena, every free gives it back. */
static void test_zero_byte_block_at_the_end(void)
{
    size_t used0 = pm_i_early_used();
    int exact = 0;
    for (size_t big = PM_I_EARLY_SIZE - 32; big >= PM_I_EARLY_SIZE - 32 - 4096; big -= 16) {
        unsigned char *a = pm_i_early_alloc(big, 16);
        if (a == NULL)
            continue;
        exact += a + big == pm_i_early_arena + PM_I_EARLY_SIZE - 32;
        for (size_t align = 16; align <= 4096; align *= 16) {
            unsigned char *z = pm_i_early_alloc(0, align);
            PM_CHECK(z == NULL || pm_i_early_owns(z));
            if (z != NULL && pm_i_early_owns(z)) {
                PM_CHECK_EQ(malloc_usable_size(z), 0);
                free(z); /* the override's: the arena's block */
            }
        }
        pm_i_early_free(a);
    }
    PM_CHECK(used0 != 0 || exact > 0); /* (an empty arena: the exact fit was tried) */
    PM_CHECK_EQ(pm_i_early_used(), used0);
}

static void *thread_churn(void *arg) { return (void *)(intptr_t)churn((uint64_t)(uintptr_t)arg, 10000, 8); }

/* Four threads at once: no block handed out twice, no space lost. */
static void test_threads(void)
{
    size_t used0 = pm_i_early_used();
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        PM_CHECK_EQ(pthread_create(&t[i], NULL, thread_churn, (void *)(uintptr_t)(i + 11)), 0);
    for (int i = 0; i < 4; i++) {
        void *r = NULL;
        pthread_join(t[i], &r);
        PM_CHECK_EQ((intptr_t)r, 0);
    }
    PM_CHECK_EQ(pm_i_early_used(), used0);
}

static atomic_int stop;
static void *hammer(void *arg)
{
    (void)arg;
    uint64_t s = 5;
    while (!atomic_load(&stop))
        if (churn(next_rand(&s), 200, 8) != 0)
            return (void *)1;
    return NULL;
}

/* fork while another thread allocates in the arena: the child's arena is
 * whole and unlocked (the prepare handler holds its lock over the fork). */
static void test_fork_while_in_use(void)
{
    pthread_t t;
    PM_CHECK_EQ(pthread_create(&t, NULL, hammer, NULL), 0);
    for (int i = 0; i < 40; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            alarm(20); /* a lock held for ever: killed, not hung */
            _exit(churn(3, 2000, 8) == 0 ? 0 : 1);
        }
        int st = 0;
        waitpid(pid, &st, 0);
        PM_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    atomic_store(&stop, 1);
    void *r = NULL;
    pthread_join(t, &r);
    PM_CHECK(r == NULL);
}

int main(void)
{
    PM_RUN(test_space_comes_back);
    PM_RUN(test_bad_frees_are_ignored);
    PM_RUN(test_zero_byte_block_at_the_end);
    PM_RUN(test_threads);
    PM_RUN(test_fork_while_in_use);
    return pm_test_done();
}
