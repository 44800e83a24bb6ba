/*
 * tests/test_debug_blocks.c - the debug block: layout, fill patterns,
 * realloc (grow, shrink, failure), size 0, aligned blocks, serial numbers,
 * usable size, pm_check_block; and pm_setup_debug_hooks over an allocator of
 * the test's own, which lets the test see the freed block (0xDD) and make
 * the underlying realloc fail.
 */
#include "debug_layout.h"
#include "domains.h"
#include "harness.h"
#include "pm_internal.h"

#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

/* Under ASan, an allocation too large for the allocator returns NULL (as
 * with libc) instead of stopping the process: these tests make the
 * underlying realloc fail on purpose. */
PM_TEST_SANITIZER_MAY_RETURN_NULL

static const char dom_api[PM_DOMAIN_COUNT] = {'r', 'm', 'o'};

/* The layout of §4: size, API id, 7 x FD, data, 8 x FD, serial. */
static void check_layout(const unsigned char *p, size_t n, char api)
{
    PM_CHECK_EQ(be64(p - 16), n);
    PM_CHECK_EQ(p[-8], (unsigned char)api);
    PM_CHECK_EQ(count_not(p - 7, 7, 0xFD), 0);
    PM_CHECK_EQ(count_not(p + n, 8, 0xFD), 0);
}

#define NEED_DEBUG()                                                               \
    do {                                                                           \
        if (!pm_debug_enabled())                                                   \
            PM_SKIP("no debug hooks in this mode");                                \
    } while (0)

/* Blocks over 1 MiB: 0xCD over their first and last 64 KiB only, so that a
 * big buffer used sparingly does not get real memory for every page (sort
 * sizes its buffer from the machine's memory: 2.9 GB, 2.8 GB resident
 * under the debug modes, 139 MB under glibc); 1 MiB and less: all of it. */
static void test_big_blocks_filled_at_their_edges(void)
{
    NEED_DEBUG();
    const size_t whole = (size_t)1 << 20, edge = (size_t)64 << 10, big = (size_t)64 << 20;
    unsigned char *w = pm_mem_malloc(whole);
    PM_CHECK(w != NULL);
    PM_CHECK_EQ(count_not(w, whole, 0xCD), 0);
    pm_mem_free(w);
    for (int d = 0; d < PM_DOMAIN_COUNT; d++) {
        const pm_t_domain *D = &pm_t_domains[d];
        long before = pm_t_resident_kib();
        unsigned char *p = D->malloc(big);
        PM_CHECK(p != NULL);
        if (p == NULL)
            continue;
        long grown = pm_t_resident_kib() - before;
        PM_CHECK_EQ(count_not(p, edge, 0xCD), 0);
        PM_CHECK_EQ(count_not(p + big - edge, edge, 0xCD), 0);
        check_layout(p, big, dom_api[d]);
        PM_CHECK_EQ(pm_check_block(p), 0);
        /* Not every page of it (valgrind's own malloc fills nothing; its
         * figures are its own). */
        if (!PM_T_ASAN && !PM_T_TSAN && before > 0 && !pm_i_pool_valgrind(NULL))
            PM_CHECK(grown < 8 * 1024);
        p[big / 2] = 7;
        unsigned char *q = D->realloc(p, 2 * big); /* grown: its edges too */
        PM_CHECK(q != NULL);
        if (q == NULL) {
            D->free(p);
            continue;
        }
        PM_CHECK_EQ(q[big / 2], 7);
        PM_CHECK_EQ(count_not(q + big, edge, 0xCD), 0);
        PM_CHECK_EQ(count_not(q + 2 * big - edge, edge, 0xCD), 0);
        PM_CHECK_EQ(pm_check_block(q), 0);
        D->free(q);
    }
}

/* A big aligned block's realloc is the hooks' malloc, copy and free (the
 * memalign family's realloc keeps only 16-byte alignment): the copy gives
 * real memory only to the pages the program wrote, as glibc's mremap does
 * (it wrote every page: 64 MiB resident for a 64 MiB block whose program
 * wrote two bytes). Its data is kept, grown bytes are 0xCD at their edges,
 * a shrink keeps what fits. */
