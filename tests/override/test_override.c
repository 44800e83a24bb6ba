/*
 * tests/override/test_override.c - the malloc family as the override serves it.
 *
 * Linked with the static override (libpymalloc.a), so this program's own
 * malloc, and libc's internal calls (strdup, stdio), are pymalloc's. Checks
 * glibc's semantics where they differ from the pm_* API, that the calls go
 * through the MEM domain (a counting hook sees them), the early arena, and
 * what happens to a block pymalloc did not make.
 */
#define _GNU_SOURCE 1 /* RTLD_NEXT */
#include "../counting_hook.h"
#include "../harness.h"
#include "pm_debug.h"
#include "pm_override.h"

#include <dlfcn.h>
#include <malloc.h>
#include <stdint.h>

/* Calls through volatile pointers: the compiler may not elide or merge them. */
static void *(*volatile v_malloc)(size_t) = malloc;
static void *(*volatile v_calloc)(size_t, size_t) = calloc;
static void *(*volatile v_realloc)(void *, size_t) = realloc;
static void *(*volatile v_reallocarray)(void *, size_t, size_t) = reallocarray;
static void (*volatile v_free)(void *) = free;
static void *(*volatile v_aligned_alloc)(size_t, size_t) = aligned_alloc;
static void *(*volatile v_memalign)(size_t, size_t) = memalign;
static void *(*volatile v_valloc)(size_t) = valloc;
static void *(*volatile v_pvalloc)(size_t) = pvalloc;

static int is_debug_mode(void) { return strstr(pm_mode_name(), "debug") != NULL; }

static int aligned(const void *p, size_t a) { return ((uintptr_t)p & (a - 1)) == 0; }

static void test_goes_through_mem_domain(void)
{
    counting_hook h;
    PM_CHECK_EQ(counting_hook_install(&h, PM_DOMAIN_MEM), 0);
    void *a = v_malloc(10);
    void *b = v_calloc(3, 7);
    a = v_realloc(a, 100);
    char *s = strdup("libc calls malloc"); /* libc's internal call is ours too */
    PM_CHECK(s != NULL && strcmp(s, "libc calls malloc") == 0);
    v_free(a);
    v_free(b);
    free(s);
    counting_hook_remove(&h, PM_DOMAIN_MEM);
    PM_CHECK(atomic_load(&h.mallocs) >= 2);
    PM_CHECK(atomic_load(&h.callocs) >= 1);
    PM_CHECK(atomic_load(&h.reallocs) >= 1);
    PM_CHECK(atomic_load(&h.frees) >= 3);
}

static void test_realloc_zero_frees(void)
{
    counting_hook h;
    PM_CHECK_EQ(counting_hook_install(&h, PM_DOMAIN_MEM), 0);
    void *p = v_malloc(32);
    errno = 0;
    PM_CHECK(v_realloc(p, 0) == NULL); /* glibc: frees p, returns NULL */
    PM_CHECK_EQ(errno, 0);
    PM_CHECK_EQ(atomic_load(&h.frees), 1);
    PM_CHECK_EQ(atomic_load(&h.reallocs), 0);
    p = v_malloc(32);
    PM_CHECK(v_reallocarray(p, 0, 8) == NULL);
    PM_CHECK_EQ(atomic_load(&h.frees), 2);
    void *q = v_realloc(NULL, 0); /* malloc(0): a unique block */
    void *r = v_realloc(NULL, 0);
    PM_CHECK(q != NULL && r != NULL && q != r);
    v_free(q);
    v_free(r);
    counting_hook_remove(&h, PM_DOMAIN_MEM);
}

