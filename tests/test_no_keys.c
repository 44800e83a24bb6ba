/*
 * tests/test_no_keys.c - a program that took every pthread key before its
 * first allocation. The pool's thread caches need a key of their own (their
 * flush at thread exit); without one the pool must go on without caches and
 * leave the program's keys alone: every key keeps the value the program set,
 * and every destructor receives it. (A failed pthread_key_create used to
 * leave the pool's key at 0, the program's first key, which it overwrote.)
 *
 * Its own program: the keys cannot be given back to a process-wide limit
 * that other tests share.
 */
#include "domains.h"
#include "harness.h"

#include <pthread.h>
#include <stdatomic.h>

#include "pymalloc.h"

#define NTHREADS 4
#define MAXKEYS 2048

static pthread_key_t keys[MAXKEYS];
static int nkeys;
static char marks[NTHREADS + 1][MAXKEYS];
static _Atomic int dtor_calls, dtor_bad;

/* A value the program set is the address of one of its marks. */
static void dtor(void *v)
{
    atomic_fetch_add(&dtor_calls, 1);
    uintptr_t a = (uintptr_t)v, lo = (uintptr_t)marks;
    if (a < lo || a >= lo + sizeof marks)
        atomic_fetch_add(&dtor_bad, 1);
}

/* Set every key, allocate and free through every domain (a thread cache,
 * if the pool had a key), then check the keys. Returns the keys changed. */
static int use_keys(int t)
{
    for (int i = 0; i < nkeys; i++)
        pthread_setspecific(keys[i], &marks[t][i]);
    void *blocks[300];
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 300; i++) {
            size_t n = 1 + (size_t)(i * 37 + round * 11) % 600;
            unsigned char *p = pm_t_domains[i % 3].malloc(n);
            if (p == NULL)
                return -1;
            memset(p, (int)(i & 0xff), n);
            blocks[i] = p;
        }
        for (int i = 0; i < 300; i++) {
            size_t n = 1 + (size_t)(i * 37 + round * 11) % 600;
            unsigned char *p = blocks[i];
            if (p[0] != (unsigned char)(i & 0xff) || p[n - 1] != (unsigned char)(i & 0xff))
                return -1;
            pm_t_domains[i % 3].free(p);
        }
    }
    int changed = 0;
    for (int i = 0; i < nkeys; i++)
        changed += pthread_getspecific(keys[i]) != &marks[t][i];
    return changed;
}

static void *thread_main(void *arg)
{
    return (void *)(intptr_t)use_keys((int)(intptr_t)arg);
}

static void test_every_key_taken(void)
{
    PM_CHECK(nkeys > 0);
    PM_CHECK_EQ(use_keys(0), 0); /* the main thread (no destructors) */
    for (int t = 1; t <= NTHREADS; t++) {
        pthread_t th;
        void *ret = NULL;
        PM_CHECK_EQ(pthread_create(&th, NULL, thread_main, (void *)(intptr_t)t), 0);
        PM_CHECK_EQ(pthread_join(th, &ret), 0);
        PM_CHECK_EQ((intptr_t)ret, 0);
    }
    /* Each thread's every key, and only the program's values. */
    PM_CHECK_EQ(atomic_load(&dtor_calls), NTHREADS * nkeys);
    PM_CHECK_EQ(atomic_load(&dtor_bad), 0);
}

int main(void)
{
    pm_t_pin_env(NULL);
    /* Before the first allocation through pymalloc: every key there is. */
    int rc = 0;
    while (nkeys < MAXKEYS && (rc = pthread_key_create(&keys[nkeys], dtor)) == 0)
        nkeys++;
    if (rc != EAGAIN || nkeys == MAXKEYS) {
        fprintf(stderr, "cannot take every key (%d taken)\n", nkeys);
        return 77;
    }
    PM_RUN(test_every_key_taken);
    return pm_test_done();
}
