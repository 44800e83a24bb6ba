/*
 * fuzz/operations.c - the `operations` fuzz target: allocation sequences
 * checked against a shadow model.
 *
 * The input is a program over a table of NSLOTS slots:
 *
 *   byte 0     the mode: pm_mode_names()[byte % count], set with pm_set_mode
 *   then ops   an opcode byte (% OP_COUNT) and its argument bytes; reads past
 *              the end give 0, so every byte string is a valid program
 *
 *   MALLOC   slot dom size            CALLOC  slot dom elsize# total [nelem]
 *   REALLOC  slot dom size [how]      FREE    slot dom
 *   MEMALIGN slot dom align size [how] WRITE  slot off len value how
 *   CHECK    slot slack               BADSIZE how dom which
 *   HOOK     dom push                 THREAD  len steps
 *   TRIM                              BURST   dom size count how [seed]
 *
 * The opcode is byte % OP_COUNT for bytes below 0xF0 (OP_BURST_BYTE), and
 * BURST for 0xF0..0xFF (op_burst): an input written before BURST existed
 * decodes as it did unless one of its opcode bytes is 0xF0 or more.
 *
 * `dom` (% 5) picks the raw, mem or obj domain (pm_raw_malloc, ...), the
 * malloc family, or the malloc family by glibc's other names
 * (__libc_malloc, __libc_calloc, __libc_realloc, __libc_memalign,
 * __libc_valloc, __libc_pvalloc) (an allocation into a full slot frees the
 * old block first, through its own domain; a block is always reallocated
 * and freed through the domain that made it, a block of either malloc
 * family by free, __libc_free or cfree, in turn). Sizes are drawn from
 * four ranges: 0..63, 64..575 (around the 512-byte pool limit), up to 16
 * KiB and up to 256 KiB (past glibc's mmap threshold). The bracketed bytes
 * are read only where they apply: nelem when the element size is 0, `how`
 * when the block's domain is either malloc family.
 *
 * The malloc family is src/override.c's code itself, compiled a second time
 * with its exported names renamed (-DPM_O_PREFIX=pm_fz_: pm_fz_malloc, ...,
 * and no load-time constructor; fuzz/CMakeLists.txt) and called directly:
 * the sanitizers own the real `malloc` symbols in the libFuzzer and sanitizer
 * builds, and the real ones would also carry the harness's own allocations.
 * The real interposition (LD_PRELOAD, linking) is tested by tests/override/.
 * It follows glibc's rules where they differ from the pm_* API, and the
 * model with it: realloc(p, 0) frees p and returns NULL (the slot empties);
 * REALLOC's `how` (% 4) calls realloc or reallocarray (n x 1, 1 x n, or
 * n / k x k); MEMALIGN's `how` (% 5) calls aligned_alloc, memalign,
 * posix_memalign, valloc or pvalloc, with the alignment 2^(align % 17), or
 * 3 x 2^(align % 17) when how & 8 (aligned_alloc and memalign round it up to
 * a power of two, posix_memalign refuses it and anything below
 * sizeof(void *) with EINVAL, the slot staying empty; posix_memalign must
 * leave errno alone and *out untouched on failure); pvalloc's block is its
 * size rounded up to whole pages; malloc_usable_size equals the MEM domain's
 * usable size. BADSIZE (how % 8 there) adds overflowing reallocarray, huge
 * sizes for every aligned function, impossible alignments (EINVAL) and an
 * alignment of 2^63 (ENOMEM).
 *
 * The shadow model keeps, per slot, the size, the domain, the alignment asked
 * for and a copy of the expected contents (the harness fills each new block
 * with a pattern and mirrors every write). After every step it checks every
 * live block: contents equal the shadow (so they survived realloc and nobody
 * else wrote into them), the alignment holds (16 = alignof(max_align_t) for
 * malloc/calloc/realloc, the requested one for aligned blocks),
 * usable_size >= size, and no two live blocks overlap. A calloc block must be
 * all zero; a size above PTRDIFF_MAX or an overflowing calloc must give NULL
 * with errno = ENOMEM and leave the slot's block intact.
 *
 * HOOK stacks (push) or removes (pop) a pass-through hook on a domain, up to
 * MAX_HOOKS deep, the documented way (get the current allocator, set the
 * hook); the malloc family has no table slot of its own, so a HOOK on it is
 * a HOOK on MEM, which it goes through. A hook checks the contract the entry
 * points promise an allocator (no size above PTRDIFF_MAX, no overflowing
 * calloc, no NULL to realloc or free) and counts its calls: after every step
 * each hook must have seen exactly the calls that had to reach it (one per
 * malloc, calloc, realloc and free of a non-NULL block, in its domain or,
 * for MEM, in the malloc family too, where realloc(p, 0) counts as the free
 * it is and an aligned allocation with an alignment up to 16 as the malloc
 * it is; none for invalid sizes, free(NULL) or the other aligned
 * allocations, which bypass hooks by design).
 *
 * THREAD runs two threads at once (op_thread): a new thread runs the next
 * `len` bytes as a program of their own on the upper half of the slots,
 * while this thread runs its next `steps` % 64 + 1 operations on the lower
 * half; the new thread then exits and is joined, its blocks left in their
 * slots for later steps to reallocate and free. TRIM calls pm_trim (this
 * thread's cache back to the pools, empty arenas unmapped), also while the
 * other thread of a section allocates.
 *
 * BURST allocates up to 2048 blocks of one size in a row and frees them
 * all, in an order the input picks, in one step (op_burst): the thread
 * caches' refills and full-bin flushes, pools and arenas used up and
 * emptied, which sixteen slots never reach.
 *
 * No operation is an error, so no heap error may be reported: an error
 * handler fails the oracle on any report (also with
 * PYMALLOC_ON_ERROR=report, where the library would count it and go on),
 * and pm_error_count must not move during an input.
 *
 * At the end of the input the hooks are removed, every block is freed and
 * check_allocator_state() runs.
 *
 * One mode per process. pm_set_mode only works before the first allocation
 * of the process, and libFuzzer runs many inputs in one process, so:
 *   - under libFuzzer, LLVMFuzzerInitialize fixes the mode given by
 *     PYMALLOC_MODE (one fuzzer run per mode); an input whose first byte
 *     names a different mode is rejected (return -1: not run, not kept);
 *   - fuzz/replay.c forks a fresh process per input, in which pm_set_mode
 *     installs the mode the input names, so a corpus replays in every mode
 *     its inputs name.
 */
#include "fuzz.h"
#include "../src/pm_debug.h"
#include "../src/pm_override.h"

#include <errno.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#ifndef PM_O_PREFIX
#error "operations.c calls the renamed copy of the override: build it with -DPM_O_PREFIX=pm_fz_"
#endif

#define NSLOTS 16
#define MAX_STEPS 1024
#define MAX_BLOCK (256u * 1024u)
#define MAX_LIVE (512u * 1024u) /* soft cap on live bytes, keeps steps cheap */
#define BASE_ALIGN alignof(max_align_t)

/* ---------------------------------------------------------------------------
 * The allocation interfaces under test: the three pm_* domains and the
 * malloc family. The malloc family is the override's code (src/override.c)
 * compiled under other names (pm_fz_malloc, ...: PM_O_NAME, -DPM_O_PREFIX)
 * and called directly, since the sanitizers own the real `malloc` symbols;
 * the real interposition is tested by tests/override/.
 */
typedef struct fz_domain {
    const char *name;
    pm_domain table; /* the table domain its calls go through (and its hooks) */
    int glibc; /* glibc's rules: realloc(p, 0) frees; the aligned family */
    void *(*malloc)(size_t);
    void *(*calloc)(size_t, size_t);
    void *(*realloc)(void *, size_t);
    void (*free)(void *);
    void *(*memalign)(size_t alignment, size_t n); /* alignment > 16 */
    size_t (*usable)(void *p);
    void *(*valloc)(size_t n), *(*pvalloc)(size_t n); /* the malloc family's only */
} fz_domain;

