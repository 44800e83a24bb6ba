/*
 * src/table.c - the allocator table: one allocator per domain.
 *
 * Each slot is a sequence lock (see PM_I_DOMAIN_READ in pm_internal.h):
 * readers, i.e. every allocation, load the sequence number, the fields they
 * need, and the sequence number again, and retry if a writer was active. No
 * reader ever takes a lock or writes shared memory. Writers are serialized by
 * one mutex, held across fork() so that a child never inherits a half-written
 * slot (the prepare/parent/child handlers are registered by src/api.c).
 *
 * Before any mode is installed every domain holds libc's allocator (written
 * by pm_i_table_boot), so an allocation that happens while the mode is being
 * set up (from the set-up code itself, or from another library's
 * constructor) has somewhere safe to go.
 */
#include "pm_internal.h"

#include <pthread.h>

struct pm_i_domain pm_i_domains[PM_DOMAIN_COUNT];

static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;

static void write_begin(struct pm_i_domain *s)
{
    unsigned seq = atomic_load_explicit(&s->seq, memory_order_relaxed);
    atomic_store_explicit(&s->seq, seq + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
}

static void write_end(struct pm_i_domain *s)
{
    unsigned seq = atomic_load_explicit(&s->seq, memory_order_relaxed);
    atomic_store_explicit(&s->seq, seq + 1, memory_order_release);
}

static void store_public(struct pm_i_domain *s, const pm_allocator *a)
{
    atomic_store_explicit(&s->ctx, a->ctx, memory_order_relaxed);
    atomic_store_explicit(&s->malloc, a->malloc, memory_order_relaxed);
    atomic_store_explicit(&s->calloc, a->calloc, memory_order_relaxed);
    atomic_store_explicit(&s->realloc, a->realloc, memory_order_relaxed);
    atomic_store_explicit(&s->free, a->free, memory_order_relaxed);
}

static void store_ext(struct pm_i_domain *s, const pm_i_base *b)
{
    atomic_store_explicit(&s->xctx, b->xctx, memory_order_relaxed);
    atomic_store_explicit(&s->memalign, b->memalign, memory_order_relaxed);
    atomic_store_explicit(&s->usable_size, b->usable_size, memory_order_relaxed);
}

/* Fill the empty slots with libc's allocator: the first thing set-up does,
 * so that a recursive allocation during set-up finds an allocator. */
void pm_i_table_boot(void)
{
    pthread_mutex_lock(&table_lock);
    for (int d = 0; d < PM_DOMAIN_COUNT; d++) {
        struct pm_i_domain *s = &pm_i_domains[d];
        if (atomic_load_explicit(&s->malloc, memory_order_relaxed) == NULL) {
            write_begin(s);
            store_public(s, &pm_i_raw_base.a);
            store_ext(s, &pm_i_raw_base);
            write_end(s);
        }
    }
    pthread_mutex_unlock(&table_lock);
}

void pm_i_table_write(pm_domain d, const pm_allocator *a)
{
    pthread_mutex_lock(&table_lock);
    write_begin(&pm_i_domains[d]);
    store_public(&pm_i_domains[d], a);
    write_end(&pm_i_domains[d]);
    pthread_mutex_unlock(&table_lock);
}

void pm_i_table_write_base(pm_domain d, const pm_i_base *b)
{
    pthread_mutex_lock(&table_lock);
    write_begin(&pm_i_domains[d]);
    store_public(&pm_i_domains[d], &b->a);
    store_ext(&pm_i_domains[d], b);
    write_end(&pm_i_domains[d]);
    pthread_mutex_unlock(&table_lock);
}

void pm_i_table_read_base(pm_domain d, pm_i_base *out)
{
    struct pm_i_domain *s = &pm_i_domains[d];
    for (;;) {
        unsigned s1 = atomic_load_explicit(&s->seq, memory_order_acquire);
        out->a.ctx = atomic_load_explicit(&s->ctx, memory_order_relaxed);
        out->a.malloc = atomic_load_explicit(&s->malloc, memory_order_relaxed);
        out->a.calloc = atomic_load_explicit(&s->calloc, memory_order_relaxed);
        out->a.realloc = atomic_load_explicit(&s->realloc, memory_order_relaxed);
        out->a.free = atomic_load_explicit(&s->free, memory_order_relaxed);
        out->xctx = atomic_load_explicit(&s->xctx, memory_order_relaxed);
        out->memalign = atomic_load_explicit(&s->memalign, memory_order_relaxed);
        out->usable_size = atomic_load_explicit(&s->usable_size, memory_order_relaxed);
        atomic_thread_fence(memory_order_acquire);
        if (!(s1 & 1u) && s1 == atomic_load_explicit(&s->seq, memory_order_relaxed))
            break;
    }
    if (out->a.malloc == NULL) /* read before pm_i_table_boot ran */
        *out = pm_i_raw_base;
}

void pm_i_table_read(pm_domain d, pm_allocator *out)
{
    pm_i_base b;
    pm_i_table_read_base(d, &b);
    *out = b.a;
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

void pm_i_table_lock(void) { pthread_mutex_lock(&table_lock); }
void pm_i_table_unlock(void) { pthread_mutex_unlock(&table_lock); }

void pm_i_table_reinit_child(void)
{
    /* The child has one thread: the lock is ours (taken in prepare), and no
     * slot can be half-written. Re-initialize rather than unlock, as POSIX
     * only promises async-signal-safe calls in a child of a threaded parent. */
    pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
    table_lock = fresh;
}
