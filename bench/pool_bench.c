/*
 * bench/pool_bench.c - small-object churn and bytes-per-block probe: the pm
 * API in pymalloc mode against the same workload on libc malloc.
 *
 *   pool_bench churn <pm|libc|none> <size|mixed> <lifo|fifo> <pairs> [live]
 *   pool_bench probe <pm|libc> <size> <count>
 *
 * churn: `live` background blocks (default 10000, sizes 8..512) are
 * allocated first and stay live; then `pairs` malloc+free pairs run:
 *   lifo - allocate a burst of 8 blocks, free them newest first (the
 *          common pattern of temporaries; a per-thread cache's best case);
 *   fifo - a window of 4096 blocks: each step allocates one and frees the
 *          oldest (every block outlives thousands of others, so the pool
 *          allocator's caches cycle through the central lists).
 * With POOL_BENCH_THREADED=1 a thread is started and joined first, so the
 * loop runs in a process that has had two threads (glibc then takes its
 * multi-threaded paths for good, and so do pymalloc's debug hooks). With
 * POOL_BENCH_THREADS=N (pm or libc) N threads run the loop at once, each
 * `pairs` pairs on blocks of its own, and ns/pair is the wall time over
 * `pairs`: the time of one thread's pair while N threads allocate.
 * `none` runs the same loop with a trivial allocator: its cost is the loop's
 * own, to subtract from callgrind counts. The timed loop is bench_loop()
 * (callgrind: --toggle-collect=bench_loop*). Prints pairs and seconds.
 *
 * probe: allocates `count` blocks of `size` bytes, keeps them live, and
 * prints the resident-set growth per block (and, for pm, from the pool
 * statistics: mapped arena bytes, less wholly unused pools, per block).
 */
#include <pymalloc.h>

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { WINDOW = 4096, BURST = 8 };

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* The trivial allocator: a ring of static slots, to measure the loop. */
static unsigned char none_mem[WINDOW + BURST + 1][512];
static unsigned none_next;
__attribute__((noinline)) static void *none_malloc(size_t n)
{
    (void)n;
    void *p = none_mem[none_next];
    none_next = (none_next + 1) % (WINDOW + BURST + 1);
    return p;
}
__attribute__((noinline)) static void none_free(void *p) { __asm__ volatile("" ::"r"(p)); }

#define DEFINE_LOOP(name, MALLOC, FREE)                                               \
    __attribute__((noinline)) void bench_loop_##name(long pairs, int fifo,            \
                                                     const uint16_t *sizes)         \
    {                                                                                 \
        static __thread void *win[WINDOW];                                            \
        void *burst[BURST];                                                           \
        long done = 0;                                                                \
        if (fifo) {                                                                   \
            for (int i = 0; i < WINDOW; i++)                                          \
                win[i] = MALLOC(sizes[i & 1023]);                                     \
            for (long i = 0; i < pairs; i++) {                                        \
                unsigned k = (unsigned)i & (WINDOW - 1);                              \
                FREE(win[k]);                                                         \
                win[k] = MALLOC(sizes[i & 1023]);                                     \
                *(volatile char *)win[k] = 1;                                         \
            }                                                                         \
            for (int i = 0; i < WINDOW; i++)                                          \
                FREE(win[i]);                                                         \
            return;                                                                   \
        }                                                                             \
        for (; done < pairs; done += BURST) {                                         \
            for (int j = 0; j < BURST; j++) {                                         \
                burst[j] = MALLOC(sizes[(done + j) & 1023]);                          \
                *(volatile char *)burst[j] = 1;                                       \
            }                                                                         \
            for (int j = BURST - 1; j >= 0; j--)                                      \
                FREE(burst[j]);                                                       \
        }                                                                             \
    }

