/*
 * tests/override/prog_exit_churn.c - a process that exits while its threads
 * are still allocating: the exit work (atexit handlers, stdio's flush, the
 * preloaded allocator's own exit checks and statistics) runs while other
 * threads are inside malloc, realloc and free, in small and large (mmap)
 * sizes, and frees blocks that other threads made.
 *
 *   prog_exit_churn
 *
 * Each scenario runs in a child forked before any thread exists:
 *   1. main calls exit() while four threads churn;
 *   2. a worker calls exit() while main and three others churn;
 *   3. main returns, while the threads churn.
 * In each, a function registered with atexit() allocates, reallocates and
 * frees while the threads go on. A child must exit 0 and print its lines; the parent prints each child's
 * status. Plain C, no pymalloc API: its output is the same under glibc and
 * under LD_PRELOAD=libpymalloc.so in every mode.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define NTHREADS 4
#define SLOTS 48
#define MAILBOX 64
#define WARMUP 4000 /* iterations every thread does before the exit */

static atomic_int warmed;        /* threads past WARMUP */
static atomic_long checks_failed;
static _Atomic(unsigned char *) mailbox[MAILBOX];
static int scenario;

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* A block carries its size and a tag in its first 16 bytes; the rest is a
 * pattern made from the tag, checked before every free. */
static unsigned char *make(size_t n, uint64_t tag)
{
    if (n < 16)
        n = 16;
    unsigned char *p = malloc(n);
    if (p == NULL)
        return NULL;
    memcpy(p, &n, sizeof n);
    memcpy(p + 8, &tag, sizeof tag);
    for (size_t i = 16; i < n; i++)
        p[i] = (unsigned char)(tag + i);
    return p;
}

static void check_free(unsigned char *p)
{
    size_t n;
    uint64_t tag;
    memcpy(&n, p, sizeof n);
    memcpy(&tag, p + 8, sizeof tag);
    for (size_t i = 16; i < n; i++)
        if (p[i] != (unsigned char)(tag + i)) {
            atomic_fetch_add(&checks_failed, 1);
            break;
        }
    free(p);
}

static size_t pick_size(uint64_t *s)
{
    switch (rnd(s) % 8) {
    case 0:
        return 200000 + rnd(s) % 100000; /* mmap-sized */
    case 1:
    case 2:
        return rnd(s) % 4000;
    default:
        return rnd(s) % 512;
    }
}

static void churn(int me, int exit_after)
{
    uint64_t seed = 0x9e3779b97f4a7c15ull * (uint64_t)(me + 1);
    unsigned char *slot[SLOTS] = {0};
    for (long it = 0;; it++) {
        if (it == WARMUP)
            atomic_fetch_add(&warmed, 1);
        if (exit_after && it >= WARMUP && atomic_load(&warmed) >= NTHREADS) {
            printf("scenario %d: a worker exits\n", scenario);
            exit(0);
        }
        int s = (int)(rnd(&seed) % SLOTS);
        switch (rnd(&seed) % 4) {
        case 0:
            if (slot[s] != NULL)
                check_free(slot[s]);
            slot[s] = make(pick_size(&seed), rnd(&seed));
            break;
        case 1:
            if (slot[s] != NULL) {
                size_t n = pick_size(&seed), old;
                if (n < 16)
                    n = 16;
                memcpy(&old, slot[s], sizeof old);
                unsigned char *q = realloc(slot[s], n);
                if (q != NULL) {
                    uint64_t tag;
                    memcpy(&tag, q + 8, sizeof tag);
                    memcpy(q, &n, sizeof n);
                    for (size_t i = old < n ? old : n; i < n; i++)
                        q[i] = (unsigned char)(tag + i);
                    slot[s] = q;
                }
            }
            break;
        case 2: { /* to the mailbox; whatever was there is freed here */
            unsigned char *p = make(pick_size(&seed) % 600, rnd(&seed));
            unsigned char *old = atomic_exchange(&mailbox[rnd(&seed) % MAILBOX], p);
            if (old != NULL)
                check_free(old);
            break;
        }
        default:
            free(calloc(1 + rnd(&seed) % 64, 1 + rnd(&seed) % 16));
            break;
        }
    }
}

static void *worker(void *arg)
{
    int me = (int)(intptr_t)arg;
    churn(me, scenario == 2 && me == 0);
    return NULL;
}

static void at_exit_work(void)
{
    /* Runs while the other threads still allocate. */
    char *v[100];
    for (int i = 0; i < 100; i++) {
        v[i] = malloc((size_t)(i * 37 % 700) + 1);
        if (v[i] != NULL)
            memset(v[i], i, (size_t)(i * 37 % 700) + 1);
    }
    for (int i = 0; i < 100; i += 2) {
        char *q = realloc(v[i], 5000);
        if (q != NULL)
            v[i] = q;
    }
    for (int i = 99; i >= 0; i--)
        free(v[i]);
    printf("scenario %d: atexit work done, %ld checks failed\n", scenario,
           atomic_load(&checks_failed));
    fflush(stdout);
}

static void run(int which)
{
    scenario = which;
    atexit(at_exit_work);
    pthread_t t[NTHREADS];
    for (int i = 0; i < NTHREADS; i++)
        if (pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i) != 0) {
            printf("scenario %d: pthread_create failed\n", which);
            exit(3);
        }
    if (which == 2) {
        churn(NTHREADS, 0); /* until the worker's exit ends the process */
    }
    while (atomic_load(&warmed) < NTHREADS)
        usleep(1000);
    printf("scenario %d: main exits\n", which);
    if (which == 1)
        exit(0);
    /* scenario 3: the exit runs from main's return */
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int which = 1; which <= 3; which++) {
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            return 2;
        }
        if (pid == 0) {
            run(which);
            return 0;
        }
        int st;
        if (waitpid(pid, &st, 0) != pid) {
            perror("waitpid");
            return 2;
        }
        if (WIFEXITED(st))
            printf("scenario %d: child exited with %d\n", which, WEXITSTATUS(st));
        else
            printf("scenario %d: child killed by signal %d\n", which, WTERMSIG(st));
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            return 1;
    }
    return 0;
}