static void test_big_aligned_realloc_sparse(void)
{
    NEED_DEBUG();
    const size_t edge = (size_t)64 << 10, big = (size_t)64 << 20;
    for (int d = 0; d < PM_DOMAIN_COUNT; d++) {
        const pm_t_domain *D = &pm_t_domains[d];
        unsigned char *p = pm_i_domain_memalign(D->domain, 4096, big);
        PM_CHECK(p != NULL);
        if (p == NULL)
            continue;
        p[big / 2] = 7;
        p[big / 2 + 5000] = 8;
        p[big - 1] = 9;
        long before = pm_t_resident_kib();
        unsigned char *q = D->realloc(p, big + big / 2);
        long grown = pm_t_resident_kib() - before;
        PM_CHECK(q != NULL);
        if (q == NULL) {
            D->free(p);
            continue;
        }
        if (!PM_T_ASAN && !PM_T_TSAN && before > 0 && !pm_i_pool_valgrind(NULL))
            PM_CHECK(grown < 8 * 1024);
        check_layout(q, big + big / 2, dom_api[d]);
        PM_CHECK_EQ(count_not(q, edge, 0xCD), 0);
        PM_CHECK_EQ(q[big / 2], 7);
        PM_CHECK_EQ(q[big / 2 + 5000], 8);
        if (!pm_i_pool_valgrind(NULL)) /* (memcheck's malloc gives what it has) */
            PM_CHECK_EQ(count_not(q + big / 2 + 1, 4999, 0), 0);
        PM_CHECK_EQ(count_not(q + big - edge, edge - 1, 0xCD), 0);
        PM_CHECK_EQ(q[big - 1], 9);
        PM_CHECK_EQ(count_not(q + big, edge, 0xCD), 0);
        PM_CHECK_EQ(count_not(q + big + big / 2 - edge, edge, 0xCD), 0);
        PM_CHECK_EQ(pm_check_block(q), 0);
        D->free(q);
        /* A shrink keeps what fits. */
        p = pm_i_domain_memalign(D->domain, 4096, big);
        PM_CHECK(p != NULL);
        if (p == NULL)
            continue;
        p[big / 4] = 5;
        q = D->realloc(p, big / 2);
        PM_CHECK(q != NULL);
        if (q == NULL) {
            D->free(p);
            continue;
        }
        check_layout(q, big / 2, dom_api[d]);
        PM_CHECK_EQ(q[big / 4], 5);
        PM_CHECK_EQ(count_not(q, edge, 0xCD), 0);
        PM_CHECK_EQ(pm_check_block(q), 0);
        D->free(q);
    }
}

static void test_layout_and_fill(void)
{
    NEED_DEBUG();
    for (int d = 0; d < PM_DOMAIN_COUNT; d++) {
        const pm_t_domain *D = &pm_t_domains[d];
        for (size_t n = 0; n < 600; n += 37) {
            unsigned char *p = D->malloc(n);
            PM_CHECK_EQ((uintptr_t)p % 16, 0);
            check_layout(p, n, dom_api[d]);
            PM_CHECK_EQ(count_not(p, n, 0xCD), 0);
            PM_CHECK_EQ(pm_check_block(p), 0);
            unsigned char *q = D->calloc(n, 1);
            check_layout(q, n, dom_api[d]);
            PM_CHECK_EQ(count_not(q, n, 0x00), 0);
            PM_CHECK_EQ(be64(q + n + 8), be64(p + n + 8) + 1); /* serials follow */
            PM_CHECK_EQ(pm_i_domain_usable_size(D->domain, p), n);
            D->free(q);
            D->free(p);
        }
    }
}

static void test_size_zero(void)
{
    NEED_DEBUG();
    for (int d = 0; d < PM_DOMAIN_COUNT; d++) {
        const pm_t_domain *D = &pm_t_domains[d];
        unsigned char *a = D->malloc(0), *b = D->malloc(0);
        PM_CHECK(a != NULL && b != NULL && a != b);
        check_layout(a, 0, dom_api[d]);
        PM_CHECK_EQ(pm_check_block(a), 0);
        unsigned char *c = D->realloc(a, 0);
        PM_CHECK(c != NULL);
        check_layout(c, 0, dom_api[d]);
        D->free(c);
        D->free(b);
    }
}