static void test_errors_set_enomem(void)
{
    const size_t big[] = {(size_t)PTRDIFF_MAX + 1, SIZE_MAX, SIZE_MAX - 15};
    for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) {
        errno = 0;
        PM_CHECK(v_malloc(big[i]) == NULL);
        PM_CHECK_EQ(errno, ENOMEM);
        errno = 0;
        PM_CHECK(v_calloc(1, big[i]) == NULL);
        PM_CHECK_EQ(errno, ENOMEM);
        char *p = v_malloc(8);
        memcpy(p, "keep", 5);
        errno = 0;
        PM_CHECK(v_realloc(p, big[i]) == NULL);
        PM_CHECK_EQ(errno, ENOMEM);
        PM_CHECK(strcmp(p, "keep") == 0);
        errno = 0;
        PM_CHECK(v_memalign(64, big[i]) == NULL);
        PM_CHECK_EQ(errno, ENOMEM);
        v_free(p);
    }
    errno = 0;
    PM_CHECK(v_calloc(SIZE_MAX / 2, 3) == NULL);
    PM_CHECK_EQ(errno, ENOMEM);
    char *p = v_malloc(8);
    errno = 0;
    PM_CHECK(v_reallocarray(p, SIZE_MAX / 2, 3) == NULL); /* overflow: p untouched */
    PM_CHECK_EQ(errno, ENOMEM);
    p = v_reallocarray(p, 4, 16);
    PM_CHECK(p != NULL);
    errno = 0;
    PM_CHECK(v_pvalloc(SIZE_MAX - 10) == NULL);
    PM_CHECK_EQ(errno, ENOMEM);
    /* no block fits: n + alignment past PTRDIFF_MAX (the largest alignment
     * glibc accepts, 2^63; or a size that only fits without the alignment) */
    errno = 0;
    PM_CHECK(v_memalign(SIZE_MAX / 2 + 1, 16) == NULL);
    PM_CHECK_EQ(errno, ENOMEM);
    errno = 0;
    PM_CHECK(v_memalign((size_t)1 << (sizeof(size_t) * 8 - 24), (size_t)PTRDIFF_MAX - 100) == NULL);
    PM_CHECK_EQ(errno, ENOMEM);
    /* free keeps errno (glibc >= 2.33, POSIX 2024) */
    errno = 1234;
    v_free(p);
    PM_CHECK_EQ(errno, 1234);
}

/* free keeps errno on every kind of block and on its heavier paths: size
 * 0, a pool block, a big and an aligned block (libc's), the last blocks of
 * an arena (unmapped: pymalloc modes), blocks pushed out of the debug
 * hooks' quarantine (given back to glibc), realloc(p, 0). */
static void test_free_keeps_errno_every_kind(void)
{
    const size_t sizes[] = {0, 1, 16, 200, 512, 513, 4096, 200000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        void *p = v_malloc(sizes[i]), *a = v_memalign(256, sizes[i]), *c = v_calloc(1, sizes[i]);
        void *r = v_malloc(sizes[i] + 1);
        PM_CHECK(p != NULL && a != NULL && c != NULL && r != NULL);
        errno = ENOENT;
        v_free(p);
        v_free(a);
        v_free(c);
        PM_CHECK(v_realloc(r, 0) == NULL);
        PM_CHECK_EQ(errno, ENOENT);
    }
    /* 8 MiB of 256-byte blocks (8 arenas' worth), freed: arenas go back to
     * the system; 4 MiB of 16 KiB blocks through a 1 MiB quarantine. */
    enum { SMALL = 32768, BIG = 256 };
    static void *v[SMALL];
    for (int i = 0; i < SMALL; i++)
        PM_CHECK((v[i] = v_malloc(256)) != NULL);
    errno = ENOENT;
    for (int i = 0; i < SMALL; i++)
        v_free(v[i]);
    PM_CHECK_EQ(errno, ENOENT);
    for (int i = 0; i < BIG; i++)
        PM_CHECK((v[i] = v_malloc(16384)) != NULL);
    errno = ENOENT;
    for (int i = 0; i < BIG; i++)
        v_free(v[i]);
    PM_CHECK_EQ(errno, ENOENT);
}

/* free keeps errno also when a hook's free changes it: a hook on the mem
 * domain that logs each free with a write that fails (here to a closed
 * descriptor: EBADF). Before, free changed errno in the malloc and pymalloc
 * modes, where the fast path called the hook directly (the debug modes
 * kept it). */
static pm_allocator errno_below;
static void *eh_malloc(void *ctx, size_t n)
{
    (void)ctx;
    return errno_below.malloc(errno_below.ctx, n);
}
static void *eh_calloc(void *ctx, size_t nelem, size_t elsize)
{
    (void)ctx;
    return errno_below.calloc(errno_below.ctx, nelem, elsize);
}
static void *eh_realloc(void *ctx, void *p, size_t n)
{
    (void)ctx;
    return errno_below.realloc(errno_below.ctx, p, n);
}
static void eh_free(void *ctx, void *p)
{
    (void)ctx;
    ssize_t w = write(-1, "free\n", 5); /* fails: errno = EBADF */
    (void)w;
    errno_below.free(errno_below.ctx, p);
}

