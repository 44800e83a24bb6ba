/*
 * src/early.c - the early arena: blocks for allocations made during set-up,
 * and for a signal handler's allocations in the debug modes (the malloc
 * override's and the pm_* API's: src/pm_internal.h).
 *
 * Static memory (in .bss, so untouched pages cost nothing), carved into
 * contiguous chunks from offset 0 up to `top`; above top is untouched. Each
 * chunk starts with a tag; an allocated chunk also has a header right
 * before its data (the two are apart when the alignment asks for padding):
 *
 *   chunk  [tag: size|FREE, size of the chunk below, next/prev free]
 *          [padding, for an alignment above 16]
 *          [header: size_t n, uint32 chunk offset, uint32 check] [data]...
 *
 * A freed chunk merges with free neighbours (the tag's two sizes find them)
 * and joins a free list, searched first-fit; a free chunk that reaches top
 * gives its space back to top. So a handler that keeps blocks across
 * signals and frees them in any order (a queue of messages) reuses the
 * space, where the bump allocator this replaced kept every block that was
 * not the last one handed out, and ran out after a few thousand signals.
 *
 * One lock, a spin lock taken with every signal blocked: the arena serves
 * signal handlers, so a handler can never interrupt its own thread while it
 * holds the lock, and another thread holds it only for a few hundred
 * instructions. The two sigprocmask calls per call are fine here: the arena
 * is used during set-up and by handlers, never on a fast path. fork() takes
 * the lock in its prepare handler, registered by the set-up before every
 * other of ours, so fork takes it last: a handler may allocate here while
 * its thread holds a pool's lock, never the other way round.
 *
 * free checks that a pointer is an allocated block's (its header names a
 * chunk below top, allocated, that holds it, and its check matches): a
 * double free or an interior pointer is ignored, never followed.
 */
#include "pm_internal.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <string.h>

/* Under memcheck each block is a heap block of its requested size, as the
 * pools' are (modes/pool.c): a write past it, a use after its free, a
 * second free and a lost block are reported. The arena's memory (static,
 * so defined and addressable to memcheck) is opened whole again before
 * the allocator writes a chunk's tag and header over what was a freed
 * block's data; a freed block's data is inaccessible until then. */
#if PM_HAVE_VALGRIND
#include <valgrind/memcheck.h>
#define E_VG(stmt)                                                                       \
    do {                                                                                 \
        if (PM_I_UNLIKELY(e_vg > 0))                                                     \
            stmt;                                                                        \
    } while (0)
#else
#define E_VG(stmt) ((void)0)
#endif

unsigned char pm_i_early_arena[PM_I_EARLY_SIZE] __attribute__((aligned(64)));

#define FREE 1u
#define NONE UINT32_MAX
#define TAG 16
#define HDR 16
#define MIN_CHUNK (TAG + HDR + 16) /* the smallest free chunk worth keeping */

typedef struct {
    uint32_t size; /* bytes of the chunk, a multiple of 16; FREE in bit 0 */
    uint32_t below; /* bytes of the chunk below; 0 for the chunk at 0 */
    uint32_t next, prev; /* the free list, while free (offsets, NONE) */
} e_tag;

typedef struct {
    uint64_t n; /* the size asked for (64 bits on every target: 16 bytes) */
    uint32_t chunk; /* offset of the chunk's tag */
    uint32_t check; /* e_check(chunk, n) while allocated, else 0 */
} e_hdr;

_Static_assert(sizeof(e_tag) == TAG && sizeof(e_hdr) == HDR, "early arena layout");
_Static_assert(PM_I_EARLY_SIZE < NONE, "offsets are 32 bits");

static atomic_flag e_lock_flag = ATOMIC_FLAG_INIT;
static uint32_t e_top; /* the arena's used part ends here */
static uint32_t e_last; /* size of the chunk that ends at e_top (0: none) */
static uint32_t e_free_head = NONE;
static _Atomic size_t e_used; /* bytes of allocated chunks */
#if PM_HAVE_VALGRIND
static int e_vg = -1; /* under memcheck: -1 until the first call asks (under the lock) */
static void e_vg_check(void)
{
    if (e_vg < 0)
        e_vg = pm_i_pool_valgrind(NULL);
}
#else
static void e_vg_check(void) {}
#endif