#define FZ_DOMAIN_GLUE(lower, D)                                                       \
    static void *lower##_memalign(size_t a, size_t n) { return pm_i_domain_memalign(D, a, n); } \
    static size_t lower##_usable(void *p) { return pm_i_domain_usable_size(D, p); }

FZ_DOMAIN_GLUE(raw, PM_DOMAIN_RAW)
FZ_DOMAIN_GLUE(mem, PM_DOMAIN_MEM)
FZ_DOMAIN_GLUE(obj, PM_DOMAIN_OBJ)

/* Indexed by the domain byte; the pm_* domains first, at their pm_domain
 * values, so that an input written for three domains decodes as before
 * whenever its domain bytes are below 3. */
enum { DOM_RAW, DOM_MEM, DOM_OBJ, DOM_LIBC, DOM_NAMES };
static const fz_domain domains[] = {
    [DOM_RAW] = {"raw", PM_DOMAIN_RAW, 0, pm_raw_malloc, pm_raw_calloc, pm_raw_realloc,
                 pm_raw_free, raw_memalign, raw_usable, NULL, NULL},
    [DOM_MEM] = {"mem", PM_DOMAIN_MEM, 0, pm_mem_malloc, pm_mem_calloc, pm_mem_realloc,
                 pm_mem_free, mem_memalign, mem_usable, NULL, NULL},
    [DOM_OBJ] = {"obj", PM_DOMAIN_OBJ, 0, pm_obj_malloc, pm_obj_calloc, pm_obj_realloc,
                 pm_obj_free, obj_memalign, obj_usable, NULL, NULL},
    [DOM_LIBC] = {"malloc family", PM_DOMAIN_MEM, 1, pm_fz_malloc, pm_fz_calloc, pm_fz_realloc,
                  pm_fz_free, pm_fz_memalign, pm_fz_malloc_usable_size, pm_fz_valloc,
                  pm_fz_pvalloc},
    /* glibc's other names of the malloc family (__libc_malloc, ...), which
     * have call paths of their own (each report names the function called);
     * a block of either family is freed by free, __libc_free or cfree
     * (release), as programs may mix them. */
    [DOM_NAMES] = {"glibc's names", PM_DOMAIN_MEM, 1, pm_fz___libc_malloc, pm_fz___libc_calloc,
                   pm_fz___libc_realloc, pm_fz___libc_free, pm_fz___libc_memalign,
                   pm_fz_malloc_usable_size, pm_fz___libc_valloc, pm_fz___libc_pvalloc},
};
#define NDOMAINS (sizeof domains / sizeof domains[0])
static const char *const table_names[PM_DOMAIN_COUNT] = {"raw", "mem", "obj"};

/* ---------------------------------------------------------------------------
 * Pass-through hooks (HOOK).
 */
#define MAX_HOOKS 3

/* The four functions of an allocator, counted apart: a call must reach
 * the hook's function of its own kind (a calloc is no malloc + memset). */
enum { K_MALLOC, K_CALLOC, K_REALLOC, K_FREE, K_COUNT };
static const char *const kind_names[K_COUNT] = {"malloc", "calloc", "realloc", "free"};

typedef struct fz_hook {
    pm_allocator below; /* what was installed before this hook */
    unsigned dom;
    _Atomic unsigned long calls[K_COUNT]; /* calls that reached this hook (from any thread) */
    unsigned long expected[K_COUNT]; /* dispatches[dom] when it was pushed */
} fz_hook;

/* Indexed by the table domain (pm_domain): a hook on MEM sees the calls of
 * the mem domain and of the malloc family. */
static fz_hook hooks[PM_DOMAIN_COUNT][MAX_HOOKS];
static int nhooks[PM_DOMAIN_COUNT];
/* Calls the harness made that must reach table domain d's allocator. */
static _Atomic unsigned long dispatches[PM_DOMAIN_COUNT][K_COUNT];

/* One call of domain dom, of kind k, reached its table domain's allocator
 * (and hooks). */
static void dispatched(unsigned dom, int k) { dispatches[domains[dom].table][k]++; }

static void hook_violation(const fz_hook *h, const char *what)
{
    FZ_FAIL("mode %s: the %s hook was called with %s", pm_mode_name(), table_names[h->dom],
            what);
}

static void *hk_malloc(void *ctx, size_t n)
{
    fz_hook *h = ctx;
    h->calls[K_MALLOC]++;
    if (n > (size_t)PTRDIFF_MAX)
        hook_violation(h, "malloc(n > PTRDIFF_MAX)");
    return h->below.malloc(h->below.ctx, n);
}

static void *hk_calloc(void *ctx, size_t nelem, size_t elsize)
{
    fz_hook *h = ctx;
    h->calls[K_CALLOC]++;
    if (elsize != 0 && nelem > (size_t)PTRDIFF_MAX / elsize)
        hook_violation(h, "calloc(nelem * elsize > PTRDIFF_MAX)");
    return h->below.calloc(h->below.ctx, nelem, elsize);
}

static void *hk_realloc(void *ctx, void *p, size_t n)
{
    fz_hook *h = ctx;
    h->calls[K_REALLOC]++;
    if (p == NULL)
        hook_violation(h, "realloc(NULL, n)");
    if (n > (size_t)PTRDIFF_MAX)
        hook_violation(h, "realloc(p, n > PTRDIFF_MAX)");
    return h->below.realloc(h->below.ctx, p, n);
}

static void hk_free(void *ctx, void *p)
{
    fz_hook *h = ctx;
    h->calls[K_FREE]++;
    if (p == NULL)
        hook_violation(h, "free(NULL)");
    h->below.free(h->below.ctx, p);
}

static void same_allocator(const pm_allocator *a, const pm_allocator *b, unsigned dom,
                           const char *when)
{
    if (a->ctx != b->ctx || a->malloc != b->malloc || a->calloc != b->calloc ||
        a->realloc != b->realloc || a->free != b->free)
        FZ_FAIL("pm_get_allocator(%s) %s: not the allocator expected", table_names[dom], when);
}

static void hook_push(unsigned dom)
{
    fz_hook *h = &hooks[dom][nhooks[dom]];
    memset(h, 0, sizeof *h);
    h->dom = dom;
    for (int k = 0; k < K_COUNT; k++)
        h->expected[k] = dispatches[dom][k];
    if (pm_get_allocator((pm_domain)dom, &h->below) != 0)
        FZ_FAIL("pm_get_allocator(%s) failed", table_names[dom]);
    pm_allocator mine = {h, hk_malloc, hk_calloc, hk_realloc, hk_free}, now;
    if (pm_set_allocator((pm_domain)dom, &mine) != 0)
        FZ_FAIL("pm_set_allocator(%s) failed", table_names[dom]);
    nhooks[dom]++;
    pm_get_allocator((pm_domain)dom, &now);
    same_allocator(&now, &mine, dom, "after a hook was set");
}

static void hook_pop(unsigned dom)
{
    fz_hook *h = &hooks[dom][--nhooks[dom]];
    if (pm_set_allocator((pm_domain)dom, &h->below) != 0)
        FZ_FAIL("pm_set_allocator(%s) failed", table_names[dom]);
    pm_allocator now;
    pm_get_allocator((pm_domain)dom, &now);
    same_allocator(&now, &h->below, dom, "after a hook was removed");
}

/* ---------------------------------------------------------------------------
 * The shadow model.
 */
