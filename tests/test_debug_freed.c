/*
 * tests/test_debug_freed.c - a write into a freed pool block of the debug
 * hooks (pymalloc_debug, and debug's mem and obj domains: blocks up to 512
 * bytes), found when a malloc or calloc takes the block again:
 *  - its first bytes (of its data, then the 16 bytes after it: 16 for
 *    blocks of up to 16 bytes, 32 up to 48, 64 above) are checked
 *    against the 0xDD its free wrote: a change is a use after free of that
 *    block ("was written after its free"), with its size, serial and the
 *    offset; the block is leaked (the malloc returns another one), and
 *    stays freed (a free of it is a double free);
 *  - a change further on is not checked; bytes rewritten with 0xDD leave
 *    no trace;
 *  - a realloc that moves a block to another class takes the new one as a
 *    malloc does (checked, reported by the realloc) and frees the old one
 *    as a free does (a write through the old pointer is found);
 *  - no false report: blocks reallocated, and reused through every path,
 *    report nothing;
 *  - a hook set over the hooks keeps the check; the pool allocator itself,
 *    read before the hooks wrapped it, turns it off (its caller may reuse
 *    their freed blocks without them);
 *  - PYMALLOC_CHECK_FREED=all checks every byte the free filled, =first
 *    the first ones (the default), =off none (run by the test itself in
 *    pymalloc_debug);
 *  - without a handler the report aborts (death test);
 *  - a freed block no malloc took again is checked whole at exit and at
 *    abort (death tests, in each pool domain), while other threads take
 *    and free blocks too, with no false report; a write past the end of
 *    the block below it that ran on into it is that block's overflow,
 *    reported once.
 * Blocks of the C library (malloc_debug, the raw domain, bigger blocks) are
 * not written: their freed memory is glibc's (or a sanitizer's). Skipped
 * (77) without debug hooks, and under valgrind (whose memcheck reports the
 * write itself).
 */
#include "debug_layout.h"
#include "domains.h"
#include "harness.h"
#include "recorder.h"
#include "pm_internal.h"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/wait.h>

#define NEED()                                                                      \
    do {                                                                            \
        if (!pm_debug_enabled())                                                    \
            PM_SKIP("no debug hooks in this mode");                                 \
        if (pm_t_under_valgrind())                                                  \
            PM_SKIP("memcheck reports a write into a freed block itself");          \
    } while (0)

/* NEED(), and domain D's blocks of n bytes come from the pools. */
#define NEED_POOLED(D, n)                                                           \
    do {                                                                            \
        NEED();                                                                     \
        if (!pooled((D), (n)))                                                      \
            PM_SKIP("no pool blocks under the debug hooks in this mode");           \
    } while (0)

/* How many of a freed n-byte block's bytes (from p) a malloc checks: the
 * first 64, or fewer for the smaller classes (16 up to 16 bytes, 32 up
 * to 48). */
static size_t checked(size_t n) { return n <= 16 ? 16 : n <= 48 ? 32 : 64; }

static int pool_block(const unsigned char *p) { return pm_i_pool_owns(p - 16); }

/* Whether the domain's blocks of n bytes come from the pools: allocate
 * one and look. */
static int pooled(const pm_t_domain *D, size_t n)
{
    unsigned char *p = D->malloc(n);
    PM_CHECK(p != NULL);
    int in = p != NULL && pool_block(p);
    D->free(p);
    return in;
}

static const size_t sizes[] = {0, 1, 15, 16, 24, 47, 48, 49, 100, 300, 480};

/* Free an n-byte block of D, write `val` at p+at, then take blocks of n
 * bytes until one is the block or a report comes (LIFO: the first). */