static void test_free_keeps_errno_through_hook(void)
{
    PM_CHECK_EQ(pm_get_allocator(PM_DOMAIN_MEM, &errno_below), 0);
    pm_allocator hook = {NULL, eh_malloc, eh_calloc, eh_realloc, eh_free};
    PM_CHECK_EQ(pm_set_allocator(PM_DOMAIN_MEM, &hook), 0);
    const size_t sizes[] = {0, 10, 512, 100000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        void *p = v_malloc(sizes[i]);
        PM_CHECK(p != NULL);
        errno = ENOENT;
        v_free(p);
        PM_CHECK_EQ(errno, ENOENT);
        p = v_malloc(sizes[i] + 1);
        PM_CHECK(p != NULL);
        errno = ENOENT;
        PM_CHECK(v_realloc(p, 0) == NULL); /* frees p */
        PM_CHECK_EQ(errno, ENOENT);
    }
    void *a = v_memalign(64, 100); /* freed through the hooks' free too */
    PM_CHECK(a != NULL);
    errno = ENOENT;
    v_free(a);
    PM_CHECK_EQ(errno, ENOENT);
    PM_CHECK_EQ(pm_set_allocator(PM_DOMAIN_MEM, &errno_below), 0);
}

/* The debug modes: free keeps errno through its reports (the override
 * calls the hooks' free without saving errno: it saves it itself), here to
 * an error handler that changes errno and returns: an overflow of a pool
 * block and of a C library block, a double free, an invalid pointer, and
 * realloc(p, 0) of a damaged block. */
static int eio_calls;
static void eio_handler(const pm_error_report *r, void *ctx)
{
    (void)r;
    (void)ctx;
    eio_calls++;
    errno = EIO;
}

static void test_free_keeps_errno_through_reports(void)
{
    if (!pm_debug_enabled())
        return;
    eio_calls = 0;
    pm_set_error_handler(eio_handler, NULL);
    int expected = 0;
    const size_t sizes[] = {24, 5000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        unsigned char *p = v_malloc(sizes[i]), *q = v_malloc(sizes[i]);
        unsigned char *r = v_malloc(sizes[i]);
        PM_CHECK(p != NULL && q != NULL && r != NULL);
        p[sizes[i]] = 0x11;
        r[sizes[i]] = 0x11;
        errno = ENOENT;
        v_free(p); /* buffer overflow: reported, leaked */
        v_free(q);
        v_free(q); /* double free */
        v_free(&expected); /* invalid pointer */
        PM_CHECK(v_realloc(r, 0) == NULL); /* buffer overflow */
        PM_CHECK_EQ(errno, ENOENT);
        expected += 4;
    }
    pm_set_error_handler(NULL, NULL);
    PM_CHECK_EQ(eio_calls, expected);
}

static void test_posix_memalign(void)
{
    const size_t bad[] = {0, 1, sizeof(void *) / 2, 12, 24, 48, 100, 3 * sizeof(void *)};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        void *out = (void *)0x1234;
        errno = 0;
        PM_CHECK_EQ(posix_memalign(&out, bad[i], 16), EINVAL);
        PM_CHECK(out == (void *)0x1234); /* untouched */
        PM_CHECK_EQ(errno, 0);
    }
    const size_t good[] = {8, 16, 32, 64, 256, 4096, 65536, (size_t)1 << 20};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        void *out = NULL;
        PM_CHECK_EQ(posix_memalign(&out, good[i], 100), 0);
        PM_CHECK(out != NULL && aligned(out, good[i]));
        memset(out, 0xab, 100);
        v_free(out);
        PM_CHECK_EQ(posix_memalign(&out, good[i], 0), 0); /* size 0: a block */
        PM_CHECK(out != NULL);
        v_free(out);
    }
    void *out = (void *)0x1234;
    errno = 0;
    PM_CHECK_EQ(posix_memalign(&out, 64, SIZE_MAX), ENOMEM);
    PM_CHECK(out == (void *)0x1234);
    PM_CHECK_EQ(errno, 0); /* reported through the result, errno left alone */
}

static void test_aligned_alloc_memalign(void)
{
    for (size_t a = 1; a <= ((size_t)1 << 21); a <<= 1) {
        void *p = v_aligned_alloc(a, 3 * a);
        void *q = v_memalign(a, 1);
        PM_CHECK(p != NULL && aligned(p, a < 16 ? 16 : a));
        PM_CHECK(q != NULL && aligned(q, a < 16 ? 16 : a));
        memset(p, 1, 3 * a);
        void *r = v_realloc(p, 5 * a); /* aligned blocks are ordinary blocks */
        PM_CHECK(r != NULL && ((unsigned char *)r)[3 * a - 1] == 1);
        v_free(r);
        v_free(q);
    }
    /* glibc 2.36 rounds an alignment that is not a power of two up. */
    void *p = v_memalign(48, 10), *q = v_aligned_alloc(100, 10), *z = v_memalign(0, 10);
    PM_CHECK(p != NULL && aligned(p, 64));
    PM_CHECK(q != NULL && aligned(q, 128));
    PM_CHECK(z != NULL && aligned(z, 16));
    v_free(p);
    v_free(q);
    v_free(z);
    errno = 0;
    PM_CHECK(v_memalign(SIZE_MAX / 2 + 2, 10) == NULL);
    PM_CHECK_EQ(errno, EINVAL);
}