DEFINE_LOOP(pm, pm_mem_malloc, pm_mem_free)
DEFINE_LOOP(libc, malloc, free)
DEFINE_LOOP(none, none_malloc, none_free)

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static size_t rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, resident = 0;
    if (f != NULL) {
        if (fscanf(f, "%lu %lu", &size, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return resident * (size_t)sysconf(_SC_PAGESIZE);
}

static int usage(void)
{
    fprintf(stderr, "usage: pool_bench churn <pm|libc|none> <size|mixed> <lifo|fifo> <pairs> [live]\n"
                    "       pool_bench probe <pm|libc> <size> <count>\n");
    return 2;
}

static void *idle(void *arg) { return arg; }

typedef struct loop_arg {
    char alloc; /* 'p' pm, 'l' libc, 'n' none */
    long pairs;
    int fifo;
    const uint16_t *sizes;
    pthread_barrier_t *go;
} loop_arg;

static void run_loop(const loop_arg *a)
{
    if (a->alloc == 'p')
        bench_loop_pm(a->pairs, a->fifo, a->sizes);
    else if (a->alloc == 'l')
        bench_loop_libc(a->pairs, a->fifo, a->sizes);
    else
        bench_loop_none(a->pairs, a->fifo, a->sizes);
}

static void *loop_thread(void *arg)
{
    loop_arg *a = arg;
    pthread_barrier_wait(a->go);
    run_loop(a);
    return NULL;
}

/* The loop in nthreads threads at once; the wall time from their start. */
static double concurrent_loops(int nthreads, loop_arg a)
{
    pthread_t t[64];
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, (unsigned)nthreads + 1);
    a.go = &go;
    for (int i = 0; i < nthreads; i++)
        if (pthread_create(&t[i], NULL, loop_thread, &a) != 0) {
            fprintf(stderr, "pool_bench: cannot start a thread\n");
            exit(1);
        }
    pthread_barrier_wait(&go);
    double t0 = now();
    for (int i = 0; i < nthreads; i++)
        pthread_join(t[i], NULL);
    double t1 = now();
    pthread_barrier_destroy(&go);
    return t1 - t0;
}

static int churn(int argc, char **argv)
{
    if (argc < 6)
        return usage();
    const char *alloc = argv[2];
    int mixed = strcmp(argv[3], "mixed") == 0;
    size_t size = mixed ? 0 : (size_t)atol(argv[3]);
    int fifo = strcmp(argv[4], "fifo") == 0;
    long pairs = atol(argv[5]);
    long live = argc > 6 ? atol(argv[6]) : 10000;
    int pm = strcmp(alloc, "pm") == 0, libc = strcmp(alloc, "libc") == 0;
    if (!pm && !libc && strcmp(alloc, "none") != 0)
        return usage();
    static uint16_t sizes[1024];
    uint64_t s = 12345;
    for (int i = 0; i < 1024; i++)
        sizes[i] = (uint16_t)(mixed ? 8 + rnd(&s) % 505 : size);
    /* The background set: live blocks of 8..512 bytes, half of them freed
     * again so the heap has holes. */
    void **bg = malloc((size_t)live * sizeof *bg);
    for (long i = 0; i < live; i++) {
        size_t n = 8 + rnd(&s) % 505;
        bg[i] = pm ? pm_mem_malloc(n) : libc ? malloc(n) : NULL;
    }
    for (long i = 0; i < live; i += 2) {
        if (pm)
            pm_mem_free(bg[i]);
        else if (libc)
            free(bg[i]);
    }
    const char *threaded = getenv("POOL_BENCH_THREADED");
    if (threaded != NULL && strcmp(threaded, "1") == 0) {
        pthread_t t;
        if (pthread_create(&t, NULL, idle, NULL) != 0 || pthread_join(t, NULL) != 0) {
            fprintf(stderr, "pool_bench: cannot start a thread\n");
            return 1;
        }
    }
    const char *nthr = getenv("POOL_BENCH_THREADS");
    int nthreads = nthr != NULL ? atoi(nthr) : 1;
    if (nthreads < 1 || nthreads > 64 || (nthreads > 1 && !pm && !libc)) {
        fprintf(stderr, "pool_bench: POOL_BENCH_THREADS: 1..64, more than 1 with pm or libc\n");
        return 2;
    }
    loop_arg a = {pm ? 'p' : libc ? 'l' : 'n', pairs, fifo, sizes, NULL};
    double secs;
    char threads[32] = "";
    if (nthreads > 1) {
        secs = concurrent_loops(nthreads, a);
        snprintf(threads, sizeof threads, " threads=%d", nthreads);
    } else {
        double t0 = now();
        run_loop(&a);
        secs = now() - t0;
    }
    printf("churn %s size=%s %s pairs=%ld live=%ld%s seconds=%.4f ns/pair=%.2f\n", alloc,
           argv[3], fifo ? "fifo" : "lifo", pairs, live, threads, secs,
           secs * 1e9 / (double)pairs);
    for (long i = 1; i < live; i += 2) {
        if (pm)
            pm_mem_free(bg[i]);
        else if (libc)
            free(bg[i]);
    }
    free(bg);
    return 0;
}

static int probe(int argc, char **argv)
{
    if (argc < 5)
        return usage();
    int pm = strcmp(argv[2], "pm") == 0;
    size_t size = (size_t)atol(argv[3]);
    long count = atol(argv[4]);
    void **p = malloc((size_t)count * sizeof *p);
    memset(p, 0xA5, (size_t)count * sizeof *p); /* resident first (0 would become calloc) */
    if (pm)
        pm_mem_free(pm_mem_malloc(size)); /* set-up outside the measurement */
    size_t before = rss_bytes();
    for (long i = 0; i < count; i++) {
        p[i] = pm ? pm_mem_malloc(size) : malloc(size);
        memset(p[i], 1, size);
    }
    size_t after = rss_bytes();
    printf("probe %s size=%zu count=%ld rss_bytes_per_block=%.2f", argv[2], size, count,
           (double)(after - before) / (double)count);
    if (pm) {
        struct pm_stats st;
        pm_get_stats(&st);
        /* Mapped arena bytes minus wholly unused pools (the partly used
         * last arena would otherwise dominate small counts). */
        printf(" pool_bytes_per_block=%.2f",
               (double)(st.arenas_current * st.arena_size - st.bytes_unused_pools) /
                   (double)count);
    }
    printf("\n");
    for (long i = 0; i < count; i++) {
        if (pm)
            pm_mem_free(p[i]);
        else
            free(p[i]);
    }
    free(p);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage();
    if (strcmp(argv[1], "churn") == 0)
        return churn(argc, argv);
    if (strcmp(argv[1], "probe") == 0)
        return probe(argc, argv);
    return usage();
}