static void write_after_free(const pm_t_domain *D, size_t n, size_t at, unsigned char val,
                             int use_calloc, int expect)
{
    unsigned char *p = D->malloc(n);
    PM_CHECK(p != NULL);
    memset(p, 'a', n);
    uint64_t serial = trailer_serial(p, n);
    D->free(p);
    p[at] = val;
    watch();
    unsigned char *q = use_calloc ? D->calloc(1, n) : D->malloc(n);
    PM_CHECK(q != NULL);
    if (expect) {
        PM_CHECK_EQ(S.calls, 1);
        PM_CHECK_EQ(S.r.error, PM_ERR_USE_AFTER_FREE);
        PM_CHECK(S.r.address == p);
        PM_CHECK_EQ(S.r.size, n);
        PM_CHECK_EQ(S.r.serial, serial);
        PM_CHECK_EQ(S.r.offset, (ptrdiff_t)at);
        PM_CHECK_EQ(S.r.api_found, D->name[0] == 'm' ? 'm' : 'o');
        char want[160];
        snprintf(want, sizeof want, "was written after its free (the 0xDD its free wrote at p+%zu was overwritten)", at);
        PM_CHECK_STR(S.message, want);
        PM_CHECK_STR(S.message, use_calloc ? "_calloc: use after free: the freed"
                                           : "_malloc: use after free: the freed");
        PM_CHECK(q != p); /* leaked, not handed out */
        /* It stays freed: a free of it is named a double free. */
        D->free(p);
        PM_CHECK_EQ(S.calls, 2);
        PM_CHECK_EQ(S.r.error, PM_ERR_DOUBLE_FREE);
        PM_CHECK_EQ(S.r.serial, serial);
    } else {
        PM_CHECK_EQ(S.calls, 0);
        PM_CHECK(q == p); /* the block itself, LIFO */
    }
    /* The new block is whole and filled as usual. */
    for (size_t i = 0; i < n; i++)
        PM_CHECK_EQ(q[i], use_calloc ? 0 : 0xCD);
    D->free(q);
    PM_CHECK_EQ(S.calls, expect ? 2 : 0);
    pm_set_error_handler(NULL, NULL);
}

static void test_written_after_free(void)
{
    NEED();
    int tested = 0;
    for (int d = PM_DOMAIN_MEM; d < PM_DOMAIN_COUNT; d++) {
        const pm_t_domain *D = &pm_t_domains[d];
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            size_t n = sizes[i], len = n + 16;
            if (!pooled(D, n))
                continue;
            tested++;
            size_t c_n = checked(n), last = (len < c_n ? len : c_n) - 1;
            for (int c = 0; c < 2; c++) {
                write_after_free(D, n, 0, 0x00, c, 1);
                write_after_free(D, n, last, 'x', c, 1);
                write_after_free(D, n, last / 2, 0xDC, c, 1);
                /* Rewritten with its own value: no trace. */
                write_after_free(D, n, last / 2, 0xDD, c, 0);
                if (len > c_n) { /* past the bytes checked */
                    write_after_free(D, n, c_n, 'x', c, 0);
                    write_after_free(D, n, len - 1, 'x', c, 0);
                }
            }
        }
    }
    if (tested == 0)
        PM_SKIP("no pool blocks under the debug hooks in this mode");
}

/* Several bytes: the report's offset is the first, the line names the
 * range, the dump shows the bytes. */
static void test_range_and_dump(void)
{
    NEED();
    const pm_t_domain *D = &pm_t_domains[PM_DOMAIN_OBJ];
    if (!pooled(D, 40))
        PM_SKIP("no pool blocks under the debug hooks in this mode");
    unsigned char *p = D->malloc(40);
    uint64_t serial = trailer_serial(p, 40);
    D->free(p);
    p[5] = 1;
    p[9] = 2;
    watch();
    int saved = quiet_begin();
    unsigned char *q = D->malloc(40);
    quiet_end(saved);
    PM_CHECK_EQ(S.calls, 1);
    PM_CHECK_EQ(S.r.offset, 5);
    char want[200];
    snprintf(want, sizeof want,
             "pm_obj_malloc: use after free: the freed 40-byte block (serial %llu) at %p was "
             "written after its free (the 0xDD its free wrote at p+5 .. p+9 was overwritten)",
             (unsigned long long)serial, (void *)p);
    PM_CHECK_STR(S.message, want);
    D->free(q);
    pm_set_error_handler(NULL, NULL);
}

