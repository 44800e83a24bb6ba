/*
 * tests/override/prog_threads.c - a threaded C program that uses malloc in
 * all the ways a preloaded allocator meets: allocation in constructors before
 * main (its own and a library's), threads created and exiting in rounds,
 * blocks freed by another thread than the one that made them, fork() while
 * other threads allocate (the child allocates too), and a library loaded
 * with dlopen after start that allocates and frees across the boundary.
 *
 *   prog_threads PLUGIN.so
 *
 * Plain C, no pymalloc API: it runs under LD_PRELOAD=libpymalloc.so and is
 * also linked with libpymalloc.a. Its output is the same in every mode and
 * under plain glibc; it exits 0 when every check passed.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

const char *pm_t_ctor_report(void);
void pm_t_ctor_release(void);

#define NTHREADS 4
#define ROUNDS 3
#define ITERS 20000
#define SLOTS 64
#define MAILBOX 128

static atomic_int failures;
#define EXPECT(c)                                                                      \
    do {                                                                               \
        if (!(c)) {                                                                    \
            fprintf(stderr, "%s:%d: failed: %s\n", __FILE__, __LINE__, #c);            \
            atomic_fetch_add(&failures, 1);                                            \
        }                                                                              \
    } while (0)

static char *early_own;
__attribute__((constructor(101))) static void own_ctor(void)
{
    early_own = malloc(64);
    if (early_own != NULL)
        strcpy(early_own, "own ctor block");
}

typedef struct blk {
    size_t n;
    uint64_t tag;
} blk;

static void fill(unsigned char *p, size_t n, uint64_t tag)
{
    for (size_t i = sizeof(blk); i < n; i++)
        p[i] = (unsigned char)(tag + i);
}

static int check(const unsigned char *p)
{
    const blk *b = (const blk *)p;
    for (size_t i = sizeof(blk); i < b->n; i++)
        if (p[i] != (unsigned char)(b->tag + i))
            return 0;
    return 1;
}

static unsigned char *make(size_t n, uint64_t tag)
{
    if (n < sizeof(blk))
        n = sizeof(blk);
    unsigned char *p = malloc(n);
    if (p == NULL)
        return NULL;
    blk b = {n, tag};
    memcpy(p, &b, sizeof b);
    fill(p, n, tag);
    return p;
}

static _Atomic(unsigned char *) mailbox[NTHREADS][MAILBOX];
static atomic_int stop_forking;

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void *worker(void *arg)
{
    int me = (int)(intptr_t)arg;
    uint64_t seed = 0x9e3779b97f4a7c15ull * (uint64_t)(me + 1);
    unsigned char *slot[SLOTS] = {0};
    for (int it = 0; it < ITERS; it++) {
        /* take blocks others sent us, check and free them */
        for (int k = 0; k < 2; k++) {
            unsigned char *got = atomic_exchange(&mailbox[me][rnd(&seed) % MAILBOX], NULL);
            if (got != NULL) {
                EXPECT(check(got));
                free(got);
            }
        }
        int s = (int)(rnd(&seed) % SLOTS);
        size_t n = (size_t)(rnd(&seed) % 3 == 0 ? rnd(&seed) % 5000 : rnd(&seed) % 300);
        switch (rnd(&seed) % 4) {
        case 0: /* replace */
            if (slot[s] != NULL) {
                EXPECT(check(slot[s]));
                free(slot[s]);
            }
            slot[s] = make(n, rnd(&seed));
            EXPECT(slot[s] != NULL);
            break;
        case 1: /* grow or shrink, keeping the prefix */
            if (slot[s] != NULL && check(slot[s])) {
                blk b;
                memcpy(&b, slot[s], sizeof b);
                size_t nn = n < sizeof(blk) ? sizeof(blk) : n;
                unsigned char *q = realloc(slot[s], nn);
                EXPECT(q != NULL);
                if (q != NULL) {
                    b.n = nn;
                    memcpy(q, &b, sizeof b);
                    fill(q, nn, b.tag);
                    slot[s] = q;
                }
            }
            break;
        case 2: { /* send to another thread, who frees it */
            unsigned char *p = make(n, rnd(&seed));
            int to = (int)(rnd(&seed) % NTHREADS);
            unsigned char *old = atomic_exchange(&mailbox[to][rnd(&seed) % MAILBOX], p);
            if (old != NULL) {
                EXPECT(check(old));
                free(old);
            }
            break;
        }
        default: { /* calloc and aligned blocks */
            unsigned char *z = calloc(1, n + 1);
            EXPECT(z != NULL && z[n] == 0);
            free(z);
            void *a = NULL;
            EXPECT(posix_memalign(&a, 64, n) == 0 && ((uintptr_t)a & 63) == 0);
            free(a);
        }
        }
    }
    for (int s = 0; s < SLOTS; s++) {
        if (slot[s] != NULL) {
            EXPECT(check(slot[s]));
            free(slot[s]);
        }
    }
    return NULL;
}

