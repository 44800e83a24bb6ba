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
 * by pm_i_table_boot), so an
 * allocation that happens while the mode is being set up (from the set-up
 * code itself, or from another library's constructor) has somewhere safe to
 * go.
 */
#include "pm_internal.h"

#include <pthread.h>

struct pm_i_domain pm_i_domains[PM_DOMAIN_COUNT];

static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;

/* Fill the empty slots with libc's allocator: the first thing set-up does,
 * so that a recursive allocation during set-up finds an allocator. */
void pm_i_table_boot(void)
{
    for (int d = 0; d < PM_DOMAIN_COUNT; d++) {
        if (atomic_load_explicit(&pm_i_domains[d].malloc, memory_order_relaxed) == NULL)
            pm_i_table_write((pm_domain)d, &pm_i_raw_allocator);
    }
}

static void slot_store(struct pm_i_domain *s, const pm_allocator *a)
{
    unsigned seq = atomic_load_explicit(&s->seq, memory_order_relaxed);
    atomic_store_explicit(&s->seq, seq + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    atomic_store_explicit(&s->ctx, a->ctx, memory_order_relaxed);
    atomic_store_explicit(&s->malloc, a->malloc, memory_order_relaxed);
    atomic_store_explicit(&s->calloc, a->calloc, memory_order_relaxed);
    atomic_store_explicit(&s->realloc, a->realloc, memory_order_relaxed);
    atomic_store_explicit(&s->free, a->free, memory_order_relaxed);
    atomic_store_explicit(&s->seq, seq + 2, memory_order_release);
}

void pm_i_table_write(pm_domain d, const pm_allocator *a)
{
    pthread_mutex_lock(&table_lock);
    slot_store(&pm_i_domains[d], a);
    pthread_mutex_unlock(&table_lock);
}

void pm_i_table_read(pm_domain d, pm_allocator *out)
{
    struct pm_i_domain *s = &pm_i_domains[d];
    for (;;) {
        unsigned s1 = atomic_load_explicit(&s->seq, memory_order_acquire);
        out->ctx = atomic_load_explicit(&s->ctx, memory_order_relaxed);
        out->malloc = atomic_load_explicit(&s->malloc, memory_order_relaxed);
        out->calloc = atomic_load_explicit(&s->calloc, memory_order_relaxed);
        out->realloc = atomic_load_explicit(&s->realloc, memory_order_relaxed);
        out->free = atomic_load_explicit(&s->free, memory_order_relaxed);
        atomic_thread_fence(memory_order_acquire);
        if (!(s1 & 1u) && s1 == atomic_load_explicit(&s->seq, memory_order_relaxed))
            break;
    }
    if (out->malloc == NULL) /* read before table_boot ran */
        *out = pm_i_raw_allocator;
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