static inline e_tag *tag_at(uint32_t off) { return (e_tag *)(void *)(pm_i_early_arena + off); }
static inline e_hdr *hdr_of(const void *p)
{
    return (e_hdr *)(uintptr_t)((const unsigned char *)p - HDR);
}
static inline uint32_t e_check(uint32_t chunk, uint64_t n)
{
    return (uint32_t)(0x9e3779b9u ^ (chunk * 2654435761u) ^ (uint32_t)n ^ (uint32_t)(n >> 32)) | 1u;
}

static void e_lock(sigset_t *old)
{
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, old);
    while (atomic_flag_test_and_set_explicit(&e_lock_flag, memory_order_acquire))
        sched_yield();
}

static void e_unlock(const sigset_t *old)
{
    atomic_flag_clear_explicit(&e_lock_flag, memory_order_release);
    pthread_sigmask(SIG_SETMASK, old, NULL);
}

static void list_push(uint32_t off)
{
    e_tag *t = tag_at(off);
    t->prev = NONE;
    t->next = e_free_head;
    if (e_free_head != NONE)
        tag_at(e_free_head)->prev = off;
    e_free_head = off;
}

static void list_unlink(uint32_t off)
{
    e_tag *t = tag_at(off);
    if (t->prev != NONE)
        tag_at(t->prev)->next = t->next;
    else
        e_free_head = t->next;
    if (t->next != NONE)
        tag_at(t->next)->prev = t->prev;
}

/* Where block data aligned to `alignment` lands in a chunk at off. */
static inline size_t data_offset(uint32_t off, size_t alignment)
{
    uintptr_t base = (uintptr_t)pm_i_early_arena;
    uintptr_t data = (base + off + TAG + HDR + alignment - 1) & ~(uintptr_t)(alignment - 1);
    return (size_t)(data - base);
}

/* A chunk of `size` bytes at off is now allocated; the rest of `room`
 * bytes, if worth keeping, becomes a free chunk after it. */
static void take(uint32_t off, uint32_t size, uint32_t room)
{
    e_tag *t = tag_at(off);
    if (room - size >= MIN_CHUNK) {
        uint32_t rest = off + size;
        e_tag *r = tag_at(rest);
        r->size = (room - size) | FREE;
        r->below = size;
        list_push(rest);
        /* the chunk above a free chunk is allocated (free neighbours merge,
         * and a free chunk never touches top) */
        tag_at(rest + room - size)->below = room - size;
    } else {
        size = room;
    }
    t->size = size;
}

void *pm_i_early_alloc(size_t n, size_t alignment)
{
    if (alignment < 16)
        alignment = 16;
    if (n > PM_I_EARLY_SIZE || alignment > PM_I_EARLY_SIZE)
        return NULL;
    /* At least 16 bytes: a block of 0 ends where its data starts, so at
     * the arena's end it would start there too, an address the arena does
     * not own (pm_i_early_owns), and free passed it on to the mode. */
    size_t rounded = n == 0 ? 16 : (n + 15) & ~(size_t)15;
    sigset_t old;
    e_lock(&old);
    e_vg_check();
    uint32_t off = NONE;
    size_t data = 0;
    for (uint32_t c = e_free_head; c != NONE; c = tag_at(c)->next) {
        uint32_t room = tag_at(c)->size & ~FREE;
        data = data_offset(c, alignment);
        if (data + rounded <= (size_t)c + room) {
            E_VG(VALGRIND_MAKE_MEM_DEFINED(pm_i_early_arena + c, room));
            list_unlink(c);
            take(c, (uint32_t)(data + rounded - c), room);
            off = c;
            break;
        }
    }
    if (off == NONE) {
        data = data_offset(e_top, alignment);
        if (data + rounded > PM_I_EARLY_SIZE) {
            e_unlock(&old);
            return NULL;
        }
        off = e_top;
        E_VG(VALGRIND_MAKE_MEM_DEFINED(pm_i_early_arena + off, data + rounded - off));
        e_tag *t = tag_at(off);
        t->size = (uint32_t)(data + rounded - off);
        t->below = e_last;
        e_last = t->size;
        e_top = (uint32_t)(data + rounded);
    }
    unsigned char *p = pm_i_early_arena + data;
    *hdr_of(p) = (e_hdr){n, off, e_check(off, n)};
    atomic_fetch_add_explicit(&e_used, tag_at(off)->size, memory_order_relaxed);
    e_unlock(&old);
    memset(p, 0, n); /* a reused chunk is dirty */
    /* (its slack inaccessible, the zeros defined) */
    E_VG(VALGRIND_MAKE_MEM_NOACCESS(p + n, rounded - n));
    E_VG(VALGRIND_MALLOCLIKE_BLOCK(p, n, 0, 1));
    return p;
}

