/*
 * modes/raw.c - the `malloc` mode's allocator: libc's malloc family.
 *
 * How we reach libc without recursion. Once the malloc override is linked in
 * (or preloaded), the symbol `malloc` is ours, so calling malloc() from here
 * would come straight back into pymalloc. On glibc we therefore call the
 * allocator under its other exported names, __libc_malloc, __libc_calloc,
 * __libc_realloc, __libc_free and __libc_memalign: these are glibc's own
 * implementations (ptmalloc), exported since glibc 2.2.5 precisely so that
 * malloc replacements and debuggers can reach them, and no symbol
 * interposition can redirect them back to us. No dlsym(RTLD_NEXT, ...) is
 * needed, so there is no bootstrap problem either (dlsym itself allocates).
 *
 * In a sanitizer build (ASan, TSan) the sanitizer owns `malloc` and must see
 * every block, or it reports false races and misses real bugs, so the plain
 * names are used there (the override is not built with sanitizers). On a libc
 * without the __libc_ names (musl, the BSDs) the build also uses the plain
 * names; the override is then only supported where the platform offers
 * another way to reach the system allocator.
 *
 * The pm_* layer has already handled the edge cases, except that this
 * allocator must honour the pm_* rules for size 0: malloc(0) and calloc with a
 * zero product give a unique non-NULL block, and realloc(p, 0) returns a
 * minimal block and never frees (glibc's realloc(p, 0) frees and returns NULL).
 */
#define _GNU_SOURCE 1 /* dladdr */
#include "../src/pm_internal.h"

#include <dlfcn.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

/* PM_UNDER_SANITIZER: pm_internal.h. */

#if defined(__GLIBC__) && !defined(PM_UNDER_SANITIZER)
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
extern void *__libc_memalign(size_t, size_t);
#define PM_LIBC_MALLOC __libc_malloc
#define PM_LIBC_CALLOC __libc_calloc
#define PM_LIBC_REALLOC __libc_realloc
#define PM_LIBC_FREE __libc_free
#define PM_LIBC_MEMALIGN __libc_memalign
#else
#define PM_LIBC_MALLOC malloc
#define PM_LIBC_CALLOC calloc
#define PM_LIBC_REALLOC realloc
#define PM_LIBC_FREE free
#define PM_LIBC_MEMALIGN plain_memalign
static void *plain_memalign(size_t alignment, size_t n)
{
    void *p = NULL; /* posix_memalign: no size-multiple rule, unlike aligned_alloc */
    return posix_memalign(&p, alignment, n) == 0 ? p : NULL;
}
#endif

void *pm_i_libc_malloc(size_t n) { return PM_LIBC_MALLOC(n ? n : 1); }

void *pm_i_libc_calloc(size_t nelem, size_t elsize)
{
    if (nelem == 0 || elsize == 0)
        nelem = elsize = 1;
    return PM_LIBC_CALLOC(nelem, elsize);
}

void *pm_i_libc_realloc(void *p, size_t n) { return PM_LIBC_REALLOC(p, n ? n : 1); }

void pm_i_libc_free(void *p) { PM_LIBC_FREE(p); }

void *pm_i_libc_memalign(size_t alignment, size_t n)
{
    return PM_LIBC_MEMALIGN(alignment, n ? n : 1);
}

/* glibc exports no second name for malloc_usable_size, and once the override
 * defines `malloc_usable_size` a direct call would come back to us. The
 * blocks are __libc_malloc's, so ask the library that defines the
 * __libc_malloc we call: glibc, or an allocator preloaded after us that
 * replaces it too (tcmalloc does). Not simply the next definition after
 * ours (RTLD_NEXT): with an allocator after us in LD_PRELOAD that replaces
 * malloc but not __libc_malloc (pymalloc-run puts itself first), that one
 * was asked about glibc's blocks, and crashed (jemalloc). Looked up once:
 * by the override's constructor (pm_i_libc_usable_resolve), else by the
 * first call, from malloc_usable_size(), never from inside malloc, so the
 * loader's own allocations are safe here, except in a signal handler that
 * interrupted malloc: hence the constructor. */
typedef size_t (*usable_fn)(void *);
static _Atomic(usable_fn) libc_usable;

#if defined(__GLIBC__) && !defined(PM_UNDER_SANITIZER)
/* Symbol `name` as defined by the object holding function f (and its
 * dependencies), if that is not this library; else NULL. */