/* A realloc that moves a pool block to another class frees the old one as
 * a free does (filled whole): a write through the old pointer is found
 * when a malloc takes it again. The new block is taken as a malloc takes
 * one (checked). */
static void test_realloc_moves_like_free(void)
{
    NEED();
    for (int d = PM_DOMAIN_MEM; d < PM_DOMAIN_COUNT; d++) {
        const pm_t_domain *D = &pm_t_domains[d];
        if (!pooled(D, 24))
            continue;
        /* The new block: a freed 200-byte block, written. */
        unsigned char *x = D->malloc(200);
        uint64_t xs = trailer_serial(x, 200);
        D->free(x);
        x[7] = 'w';
        unsigned char *p = D->malloc(24);
        memset(p, 'a', 24);
        uint64_t serial = trailer_serial(p, 24);
        watch();
        int saved = quiet_begin();
        unsigned char *q = D->realloc(p, 200);
        PM_CHECK(q != NULL && q != p && q != x);
        PM_CHECK_EQ(S.calls, 1); /* x, by the realloc's malloc */
        PM_CHECK_STR(S.message, "_realloc: use after free: the freed 200-byte block");
        PM_CHECK(S.r.address == x);
        PM_CHECK_EQ(S.r.serial, xs);
        PM_CHECK_EQ(S.r.offset, 7);
        for (int i = 0; i < 24; i++)
            PM_CHECK_EQ(q[i], 'a');
        PM_CHECK_EQ(q[24], 0xCD);
        /* The old block, written through the old pointer. */
        p[20] = 'z';
        unsigned char *r = D->malloc(24);
        quiet_end(saved);
        PM_CHECK_EQ(S.calls, 2);
        PM_CHECK(S.r.address == p);
        PM_CHECK_EQ(S.r.size, 24);
        PM_CHECK_EQ(S.r.serial, serial);
        PM_CHECK_EQ(S.r.offset, 20);
        PM_CHECK(r != p);
        D->free(r);
        D->free(q);
        pm_set_error_handler(NULL, NULL);
    }
}

/* A realloc within a class keeps the block, also in the 48-byte class,
 * where the pool's own realloc would move a block of 1..4 bytes (CPython's
 * rule: 4 * (n + 32) <= 3 * 48) into another block of the same class: it
 * took that block from the pool unchecked (a write into it after its free
 * was lost) and gave the old one back to the pool half filled, its side
 * word not marked filled (a write through the old pointer was never found,
 * by a malloc or at exit, and the quarantine of pool blocks never held it).
 * Before 2026-12-03 realloc(16 bytes, 2) returned another address. */
static void test_realloc_within_class_stays(void)
{
    NEED();
    int tested = 0;
    for (int d = PM_DOMAIN_MEM; d < PM_DOMAIN_COUNT; d++) {
        const pm_t_domain *D = &pm_t_domains[d];
        if (!pooled(D, 16))
            continue;
        tested++;
        watch();
        for (size_t from = 1; from <= 16; from++) {
            for (size_t to = 1; to <= 16; to++) {
                unsigned char *p = D->malloc(from);
                memset(p, 'a', from);
                unsigned char *q = D->realloc(p, to);
                PM_CHECK(q == p);
                for (size_t i = 0; i < to; i++)
                    PM_CHECK_EQ(q[i], i < from ? 'a' : 0xCD);
                D->free(q);
            }
        }
        PM_CHECK_EQ(S.calls, 0);
        /* A freed block of the class, written after its free: the
         * realloc does not take it (the block stays); the next malloc of
         * its size does, and reports it. */
        unsigned char *a = D->malloc(2);
        uint64_t as = trailer_serial(a, 2);
        unsigned char *b = D->malloc(16);
        memset(b, 'b', 16);
        D->free(a);
        a[1] = 'w';
        int saved = quiet_begin();
        unsigned char *q = D->realloc(b, 2);
        PM_CHECK(q == b);
        PM_CHECK_EQ(S.calls, 0);
        PM_CHECK(q != NULL && q[0] == 'b' && q[1] == 'b');
        unsigned char *r = D->malloc(2);
        quiet_end(saved);
        PM_CHECK_EQ(S.calls, 1);
        PM_CHECK_EQ(S.r.error, PM_ERR_USE_AFTER_FREE);
        PM_CHECK(S.r.address == a);
        PM_CHECK_EQ(S.r.serial, as);
        PM_CHECK_EQ(S.r.offset, 1);
        PM_CHECK(r != a);
        D->free(r);
        D->free(q);
        pm_set_error_handler(NULL, NULL);
    }
    if (tested == 0)
        PM_SKIP("no pool blocks under the debug hooks in this mode");
}