typedef struct slot {
    unsigned char *p;      /* the block, NULL if the slot is empty */
    unsigned char *shadow; /* its expected contents (harness memory) */
    size_t size;
    size_t align; /* alignment the block must have */
    unsigned dom;
    uint32_t serial; /* seeds the fill pattern */
} slot;

static struct {
    slot slots[NSLOTS];
    _Atomic size_t live_bytes;
    _Atomic uint32_t serial;
    _Atomic size_t burst_blocks; /* BURST blocks allocated by this input */
    const char *mode; /* canonical name of the mode this input runs in */
} S;

/* The running thread's part of the input (THREAD): its step and operation,
 * for messages, and the slots it owns, base .. base + count - 1 (all of
 * them outside a THREAD section). `partial` is set in a section, where each
 * thread checks only its own slots after a step, and the checks that need
 * the whole table (hooks, class counts) wait for its end. */
static __thread struct {
    unsigned step;
    const char *op;
    int base, count;
    int partial;
    int worker; /* the new thread of a THREAD section */
} T = {0, NULL, 0, NSLOTS, 0, 0};

static void verify_hooks(void)
{
    for (unsigned d = 0; d < PM_DOMAIN_COUNT; d++)
        for (int i = 0; i < nhooks[d]; i++) {
            const fz_hook *h = &hooks[d][i];
            for (int k = 0; k < K_COUNT; k++)
                if (h->calls[k] != dispatches[d][k] - h->expected[k])
                    FZ_FAIL("step %u (%s), mode %s: hook %d of %s saw %lu %s calls, expected %lu",
                            T.step, T.op, pm_mode_name(), i, table_names[d], h->calls[k],
                            kind_names[k], dispatches[d][k] - h->expected[k]);
        }
}

static void fail_block(const slot *s, const char *what, size_t off)
{
    FZ_FAIL("step %u (%s), mode %s: slot %d (%s, %zu bytes, serial %u, block %p): %s at offset %zu",
            T.step, T.op, S.mode, (int)(s - S.slots), domains[s->dom].name, s->size,
            (unsigned)s->serial, (void *)s->p, what, off);
}

/* The fill pattern: block byte i of serial s is pat[i + s % 256]. A table,
 * so that filling and comparing are memcpy/memcmp (the fuzzer's compare
 * tracing makes byte loops in the harness slow). */
static unsigned char pat[MAX_BLOCK + 256];
static const unsigned char zeros[MAX_BLOCK];
static unsigned char cleanbytes[MAX_BLOCK]; /* 0xCD (init_pattern) */

static void init_pattern(void)
{
    for (size_t i = 0; i < sizeof pat; i++)
        pat[i] = (unsigned char)(i * 7u + (i >> 8) + 1u);
    memset(cleanbytes, 0xCD, sizeof cleanbytes);
}

/* In a debug mode, the bytes [from, to) the library just handed out (a new
 * block's, or those a realloc grew by) must be CLEANBYTE, 0xCD: every
 * domain is wrapped by the debug hooks there, and a hook of the harness
 * passes them on. */
static int fresh_checked;
static void fail_block(const slot *s, const char *what, size_t off);
static void verify_fresh(const slot *s, size_t from, size_t to)
{
    if (!fresh_checked || to <= from || memcmp(s->p + from, cleanbytes, to - from) == 0)
        return;
    size_t i = from;
    while (s->p[i] == 0xCD)
        i++;
    char what[64];
    snprintf(what, sizeof what, "new byte 0x%02x, not 0xcd", s->p[i]);
    fail_block(s, what, i);
}

/* Write the fill pattern into [from, to) of the block and its shadow, the
 * library's fill there checked first. */
static void fill(slot *s, size_t from, size_t to)
{
    verify_fresh(s, from, to);
    const unsigned char *src = pat + from + s->serial % 256u;
    memcpy(s->p + from, src, to - from);
    memcpy(s->shadow + from, src, to - from);
}

static void verify_contents(const slot *s)
{
    if (memcmp(s->p, s->shadow, s->size) == 0)
        return;
    size_t i = 0;
    while (s->p[i] == s->shadow[i])
        i++;
    char what[64];
    snprintf(what, sizeof what, "contents differ (0x%02x, expected 0x%02x)", s->p[i],
             s->shadow[i]);
    fail_block(s, what, i);
}

static void verify_block(const slot *s)
{
    if ((uintptr_t)s->p % s->align != 0)
        fail_block(s, "misaligned block", s->align);
    size_t usable = domains[s->dom].usable(s->p);
    if (usable < s->size)
        fail_block(s, "usable_size below the size", usable);
    if (domains[s->dom].glibc && usable != mem_usable(s->p))
        fail_block(s, "malloc_usable_size differs from the MEM domain's usable size", usable);
    verify_contents(s);
}

/* After every step: each live block is intact and no two overlap (of the
 * running thread's slots, in a THREAD section). */
static void verify_all(void)
{
    for (int i = T.base; i < T.base + T.count; i++) {
        const slot *a = &S.slots[i];
        if (a->p == NULL)
            continue;
        verify_block(a);
        uintptr_t a0 = (uintptr_t)a->p, a1 = a0 + (a->size ? a->size : 1);
        for (int j = i + 1; j < T.base + T.count; j++) {
            const slot *b = &S.slots[j];
            if (b->p == NULL)
                continue;
            uintptr_t b0 = (uintptr_t)b->p, b1 = b0 + (b->size ? b->size : 1);
            if (a0 < b1 && b0 < a1)
                FZ_FAIL("step %u (%s), mode %s: slots %d [%p, +%zu) and %d [%p, +%zu) overlap",
                        T.step, T.op, S.mode, i, (void *)a->p, a->size, j, (void *)b->p,
                        b->size);
        }
    }
}

/* Forget the slot's block (freed or handed back by the library). */
static void drop(slot *s)
{
    free(s->shadow);
    S.live_bytes -= s->size;
    memset(s, 0, sizeof *s);
}

/* The malloc family's three names of free, taken in turn by step (so the
 * blocks of malloc and of __libc_malloc are each freed by all three). */
static void (*const libc_frees[3])(void *) = {pm_fz_free, pm_fz___libc_free, pm_fz_cfree};

static void release(slot *s)
{
    verify_contents(s);
    dispatched(s->dom, K_FREE);
    if (domains[s->dom].glibc)
        libc_frees[T.step % 3u](s->p);
    else
        domains[s->dom].free(s->p);
    drop(s);
}

/* Take a block the library just returned into an empty slot. */
static void adopt(slot *s, void *p, size_t size, unsigned dom, size_t align)
{
    s->p = p;
    s->size = size;
    s->dom = dom;
    s->align = align;
    s->serial = ++S.serial; /* an atomic add: THREAD's two threads adopt at once */
    s->shadow = malloc(size ? size : 1);
    if (s->shadow == NULL)
        FZ_FAIL("harness out of memory");
    S.live_bytes += size;
    if (p == NULL)
        fail_block(s, "allocation failed for a valid size", 0);
}

/* ---------------------------------------------------------------------------
 * Decoding.
 */
static slot *take_slot(fz_in *in) { return &S.slots[T.base + fz_u8(in) % T.count]; }
static unsigned take_dom(fz_in *in) { return fz_u8(in) % (unsigned)NDOMAINS; }

static size_t take_size(fz_in *in)
{
    uint8_t k = fz_u8(in);
    switch (k & 3) {
    case 0:
        return k >> 2;
    case 1:
        return 64u + ((((size_t)k >> 2) & 1u) << 8 | fz_u8(in));
    case 2:
        return fz_u16(in) % (16u * 1024u + 1u);
    default:
        return ((size_t)fz_u16(in) << 2 | ((size_t)k >> 2 & 3u)) % (MAX_BLOCK + 1u);
    }
}