static void test_realloc_grow_shrink(void)
{
    NEED_DEBUG();
    for (int d = 0; d < PM_DOMAIN_COUNT; d++) {
        const pm_t_domain *D = &pm_t_domains[d];
        unsigned char *p = D->malloc(10);
        for (int i = 0; i < 10; i++)
            p[i] = (unsigned char)i;
        uint64_t s0 = be64(p + 10 + 8);
        p = D->realloc(p, 300); /* grow */
        check_layout(p, 300, dom_api[d]);
        for (int i = 0; i < 10; i++)
            PM_CHECK_EQ(p[i], i);
        PM_CHECK_EQ(count_not(p + 10, 290, 0xCD), 0); /* grown bytes are clean */
        uint64_t s1 = be64(p + 300 + 8);
        PM_CHECK(s1 > s0); /* a successful realloc takes a new serial */
        for (int i = 0; i < 300; i++)
            p[i] = (unsigned char)(i * 3);
        p = D->realloc(p, 200); /* shrink: first and last 64 bytes were saved */
        check_layout(p, 200, dom_api[d]);
        size_t bad = 0;
        for (int i = 0; i < 200; i++)
            bad += p[i] != (unsigned char)(i * 3);
        PM_CHECK_EQ(bad, 0);
        p = D->realloc(p, 3);
        check_layout(p, 3, dom_api[d]);
        PM_CHECK(p[0] == 0 && p[1] == 3 && p[2] == 6);
        PM_CHECK_EQ(pm_check_block(p), 0);
        D->free(p);
    }
}

/* A realloc too big for the allocator below fails and leaves the block as it
 * was: same contents, same header and trailer, still live. */
static void test_realloc_failure_keeps_block(void)
{
    NEED_DEBUG();
    for (int d = 0; d < PM_DOMAIN_COUNT; d++) {
        const pm_t_domain *D = &pm_t_domains[d];
        size_t sizes[] = {40, 200};
        for (int k = 0; k < 2; k++) {
            size_t n = sizes[k];
            unsigned char *p = D->malloc(n);
            for (size_t i = 0; i < n; i++)
                p[i] = (unsigned char)(i + 1);
            uint64_t serial = be64(p + n + 8);
            size_t huge[] = {PM_T_HUGE, (size_t)PTRDIFF_MAX - 8};
            for (int h = 0; h < 2; h++) {
                errno = 0;
                PM_CHECK(D->realloc(p, huge[h]) == NULL);
                PM_CHECK_EQ(errno, ENOMEM);
                check_layout(p, n, dom_api[d]);
                PM_CHECK_EQ(be64(p + n + 8), serial);
                size_t bad = 0;
                for (size_t i = 0; i < n; i++)
                    bad += p[i] != (unsigned char)(i + 1);
                PM_CHECK_EQ(bad, 0);
                PM_CHECK_EQ(pm_check_block(p), 0);
            }
            D->free(p);
        }
        errno = 0;
        PM_CHECK(D->malloc((size_t)PTRDIFF_MAX - 8) == NULL);
        PM_CHECK_EQ(errno, ENOMEM);
        PM_CHECK(D->calloc(1, (size_t)PTRDIFF_MAX - 8) == NULL);
    }
}

static void test_aligned_blocks(void)
{
    NEED_DEBUG();
    for (int d = 0; d < PM_DOMAIN_COUNT; d++) {
        const pm_t_domain *D = &pm_t_domains[d];
        for (size_t align = 32; align <= 65536; align *= 4) {
            size_t sizes[] = {0, 1, 100, 5000};
            for (int k = 0; k < 4; k++) {
                size_t n = sizes[k];
                unsigned char *p = pm_i_domain_memalign(D->domain, align, n);
                PM_CHECK(p != NULL);
                PM_CHECK_EQ((uintptr_t)p % align, 0);
                check_layout(p, n, dom_api[d]);
                PM_CHECK_EQ(count_not(p, n, 0xCD), 0);
                PM_CHECK_EQ(pm_i_domain_usable_size(D->domain, p), n);
                PM_CHECK_EQ(pm_check_block(p), 0);
                memset(p, 0x11, n);
                unsigned char *q = D->realloc(p, n + 50);
                PM_CHECK(q != NULL);
                check_layout(q, n + 50, dom_api[d]);
                PM_CHECK_EQ(count_not(q, n, 0x11), 0);
                PM_CHECK_EQ(count_not(q + n, 50, 0xCD), 0);
                D->free(q);
            }
        }
    }
}

/* The overflow of an aligned block is caught like any other. */
static void overflow_aligned_child(void *arg)
{
    (void)arg;
    unsigned char *p = pm_i_domain_memalign(PM_DOMAIN_RAW, 64, 100);
    p[100] = 1;
    pm_raw_free(p);
}

