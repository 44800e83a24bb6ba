/*
 * src/table.c - the allocator table: one allocator per domain.
 *
 * Each domain points to an immutable record (see pm_internal.h): a reader
 * loads the pointer once (acquire) and reads the record's fields; a writer
 * builds the new record, stores it in the record store, and publishes it
 * with one release store. Writers are serialized by one mutex, held across
 * fork() so that a child never inherits a half-built record store (the
 * prepare/parent/child handlers are registered by src/api.c).
 *
 * Record store: records are never freed, since a reader on another thread
 * may hold an old one for as long as its call lasts and nothing tells us
 * when it is done. To keep memory bounded, a write first looks for an
 * identical record among the newest STORE_SEARCH ones and reuses it: a
 * program that installs and removes the same hooks in a loop (as tests and
 * tracers do) keeps using the same few records. The first records are
 * static; more come from mmap (never malloc: writes happen inside the
 * allocator's set-up), in chunks.
 *
 * Every domain starts out pointing at libc's allocator (a static record),
 * so an allocation that happens before or while a mode is set up (from the
 * set-up code itself, or from another library's constructor) has somewhere
 * safe to go.
 */
#include "pm_internal.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>

struct pm_i_domain pm_i_domains[PM_DOMAIN_COUNT] = {
    [PM_DOMAIN_RAW] = {&pm_i_raw_base},
    [PM_DOMAIN_MEM] = {&pm_i_raw_base},
    [PM_DOMAIN_OBJ] = {&pm_i_raw_base},
};

static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
__thread int pm_i_fork_held_api __attribute__((tls_model("initial-exec")));

static void lock_table(void)
{
    if (!pm_i_fork_held_api)
        pthread_mutex_lock(&table_lock);
}

static void unlock_table(void)
{
    if (!pm_i_fork_held_api)
        pthread_mutex_unlock(&table_lock);
}

/* ---------------------------------------------------------------------------
 * The record store (table lock held).
 */

#define STATIC_RECORDS 64
#define CHUNK_BYTES ((size_t)64 * 1024)
#define STORE_SEARCH 64

typedef struct chunk {
    struct chunk *prev;
    size_t used, cap;
    pm_i_base rec[];
} chunk;

static pm_i_base static_recs[STATIC_RECORDS];
static size_t static_used;
static chunk *newest; /* mmap'd chunks, newest first */

static int same(const pm_i_base *x, const pm_i_base *y)
{
    return x->a.ctx == y->a.ctx && x->a.malloc == y->a.malloc && x->a.calloc == y->a.calloc &&
           x->a.realloc == y->a.realloc && x->a.free == y->a.free && x->xctx == y->xctx &&
           x->memalign == y->memalign && x->usable_size == y->usable_size;
}

/* An identical record among the newest STORE_SEARCH, or NULL. */
static const pm_i_base *find(const pm_i_base *b)
{
    size_t left = STORE_SEARCH;
    for (chunk *c = newest; c != NULL && left > 0; c = c->prev)
        for (size_t i = c->used; i-- > 0 && left > 0; left--)
            if (same(&c->rec[i], b))
                return &c->rec[i];
    for (size_t i = static_used; i-- > 0 && left > 0; left--)
        if (same(&static_recs[i], b))
            return &static_recs[i];
    return NULL;
}

static const pm_i_base *intern(const pm_i_base *b)
{
    if (same(b, &pm_i_raw_base))
        return &pm_i_raw_base;
    const pm_i_base *r = find(b);
    if (r != NULL)
        return r;
    pm_i_base *slot;
    if (static_used < STATIC_RECORDS) {
        slot = &static_recs[static_used++];
    } else {
        if (newest == NULL || newest->used == newest->cap) {
            void *m = mmap(NULL, CHUNK_BYTES, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (m == MAP_FAILED) {
                errno = ENOMEM;
                return NULL;
            }
            chunk *c = m;
            c->prev = newest;
            c->used = 0;
            c->cap = (CHUNK_BYTES - sizeof(chunk)) / sizeof(pm_i_base);
            newest = c;
        }
        slot = &newest->rec[newest->used++];
    }
    *slot = *b;
    return slot;
}

static int publish(pm_domain d, const pm_i_base *b)
{
    const pm_i_base *r = intern(b);
    if (r == NULL)
        return -1;
    atomic_store_explicit(&pm_i_domains[d].cur, r, memory_order_release);
    return 0;
}

/* ---------------------------------------------------------------------------
 * Reading and writing.
 */

int pm_i_table_write(pm_domain d, const pm_allocator *a)
{
    lock_table();
    pm_i_base b = *atomic_load_explicit(&pm_i_domains[d].cur, memory_order_relaxed);
    b.a = *a;
    int rc = publish(d, &b);
    unlock_table();
    return rc;
}

int pm_i_table_write_base(pm_domain d, const pm_i_base *b)
{
    lock_table();
    int rc = publish(d, b);
    unlock_table();
    return rc;
}

void pm_i_table_set_static(pm_domain d, const pm_i_base *b)
{
    lock_table();
    atomic_store_explicit(&pm_i_domains[d].cur, b, memory_order_release);
    unlock_table();
}

void pm_i_table_read_base(pm_domain d, pm_i_base *out)
{
    *out = *atomic_load_explicit(&pm_i_domains[d].cur, memory_order_acquire);
}

void pm_i_table_read(pm_domain d, pm_allocator *out)
{
    *out = atomic_load_explicit(&pm_i_domains[d].cur, memory_order_acquire)->a;
}

void *pm_i_domain_memalign(pm_domain d, size_t alignment, size_t n)
{
    void *ctx;
    pm_i_memalign_fn fn;
    PM_I_DOMAIN_READ(&pm_i_domains[d], xctx, memalign, ctx, fn);
    return fn(ctx, alignment, n);
}

size_t pm_i_domain_usable_size(pm_domain d, void *p)
{
    void *ctx;
    pm_i_usable_fn fn;
    PM_I_DOMAIN_READ(&pm_i_domains[d], xctx, usable_size, ctx, fn);
    return fn(ctx, p);
}

void pm_i_table_lock(void)
{
    pthread_mutex_lock(&table_lock);
    pm_i_fork_held_api = 1;
}

void pm_i_table_unlock(void)
{
    pm_i_fork_held_api = 0;
    pthread_mutex_unlock(&table_lock);
}