/* Keep the live total near MAX_LIVE: a request that would pass it shrinks. */
static size_t budget(size_t n, size_t replacing)
{
    if (S.live_bytes - replacing + n > MAX_LIVE)
        n %= 4096u;
    return n;
}

/* ---------------------------------------------------------------------------
 * The malloc family's own calls (glibc's rules, src/override.c).
 */

/* realloc(p, n) as the input's byte `how` chooses: realloc, or reallocarray
 * with a product equal to n. */
static void *libc_realloc_how(const fz_domain *D, void *p, size_t n, uint8_t how)
{
    size_t k = n != 0 ? n & -n : 8; /* the largest power of two dividing n, at most 16 */
    if (k > 16)
        k = 16;
    switch (how % 4u) {
    case 0:
        return D->realloc(p, n); /* realloc or __libc_realloc */
    case 1:
        return pm_fz_reallocarray(p, n, 1);
    case 2:
        return pm_fz_reallocarray(p, 1, n);
    default:
        return pm_fz_reallocarray(p, n / k, k);
    }
}

static size_t page_size(void)
{
    long v = sysconf(_SC_PAGESIZE);
    return v > 0 ? (size_t)v : 4096u;
}

static size_t round_pow2(size_t a)
{
    size_t r = 1;
    while (r < a)
        r <<= 1;
    return r;
}

#define ERRNO_SENTINEL EDOM /* what posix_memalign must leave in errno */

/* posix_memalign, checked against its contract: the result is the return
 * value, errno is left alone, *out is set on success only. */
static int libc_posix_memalign(void **out, size_t align, size_t n)
{
    void *const untouched = (void *)&S;
    *out = untouched;
    errno = ERRNO_SENTINEL;
    int rc = pm_fz_posix_memalign(out, align, n);
    if (errno != ERRNO_SENTINEL)
        FZ_FAIL("step %u, mode %s: posix_memalign(%zu, %zu) changed errno to %d", T.step,
                S.mode, align, n, errno);
    if (rc != 0 && *out != untouched)
        FZ_FAIL("step %u, mode %s: posix_memalign(%zu, %zu) failed (%d) but wrote *out", T.step,
                S.mode, align, n, rc);
    return rc;
}

/* MEMALIGN in the malloc family: the function is how % 5 (aligned_alloc,
 * memalign, posix_memalign, valloc, pvalloc); the alignment 2^(a % 17), or
 * 3 * 2^(a % 17) (not a power of two) when how & 8. */
static void libc_aligned(slot *s, unsigned dom, uint8_t a, size_t n, uint8_t how)
{
    unsigned k = a % 17u;
    size_t align = (how & 8) ? (size_t)3 << k : (size_t)1 << k, ps = page_size();
    size_t size = n, want; /* the block's size and the alignment it must have */
    void *p;
    switch (how % 5u) {
    case 0:
    case 1: /* glibc rounds an alignment that is not a power of two up */
        p = (how % 5u == 0 ? pm_fz_aligned_alloc : domains[dom].memalign)(align, n);
        want = round_pow2(align);
        break;
    case 2: {
        int rc = libc_posix_memalign(&p, align, n);
        if (align < sizeof(void *) || (align & (align - 1)) != 0) {
            if (rc != EINVAL)
                FZ_FAIL("step %u, mode %s: posix_memalign(%zu, %zu) gave %d, expected EINVAL",
                        T.step, S.mode, align, n, rc);
            return; /* the slot stays empty */
        }
        if (rc != 0)
            FZ_FAIL("step %u, mode %s: posix_memalign(%zu, %zu) failed: %d", T.step, S.mode,
                    align, n, rc);
        want = align;
        break;
    }
    case 3:
        p = domains[dom].valloc(n);
        want = ps;
        break;
    default:
        size = (n + ps - 1) & ~(ps - 1); /* pvalloc: whole pages, all usable */
        p = domains[dom].pvalloc(n);
        want = ps;
        break;
    }
    /* Alignments up to 16 are served by malloc (and reach the MEM hooks);
     * larger ones by the mode's memalign, which bypasses hooks. */
    if (want <= BASE_ALIGN)
        dispatched(dom, K_MALLOC);
    adopt(s, p, size, dom, want > BASE_ALIGN ? want : BASE_ALIGN);
    fill(s, 0, size);
}

/* ---------------------------------------------------------------------------
 * Operations.
 */
enum { OP_MALLOC, OP_CALLOC, OP_REALLOC, OP_FREE, OP_MEMALIGN, OP_WRITE, OP_CHECK,
       OP_BADSIZE, OP_HOOK, OP_THREAD, OP_TRIM, OP_COUNT };
/* Opcode bytes from here up are BURST (op_burst); the others are
 * byte % OP_COUNT, as before BURST existed, so that an input written
 * without it decodes as it did unless an opcode byte is 0xF0 or more. */
#define OP_BURST_BYTE 0xF0
static const char *const op_names[OP_COUNT] = {"malloc", "calloc", "realloc", "free",
                                               "memalign", "write", "check", "badsize",
                                               "hook", "thread", "trim"};
/* The same, for the steps of a THREAD section's new thread. */
static const char *const worker_op_names[OP_COUNT] = {
    "worker malloc", "worker calloc", "worker realloc", "worker free",
    "worker memalign", "worker write", "worker check", "worker badsize",
    "worker hook", "worker thread", "worker trim"};

static void op_malloc(fz_in *in)
{
    slot *s = take_slot(in);
    unsigned dom = take_dom(in);
    size_t n = take_size(in);
    if (s->p != NULL)
        release(s);
    n = budget(n, 0);
    dispatched(dom, K_MALLOC);
    adopt(s, domains[dom].malloc(n), n, dom, BASE_ALIGN);
    fill(s, 0, n);
}

static void op_calloc(fz_in *in)
{
    static const size_t elsizes[] = {0, 1, 2, 3, 4, 8, 12, 16, 24, 32, 64, 100, 256, 4096};
    slot *s = take_slot(in);
    unsigned dom = take_dom(in);
    size_t elsize = elsizes[fz_u8(in) % (sizeof elsizes / sizeof elsizes[0])];
    size_t total = take_size(in);
    if (s->p != NULL)
        release(s);
    total = budget(total, 0);
    size_t nelem = elsize != 0 ? total / elsize : fz_u8(in);
    size_t n = nelem * elsize;
    dispatched(dom, K_CALLOC);
    adopt(s, domains[dom].calloc(nelem, elsize), n, dom, BASE_ALIGN);
    memset(s->shadow, 0, n);
    if (memcmp(s->p, zeros, n) != 0) {
        size_t i = 0;
        while (s->p[i] == 0)
            i++;
        fail_block(s, "calloc memory not zero", i);
    }
}