static void *symbol_of_object_of(void *(*f)(size_t), const char *name)
{
    Dl_info at, self;
    void *addr, *me = (void *)(uintptr_t)&pm_i_libc_usable_size;
    memcpy(&addr, &f, sizeof addr);
    if (dladdr(addr, &at) == 0 || at.dli_fname == NULL || at.dli_fname[0] == '\0' ||
        dladdr(me, &self) == 0 || at.dli_fbase == self.dli_fbase)
        return NULL;
    /* The next definition after ours, when it is that object's (glibc's,
     * as a rule): no dlopen, which allocates (for glibc, the search list
     * of a library loaded at start-up: 40 bytes, kept), and the override's
     * constructor makes this look-up. */
    Dl_info next_at;
    void *next = dlsym(RTLD_NEXT, name);
    if (next != NULL && dladdr(next, &next_at) != 0 && next_at.dli_fbase == at.dli_fbase)
        return next;
    void *h = dlopen(at.dli_fname, RTLD_LAZY | RTLD_NOLOAD); /* loaded already */
    if (h == NULL)
        return NULL;
    void *sym = dlsym(h, name);
    if (sym != NULL && dladdr(sym, &at) != 0 && at.dli_fbase == self.dli_fbase)
        sym = NULL; /* ours (an object that does not define it, searched on) */
    return sym;
}

/* Symbol `name` of the library that serves __libc_malloc, else the next
 * definition after ours. */
static void *libc_symbol(const char *name)
{
    void *sym = symbol_of_object_of(PM_LIBC_MALLOC, name);
    return sym != NULL ? sym : dlsym(RTLD_NEXT, name);
}
#endif

#if defined(__GLIBC__) && !defined(PM_UNDER_SANITIZER)
static usable_fn libc_usable_fn(void)
{
    usable_fn fn = atomic_load_explicit(&libc_usable, memory_order_acquire);
    if (fn == NULL) {
        void *sym = libc_symbol("malloc_usable_size");
        memcpy(&fn, &sym, sizeof fn); /* POSIX: dlsym results are callable */
        if (fn == NULL)
            fn = malloc_usable_size; /* not overridden: the symbol is libc's */
        atomic_store_explicit(&libc_usable, fn, memory_order_release);
    }
    return fn;
}
#endif

size_t pm_i_libc_usable_size(void *p)
{
#if defined(__GLIBC__) && !defined(PM_UNDER_SANITIZER)
    return libc_usable_fn()(p);
#else
    (void)libc_usable;
    return malloc_usable_size(p);
#endif
}

/* The look-up allocates (dlopen, dlsym) and takes the loader's lock: done
 * in its first call, from a signal handler's malloc_usable_size that
 * interrupted malloc, it allocated inside the interrupted malloc (malloc
 * mode: glibc's, whose heap it broke, "malloc assertion failure in
 * sysmalloc"). */
void pm_i_libc_usable_resolve(void)
{
#if defined(__GLIBC__) && !defined(PM_UNDER_SANITIZER)
    (void)libc_usable_fn();
#endif
}

/* malloc_trim of the library that serves __libc_malloc (glibc), found as
 * malloc_usable_size is, for the override's malloc_trim. */
typedef int (*trim_fn)(size_t);
static _Atomic(trim_fn) libc_trim;

static int no_trim(size_t pad)
{
    (void)pad;
    return 0;
}

int pm_i_libc_trim(size_t pad)
{
#if defined(__GLIBC__) && !defined(PM_UNDER_SANITIZER)
    trim_fn fn = atomic_load_explicit(&libc_trim, memory_order_acquire);
    if (fn == NULL) {
        void *sym = libc_symbol("malloc_trim");
        memcpy(&fn, &sym, sizeof fn);
        if (fn == NULL)
            fn = no_trim;
        atomic_store_explicit(&libc_trim, fn, memory_order_release);
    }
    return fn(pad);
#else
    (void)libc_trim;
    return no_trim(pad);
#endif
}

/* ---------------------------------------------------------------------------
 * glibc's chunk header of a block, for the debug hooks: a write past the
 * end of one block that skips its 16-byte trailer lands in the header of
 * the next chunk (its size word, the 8 bytes right before the block), and
 * glibc's free then aborts with a message naming the wrong bug ("double
 * free or corruption (out)", "free(): invalid size"). The hooks check the
 * word first and report the damage themselves.
 *
 * glibc, 64-bit: a chunk's size word is at block - 8, the size a multiple
 * of 16, bit 1 set for an mmapped chunk (bits 0 and 2 are flags too). A
 * chunk for a request of req bytes is at least nb = max(32, (req + 8 + 15)
 * & ~15) bytes; one from the heap at most nb + 32 (glibc splits off a
 * remainder of 32 bytes or more: malloc, calloc, realloc in place,
 * memalign's trimmed end); an mmapped one passes the test glibc's own
 * munmap_chunk makes (chunk start minus prev_size, and prev_size + size,
 * page-aligned), and its mapping (prev_size + size) is no larger than
 * glibc makes for it (pm_i_mmap_chunk_fits: a write into the size word's
 * high bytes passes glibc's test, whose free then unmaps far too much).
 *
 * Only when __libc_malloc is glibc's own: not under valgrind (whose
 * replacement has a redzone there, which memcheck forbids reading) or a
 * sanitizer, and not when an allocator loaded after us replaced
 * __libc_malloc (tcmalloc and jemalloc do): a self-test on first use
 * allocates two blocks and checks their headers look as described. */