static void test_aligned_overflow_caught(void)
{
    NEED_DEBUG();
    pm_death_result r;
    pm_death(overflow_aligned_child, NULL, &r);
    PM_CHECK(!r.exited && r.signal == SIGABRT);
    PM_CHECK_STR(r.output, "pymalloc: pm_raw_free: buffer overflow: 1 byte written past the "
                           "end of a 100-byte block (serial ");
}

/* Serials: one counter for all domains, +1 per malloc, calloc and
 * successful realloc; none for free or a failed realloc. */
static void test_serials_count_calls(void)
{
    NEED_DEBUG();
    unsigned char *a = pm_raw_malloc(8);
    unsigned char *b = pm_mem_calloc(2, 4);
    unsigned char *c = pm_obj_malloc(8);
    pm_mem_free(b);
    PM_CHECK(pm_obj_realloc(c, PM_T_HUGE) == NULL);
    c = pm_obj_realloc(c, 100);
    unsigned char *e = pm_raw_malloc(8);
    uint64_t sa = be64(a + 16);
    PM_CHECK_EQ(be64(c + 108), sa + 3);
    PM_CHECK_EQ(be64(e + 16), sa + 4);
    pm_raw_free(a);
    pm_obj_free(c);
    pm_raw_free(e);
}

/* The dump: CPython's lines, the damaged byte marked, the data in hex. */
static void dump_child(void *arg)
{
    (void)arg;
    unsigned char *p = pm_mem_malloc(40);
    memset(p, 0xAB, 40);
    p[41] = 0x78;
    pm_mem_free(p);
}

static void test_dump_format(void)
{
    NEED_DEBUG();
    pm_death_result r;
    pm_death(dump_child, NULL, &r);
    PM_CHECK(!r.exited && r.signal == SIGABRT);
    PM_CHECK_STR(r.output, "pymalloc: pm_mem_free: buffer overflow: 2 bytes written past the "
                           "end of a 40-byte block (serial ");
    PM_CHECK_STR(r.output, "\nDebug memory block at address p=0x");
    PM_CHECK_STR(r.output, ": API 'm'\n    40 bytes originally requested\n");
    PM_CHECK_STR(r.output, "    The 7 pad bytes at p-7 are FORBIDDENBYTE, as expected.\n");
    PM_CHECK_STR(r.output, " are not all FORBIDDENBYTE (0xfd):\n");
    PM_CHECK_STR(r.output, "        at p+40: 0xfd\n        at p+41: 0x78 *** OUCH\n");
    PM_CHECK_STR(r.output, "    First damaged byte at p+41, last at p+41.\n");
    PM_CHECK_STR(r.output, "    Data at p: ab ab ab ab ab ab ab ab ab ab ab ab ab ab ab ab ... "
                           "ab ab ab ab ab ab ab ab ab ab ab ab ab ab ab ab\n");
}

/* A block damaged in two places: the line names the first in the check's
 * order, the dump the other too (before 2026-12-07 only its bytes showed
 * it); an API id written over, then freed through another API: the
 * mismatch, and the id byte's damage. */
static void two_places_child(void *arg)
{
    unsigned char *p = pm_mem_malloc(40);
    memset(p, 0xAB, 40);
    if (arg == NULL) {
        p[-1] = 0x11;
        p[41] = 0x78;
        pm_mem_free(p);
    } else {
        p[-8] = 'o';
        pm_obj_free(p);
    }
}

static void test_dump_names_other_damage(void)
{
    NEED_DEBUG();
    pm_death_result r;
    pm_death(two_places_child, NULL, &r);
    PM_CHECK(!r.exited && r.signal == SIGABRT);
    PM_CHECK_STR(r.output, "pymalloc: pm_mem_free: buffer underflow: 1 byte written before the "
                           "start of a 40-byte block (serial ");
    PM_CHECK_STR(r.output, "    First damaged byte at p-1, last at p-1.\n"
                           "    Also damaged: the 8 pad bytes after the data (a buffer "
                           "overflow), at p+41.\n");
    pm_death(two_places_child, "api", &r);
    PM_CHECK(!r.exited && r.signal == SIGABRT);
    PM_CHECK_STR(r.output, "pymalloc: pm_obj_free: API mismatch: the 40-byte block (serial ");
    PM_CHECK_STR(r.output, "    Also damaged: the API id and pad bytes before the data (a buffer "
                           "underflow), at p-8.\n");
    PM_CHECK(strstr(r.output, "Also damaged: the 8 pad") == NULL);
}

/* Run fn in a forked child, which must exit 0 (its exit status names the
 * step that failed; its output is shown if it did not). */