/* In the malloc family one more byte picks realloc or reallocarray. */
static void op_realloc(fz_in *in)
{
    slot *s = take_slot(in);
    unsigned dom = take_dom(in);
    size_t n = budget(take_size(in), s->size);
    if (s->p != NULL)
        dom = s->dom; /* a block is reallocated through the domain that made it */
    const fz_domain *D = &domains[dom];
    uint8_t how = D->glibc ? fz_u8(in) : 0;
    if (s->p == NULL) { /* realloc(NULL, n) is malloc(n) */
        dispatched(dom, K_MALLOC);
        adopt(s, D->glibc ? libc_realloc_how(D, NULL, n, how) : D->realloc(NULL, n), n, dom,
              BASE_ALIGN);
        fill(s, 0, n);
        return;
    }
    /* the realloc, or for realloc(p, 0) in glibc's rules the free */
    dispatched(dom, D->glibc && n == 0 ? K_FREE : K_REALLOC);
    if (D->glibc && n == 0) { /* glibc: realloc(p, 0) frees p and returns NULL */
        verify_contents(s);
        void *q = libc_realloc_how(D, s->p, 0, how);
        if (q != NULL)
            fail_block(s, "realloc(p, 0) returned a block instead of freeing p", 0);
        drop(s);
        return;
    }
    unsigned char *q = D->glibc ? libc_realloc_how(D, s->p, n, how) : D->realloc(s->p, n);
    if (q == NULL)
        fail_block(s, "realloc failed for a valid size", n);
    size_t old = s->size, keep = old < n ? old : n;
    s->p = q;
    s->size = keep; /* what must have survived */
    verify_contents(s);
    unsigned char *sh = realloc(s->shadow, n ? n : 1);
    if (sh == NULL)
        FZ_FAIL("harness out of memory");
    s->shadow = sh;
    s->size = n;
    s->align = BASE_ALIGN; /* realloc keeps only the default alignment */
    S.live_bytes += n;
    S.live_bytes -= old;
    fill(s, keep, n);
}

static void op_free(fz_in *in)
{
    slot *s = take_slot(in);
    unsigned dom = take_dom(in);
    if (s->p != NULL)
        release(s);
    else
        domains[dom].free(NULL); /* a no-op */
}

/* In the malloc family one more byte picks the function (libc_aligned). */
static void op_memalign(fz_in *in)
{
    slot *s = take_slot(in);
    unsigned dom = take_dom(in);
    uint8_t a = fz_u8(in);
    size_t n = take_size(in);
    if (s->p != NULL)
        release(s);
    n = budget(n, 0);
    if (domains[dom].glibc) {
        libc_aligned(s, dom, a, n, fz_u8(in));
        return;
    }
    size_t align = (size_t)1 << (5 + a % 12); /* 32 .. 64 KiB */
    adopt(s, domains[dom].memalign(align, n), n, dom, align);
    fill(s, 0, n);
}

static void op_write(fz_in *in)
{
    slot *s = take_slot(in);
    size_t off = fz_u16(in), len = fz_u16(in);
    uint8_t value = fz_u8(in), how = fz_u8(in);
    if (s->p == NULL || s->size == 0)
        return;
    off %= s->size;
    len %= s->size - off + 1;
    if (how & 1) { /* a stretch of the pattern, from another phase */
        memcpy(s->p + off, pat + value, len);
        memcpy(s->shadow + off, pat + value, len);
    } else {
        memset(s->p + off, value, len);
        memset(s->shadow + off, value, len);
    }
}

/* The bytes between size and usable_size belong to the caller as well
 * (malloc_usable_size's contract): write all of them. */
static void op_check(fz_in *in)
{
    slot *s = take_slot(in);
    uint8_t slack = fz_u8(in);
    if (s->p == NULL) {
        if (pm_fz_malloc_usable_size(NULL) != 0)
            FZ_FAIL("step %u, mode %s: malloc_usable_size(NULL) is not 0", T.step, S.mode);
        return;
    }
    verify_block(s);
    if (slack & 1) {
        size_t usable = domains[s->dom].usable(s->p);
        memset(s->p + s->size, 0xA5, usable - s->size);
    }
}

static void expect_enomem(void *p, const char *call)
{
    if (p != NULL || errno != ENOMEM)
        FZ_FAIL("step %u, mode %s: %s gave %p, errno %d (expected NULL, ENOMEM)", T.step, S.mode,
                call, p, errno);
}

static void expect_einval(void *p, const char *call)
{
    if (p != NULL || errno != EINVAL)
        FZ_FAIL("step %u, mode %s: %s gave %p, errno %d (expected NULL, EINVAL)", T.step, S.mode,
                call, p, errno);
}

static void expect_rc(int rc, int want, const char *call)
{
    if (rc != want)
        FZ_FAIL("step %u, mode %s: %s returned %d, expected %d", T.step, S.mode, call, rc, want);
}

/* Sizes the entry points must refuse before reaching an allocator: cases 0-2
 * in every domain, 3-7 in the malloc family only (how % 8 there). */
static void op_badsize(fz_in *in)
{
    static const size_t huge[] = {(size_t)PTRDIFF_MAX + 1u, SIZE_MAX, SIZE_MAX - 15u};
    static const size_t cal[][2] = {{SIZE_MAX / 2u, 3u}, {(size_t)PTRDIFF_MAX / 2u + 1u, 2u},
                                    {2u, (size_t)PTRDIFF_MAX}, {SIZE_MAX, SIZE_MAX}};
    /* for posix_memalign (sizeof(void *) / 2: 4 is valid on 32-bit) */
    static const size_t bad_align[] = {0, sizeof(void *) / 2, 24, 3, SIZE_MAX};
    uint8_t how = fz_u8(in);
    unsigned dom = take_dom(in);
    const fz_domain *D = &domains[dom];
    uint8_t which = fz_u8(in);
    size_t big = huge[which % 3u];
    slot *s = &S.slots[T.base + which % T.count];
    void *out;
    errno = 0;
    switch (how % (D->glibc ? 8u : 3u)) {
    case 0:
        expect_enomem(D->malloc(big), "malloc(huge)");
        break;
    case 1:
        expect_enomem(D->calloc(cal[which % 4u][0], cal[which % 4u][1]), "calloc(overflow)");
        break;
    case 2:
        D = &domains[s->p != NULL ? s->dom : dom];
        expect_enomem(D->realloc(s->p, big), "realloc(p, huge)");
        break; /* the block itself is checked by verify_all */
    case 3: /* a product that overflows or passes PTRDIFF_MAX; the block stays */
        expect_enomem(pm_fz_reallocarray(s->p != NULL && domains[s->dom].glibc ? s->p : NULL,
                                         cal[which % 4u][0], cal[which % 4u][1]),
                      "reallocarray(p, overflow)");
        break;
    case 4:
        expect_enomem((which & 1 ? D->memalign : pm_fz_aligned_alloc)(
                          (size_t)1 << (which % 17u), big),
                      "memalign/aligned_alloc(a, huge)");
        break;
    case 5: {
        char call[64];
        snprintf(call, sizeof call, "posix_memalign(%zu, huge)", (size_t)8 << (which % 14u));
        expect_rc(libc_posix_memalign(&out, (size_t)8 << (which % 14u), big), ENOMEM, call);
        break;
    }
    case 6: /* impossible alignments: invalid, or valid but too large to serve */
        switch (which % 5u) {
        case 0:
            expect_einval(pm_fz_memalign(SIZE_MAX / 2u + 2u, 16), "memalign(SIZE_MAX/2+2, 16)");
            break;
        case 1:
            expect_einval(pm_fz_aligned_alloc(SIZE_MAX, 1), "aligned_alloc(SIZE_MAX, 1)");
            break;
        case 2:
            expect_enomem((which & 8 ? pm_fz_memalign : pm_fz_aligned_alloc)(SIZE_MAX / 2u + 1u,
                                                                             which & 16),
                          "memalign/aligned_alloc(SIZE_MAX/2+1, n)");
            break;
        case 3:
            expect_rc(libc_posix_memalign(&out, SIZE_MAX / 2u + 1u, which & 16), ENOMEM,
                      "posix_memalign(SIZE_MAX/2+1, n)");
            break;
        default:
            expect_rc(libc_posix_memalign(&out, bad_align[(which >> 3) % 5u], 16), EINVAL,
                      "posix_memalign(invalid alignment, 16)");
            break;
        }
        break;
    default:
        if (which & 1)
            expect_enomem(D->valloc(big), "valloc(huge)"); /* (cases 3..7: glibc's rules) */
        else
            expect_enomem(D->pvalloc(big), "pvalloc(huge)");
        break;
    }
}