/* A realloc within a class keeps the block; one to another class frees
 * the old one whole: reusing it reports nothing. So do blocks reused after a full thread cache went back to the
 * pools, and after a pool emptied and was formatted again. */
static void test_no_false_reports(void)
{
    NEED();
    watch();
    for (int d = PM_DOMAIN_MEM; d < PM_DOMAIN_COUNT; d++) {
        const pm_t_domain *D = &pm_t_domains[d];
        if (!pooled(D, 300))
            continue;
        for (size_t to = 100; to <= 4000; to *= 2) {
            unsigned char *p = D->malloc(300);
            memset(p, 'a', 300);
            unsigned char *q = D->realloc(p, to);
            PM_CHECK(q != NULL);
            unsigned char *r = D->malloc(300);
            D->free(r);
            D->free(q);
        }
        enum { N = 3000 };
        static unsigned char *v[N];
        for (int round = 0; round < 3; round++) {
            for (int i = 0; i < N; i++) {
                v[i] = D->malloc((size_t)(i % 500));
                memset(v[i], 'b', (size_t)(i % 500));
            }
            for (int i = 0; i < N; i++)
                D->free(v[i]);
            pm_i_pool_flush_thread_cache();
        }
    }
    PM_CHECK_EQ(S.calls, 0);
    pm_set_error_handler(NULL, NULL);
}

/* A hook of the user's set over the hooks (the hooks read with
 * pm_get_allocator, called down to) keeps the check: the blocks still go
 * through the hooks. In a child, so the rest of this process keeps its
 * allocators. */
static pm_allocator below;
static void *hk_malloc(void *ctx, size_t n) { (void)ctx; return below.malloc(below.ctx, n); }
static void *hk_calloc(void *ctx, size_t k, size_t n)
{
    (void)ctx;
    return below.calloc(below.ctx, k, n);
}
static void *hk_realloc(void *ctx, void *p, size_t n)
{
    (void)ctx;
    return below.realloc(below.ctx, p, n);
}
static void hk_free(void *ctx, void *p) { (void)ctx; below.free(below.ctx, p); }

static void over_hooks(void *arg)
{
    (void)arg;
    PM_CHECK_EQ(pm_get_allocator(PM_DOMAIN_MEM, &below), 0);
    pm_allocator hook = {NULL, hk_malloc, hk_calloc, hk_realloc, hk_free};
    PM_CHECK_EQ(pm_set_allocator(PM_DOMAIN_MEM, &hook), 0);
    unsigned char *p = pm_mem_malloc(24);
    pm_mem_free(p);
    p[0] = 'x';
    watch();
    int saved = quiet_begin();
    unsigned char *q = pm_mem_malloc(24);
    quiet_end(saved);
    PM_CHECK_EQ(S.calls, 1);
    PM_CHECK_EQ(S.r.error, PM_ERR_USE_AFTER_FREE);
    PM_CHECK(S.r.address == p);
    PM_CHECK(q != p);
    pm_mem_free(q);
    if (pm_t_failed_checks != 0)
        _exit(1);
}