static void expect_child_exits_0(void (*fn)(void *))
{
    pm_death_result r;
    pm_death(fn, NULL, &r);
    if (!(r.exited && r.exit_status == 0))
        fprintf(stderr, "child: exited=%d status=%d signal=%d\n%s", r.exited, r.exit_status,
                r.signal, r.output);
    PM_CHECK(r.exited);
    PM_CHECK_EQ(r.exit_status, 0);
}

/* ---------------------------------------------------------------------------
 * pm_setup_debug_hooks over the test's own allocator (a "spy" that never
 * gives memory back, so the freed block can be looked at, and can be told
 * to fail a realloc). Each test runs in a forked child of a parent that has
 * not set pymalloc up.
 */

static struct {
    pm_allocator below;
    unsigned char *last_freed;
    size_t last_freed_n;
    int fail_realloc;
    size_t sizes[64];
    void *blocks[64];
    int n;
} spy;

static void spy_note(void *p, size_t n)
{
    if (spy.n < 64) {
        spy.blocks[spy.n] = p;
        spy.sizes[spy.n++] = n;
    }
}

static void *spy_malloc(void *ctx, size_t n)
{
    (void)ctx;
    void *p = spy.below.malloc(spy.below.ctx, n);
    spy_note(p, n);
    return p;
}

static void *spy_calloc(void *ctx, size_t a, size_t b)
{
    (void)ctx;
    void *p = spy.below.calloc(spy.below.ctx, a, b);
    spy_note(p, a * b);
    return p;
}

static void *spy_realloc(void *ctx, void *p, size_t n)
{
    (void)ctx;
    if (spy.fail_realloc)
        return NULL;
    return spy.below.realloc(spy.below.ctx, p, n);
}

static void spy_free(void *ctx, void *p)
{
    (void)ctx;
    spy.last_freed = p; /* kept, not freed: the child exits soon */
    for (int i = 0; i < spy.n; i++)
        if (spy.blocks[i] == p)
            spy.last_freed_n = spy.sizes[i];
}

static int install_spy_then_debug(void)
{
    if (pm_get_allocator(PM_DOMAIN_MEM, &spy.below) != 0)
        return -1;
    pm_allocator me = {NULL, spy_malloc, spy_calloc, spy_realloc, spy_free};
    if (pm_set_allocator(PM_DOMAIN_MEM, &me) != 0)
        return -1;
    return pm_setup_debug_hooks();
}

static void child_setup_over_spy(void *arg)
{
    (void)arg;
    int was = pm_debug_enabled();
    if (install_spy_then_debug() != 0)
        _exit(1);
    if (!pm_debug_enabled())
        _exit(2);
    if (pm_setup_debug_hooks() != 0) /* twice: no second wrapping */
        _exit(3);
    unsigned char *p = pm_mem_malloc(24);
    if (was) {
        /* Debug hooks were there already (a debug mode): the spy is above
         * them and sees the user's pointer. */
        pm_mem_free(p);
        _exit(spy.last_freed == p ? 0 : 4);
    }
    /* The spy is below the hooks: it got a request for 24 + 32 bytes. */
    if (spy.n != 1 || spy.sizes[0] != 24 + 32 || spy.blocks[0] != p - 16)
        _exit(5);
    pm_mem_free(p);
    /* The whole block, header and trailer included, is DEADBYTE. */
    if (spy.last_freed != p - 16 || spy.last_freed_n != 56)
        _exit(6);
    for (size_t i = 0; i < 56; i++)
        if (spy.last_freed[i] != 0xDD)
            _exit(7);
    /* A failing realloc below: the old block stays valid and live. */
    unsigned char *q = pm_mem_malloc(100);
    memset(q, 0x42, 100);
    spy.fail_realloc = 1;
    if (pm_mem_realloc(q, 1000) != NULL)
        _exit(8);
    if (pm_check_block(q) != 0)
        _exit(9);
    for (int i = 0; i < 100; i++)
        if (q[i] != 0x42)
            _exit(10);
    spy.fail_realloc = 0;
    q = pm_mem_realloc(q, 1000);
    if (q == NULL || q[99] != 0x42 || count_not(q + 100, 900, 0xCD) != 0 ||
        pm_check_block(q) != 0)
        _exit(11);
    pm_mem_free(q);
    /* After the first allocation the hooks can no longer be removed by
     * pm_set_mode, and a second set-up is a no-op. */
    if (pm_setup_debug_hooks() != 0)
        _exit(12);
    _exit(0);
}