/* In a forked child: a new thread allocates and frees. */
static void *child_thread(void *arg)
{
    (void)arg;
    unsigned char *p = make(300, 3);
    int good = p != NULL && check(p);
    free(p);
    return good ? (void *)1 : NULL;
}

/* Fork while the workers run; the child allocates and exits. */
static int fork_children(void)
{
    int ok = 0;
    for (int i = 0; i < 8 && !atomic_load(&stop_forking); i++) {
        pid_t pid = fork();
        if (pid == 0) {
            char *s = strdup("child");
            unsigned char *b = make(1000, 7);
            pthread_t t;
            void *res = NULL;
            int good = s != NULL && b != NULL && check(b) &&
                       pthread_create(&t, NULL, child_thread, NULL) == 0 &&
                       pthread_join(t, &res) == 0 && res == (void *)1;
            free(s);
            free(b);
            _exit(good ? 0 : 1);
        }
        int st = 0;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
        }
        if (pid > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0)
            ok++;
        else
            fprintf(stderr, "fork child %d ended with status 0x%x\n", i, st);
    }
    return ok;
}

static char *(*thread_make_fn)(const char *);
static void *plugin_thread(void *arg)
{
    (void)arg;
    return thread_make_fn("thread"); /* first use of the plugin's TLS here */
}

static int run_dlopen(const char *path)
{
    int ok = 0;
    for (int round = 0; round < 3; round++) {
        void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (h == NULL) {
            fprintf(stderr, "dlopen: %s\n", dlerror());
            return 0;
        }
        char *(*make_fn)(const char *);
        void (*take_fn)(void *);
        *(void **)&make_fn = dlsym(h, "pm_t_plugin_make");
        *(void **)&take_fn = dlsym(h, "pm_t_plugin_take");
        if (make_fn != NULL && take_fn != NULL) {
            char *s = make_fn("hello");
            if (s != NULL && strcmp(s, "plugin kept: hello") == 0)
                ok++;
            free(s);                  /* made by the plugin, freed here */
            take_fn(strdup("bye"));   /* made here, freed by the plugin */
            pthread_t t;
            void *r = NULL;
            thread_make_fn = make_fn;
            if (pthread_create(&t, NULL, plugin_thread, NULL) == 0 && pthread_join(t, &r) == 0 &&
                r != NULL && strcmp(r, "plugin kept: thread") == 0)
                ok++;
            free(r);
        }
        dlclose(h);
    }
    return ok == 6;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: prog_threads PLUGIN.so\n");
        return 2;
    }
    printf("%s\n", pm_t_ctor_report());
    EXPECT(early_own != NULL && strcmp(early_own, "own ctor block") == 0);
    free(early_own);
    pm_t_ctor_release();

    int forked = 0;
    for (int round = 0; round < ROUNDS; round++) {
        pthread_t t[NTHREADS];
        for (int i = 0; i < NTHREADS; i++)
            EXPECT(pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i) == 0);
        if (round == 1)
            forked = fork_children();
        for (int i = 0; i < NTHREADS; i++)
            pthread_join(t[i], NULL);
    }
    for (int i = 0; i < NTHREADS; i++)
        for (int j = 0; j < MAILBOX; j++) {
            unsigned char *p = atomic_exchange(&mailbox[i][j], NULL);
            if (p != NULL) {
                EXPECT(check(p));
                free(p);
            }
        }
    printf("threads: %d rounds of %d threads\n", ROUNDS, NTHREADS);
    printf("fork: %d of 8 children ok\n", forked);
    printf("dlopen: %s\n", run_dlopen(argv[1]) ? "ok" : "FAILED");
    int f = atomic_load(&failures);
    printf("failures: %d\n", f);
    return f == 0 && forked == 8 ? 0 : 1;
}