static void op_hook(fz_in *in)
{
    unsigned dom = domains[take_dom(in)].table; /* the malloc family's hooks are MEM's */
    uint8_t push = fz_u8(in) & 1;
    if (T.partial)
        return; /* not while the other thread of a THREAD section calls the domain */
    if (push && nhooks[dom] < MAX_HOOKS)
        hook_push(dom);
    else if (!push && nhooks[dom] > 0)
        hook_pop(dom);
}

/* pm_trim: this thread's cached blocks go back to their pools, empty
 * arenas to the system, and (debug modes) the quarantine's blocks to the C
 * library, each checked; in a THREAD section while the other thread
 * allocates and frees. Every live block must come through intact (the
 * checks after the step), and the answer is 1 (memory went back) or 0. */
static void op_trim(fz_in *in)
{
    (void)in;
    int r = pm_trim();
    if (r != 0 && r != 1)
        FZ_FAIL("step %u, mode %s: pm_trim returned %d", T.step, S.mode, r);
}

/*
 * BURST dom size count how [seed]: many blocks of one size in a row, then
 * all of them freed in an order the input picks, in one step. Sixteen
 * slots never hold enough blocks of one class to empty a thread's bin (a
 * refill takes a whole pool's free list), to overflow it (a full bin's
 * flush gives its older half back), to use up a pool or an arena, or to
 * empty them all again (a pool back to its arena's free list, an arena
 * back to the system): a burst does. Opcode bytes from OP_BURST_BYTE up
 * are BURST (format at the top).
 *
 * size: a byte below 0xF0 is a pool class, c % 34, with a size inside
 * it, (c % 34) * 16 + 1 + (c / 34) * 2 (so 513..544 too); from 0xF0, a
 * size read as MALLOC's (take_size). count: 1 + u16 % BURST_MAX, fewer
 * when count x size would pass BURST_BYTES. how: bits 0-2 the order of
 * the frees (first in first out, last in first out, every other one then
 * the rest, a stride of how / 8 * 2 + 3, shuffled by the seed, from both
 * ends inwards, half freed and allocated again then all, from the middle
 * outwards), bit 3 pm_trim when half of them are freed. The seed (u16)
 * is read for the shuffle only. An input allocates BURST_INPUT_MAX burst
 * blocks at most: a BURST that would pass it does nothing.
 *
 * Every block is checked as a slot's is (not NULL, aligned to 16,
 * usable_size >= size, 0xCD in a debug mode), filled with its own
 * pattern; once all are out, no two of them (nor any with a live slot of
 * this thread) overlap, every pattern is intact, and in the modes with
 * pools (outside a THREAD section) the class counts include them; each is
 * checked again right before its free.
 */
#define BURST_MAX 2048
#define BURST_BYTES (1536u * 1024u)
#define BURST_INPUT_MAX 8192u

typedef struct burst_blk {
    unsigned char *p;
    size_t n;
    uint32_t serial;
} burst_blk;

static void burst_fail(const burst_blk *b, size_t i, const char *what, size_t off)
{
    FZ_FAIL("step %u (%s), mode %s: burst block %zu (%zu bytes, serial %u, block %p): %s at "
            "offset %zu",
            T.step, T.op, S.mode, i, b->n, (unsigned)b->serial, (void *)b->p, what, off);
}

static void burst_verify(const burst_blk *b, size_t i, unsigned dom)
{
    if ((uintptr_t)b->p % BASE_ALIGN != 0)
        burst_fail(b, i, "misaligned block", BASE_ALIGN);
    size_t usable = domains[dom].usable(b->p);
    if (usable < b->n)
        burst_fail(b, i, "usable_size below the size", usable);
    const unsigned char *want = pat + b->serial % 256u;
    if (memcmp(b->p, want, b->n) != 0) {
        size_t k = 0;
        while (b->p[k] == want[k])
            k++;
        burst_fail(b, i, "contents differ", k);
    }
}

static void burst_alloc(burst_blk *b, size_t i, unsigned dom, size_t n)
{
    dispatched(dom, K_MALLOC);
    b->p = domains[dom].malloc(n);
    b->n = n;
    b->serial = ++S.serial;
    if (b->p == NULL)
        burst_fail(b, i, "allocation failed for a valid size", 0);
    if (fresh_checked && memcmp(b->p, cleanbytes, n) != 0) {
        size_t k = 0;
        while (b->p[k] == 0xCD)
            k++;
        burst_fail(b, i, "new byte not 0xcd", k);
    }
    memcpy(b->p, pat + b->serial % 256u, n);
}

static void burst_free(burst_blk *b, size_t i, unsigned dom)
{
    burst_verify(b, i, dom);
    dispatched(dom, K_FREE);
    domains[dom].free(b->p);
    b->p = NULL;
}

typedef struct span {
    uintptr_t lo, hi;
    long who; /* burst block index, or -1 - slot */
} span;

static int span_cmp(const void *a, const void *b)
{
    uintptr_t x = ((const span *)a)->lo, y = ((const span *)b)->lo;
    return x < y ? -1 : x > y;
}

/* No two of the burst's live blocks and this thread's slots overlap. */
static void burst_overlaps(const burst_blk *bl, size_t count)
{
    span *sp = malloc((count + NSLOTS) * sizeof *sp);
    if (sp == NULL)
        FZ_FAIL("harness out of memory");
    size_t k = 0;
    for (size_t i = 0; i < count; i++)
        if (bl[i].p != NULL)
            sp[k++] = (span){(uintptr_t)bl[i].p,
                             (uintptr_t)bl[i].p + (bl[i].n ? bl[i].n : 1), (long)i};
    for (int i = T.base; i < T.base + T.count; i++)
        if (S.slots[i].p != NULL)
            sp[k++] = (span){(uintptr_t)S.slots[i].p,
                             (uintptr_t)S.slots[i].p + (S.slots[i].size ? S.slots[i].size : 1),
                             -1 - i};
    qsort(sp, k, sizeof *sp, span_cmp);
    for (size_t i = 1; i < k; i++)
        if (sp[i].lo < sp[i - 1].hi)
            FZ_FAIL("step %u (%s), mode %s: %s %ld [%p, +%zu) and %s %ld [%p, +%zu) overlap "
                    "(burst blocks and slots)",
                    T.step, T.op, S.mode, sp[i - 1].who < 0 ? "slot" : "burst block",
                    sp[i - 1].who < 0 ? -1 - sp[i - 1].who : sp[i - 1].who,
                    (void *)sp[i - 1].lo, (size_t)(sp[i - 1].hi - sp[i - 1].lo),
                    sp[i].who < 0 ? "slot" : "burst block",
                    sp[i].who < 0 ? -1 - sp[i].who : sp[i].who, (void *)sp[i].lo,
                    (size_t)(sp[i].hi - sp[i].lo));
    free(sp);
}

static void check_class_counts_with(const burst_blk *extra, size_t nextra);

/* Every burst block checked (burst_verify), none overlapping another or a
 * live slot, and the pools' counts of each class with them counted. */
static void burst_check_all(const burst_blk *bl, size_t count, unsigned dom)
{
    for (size_t i = 0; i < count; i++)
        burst_verify(&bl[i], i, dom);
    burst_overlaps(bl, count);
    if (!T.partial)
        check_class_counts_with(bl, count);
}