static void test_setup_debug_hooks_over_any_allocator(void)
{
    expect_child_exits_0(child_setup_over_spy);
}

static void child_setup_after_allocation(void *arg)
{
    (void)arg;
    int was = pm_debug_enabled();
    void *p = pm_mem_malloc(10);
    errno = 0;
    int rc = pm_setup_debug_hooks();
    if (was)
        _exit(rc == 0 ? 0 : 1); /* already there: fine */
    if (rc != -1 || errno != EBUSY || pm_debug_enabled())
        _exit(2);
    errno = 0;
    if (pm_check_block(p) != -1 || errno != ENOTSUP)
        _exit(3);
    pm_mem_free(p);
    _exit(0);
}

static void test_setup_refused_after_allocation(void)
{
    pm_death_result r;
    pm_death(child_setup_after_allocation, NULL, &r);
    PM_CHECK(r.exited);
    PM_CHECK_EQ(r.exit_status, 0);
}

/* pm_set_mode replaces the hooks like any others, before use. */
static void child_set_mode_removes_hooks(void *arg)
{
    (void)arg;
    if (pm_set_mode("malloc_debug") != 0 || !pm_debug_enabled())
        _exit(1);
    if (pm_set_mode("malloc") != 0 || pm_debug_enabled())
        _exit(2);
    /* The installed mode set again, before use: installed anew, without
     * the hooks set over it since (it used to keep them). */
    if (pm_setup_debug_hooks() != 0 || !pm_debug_enabled())
        _exit(4);
    if (pm_set_mode("malloc") != 0 || pm_debug_enabled())
        _exit(5);
    if (pm_set_mode("debug") != 0 || !pm_debug_enabled() ||
        strcmp(pm_mode_name(), "pymalloc_debug") != 0)
        _exit(3);
    _exit(0);
}

static void test_set_mode_and_hooks(void)
{
    pm_death_result r;
    pm_death(child_set_mode_removes_hooks, NULL, &r);
    PM_CHECK(r.exited);
    PM_CHECK_EQ(r.exit_status, 0);
}

/* An allocator set over the debug hooks without reading them first cannot
 * call them: it replaces them. pm_debug_enabled() says so, and
 * pm_setup_debug_hooks() wraps it (with the aligned allocator the hooks
 * wrapped, not the hooks themselves). Before, the hooks still counted as
 * installed: no wrapping, and pm_check_block called a good block of the
 * replacement an invalid pointer. */
static void *plain_malloc(void *c, size_t n) { (void)c; return malloc(n ? n : 1); }
static void *plain_calloc(void *c, size_t a, size_t b) { (void)c; return calloc(a ? a : 1, b ? b : 1); }
static void *plain_realloc(void *c, void *p, size_t n) { (void)c; return realloc(p, n ? n : 1); }
static void plain_free(void *c, void *p) { (void)c; free(p); }

static int child_reports;
static pm_error_class child_last;
static void child_note(const pm_error_report *r, void *ctx)
{
    (void)ctx;
    child_reports++;
    child_last = r->error;
}

static void child_replace_hooks(void *arg)
{
    (void)arg;
    int was = pm_debug_enabled();
    pm_set_error_handler(child_note, NULL);
    pm_allocator plain = {NULL, plain_malloc, plain_calloc, plain_realloc, plain_free};
    if (pm_set_allocator(PM_DOMAIN_MEM, &plain) != 0 || pm_debug_enabled())
        _exit(1);
    if (pm_setup_debug_hooks() != 0 || !pm_debug_enabled())
        _exit(2);
    unsigned char *p = pm_mem_malloc(24);
    if (p == NULL || be64(p - 16) != 24 || p[-8] != 'm' || pm_check_block(p) != 0)
        _exit(3);
    p[24] = 'x';
    if (pm_check_block(p) != -1 || child_reports != 1 || child_last != PM_ERR_BUFFER_OVERFLOW)
        _exit(4);
    /* Aligned blocks: the debug hooks over the mode's aligned allocator. */
    unsigned char *q = pm_i_domain_memalign(PM_DOMAIN_MEM, 64, 100);
    if (q == NULL || (uintptr_t)q % 64 != 0 || be64(q - 16) != 100 || pm_check_block(q) != 0)
        _exit(5);
    pm_mem_free(q);
    if (child_reports != 1)
        _exit(6);
    _exit(was ? 0 : 7); /* 7: not a debug mode, nothing was replaced */
}