_Atomic size_t pm_i_libc_chunk_page; /* pm_internal.h: 0, the check off */
uintptr_t pm_i_libc_heap_floor;      /* pm_internal.h */
#ifdef PM_GLIBC_CHUNKS
_Atomic int pm_i_libc_probed; /* pm_internal.h */
#else
_Atomic int pm_i_libc_probed = 1; /* nothing to test */
#endif

#ifdef PM_GLIBC_CHUNKS
#if PM_HAVE_VALGRIND
#include <valgrind/valgrind.h>
#endif
#include <unistd.h>

void *pm_i_libc_break(void) { return sbrk(0); }

/* The self-test: a heap chunk (not mmapped) of the expected size. */
static int heap_chunk_ok(const void *block, size_t req)
{
    size_t word = ((const size_t *)block)[-1];
    return (word & 2) == 0 && pm_i_heap_chunk_fits(word, req);
}

static int under_valgrind(void)
{
#if PM_HAVE_VALGRIND
    if (RUNNING_ON_VALGRIND)
        return 1;
#endif
    /* Built without valgrind's headers: its preloads are in LD_PRELOAD. */
    const char *pre = pm_i_getenv("LD_PRELOAD");
    return pre != NULL && strstr(pre, "vgpreload") != NULL;
}

/* The self-test, once, just before the debug hooks' first request that the
 * C library serves (modes/debug.c, libc_probe; not under any lock of
 * theirs): sets pm_i_libc_chunk_page if it passes. Not at their set-up,
 * which a program's first pm_* call makes: from a signal handler that
 * interrupted glibc's malloc (a program that calls glibc's malloc and the
 * pm_* API), the test's malloc and free corrupted glibc's heap (glibc's
 * abort, "corrupted size vs. prev_size", or SIGSEGV: 5 runs of 40 in
 * pymalloc_debug, whose handler's small block needs nothing of glibc's). */
void pm_i_libc_header_probe(void)
{
    if (atomic_exchange(&pm_i_libc_probed, 1))
        return;
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0 || under_valgrind())
        return;
    void *brk0 = sbrk(0); /* before the hooks' first block from libc: their floor */
    if (brk0 != (void *)-1)
        pm_i_libc_heap_floor = (uintptr_t)brk0;
    void *a = PM_LIBC_MALLOC(24), *b = PM_LIBC_MALLOC(1000);
    int ok = a != NULL && b != NULL && heap_chunk_ok(a, 24) && heap_chunk_ok(b, 1000);
    PM_LIBC_FREE(a);
    PM_LIBC_FREE(b);
    if (ok)
        atomic_store_explicit(&pm_i_libc_chunk_page, (size_t)page, memory_order_release);
}
#else
void pm_i_libc_header_probe(void) {}
void *pm_i_libc_break(void) { return NULL; }
#endif

static void *raw_malloc(void *ctx, size_t n)
{
    (void)ctx;
    return pm_i_libc_malloc(n);
}

static void *raw_calloc(void *ctx, size_t nelem, size_t elsize)
{
    (void)ctx;
    return pm_i_libc_calloc(nelem, elsize);
}

static void *raw_realloc(void *ctx, void *p, size_t n)
{
    (void)ctx;
    return pm_i_libc_realloc(p, n);
}

static void raw_free(void *ctx, void *p)
{
    (void)ctx;
    pm_i_libc_free(p);
}

static void *raw_memalign(void *ctx, size_t alignment, size_t n)
{
    (void)ctx;
    return pm_i_libc_memalign(alignment, n);
}

static size_t raw_usable_size(void *ctx, void *p)
{
    (void)ctx;
    return pm_i_libc_usable_size(p);
}

const pm_i_base pm_i_raw_base = {
    .a = {
        .ctx = NULL,
        .malloc = raw_malloc,
        .calloc = raw_calloc,
        .realloc = raw_realloc,
        .free = raw_free,
    },
    .xctx = NULL,
    .memalign = raw_memalign,
    .usable_size = raw_usable_size,
};