static void op_burst(fz_in *in)
{
    unsigned dom = take_dom(in);
    uint8_t c = fz_u8(in);
    size_t n = c < 0xF0 ? (size_t)(c % 34u) * 16u + 1u + (size_t)(c / 34u) * 2u : take_size(in);
    size_t count = 1u + fz_u16(in) % BURST_MAX;
    uint8_t how = fz_u8(in);
    uint16_t seed = (how & 7u) == 4 ? fz_u16(in) : 0;
    size_t each = n < 16 ? 16 : n;
    if (count * each > BURST_BYTES)
        count = BURST_BYTES / each;
    if (count == 0)
        count = 1;
    /* At most BURST_INPUT_MAX blocks an input (the later BURSTs read
     * their bytes and do nothing): a few bursts reach every path, and
     * dozens made the corpus slow to load (libFuzzer's short runs then
     * fuzzed nothing). */
    if (atomic_fetch_add(&S.burst_blocks, count) + count > BURST_INPUT_MAX)
        return;
    burst_blk *bl = calloc(count, sizeof *bl);
    size_t *order = malloc(count * sizeof *order);
    if (bl == NULL || order == NULL)
        FZ_FAIL("harness out of memory");

    for (size_t i = 0; i < count; i++)
        burst_alloc(&bl[i], i, dom, n);
    burst_check_all(bl, count, dom);

    /* The order of the frees. */
    size_t k = 0;
    switch (how & 7u) {
    case 0: /* first allocated, first freed */
        for (size_t i = 0; i < count; i++)
            order[k++] = i;
        break;
    case 1: /* last allocated, first freed */
        for (size_t i = count; i-- > 0;)
            order[k++] = i;
        break;
    case 2: /* every other one, then the rest: pools half empty for a while */
        for (size_t i = 0; i < count; i += 2)
            order[k++] = i;
        for (size_t i = 1; i < count; i += 2)
            order[k++] = i;
        break;
    case 3: { /* a stride through them */
        size_t step = (size_t)how / 8u * 2u + 3u, a = step, b = count;
        while (b != 0) { /* gcd */
            size_t t = a % b;
            a = b;
            b = t;
        }
        if (a != 1)
            step = 1;
        for (size_t i = 0; i < count; i++)
            order[k++] = i * step % count;
        break;
    }
    case 4: { /* shuffled from the seed */
        uint32_t x = seed * 2654435761u | 1u;
        for (size_t i = 0; i < count; i++)
            order[i] = i;
        for (size_t i = count; i > 1; i--) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            size_t j = x % i, t = order[i - 1];
            order[i - 1] = order[j];
            order[j] = t;
        }
        k = count;
        break;
    }
    case 5: /* from both ends towards the middle */
        for (size_t lo = 0, hi = count; lo < hi;) {
            order[k++] = lo++;
            if (lo < hi)
                order[k++] = --hi;
        }
        break;
    case 6: { /* half of them freed, as many allocated again, then all */
        for (size_t i = 1; i < count; i += 2)
            burst_free(&bl[i], i, dom);
        for (size_t i = 1; i < count; i += 2)
            burst_alloc(&bl[i], i, dom, n);
        burst_check_all(bl, count, dom);
        for (size_t i = count; i-- > 0;)
            order[k++] = i;
        break;
    }
    default: /* the middle first, outwards */
        for (size_t d = 0; d < count; d++) {
            size_t mid = count / 2;
            size_t i = d % 2 ? mid + (d + 1) / 2 : mid - d / 2;
            order[k++] = i < count ? i : d;
        }
        break;
    }
    (void)k;
    for (size_t j = 0; j < count; j++) {
        if (j == count / 2 && (how & 8)) {
            int r = pm_trim();
            if (r != 0 && r != 1)
                FZ_FAIL("step %u, mode %s: pm_trim returned %d", T.step, S.mode, r);
            if (!T.partial)
                check_class_counts_with(bl, count);
        }
        if (bl[order[j]].p != NULL) /* (the middle-out order may name one twice) */
            burst_free(&bl[order[j]], order[j], dom);
    }
    for (size_t i = 0; i < count; i++) /* (any the order missed) */
        if (bl[i].p != NULL)
            burst_free(&bl[i], i, dom);
    free(order);
    free(bl);
}

static void op_thread(fz_in *in);

static void (*const ops[OP_COUNT])(fz_in *) = {op_malloc, op_calloc, op_realloc, op_free,
                                              op_memalign, op_write, op_check, op_badsize,
                                              op_hook, op_thread, op_trim};

/* One step: decode an operation and run it, then check the running
 * thread's blocks. */
static void step(fz_in *in)
{
    uint8_t byte = fz_u8(in);
    if (byte >= OP_BURST_BYTE) {
        T.op = T.worker ? "worker burst" : "burst";
        op_burst(in);
    } else {
        unsigned op = byte % OP_COUNT;
        T.op = (T.worker ? worker_op_names : op_names)[op];
        ops[op](in);
    }
    verify_all();
}

/*
 * THREAD len steps: the next `len` bytes of the input are a program of
 * their own, run by a new thread on slots NSLOTS/2 .. NSLOTS-1, while this
 * thread runs its next `steps` % 64 + 1 operations on slots 0 .. NSLOTS/2-1;
 * then the new thread ends (in the pool modes its cache is flushed by its
 * exit) and is joined. Both threads' blocks stay in their slots: later steps
 * reallocate and free them from this thread (cross-thread frees of blocks
 * whose thread is gone). Inside a section, HOOK does nothing (a domain's
 * allocator is not replaced while another thread calls it) and a THREAD
 * only reads its two bytes; the hook counts, the whole-table overlap check
 * and the class counts are checked at its end. Which thread's call comes
 * first is up to the scheduler: the fill patterns' serials, and so a
 * failing input's exact bytes in a block, may differ from run to run.
 */
typedef struct section {
    fz_in in;
    unsigned outer; /* the THREAD step that began it */
} section;

static void *section_worker(void *arg)
{
    section *w = arg;
    T.base = NSLOTS / 2;
    T.count = NSLOTS / 2;
    T.partial = 1;
    T.worker = 1;
    for (unsigned k = 0; !fz_done(&w->in) && k < MAX_STEPS; k++) {
        T.step = w->outer * 1000u + k + 1u;
        step(&w->in);
    }
    return NULL;
}

static void op_thread(fz_in *in)
{
    size_t len = fz_u8(in);
    unsigned nsteps = fz_u8(in) % 64u + 1u;
    if (T.partial)
        return; /* no nested sections */
    if (len > in->n)
        len = in->n;
    section w = {{in->p, len}, T.step};
    in->p += len;
    in->n -= len;
    T.count = NSLOTS / 2;
    T.partial = 1;
    pthread_t t;
    int rc = pthread_create(&t, NULL, section_worker, &w);
    if (rc != 0)
        FZ_FAIL("step %u, mode %s: cannot start a thread: %s", T.step, S.mode, strerror(rc));
    unsigned outer = T.step;
    /* Steps of the section are numbered outer * 1000 + k (k from 1), the
     * new thread's named "worker ...". */
    for (unsigned k = 0; k < nsteps && !fz_done(in); k++) {
        T.step = outer * 1000u + k + 1u;
        step(in);
    }
    if ((rc = pthread_join(t, NULL)) != 0)
        FZ_FAIL("step %u, mode %s: cannot join a thread: %s", outer, S.mode, strerror(rc));
    T.step = outer;
    T.op = op_names[OP_THREAD];
    T.count = NSLOTS;
    T.partial = 0;
}

/*
 * Every CLASS_CHECK_EVERY steps and at the end of an input, in the modes
 * with pools: per size class, the blocks the statistics count in use and
 * not cached are exactly the live slots whose block is a pool block of
 * that class (the pool allocator's block, which in a debug mode starts 16
 * bytes before the data; an aligned debug block is libc's). A block handed
 * out twice, lost, or miscounted shows here at once, not only as a
 * nonzero total at the end.
 */
#define CLASS_CHECK_EVERY 16