static void test_replaced_hooks_are_gone(void)
{
    NEED_DEBUG();
    expect_child_exits_0(child_replace_hooks);
}

/* The debug hooks, read with pm_get_allocator, replaced by a mode, then put
 * back with pm_set_allocator: installed again, side words and aligned
 * allocator included. Before, every correct free of a pool block was
 * reported as an invalid pointer (its side word was no longer looked up). */
static void child_restore_hooks(void *arg)
{
    (void)arg;
    pm_set_error_handler(child_note, NULL);
    pm_allocator saved;
    if (pm_get_allocator(PM_DOMAIN_MEM, &saved) != 0 || pm_set_mode("pymalloc") != 0 ||
        pm_debug_enabled())
        _exit(1);
    if (pm_set_allocator(PM_DOMAIN_MEM, &saved) != 0)
        _exit(2);
    for (size_t n = 0; n < 600; n += 40) {
        unsigned char *p = pm_mem_malloc(n);
        if (p == NULL || be64(p - 16) != n || pm_check_block(p) != 0)
            _exit(3);
        pm_mem_free(p);
    }
    unsigned char *q = pm_i_domain_memalign(PM_DOMAIN_MEM, 64, 100);
    if (q == NULL || (uintptr_t)q % 64 != 0 || be64(q - 16) != 100 || pm_check_block(q) != 0)
        _exit(4);
    pm_mem_free(q);
    if (child_reports != 0)
        _exit(5);
    unsigned char *p = pm_mem_malloc(24);
    pm_mem_free(p);
    pm_mem_free(p);
    if (child_reports != 1 || child_last != PM_ERR_DOUBLE_FREE)
        _exit(6);
    _exit(0);
}

static void test_restored_hooks_work(void)
{
    NEED_DEBUG();
    expect_child_exits_0(child_restore_hooks);
}

static void test_check_block_null(void) { PM_CHECK_EQ(pm_check_block(NULL), 0); }

/* The malloc override names its own entry points in reports. */
static char seen_entry[64];
static pm_error_class seen_class;

static void note_entry(const pm_error_report *r, void *ctx)
{
    (void)ctx;
    snprintf(seen_entry, sizeof seen_entry, "%s", r->entry);
    seen_class = r->error;
}

static void test_entry_name_override(void)
{
    NEED_DEBUG();
    pm_set_error_handler(note_entry, NULL);
    void *p = pm_raw_malloc(10);
    pm_raw_free(p);
    pm_i_debug_set_entry("free");
    pm_raw_free(p);
    pm_i_debug_set_entry(NULL);
    PM_CHECK(strcmp(seen_entry, "free") == 0);
    PM_CHECK_EQ(seen_class, PM_ERR_DOUBLE_FREE);
    pm_raw_free(p); /* the override is cleared: the default name again */
    PM_CHECK(strcmp(seen_entry, "pm_raw_free") == 0);
    pm_set_error_handler(NULL, NULL);
}

/* The override's hint is not the handler's: a report made inside the
 * handler of a report from "free" names its own entry point, and so does
 * one made after a handler left by longjmp (which skips the override's
 * reset of the hint). */
static int nested_depth;
static char nested_entry[2][64];
static void *nested_block;
static jmp_buf nested_jmp;
static int nested_jump;

static void note_nested(const pm_error_report *r, void *ctx)
{
    (void)ctx;
    int k = nested_depth++;
    if (k < 2)
        snprintf(nested_entry[k], sizeof nested_entry[k], "%s", r->entry);
    if (k == 0 && nested_block != NULL)
        pm_check_block(nested_block); /* a second report, inside this one */
    nested_depth--;
    if (k == 0 && nested_jump)
        longjmp(nested_jmp, 1);
}

static void test_entry_name_not_the_handlers(void)
{
    NEED_DEBUG();
    pm_set_error_handler(note_nested, NULL);
    unsigned char *p = pm_raw_malloc(10), *q = pm_raw_malloc(10);
    q[10] = 0; /* an overflow */
    pm_raw_free(p);
    nested_block = q;
    pm_i_debug_set_entry("free");
    pm_raw_free(p); /* a double free */
    PM_CHECK(strcmp(nested_entry[0], "free") == 0);
    PM_CHECK(strcmp(nested_entry[1], "pm_check_block") == 0);
    nested_block = NULL;
    nested_jump = 1;
    if (setjmp(nested_jmp) == 0) {
        pm_raw_free(p); /* the handler does not return */
        PM_CHECK(0);
    }
    nested_jump = 0;
    PM_CHECK(strcmp(nested_entry[0], "free") == 0);
    pm_check_block(q);
    PM_CHECK(strcmp(nested_entry[0], "pm_check_block") == 0);
    pm_set_error_handler(NULL, NULL);
    pm_i_debug_set_entry(NULL);
    q[10] = 0xFD; /* repaired: it can go */
    pm_raw_free(q);
}