static void test_hook_over_hooks_keeps_it(void)
{
    NEED_POOLED(&pm_t_domains[PM_DOMAIN_MEM], 24);
    PM_CHECK(pm_t_child_within(over_hooks, NULL, 60));
}

/* Run as `test_debug_freed pool-copy` in pymalloc mode: the pool allocator
 * itself, read before the hooks wrap it, takes a block the hooks freed,
 * writes it all and frees it; the hooks' next malloc takes it again and
 * must not report it (the check is off: the bytes are not their fill).
 * 0, or the number of the step that failed. */
static int pool_copy(void)
{
    pm_allocator pool;
    if (pm_get_allocator(PM_DOMAIN_MEM, &pool) != 0)
        return 10;
    if (pm_setup_debug_hooks() != 0 || !pm_debug_enabled())
        return 11;
    unsigned char *p = pm_mem_malloc(24);
    if (p == NULL || !pool_block(p))
        return 12;
    pm_mem_free(p);
    unsigned char *b = pool.malloc(pool.ctx, 24 + 32); /* the same class, LIFO */
    if (b != p - 16)
        return 13;
    memset(b, 'x', 24 + 32);
    pool.free(pool.ctx, b);
    watch();
    unsigned char *q = pm_mem_malloc(24);
    if (S.calls != 0)
        return 14;
    if (q != p)
        return 15;
    pm_mem_free(q);
    return S.calls == 0 ? 0 : 16;
}

static void test_pool_copy_turns_it_off(void)
{
    NEED();
    pid_t pid = pm_t_fork();
    if (pid == 0) {
        setenv("PYMALLOC_MODE", "pymalloc", 1);
        execl("/proc/self/exe", "test_debug_freed", "pool-copy", (char *)NULL);
        _exit(127);
    }
    int status = pm_t_wait(pid);
    PM_CHECK(WIFEXITED(status));
    PM_CHECK_EQ(WEXITSTATUS(status), 0);
}

/* Run as `test_debug_freed check-freed` in pymalloc_debug mode with
 * PYMALLOC_CHECK_FREED set (argv[2]: "all", "first" or "off"): writes
 * past the first bytes of a freed 300-byte block, then one at its start.
 * With "all" each is reported, with "first" the last only, with "off"
 * none. 0, or the number of the step that failed. */
static int check_freed(const char *how)
{
    size_t at[] = {300 + 15, 200, 0};
    for (int i = 0; i < 3; i++) {
        /* reported: every write with "all", the one at p+0 with "first" */
        int all = strcmp(how, "all") == 0 || (strcmp(how, "first") == 0 && at[i] == 0);
        unsigned char *p = pm_mem_malloc(300);
        if (p == NULL || !pool_block(p))
            return 10;
        uint64_t serial = trailer_serial(p, 300);
        pm_mem_free(p);
        p[at[i]] = 'x';
        watch();
        int saved = quiet_begin();
        unsigned char *q = pm_mem_malloc(300);
        quiet_end(saved);
        if (S.calls != (all ? 1 : 0))
            return 20 + i;
        if (all && (S.r.address != p || S.r.serial != serial || S.r.offset != (ptrdiff_t)at[i] ||
                    q == p))
            return 30 + i;
        if (!all && q != p)
            return 40 + i;
        pm_mem_free(q);
    }
    return 0;
}

/* PYMALLOC_CHECK_FREED=value, run by the test itself in pymalloc_debug
 * (check_freed): 0 if it passed. */