static void count_held(const void *base, void *arg)
{
    size_t *want = arg;
    int c = pm_i_pool_class_of(base);
    if (c >= 0 && c < PM_STATS_NCLASSES)
        want[c]++;
}

static void check_class_counts(void) { check_class_counts_with(NULL, 0); }

/* The same, with the blocks of a BURST (malloc'd: their debug header is 16
 * bytes) counted as live too. */
static void check_class_counts_with(const burst_blk *extra, size_t nextra)
{
    if (strstr(S.mode, "pymalloc") == NULL)
        return;
    size_t want[PM_STATS_NCLASSES] = {0};
    int debug = pm_debug_enabled();
    for (size_t i = 0; i < nextra; i++) {
        if (extra[i].p == NULL)
            continue;
        int c = pm_i_pool_class_of(extra[i].p - (debug ? 16 : 0));
        if (c >= 0 && c < PM_STATS_NCLASSES)
            want[c]++;
    }
    for (int i = 0; i < NSLOTS; i++) {
        const slot *s = &S.slots[i];
        if (s->p == NULL)
            continue;
        const unsigned char *base = s->p;
        if (debug)
            base -= s->align > 16 ? s->align : 16;
        int c = pm_i_pool_class_of(base);
        if (c >= 0 && c < PM_STATS_NCLASSES)
            want[c]++;
    }
    /* Freed pool blocks the debug hooks' quarantine holds
     * (PYMALLOC_QUARANTINE_POOLS=on) are in use as far as the pools know. */
    if (debug && pm_i_debug_quarantine_each(count_held, want) != 0)
        FZ_FAIL("a part of the quarantine stayed busy with no other thread running");
    struct pm_stats st;
    if (pm_get_stats(&st) != 0)
        FZ_FAIL("pm_get_stats failed");
    for (int c = 0; c < PM_STATS_NCLASSES; c++) {
        size_t have = st.classes[c].blocks_in_use - st.classes[c].blocks_cached;
        if (have != want[c])
            FZ_FAIL("class %d (%zu bytes): the statistics count %zu blocks in use and not "
                    "cached (%zu in use, %zu cached), the live slots hold %zu",
                    c, st.classes[c].size, have, st.classes[c].blocks_in_use,
                    st.classes[c].blocks_cached, want[c]);
    }
}

/*
 * Run after every input, once every block is freed: the place for the
 * allocator's own consistency checks: the mode did not change under the
 * input, the pool validator finds every invariant intact, the statistics
 * balance, and no pool block is left allocated.
 */
static void check_allocator_state(void)
{
    if (strcmp(pm_mode_name(), S.mode) != 0)
        FZ_FAIL("the mode changed during the input: %s, expected %s", pm_mode_name(), S.mode);

    /* The pool allocator's invariants: every arena, pool, list and cache. */
    char why_storage[512];
    pm_i_buf why;
    pm_i_buf_init(&why, why_storage, sizeof why_storage - 1, -1);
    if (pm_i_pool_validate(&why) != 0) {
        why_storage[why.len] = '\0';
        FZ_FAIL("pool validator: %s", why_storage);
    }

    /* The statistics balance to the mapped arenas, and with every block of
     * this input freed and this thread's cache flushed, no pool block is in
     * use by this thread's doing (the harness allocates nothing of its own
     * from the pools). */
    struct pm_stats st;
    if (pm_get_stats(&st) != 0)
        FZ_FAIL("pm_get_stats failed");
    size_t sum = st.bytes_allocated_blocks + st.bytes_available_blocks + st.bytes_unused_pools +
                 st.bytes_pool_headers + st.bytes_quantization + st.bytes_arena_alignment;
    if (sum != st.arenas_current * st.arena_size)
        FZ_FAIL("stats do not balance: %zu bytes accounted, %zu arenas x %zu", sum,
                st.arenas_current, st.arena_size);
    /* With PYMALLOC_QUARANTINE_POOLS=on the debug hooks' quarantine holds
     * freed pool blocks, allocated as far as the pools know: they go back
     * first (each checked on its way, as pm_trim does). */
    if (pm_i_debug_quarantine_pools)
        pm_i_debug_trim();
    pm_i_pool_flush_thread_cache();
    if (pm_get_stats(&st) != 0 || st.bytes_allocated_blocks != 0)
        FZ_FAIL("%zu bytes of pool blocks still allocated after every slot was freed",
                st.bytes_allocated_blocks);
}

/* ---------------------------------------------------------------------------
 * Heap error reports. The operations of an input are all legal, so no
 * report is: the error handler fails the oracle on any, whatever
 * PYMALLOC_ON_ERROR says (with =report the library would count it and go
 * on, and a libFuzzer process that runs many inputs would lose it). And
 * pm_error_count must stay where it was at the input's start, after every
 * step: a report that calls no handler (one made inside a handler) is
 * still counted.
 */
static unsigned long errors_before;

static void report_handler(const pm_error_report *r, void *ctx)
{
    (void)ctx;
    FZ_FAIL("step %u (%s), mode %s: a heap error was reported (%s at %p, %zu bytes): %s",
            T.step, T.op ? T.op : "start", S.mode, pm_error_class_name(r->error), r->address,
            r->size, r->message ? r->message : "(no message)");
}

static void verify_no_reports(void)
{
    unsigned long now = pm_error_count(PM_ERR_NONE);
    if (now != errors_before)
        FZ_FAIL("step %u (%s), mode %s: pm_error_count went from %lu to %lu: a heap error "
                "was reported", T.step, T.op ? T.op : "end", S.mode, errors_before, now);
}

/* ---------------------------------------------------------------------------
 * Entry points.
 */

/* libFuzzer only (replay.c does not call it): fix this process's mode to
 * PYMALLOC_MODE's by allocating once. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    pm_raw_free(pm_raw_malloc(1));
    fz_abort_to_libfuzzer();
    init_pattern();
    fprintf(stderr, "operations: this process runs mode %s (PYMALLOC_MODE); inputs naming "
                    "another mode are rejected\n", pm_mode_name());
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const char *const *names = pm_mode_names();
    size_t nnames = 0;
    while (names[nnames] != NULL)
        nnames++;
    const char *want = names[data[0] % nnames];
    if (pm_set_mode(want) != 0)
        return -1; /* another mode owns this process */

    if (pat[0] == 0)
        init_pattern(); /* replay does not call LLVMFuzzerInitialize */
    memset(&S, 0, sizeof S);
    for (unsigned d = 0; d < PM_DOMAIN_COUNT; d++)
        for (int k = 0; k < K_COUNT; k++)
            dispatches[d][k] = 0;
    S.mode = pm_i_mode_find(want, strlen(want))->name;
    fresh_checked = pm_debug_enabled();
    if (strcmp(pm_mode_name(), S.mode) != 0)
        FZ_FAIL("pm_set_mode(\"%s\") installed %s, expected %s", want, pm_mode_name(), S.mode);

    fz_selftest();
    pm_set_error_handler(report_handler, NULL);
    errors_before = pm_error_count(PM_ERR_NONE);
    fz_in in = {data + 1, size - 1};
    for (T.step = 1; !fz_done(&in) && T.step <= MAX_STEPS; T.step++) {
        step(&in);
        verify_hooks();
        verify_no_reports();
        if (T.step % CLASS_CHECK_EVERY == 0)
            check_class_counts();
    }
    T.op = "end";
    check_class_counts();
    for (unsigned d = 0; d < PM_DOMAIN_COUNT; d++)
        while (nhooks[d] > 0)
            hook_pop(d);
    for (int i = 0; i < NSLOTS; i++)
        if (S.slots[i].p != NULL)
            release(&S.slots[i]);
    check_allocator_state();
    verify_no_reports();
    return 0;
}