static void test_valloc_pvalloc(void)
{
    size_t ps = (size_t)sysconf(_SC_PAGESIZE);
    void *a = v_valloc(10), *b = v_pvalloc(ps + 1), *c = v_pvalloc(0);
    PM_CHECK(a != NULL && aligned(a, ps));
    PM_CHECK(b != NULL && aligned(b, ps));
    PM_CHECK(c != NULL && aligned(c, ps));
    PM_CHECK(malloc_usable_size(b) >= 2 * ps); /* pvalloc rounds up to pages */
    memset(b, 7, 2 * ps);
    v_free(a);
    v_free(b);
    v_free(c);
}

static void test_usable_size(void)
{
    PM_CHECK_EQ(malloc_usable_size(NULL), 0);
    const size_t sizes[] = {0, 1, 15, 16, 17, 100, 511, 512, 513, 4000, 100000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        unsigned char *p = v_malloc(sizes[i]);
        size_t u = malloc_usable_size(p);
        if (is_debug_mode())
            PM_CHECK_EQ(u, sizes[i]); /* writing past the request is caught */
        else
            PM_CHECK(u >= sizes[i]);
        memset(p, 0x5a, u); /* the whole usable size is the caller's */
        v_free(p);
        void *q = NULL;
        PM_CHECK_EQ(posix_memalign(&q, 256, sizes[i]), 0);
        PM_CHECK(malloc_usable_size(q) >= sizes[i]);
        v_free(q);
    }
}

/* The first malloc_usable_size of a block that is libc's (in the modes
 * without debug hooks) allocates nothing: it may be a signal handler's
 * that interrupted malloc. Its look-up of glibc's function (dlopen) did,
 * inside the interrupted malloc (malloc mode: glibc's, whose heap broke);
 * the override's constructor does it now. Run before any other call of
 * malloc_usable_size. */
static void test_first_usable_size_does_not_allocate(void)
{
    void *p = v_malloc(4000); /* above the pools' sizes */
    PM_CHECK(p != NULL);
    counting_hook h;
    PM_CHECK_EQ(counting_hook_install(&h, PM_DOMAIN_MEM), 0);
    size_t u = malloc_usable_size(p);
    counting_hook_remove(&h, PM_DOMAIN_MEM);
    PM_CHECK(u >= 4000);
    PM_CHECK_EQ(atomic_load(&h.mallocs), 0);
    PM_CHECK_EQ(atomic_load(&h.callocs), 0);
    PM_CHECK_EQ(atomic_load(&h.reallocs), 0);
    PM_CHECK_EQ(atomic_load(&h.frees), 0);
    v_free(p);
}

/* The early arena, on its own: alignment, size, zeroing, reclaiming the top. */
static void test_early_arena(void)
{
    size_t used0 = pm_i_early_used();
    unsigned char *a = pm_i_early_alloc(10, 16);
    PM_CHECK(a != NULL && pm_i_early_owns(a) && aligned(a, 16));
    PM_CHECK_EQ(pm_i_early_size(a), 10);
    memset(a, 0xee, 10);
    unsigned char *b = pm_i_early_alloc(100, 4096);
    PM_CHECK(b != NULL && pm_i_early_owns(b) && aligned(b, 4096));
    PM_CHECK(b >= a + 10);
    pm_i_early_free(b); /* the top: reclaimed */
    size_t after_b = pm_i_early_used();
    unsigned char *c = pm_i_early_alloc(10, 16);
    PM_CHECK(c != NULL && c[0] == 0 && c[9] == 0);
    /* realloc moves an early block out to the mode, keeping its bytes */
    memcpy(a, "early!", 7);
    char *m = v_realloc(a, 4000);
    PM_CHECK(m != NULL && !pm_i_early_owns(m) && strcmp(m, "early!") == 0);
    PM_CHECK_EQ(malloc_usable_size(c), 10);
    v_free(c); /* free of an early block: reclaimed, never reaches the mode */
    v_free(m);
    PM_CHECK(pm_i_early_used() <= after_b);
    PM_CHECK(pm_i_early_alloc(PM_I_EARLY_SIZE, 16) == NULL); /* exhausted: NULL */
    PM_CHECK(!pm_i_early_owns(pm_i_early_arena + PM_I_EARLY_SIZE));
    PM_CHECK(!pm_i_early_owns(&used0));
}

