/*
 * tests/override/prog_first_threads.c - the C library's allocator first
 * called by many threads at once: 32 threads, released together, each
 * make blocks too large for the pools (the C library's in every mode) as
 * their first allocation. glibc sets its allocator up in its first call,
 * with no lock; the override's constructor makes that call first, while
 * the program has one thread (modes/raw.c, pm_i_libc_start). Before, the
 * threads raced in that set-up, and a run ended, now and then, with
 * "malloc assertion failure in __malloc_arena_thread_freeres:
 * a->attached_threads > 0" at a thread's exit. Prints "ok" at the end;
 * main allocates nothing of its own before the threads.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

int main(void)
{
    pthread_t t[NTHREADS];
    pthread_barrier_init(&start, NULL, NTHREADS);
    for (int i = 0; i < NTHREADS; i++)
        if (pthread_create(&t[i], NULL, worker, NULL) != 0)
            return 2;
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(t[i], NULL);
    puts("ok");
    return 0;
}