/* Every byte of the serial field is checked, the high ones too (until the
 * corruption fuzzer found it, the two high bytes were taken from memory:
 * damage there went unreported). */
static pm_error_report last_report;
static int n_reports;

static void note_report(const pm_error_report *r, void *ctx)
{
    (void)ctx;
    last_report = *r;
    n_reports++;
}

static void test_serial_field_every_byte(void)
{
    NEED_DEBUG();
    pm_set_error_handler(note_report, NULL);
    for (size_t i = 0; i < 8; i++) {
        unsigned char *p = pm_mem_malloc(40);
        PM_CHECK(p != NULL);
        uint64_t serial = be64(p + 48);
        unsigned char old = p[48 + i];
        p[48 + i] ^= 0x40;
        n_reports = 0;
        PM_CHECK_EQ(pm_check_block(p), -1);
        PM_CHECK_EQ(n_reports, 1);
        PM_CHECK_EQ(last_report.error, PM_ERR_HEADER_CORRUPT);
        PM_CHECK_EQ(last_report.offset, (ptrdiff_t)(48 + i));
        PM_CHECK_EQ(last_report.serial, serial);
        p[48 + i] = old;
        PM_CHECK_EQ(pm_check_block(p), 0);
        pm_mem_free(p);
        PM_CHECK_EQ(n_reports, 1);
    }
    pm_set_error_handler(NULL, NULL);
}

/* The size field overwritten and the block overflowed: the overflow is
 * named, with its offsets (it was "header corrupt" at p-9, found by an
 * audit); the size field alone is still "header corrupt". */
static void test_size_field_and_overflow(void)
{
    NEED_DEBUG();
    pm_set_error_handler(note_report, NULL);
    for (int d = 0; d < PM_DOMAIN_COUNT; d++) {
        const pm_t_domain *D = &pm_t_domains[d];
        unsigned char *p = D->malloc(24);
        unsigned char saved = p[-9];
        p[-9] = 99;
        n_reports = 0;
        PM_CHECK_EQ(pm_check_block(p), -1);
        PM_CHECK_EQ(last_report.error, PM_ERR_HEADER_CORRUPT);
        PM_CHECK_EQ(last_report.offset, -9);
        memset(p + 24, 1, 3);
        PM_CHECK_EQ(pm_check_block(p), -1);
        PM_CHECK_EQ(n_reports, 2);
        PM_CHECK_EQ(last_report.error, PM_ERR_BUFFER_OVERFLOW);
        PM_CHECK_EQ(last_report.offset, 24);
        PM_CHECK_EQ(last_report.size, 24);
        p[-9] = saved;
        memset(p + 24, 0xFD, 3);
        PM_CHECK_EQ(pm_check_block(p), 0);
        D->free(p);
    }
    pm_set_error_handler(NULL, NULL);
}

int main(void)
{
    pm_t_pin_env(NULL);
    /* Children that need a parent with nothing set up come first. */
    PM_RUN(test_setup_debug_hooks_over_any_allocator);
    PM_RUN(test_setup_refused_after_allocation);
    PM_RUN(test_set_mode_and_hooks);
    PM_RUN(test_replaced_hooks_are_gone);
    PM_RUN(test_restored_hooks_work);
    PM_RUN(test_check_block_null);
    PM_RUN(test_entry_name_override);
    PM_RUN(test_entry_name_not_the_handlers);
    PM_RUN(test_layout_and_fill);
    PM_RUN(test_big_blocks_filled_at_their_edges);
    PM_RUN(test_big_aligned_realloc_sparse);
    PM_RUN(test_size_zero);
    PM_RUN(test_realloc_grow_shrink);
    PM_RUN(test_realloc_failure_keeps_block);
    PM_RUN(test_aligned_blocks);
    PM_RUN(test_aligned_overflow_caught);
    PM_RUN(test_serials_count_calls);
    PM_RUN(test_dump_format);
    PM_RUN(test_dump_names_other_damage);
    PM_RUN(test_serial_field_every_byte);
    PM_RUN(test_size_field_and_overflow);
    return pm_test_done();
}