/* Nothing in set-up (environment parsing, the verbose report) allocated:
 * any allocation made inside the set-up would have landed in the arena. */
static void test_setup_did_not_allocate(void)
{
    if (getenv("PM_T_EXPECT_NO_SETUP_ALLOC") == NULL)
        PM_SKIP("run with PM_T_EXPECT_NO_SETUP_ALLOC=1");
    PM_CHECK_EQ(pm_i_early_used(), 0);
}

/* A block that libc made behind pymalloc's back (glibc's own
 * __libc_malloc, found after this program's, which is pymalloc's), freed
 * with free(): the non-debug modes hand it to libc; the debug modes must
 * report it and abort, never crash. */
static void free_foreign(void *arg)
{
    (void)arg;
    void *(*libc_malloc)(size_t);
    void *sym = dlsym(RTLD_NEXT, "__libc_malloc");
    memcpy(&libc_malloc, &sym, sizeof libc_malloc);
    if (libc_malloc == NULL) {
        puts("no __libc_malloc after the program's");
        return;
    }
    void *p = libc_malloc(40);
    memset(p, 0, 40);
    free(p);
    puts("freed");
}

static void test_foreign_block(void)
{
    pm_death_result r;
    pm_death(free_foreign, NULL, &r);
    if (is_debug_mode()) {
        PM_CHECK(!r.exited && r.signal == SIGABRT);
    } else {
        PM_CHECK(r.exited && r.exit_status == 0);
        PM_CHECK_STR(r.output, "freed");
    }
}

/* A report names the function the program called: realloc(p, 0) (which
 * frees p) and reallocarray(p, 0, k) as realloc, not free, and
 * realloc(NULL, n) (a malloc, whose report is a damaged free-list link met
 * on the way, pymalloc_debug) as realloc, not malloc. */
/* volatile: the compiler takes the malloc family for functions that call
 * no code of the program's. */
static volatile char seen_entry[32];
static volatile int seen_calls;
static void note_entry(const pm_error_report *r, void *ctx)
{
    (void)ctx;
    seen_calls++;
    snprintf((char *)seen_entry, sizeof seen_entry, "%s", r->entry);
}

static void test_report_names_realloc(void)
{
    if (!is_debug_mode())
        PM_SKIP("no debug hooks in this mode");
    pm_set_error_handler(note_entry, NULL);
    for (int k = 0; k < 2; k++) {
        unsigned char *volatile p = malloc(24);
        p[24] = 'x';
        seen_calls = 0;
        void *q = k == 0 ? realloc(p, 0) : reallocarray(p, 0, 8);
        PM_CHECK(q == NULL);
        PM_CHECK_EQ(seen_calls, 1);
        PM_CHECK(strcmp((const char *)seen_entry, "realloc") == 0);
        p[24] = 0xFD; /* leaked by the report: repaired, freed */
        free(p);
    }
    if (strcmp(pm_mode_name(), "pymalloc_debug") == 0) {
        unsigned char *volatile p = malloc(24);
        free(p);
        memset(p - 16, 0x41, 16); /* the freed block's free-list link */
        seen_calls = 0;
        void *volatile none = NULL; /* not folded into malloc(24) */
        void *q = realloc(none, 24);
        PM_CHECK(q != NULL);
        PM_CHECK_EQ(seen_calls, 1);
        PM_CHECK(strcmp((const char *)seen_entry, "realloc") == 0);
        free(q);
    }
    pm_set_error_handler(NULL, NULL);
}

/* glibc's other names of its allocator (__libc_malloc and the others,
 * cfree) are the override's too: through the mem domain in every mode,
 * their blocks freed by the plain names and the other way round (before
 * 2026-12-04 they were glibc's: __libc_free of a pool block handed it to
 * glibc, and the debug modes reported free of a __libc_malloc block as an
 * invalid pointer); reports name them. */