static int run_check_freed(const char *value)
{
    pid_t pid = pm_t_fork();
    if (pid == 0) {
        setenv("PYMALLOC_MODE", "pymalloc_debug", 1);
        setenv("PYMALLOC_CHECK_FREED", value, 1);
        execl("/proc/self/exe", "test_debug_freed", "check-freed", value, (char *)NULL);
        _exit(127);
    }
    int status = pm_t_wait(pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void test_check_freed_values(void)
{
    NEED();
    PM_CHECK_EQ(run_check_freed("all"), 0);
    PM_CHECK_EQ(run_check_freed("first"), 0);
    PM_CHECK_EQ(run_check_freed("off"), 0);
}

static void abort_child(void *arg)
{
    (void)arg;
    unsigned char *p = pm_mem_malloc(24);
    pm_mem_free(p);
    p[3] = 'x';
    (void)pm_mem_malloc(24);
}

static void test_default_aborts(void)
{
    NEED_POOLED(&pm_t_domains[PM_DOMAIN_MEM], 24);
    pm_death_result r;
    pm_death(abort_child, NULL, &r);
    PM_CHECK(!r.exited);
    PM_CHECK_EQ(r.signal, SIGABRT);
    PM_CHECK_STR(r.output, "pymalloc: pm_mem_malloc: use after free: the freed 24-byte block");
    PM_CHECK_STR(r.output, "was written after its free (the 0xDD its free wrote at p+3 was "
                           "overwritten)");
    PM_CHECK_STR(r.output, "    Freed pool block at p=");
    PM_CHECK_STR(r.output, "found other bytes from p+3 to p+3.");
    PM_CHECK_STR(r.output, "Bytes at p+0: dd dd dd 78 dd");
    PM_CHECK_STR(r.output, "The block is leaked, never handed out again.");
}


/* A freed pool block that no malloc takes again: the check of the heap at
 * exit reads all of it (here past the 64 bytes a malloc would check). */
struct exit_case {
    int domain;
    size_t at;     /* the byte written after the free */
    int abort_it;  /* abort() instead of exit(0) */
    int joined;    /* the write is made by a second thread, joined before */
};

/* Free a 100-byte block of domain d and write p[at]: its serial is
 * printed (the parent reads it in the output). */
static void *free_and_write(const struct exit_case *c)
{
    unsigned char *p = pm_t_domains[c->domain].malloc(100);
    fprintf(stderr, "serial %llu\n", (unsigned long long)trailer_serial(p, 100));
    pm_t_domains[c->domain].free(p);
    p[c->at] = 'x';
    return p;
}

static void *write_in_thread(void *arg) { return free_and_write(arg); }

static struct sigaction abort_check; /* SIGABRT's action at start-up: the check */

static void exit_child(void *arg)
{
    const struct exit_case *c = arg;
    if (c->joined) {
        pthread_t t;
        if (pthread_create(&t, NULL, write_in_thread, arg) != 0 || pthread_join(t, NULL) != 0)
            _exit(3);
    } else
        free_and_write(c);
    if (c->abort_it) {
        sigaction(SIGABRT, &abort_check, NULL); /* pm_death set the default */
        abort();
    }
    exit(0);
}

static void expect_found(const struct exit_case *c)
{
    pm_death_result r;
    pm_death(exit_child, (void *)c, &r);
    PM_CHECK(!r.exited);
    PM_CHECK_EQ(r.signal, SIGABRT);
    const char *who = c->abort_it ? "abort" : "exit";
    char want[200];
    const char *s = strstr(r.output, "serial ");
    unsigned long long serial = s != NULL ? strtoull(s + 7, NULL, 10) : 0;
    snprintf(want, sizeof want,
             "pymalloc: %s: use after free: the freed 100-byte block (serial %llu) at ", who,
             serial);
    PM_CHECK_STR(r.output, want);
    snprintf(want, sizeof want, "(the 0xDD its free wrote at p+%zu was overwritten)", c->at);
    PM_CHECK_STR(r.output, want);
    PM_CHECK_STR(r.output, "    Freed pool block at p=");
    snprintf(want, sizeof want, "the check of the heap at %s\n    found other bytes from p+%zu to p+%zu.",
             who, c->at, c->at);
    PM_CHECK_STR(r.output, want);
    PM_CHECK(strstr(r.output, "never handed out again") == NULL);
    snprintf(want, sizeof want, "pymalloc: %s: 0 damaged blocks", who);
    PM_CHECK_STR(r.output, want);
    PM_CHECK_STR(r.output, "; 1 freed block written after its free among the ");
    PM_CHECK_STR(r.output, " in the pools");
}

static void test_found_at_exit(void)
{
    NEED();
    int tested = 0;
    for (int d = PM_DOMAIN_MEM; d < PM_DOMAIN_COUNT; d++) {
        if (!pooled(&pm_t_domains[d], 100))
            continue;
        tested++;
        for (int a = 0; a < 2; a++) {
            struct exit_case c1 = {d, 0, a, 0}, c2 = {d, 90, a, 0}, c3 = {d, 115, a, 1};
            expect_found(&c1);
            expect_found(&c2); /* past the first 64 bytes */
            expect_found(&c3); /* the trailer's last byte, by a thread joined since */
        }
    }
    if (tested == 0)
        PM_SKIP("no pool blocks under the debug hooks in this mode");
}

/* Block a live, b freed just above it in its pool: a write past a's end
 * runs through a's trailer and b's link into b's data. At exit it is a's
 * overflow, reported once; b, its link written over, is not read. */
static void overflow_child(void *arg)
{
    (void)arg;
    unsigned char *a = pm_obj_malloc(200), *b = pm_obj_malloc(200);
    if (b != a + 208 + 32)
        _exit(77); /* not neighbours */
    pm_obj_free(b);
    memset(a + 200, 'y', 48 + 8);
    exit(0);
}

static void test_overflow_into_freed_at_exit(void)
{
    NEED_POOLED(&pm_t_domains[PM_DOMAIN_OBJ], 200);
    pm_death_result r;
    pm_death(overflow_child, NULL, &r);
    if (r.exited && r.exit_status == 77)
        PM_SKIP("the two blocks are not neighbours");
    PM_CHECK(!r.exited);
    PM_CHECK_EQ(r.signal, SIGABRT);
    PM_CHECK_STR(r.output, "pymalloc: exit: buffer overflow: ");
    PM_CHECK_STR(r.output, "past the end of a 200-byte block (serial ");
    PM_CHECK(strstr(r.output, "use after free") == NULL);
    PM_CHECK_STR(r.output, "pymalloc: exit: 1 damaged block, never freed, among the ");
    PM_CHECK(strstr(r.output, "written after") == NULL);
}

/* A freed block whose link and data were both written: the malloc that
 * meets the link reports it and leaks the block (with its list); the
 * check at exit does not report the same block again for its data. */
static void link_child(void *arg)
{
    (void)arg;
    watch();
    unsigned char *p = pm_mem_malloc(63);
    pm_mem_free(p);
    p[-16] ^= 0x55;
    p[38] = 0xfe;
    (void)pm_mem_malloc(63);
    if (S.calls != 1 || S.r.error != PM_ERR_USE_AFTER_FREE)
        _exit(4);
    exit(0);
}

static void test_link_report_not_repeated_at_exit(void)
{
    NEED_POOLED(&pm_t_domains[PM_DOMAIN_MEM], 63);
    pm_death_result r;
    pm_death(link_child, NULL, &r);
    PM_CHECK(r.exited && r.exit_status == 0);
    PM_CHECK_STR(r.output, "(the pool's free-list link in its first 16 bytes was "
                           "overwritten at p-16)");
    PM_CHECK(strstr(r.output, "pymalloc: exit:") == NULL);
}

/* Threads that take and free pool blocks of every class through every
 * path while the process ends (mode 0: exit) or aborts (1): blocks in the
 * middle of a free's fill or of a malloc's writes are not taken for
 * damage (no report, exit status 0); a block written after its free, of a
 * class the threads do not use, is found all the same (mode 2). */
static _Atomic int churning;

static void *churn(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    void *q[64] = {0};
    for (unsigned i = 0;; i++) {
        unsigned k = i % 64;
        seed = seed * 1103515245u + 12345u;
        size_t n = (arg == NULL ? 300 : 1 + (seed >> 8) % 512);
        switch ((seed >> 20) % 4) {
        case 0:
            pm_mem_free(q[k]);
            q[k] = pm_mem_malloc(n);
            break;
        case 1:
            pm_mem_free(q[k]);
            q[k] = pm_mem_calloc(1, n);
            break;
        case 2: {
            void *r = pm_mem_realloc(q[k], n);
            if (r != NULL)
                q[k] = r;
            break;
        }
        default:
            pm_mem_free(q[k]);
            q[k] = NULL;
        }
        if (i == 1000)
            atomic_fetch_add(&churning, 1);
    }
    return NULL;
}

static void end_under_churn(void *arg)
{
    int mode = (int)(intptr_t)arg;
    unsigned char *p = NULL;
    if (mode == 2) {
        p = pm_mem_malloc(100);
        fprintf(stderr, "serial %llu\n", (unsigned long long)trailer_serial(p, 100));
        pm_mem_free(p);
        p[50] = 'x';
    }
    pthread_t t;
    for (int i = 0; i < 2; i++)
        if (pthread_create(&t, NULL, churn, mode == 2 ? NULL : (void *)(uintptr_t)(i + 1)) != 0)
            _exit(3);
    while (atomic_load(&churning) < 2)
        sched_yield();
    if (mode == 1) {
        sigaction(SIGABRT, &abort_check, NULL); /* pm_death set the default */
        abort();
    }
    exit(0);
}

static void test_end_under_churn(void)
{
    NEED_POOLED(&pm_t_domains[PM_DOMAIN_MEM], 100);
    for (int round = 0; round < 20 && !pm_t_cur_failed; round++) {
        pm_death_result r;
        pm_death(end_under_churn, (void *)(intptr_t)0, &r);
        PM_CHECK(r.exited && r.exit_status == 0);
        PM_CHECK(strstr(r.output, "pymalloc:") == NULL);
        pm_death(end_under_churn, (void *)(intptr_t)1, &r);
        PM_CHECK(!r.exited && r.signal == SIGABRT);
        PM_CHECK(strstr(r.output, "pymalloc:") == NULL);
    }
    pm_death_result r;
    pm_death(end_under_churn, (void *)(intptr_t)2, &r);
    PM_CHECK(!r.exited && r.signal == SIGABRT);
    PM_CHECK_STR(r.output, "pymalloc: exit: use after free: the freed 100-byte block (serial ");
    PM_CHECK_STR(r.output, "(the 0xDD its free wrote at p+50 was overwritten)");
    PM_CHECK_STR(r.output, "; 1 freed block written after its free among the ");
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "pool-copy") == 0)
        return pool_copy();
    if (argc > 2 && strcmp(argv[1], "check-freed") == 0)
        return check_freed(argv[2]);
    pm_t_pin_env(NULL);
    pm_mem_free(pm_mem_malloc(1)); /* set up: the hooks' check at abort is SIGABRT's action */
    sigaction(SIGABRT, NULL, &abort_check);
    PM_RUN(test_written_after_free);
    PM_RUN(test_range_and_dump);
    PM_RUN(test_realloc_moves_like_free);
    PM_RUN(test_realloc_within_class_stays);
    PM_RUN(test_no_false_reports);
    PM_RUN(test_hook_over_hooks_keeps_it);
    PM_RUN(test_pool_copy_turns_it_off);
    PM_RUN(test_check_freed_values);
    PM_RUN(test_default_aborts);
    PM_RUN(test_found_at_exit);
    PM_RUN(test_overflow_into_freed_at_exit);
    PM_RUN(test_link_report_not_repeated_at_exit);
    PM_RUN(test_end_under_churn);
    return pm_test_done();
}
