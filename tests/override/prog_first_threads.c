/*
 * tests/override/prog_first_threads.c - the C library's allocator first
 * called by many threads at once: 32 threads, released together, each
 * make blocks too large for the pools (the C library's in every mode) as
 * their first allocation. glibc sets its allocator up in its first call,
 * with no lock; pymalloc's set-up makes that call first, while the other
 * threads wait for it (modes/raw.c, pm_i_libc_start). Before, the
 * threads raced in that set-up, and a run ended, now and then, with
 * "malloc assertion failure in __malloc_arena_thread_freeres:
 * a->attached_threads > 0" at a thread's exit. Prints "ok" at the end;
 * main allocates nothing of its own before the threads.
 *
 * Built three ways:
 * - the program, whose main starts the threads (preloaded, or linked
 *   with libpymalloc.a);
 * - with PM_FIRST_THREADS_LIBRARY, a shared library whose constructor
 *   starts them, before the constructors of the program that links it;
 * - with PM_FIRST_THREADS_BY_LIBRARY, a program linked with that library
 *   and with libpymalloc.a, whose main only says whether the library's
 *   threads ran. There, the threads come before pymalloc's constructor
 *   (which made glibc's first call, and came too late, before the set-up
 *   did).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if !defined(PM_FIRST_THREADS_BY_LIBRARY)
#define NTHREADS 32

static pthread_barrier_t start;

static void *worker(void *arg)
{
    (void)arg;
    pthread_barrier_wait(&start);
    unsigned char *p = malloc(100000);
    if (p == NULL)
        abort();
    memset(p, 1, 100000);
    unsigned char *q = realloc(p, 200000);
    if (q == NULL || q[99999] != 1)
        abort();
    free(q);
    void *z = calloc(1000, 100);
    if (z == NULL)
        abort();
    free(z);
    return NULL;
}

static int run_threads(void)
{
    pthread_t t[NTHREADS];
    pthread_barrier_init(&start, NULL, NTHREADS);
    for (int i = 0; i < NTHREADS; i++)
        if (pthread_create(&t[i], NULL, worker, NULL) != 0)
            return 2;
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(t[i], NULL);
    return 0;
}
#endif

#if defined(PM_FIRST_THREADS_LIBRARY)
int pm_first_threads_status = -1;

__attribute__((constructor)) static void start_threads(void)
{
    pm_first_threads_status = run_threads();
}
#elif defined(PM_FIRST_THREADS_BY_LIBRARY)
extern int pm_first_threads_status;

int main(void)
{
    if (pm_first_threads_status != 0)
        return 3;
    puts("ok");
    return 0;
}
#else
int main(void)
{
    int rc = run_threads();
    if (rc != 0)
        return rc;
    puts("ok");
    return 0;
}
#endif