static void *(*volatile v_libc_malloc)(size_t) = __libc_malloc;
static void *(*volatile v_libc_calloc)(size_t, size_t) = __libc_calloc;
static void *(*volatile v_libc_realloc)(void *, size_t) = __libc_realloc;
static void (*volatile v_libc_free)(void *) = __libc_free;
static void (*volatile v_cfree)(void *) = cfree;
static void *(*volatile v_libc_memalign)(size_t, size_t) = __libc_memalign;
static void *(*volatile v_libc_valloc)(size_t) = __libc_valloc;
static void *(*volatile v_libc_pvalloc)(size_t) = __libc_pvalloc;

static void test_libc_names_go_through_mem_domain(void)
{
    counting_hook h;
    PM_CHECK_EQ(counting_hook_install(&h, PM_DOMAIN_MEM), 0);
    char *a = v_libc_malloc(10);
    char *b = v_libc_calloc(3, 7);
    PM_CHECK(a != NULL && b != NULL);
    for (int i = 0; i < 21; i++)
        PM_CHECK_EQ(b[i], 0);
    memset(a, 'a', 10);
    a = v_libc_realloc(a, 100);
    PM_CHECK(a != NULL && a[0] == 'a' && a[9] == 'a');
    v_libc_free(a);
    v_cfree(b);
    counting_hook_remove(&h, PM_DOMAIN_MEM);
    PM_CHECK_EQ(atomic_load(&h.mallocs), 1);
    PM_CHECK_EQ(atomic_load(&h.callocs), 1);
    PM_CHECK_EQ(atomic_load(&h.reallocs), 1);
    PM_CHECK_EQ(atomic_load(&h.frees), 2);
    /* __libc_realloc(p, 0) frees, as realloc does */
    a = v_libc_malloc(5);
    errno = 0;
    PM_CHECK(v_libc_realloc(a, 0) == NULL);
    PM_CHECK_EQ(errno, 0);
    errno = 0;
    PM_CHECK(v_libc_malloc(SIZE_MAX) == NULL);
    PM_CHECK_EQ(errno, ENOMEM);
    /* In a debug mode the usable size is the request: the block is ours */
    a = v_libc_malloc(13);
    PM_CHECK(malloc_usable_size(a) >= 13);
    if (is_debug_mode())
        PM_CHECK_EQ(malloc_usable_size(a), 13);
    free(a);
}

static void test_libc_names_aligned(void)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    void *m = v_libc_memalign(64, 100), *v = v_libc_valloc(10), *pv = v_libc_pvalloc(10);
    void *odd = v_libc_memalign(48, 10); /* rounded up to 64, as glibc's memalign */
    PM_CHECK(m != NULL && v != NULL && pv != NULL && odd != NULL);
    PM_CHECK_EQ((uintptr_t)m % 64, 0);
    PM_CHECK_EQ((uintptr_t)odd % 64, 0);
    PM_CHECK_EQ((uintptr_t)v % page, 0);
    PM_CHECK_EQ((uintptr_t)pv % page, 0);
    PM_CHECK(malloc_usable_size(pv) >= page); /* pvalloc rounds the size up */
    memset(m, 1, 100);
    memset(v, 2, 10);
    memset(pv, 3, page);
    free(m);
    v_libc_free(v);
    v_cfree(pv);
    free(odd);
}

/* Blocks of every size class and of glibc's (over 512 bytes), made by one
 * name and freed by the other, in every mode: no report, no crash. */
static void test_libc_names_mix(void)
{
    unsigned long errors = pm_error_count(PM_ERR_NONE);
    for (size_t n = 1; n <= 2100; n += 7) {
        char *p = v_libc_malloc(n), *q = v_malloc(n);
        PM_CHECK(p != NULL && q != NULL);
        memset(p, 'p', n);
        memset(q, 'q', n);
        q = v_libc_realloc(q, n + 100);
        PM_CHECK(q != NULL && q[n - 1] == 'q');
        free(p);
        v_libc_free(q);
    }
    PM_CHECK_EQ(pm_error_count(PM_ERR_NONE), errors);
}

static volatile int seen_class;
static void note_entry_class(const pm_error_report *r, void *ctx)
{
    (void)ctx;
    seen_calls++;
    seen_class = (int)r->error;
    snprintf((char *)seen_entry, sizeof seen_entry, "%s", r->entry);
}

/* Exactly one report since seen_calls was zeroed, of class cls, by the
 * entry point entry (a macro: a failure names the line of its use). */
#define CHECK_ONE_REPORT(cls, entry)                                           \
    do {                                                                       \
        PM_CHECK_EQ(seen_calls, 1);                                            \
        PM_CHECK_EQ(seen_class, (cls));                                        \
        PM_CHECK(strcmp((const char *)seen_entry, (entry)) == 0);              \
    } while (0)