/* p is an allocated block of the arena (the lock is held). */
static int e_valid(const void *p)
{
    size_t at = (size_t)((const unsigned char *)p - pm_i_early_arena);
    if (at % 16 != 0 || at < TAG + HDR || at > e_top)
        return 0;
    const e_hdr *h = hdr_of(p);
#if PM_HAVE_VALGRIND
    /* (inside a freed block's data: no block's header, and not read) */
    unsigned char vbits[HDR];
    if (e_vg > 0 && VALGRIND_GET_VBITS(h, vbits, HDR) == 3)
        return 0;
#endif
    uint32_t c = h->chunk;
    if (c % 16 != 0 || c > at - TAG - HDR || h->check != e_check(c, h->n))
        return 0;
    uint32_t size = tag_at(c)->size;
    return !(size & FREE) && h->n <= (uint64_t)c + size && at + h->n <= (uint64_t)c + size;
}

int pm_i_early_live(const void *p)
{
    sigset_t old;
    e_lock(&old);
    int live = e_valid(p);
    e_unlock(&old);
    return live;
}

size_t pm_i_early_size(const void *p)
{
    sigset_t old;
    e_lock(&old);
    size_t n = e_valid(p) ? (size_t)hdr_of(p)->n : 0;
    e_unlock(&old);
    return n;
}

void pm_i_early_free(void *p)
{
    sigset_t old;
    e_lock(&old);
    if (!e_valid(p)) {
        e_unlock(&old);
        /* A second free or an interior pointer: memcheck's report. */
        E_VG(VALGRIND_FREELIKE_BLOCK(p, 0));
        return;
    }
    e_hdr *h = hdr_of(p);
    E_VG(VALGRIND_FREELIKE_BLOCK(p, 0));
    uint32_t off = h->chunk;
    h->check = 0; /* a second free of p is not valid */
    e_tag *t = tag_at(off);
    uint32_t size = t->size;
    atomic_fetch_sub_explicit(&e_used, size, memory_order_relaxed);
    uint32_t up = off + size;
    if (up < e_top && (tag_at(up)->size & FREE)) {
        list_unlink(up);
        size += tag_at(up)->size & ~FREE;
    }
    if (t->below != 0 && (tag_at(off - t->below)->size & FREE)) {
        off -= t->below;
        list_unlink(off);
        size += tag_at(off)->size & ~FREE;
        t = tag_at(off);
    }
    if (off + size == e_top) {
        e_top = off;
        e_last = t->below;
    } else {
        t->size = size | FREE;
        list_push(off);
        tag_at(off + size)->below = size;
    }
    e_unlock(&old);
}

size_t pm_i_early_used(void) { return atomic_load_explicit(&e_used, memory_order_relaxed); }

static __thread sigset_t e_fork_mask __attribute__((tls_model("initial-exec")));
/* Its fork handlers, called by the library's (src/api.c): last at the
 * prepare, first after. */
void pm_i_early_fork_prepare(void) { e_lock(&e_fork_mask); }
void pm_i_early_fork_release(void) { e_unlock(&e_fork_mask); }