static void test_report_names_libc_names(void)
{
    if (!is_debug_mode())
        PM_SKIP("no debug hooks in this mode");
    pm_set_error_handler(note_entry_class, NULL);
    int saved = quiet_begin();
    /* overflow by one, found by __libc_free (the block is leaked) */
    unsigned char *volatile p = v_libc_malloc(24);
    p[24] = 'x';
    seen_calls = 0;
    v_libc_free((void *)p);
    CHECK_ONE_REPORT(PM_ERR_BUFFER_OVERFLOW, "__libc_free");
    /* a second free, by cfree */
    p = malloc(40);
    free((void *)p);
    seen_calls = 0;
    v_cfree((void *)p);
    CHECK_ONE_REPORT(PM_ERR_DOUBLE_FREE, "cfree");
    /* realloc of a freed block, by __libc_realloc */
    p = malloc(40);
    free((void *)p);
    seen_calls = 0;
    PM_CHECK(v_libc_realloc((void *)p, 80) == NULL);
    CHECK_ONE_REPORT(PM_ERR_USE_AFTER_FREE, "__libc_realloc");
    /* a stack address, by __libc_free */
    char local[32];
    seen_calls = 0;
    v_libc_free(local + 16);
    CHECK_ONE_REPORT(PM_ERR_INVALID_POINTER, "__libc_free");
    quiet_end(saved);
    pm_set_error_handler(NULL, NULL);
}

/* malloc_usable_size of a block the program freed, damaged: that free
 * reported it and leaked it (the handler returned), so the block is still
 * live to the allocator; the program's call is a use after free, reported
 * (before 2026-12-07 it answered the block's size). Sizes of a pool block
 * and of the C library's. */
static void test_usable_size_of_freed_damaged(void)
{
    if (!is_debug_mode())
        PM_SKIP("no debug hooks in this mode");
    pm_set_error_handler(note_entry_class, NULL);
    int saved = quiet_begin();
    static const size_t sizes[] = {24, 3000};
    for (int k = 0; k < 2; k++) {
        size_t n = sizes[k];
        unsigned char *volatile p = malloc(n);
        PM_CHECK_EQ(malloc_usable_size((void *)p), n);
        p[n] = 'x';
        seen_calls = 0;
        free((void *)p);
        CHECK_ONE_REPORT(PM_ERR_BUFFER_OVERFLOW, "free");
        seen_calls = 0;
        PM_CHECK_EQ(malloc_usable_size((void *)p), 0);
        CHECK_ONE_REPORT(PM_ERR_USE_AFTER_FREE, "malloc_usable_size");
        /* A live block reported by pm_check_block is still the program's. */
        unsigned char *volatile q = malloc(n);
        q[n] = 'x';
        seen_calls = 0;
        PM_CHECK_EQ(pm_check_block((void *)q), -1);
        CHECK_ONE_REPORT(PM_ERR_BUFFER_OVERFLOW, "pm_check_block");
        seen_calls = 0;
        PM_CHECK_EQ(malloc_usable_size((void *)q), n);
        PM_CHECK_EQ(seen_calls, 0);
    }
    quiet_end(saved);
    pm_set_error_handler(NULL, NULL);
}

/* The memalign family names itself too: with an alignment of 16 or less
 * it is a malloc, whose report (pymalloc_debug: a freed pool block
 * written after its free, which it takes) named malloc before 2026-12-03,
 * and above that the reports of its allocation named memalign. */
static void test_report_names_memalign_family(void)
{
    if (strcmp(pm_mode_name(), "pymalloc_debug") != 0)
        PM_SKIP("no check of freed pool blocks in this mode");
    static const char *const names[] = {"aligned_alloc", "memalign", "posix_memalign"};
    pm_set_error_handler(note_entry, NULL);
    for (int k = 0; k < 3; k++) {
        unsigned char *volatile p = malloc(24);
        free(p);
        p[0] = 'x'; /* the next malloc of 24 bytes takes it */
        seen_calls = 0;
        void *q = NULL;
        int saved = quiet_begin();
        if (k == 0)
            q = v_aligned_alloc(16, 24);
        else if (k == 1)
            q = v_memalign(8, 24);
        else
            PM_CHECK_EQ(posix_memalign(&q, 16, 24), 0);
        quiet_end(saved);
        PM_CHECK(q != NULL && q != p);
        PM_CHECK_EQ(seen_calls, 1);
        PM_CHECK(strcmp((const char *)seen_entry, names[k]) == 0);
        free(q);
    }
    pm_set_error_handler(NULL, NULL);
}

/* malloc_trim's check of the blocks the quarantine held names
 * malloc_trim, the function the program called, not pm_trim (before
 * 2026-12-03 it named pm_trim). */
static void test_report_names_malloc_trim(void)
{
    size_t blocks, bytes, budget = 0;
    if (!is_debug_mode())
        PM_SKIP("no debug hooks in this mode");
    if (!pm_i_debug_quarantine_stats(&blocks, &bytes, &budget) || budget == 0)
        PM_SKIP("no quarantine");
    pm_set_error_handler(note_entry, NULL);
    unsigned char *volatile p = malloc(1000); /* the C library's in every debug mode */
    free(p);
    p[3] = 'x';
    seen_calls = 0;
    int saved = quiet_begin();
    malloc_trim(0);
    quiet_end(saved);
    PM_CHECK_EQ(seen_calls, 1);
    PM_CHECK(strcmp((const char *)seen_entry, "malloc_trim") == 0);
    pm_set_error_handler(NULL, NULL);
}

/* The mode cannot change under the program: libc allocated before main. */
/* malloc_trim: this thread's cached pool blocks go back to their pools,
 * and the arenas they alone kept mapped are unmapped (then glibc trims its
 * own heap). In the modes without pools there is nothing of ours to trim. */
static void test_malloc_trim(void)
{
    enum { N = 100000 };
    void **p = pm_i_libc_malloc(N * sizeof *p);
    PM_CHECK(p != NULL);
    for (size_t i = 0; i < N; i++)
        p[i] = malloc(64 + i % 64);
    for (size_t i = 0; i < N; i++)
        free(p[(i * 7919) % N]);
    pm_i_libc_free(p);
    struct pm_stats before, after;
    pm_get_stats(&before);
    int r = malloc_trim(0);
    PM_CHECK(r == 0 || r == 1);
    pm_get_stats(&after);
    fprintf(stderr, "  malloc_trim: %d; arenas %zu -> %zu, cached blocks %zu -> %zu\n", r,
            before.arenas_current, after.arenas_current, before.blocks_in_thread_caches,
            after.blocks_in_thread_caches);
    PM_CHECK_EQ(after.blocks_in_thread_caches, 0);
    if (before.arenas_current > 4 && !pm_i_pool_valgrind(NULL)) {
        PM_CHECK_EQ(r, 1);
        PM_CHECK(after.arenas_current <= 2);
    }
}

static void test_mode_is_fixed(void)
{
    const char *other = strcmp(pm_mode_name(), "malloc") == 0 ? "default" : "malloc";
    errno = 0;
    int rc = pm_set_mode(other);
    if (pm_i_mode_find(other, strlen(other)) == pm_i_mode_find(pm_mode_name(), strlen(pm_mode_name()))) {
        PM_CHECK_EQ(rc, 0); /* the same mode under another name */
    } else {
        PM_CHECK_EQ(rc, -1);
        PM_CHECK_EQ(errno, EBUSY);
    }
}

int main(void)
{
    PM_RUN(test_setup_did_not_allocate); /* first: test_early_arena uses the arena */
    PM_RUN(test_first_usable_size_does_not_allocate); /* before test_usable_size */
    PM_RUN(test_goes_through_mem_domain);
    PM_RUN(test_realloc_zero_frees);
    PM_RUN(test_errors_set_enomem);
    PM_RUN(test_free_keeps_errno_every_kind);
    PM_RUN(test_free_keeps_errno_through_hook);
    PM_RUN(test_free_keeps_errno_through_reports);
    PM_RUN(test_posix_memalign);
    PM_RUN(test_aligned_alloc_memalign);
    PM_RUN(test_valloc_pvalloc);
    PM_RUN(test_usable_size);
    PM_RUN(test_early_arena);
    PM_RUN(test_foreign_block);
    PM_RUN(test_report_names_realloc);
    PM_RUN(test_report_names_malloc_trim);
    PM_RUN(test_report_names_memalign_family);
    PM_RUN(test_libc_names_go_through_mem_domain);
    PM_RUN(test_libc_names_aligned);
    PM_RUN(test_libc_names_mix);
    PM_RUN(test_report_names_libc_names);
    PM_RUN(test_usable_size_of_freed_damaged);
    PM_RUN(test_malloc_trim);
    PM_RUN(test_mode_is_fixed);
    return pm_test_done();
}
