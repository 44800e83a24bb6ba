/*
 * tests/pool_victim.c - small programs with heap bugs in pool blocks, run
 * under valgrind by test_valgrind (PYMALLOC_MODE=pymalloc). argv[1] picks
 * the case; each bug sits in its own function so memcheck's report names
 * the faulting line.
 */
#include "pymalloc.h"
#include "pm_internal.h" /* pm_i_domain_usable_size */

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile unsigned char sink;

/* Not static: each stays a function of its own for the report to name. */
void overflow_into_next(unsigned char *a);
void overflow_by(unsigned char *a, size_t at);
void read_after_free(unsigned char *p);
void write_after_free(unsigned char *p);
void leak_one(void);
void write_past_shrunk(unsigned char *p);
void leak_list(void);
void leak_cycle(void);
void leak_registry(void);
void free_twice(unsigned char *p);
void free_interior(unsigned char *p);
void *realloc_freed(unsigned char *p);
void write_link_after_free(unsigned char *p);
void write_after_reuse(unsigned char *p);
void branch_on_new(const unsigned char *p);
void branch_on_grown(const unsigned char *p);
void write_past_tiny_freed(unsigned char *p);
void free_twice_deferred(unsigned char *r, unsigned char *p);
void overflow_nested(unsigned char *p);
void free_interior_deferred(unsigned char *p);
void read_nested_after_free(unsigned char *p);
void free_nested_twice(unsigned char *p);
void leak_nested(void);
void read_after_realloc(const unsigned char *p);
void leak_after_trim(void);

/* Each fault in a function of its own, never inlined or cloned, so that
 * memcheck names it (clang has no noclone and never clones these). */
#if defined(__clang__)
#define PM_VICTIM_FN __attribute__((noinline))
#else
#define PM_VICTIM_FN __attribute__((noinline, noclone))
#endif

PM_VICTIM_FN void overflow_into_next(unsigned char *a)
{
    ((volatile unsigned char *)a)[32] = 1; /* one past a 32-byte request: the next block's first byte */
}

PM_VICTIM_FN void overflow_by(unsigned char *a, size_t at)
{
    ((volatile unsigned char *)a)[at] = 1; /* at bytes past the start of a */
}

/* One function per size for "overflow-sizes": memcheck shows one error per
 * call stack. */
#define OVERFLOW_ONE_PAST(k)                                                          \
    PM_VICTIM_FN void overflow_one_past_##k(unsigned char *a, size_t n)               \
    {                                                                                 \
        ((volatile unsigned char *)a)[n] = 1;                                         \
    }
OVERFLOW_ONE_PAST(0)
OVERFLOW_ONE_PAST(1)
OVERFLOW_ONE_PAST(2)
OVERFLOW_ONE_PAST(3)
OVERFLOW_ONE_PAST(4)
OVERFLOW_ONE_PAST(5)
OVERFLOW_ONE_PAST(6)
OVERFLOW_ONE_PAST(7)
OVERFLOW_ONE_PAST(8)
OVERFLOW_ONE_PAST(9)
OVERFLOW_ONE_PAST(10)
OVERFLOW_ONE_PAST(11)

PM_VICTIM_FN void read_after_realloc(const unsigned char *p)
{
    sink = p[2]; /* the pointer passed to realloc */
}

PM_VICTIM_FN void read_after_free(unsigned char *p)
{
    sink = p[8];
}

PM_VICTIM_FN void write_after_free(unsigned char *p)
{
    ((volatile unsigned char *)p)[3] = 7;
}

PM_VICTIM_FN void write_after_reuse(unsigned char *p)
{
    ((volatile unsigned char *)p)[5] = 7;
}

PM_VICTIM_FN void branch_on_new(const unsigned char *p)
{
    if (p[5] == 3) /* never written since the malloc */
        sink = 1;
}

PM_VICTIM_FN void branch_on_grown(const unsigned char *p)
{
    if (p[150] == 3) /* past the old size: never written */
        sink = 2;
}

PM_VICTIM_FN void write_past_tiny_freed(unsigned char *p)
{
    ((volatile unsigned char *)p)[5] = 9; /* past a 2-byte block's end, in its freed slot */
}

/* A free made while this thread is inside one of the pools' slow paths,
 * as a signal handler's free there is: deferred (linked through the
 * block's first 8 bytes) to the end of the slow path. pm_i_p_busy and
 * pm_i_p_drain_deferred are the pools' own (modes/pool.h). */
extern __thread int pm_i_p_busy;
void pm_i_p_drain_deferred(void);
static void free_as_handler_in_slow_path(unsigned char *p)
{
    pm_i_p_busy++;
    pm_obj_free(p);
    pm_i_p_busy--;
    pm_i_p_drain_deferred();
}

/* r (live) and then p (freed) freed the deferred way: p's link is r. */
PM_VICTIM_FN void free_twice_deferred(unsigned char *r, unsigned char *p)
{
    pm_i_p_busy++;
    pm_obj_free(r);
    pm_obj_free(p);
    pm_i_p_busy--;
    pm_i_p_drain_deferred();
    __asm__ volatile("" ::: "memory");
}

/* Calls made while this thread is inside the debug hooks, as a signal
 * handler's there are: served from the early arena (src/early.c).
 * The busy mark is the first byte of the hooks' own pm_i_debug_state
 * (src/pm_debug.h). */
extern __thread unsigned char pm_i_debug_state[2];
#define pm_i_debug_busy (pm_i_debug_state[0])

PM_VICTIM_FN void free_interior_deferred(unsigned char *p)
{
    free_as_handler_in_slow_path(p + 16);
    __asm__ volatile("" ::: "memory");
}

PM_VICTIM_FN void overflow_nested(unsigned char *p)
{
    ((volatile unsigned char *)p)[24] = 1; /* one past a 24-byte request */
}

PM_VICTIM_FN void read_nested_after_free(unsigned char *p)
{
    sink = p[4];
}

PM_VICTIM_FN void free_nested_twice(unsigned char *p)
{
    pm_i_debug_busy++;
    pm_obj_free(p);
    pm_i_debug_busy--;
    __asm__ volatile("" ::: "memory");
}

PM_VICTIM_FN void leak_nested(void)
{
    pm_i_debug_busy++;
    unsigned char *p = pm_obj_malloc(72);
    pm_i_debug_busy--;
    memset(p, 5, 72);
    p = NULL;
}

PM_VICTIM_FN void leak_one(void)
{
    unsigned char *p = pm_mem_malloc(100);
    memset(p, 1, 100);
    p = NULL;
}

/* Eight 24-byte blocks freed and given back by pm_trim (under memcheck
 * the freed blocks wait in a quarantine, which pm_trim empties), then
 * eight more made (at those addresses) and lost: "definitely lost", as
 * with libc's malloc (the quarantine's ring kept the old addresses, and
 * memcheck's leak check, which scans it as a root, found the new blocks
 * "still reachable"). */
PM_VICTIM_FN void leak_after_trim(void)
{
    void *volatile q[8];
    for (int i = 0; i < 8; i++)
        memset(q[i] = pm_mem_malloc(24), 1, 24);
    for (int i = 0; i < 8; i++)
        pm_mem_free(q[i]);
    pm_trim();
    for (int i = 0; i < 8; i++)
        memset(q[i] = pm_mem_malloc(24), 2, 24);
    for (int i = 0; i < 8; i++)
        q[i] = NULL;
}

/* A list of ten 48-byte blocks, each pointing to the next, lost by its
 * head: the head is lost directly, the nine others through it. */
PM_VICTIM_FN void leak_list(void)
{
    void **head = NULL;
    for (int i = 0; i < 10; i++) {
        void **node = pm_mem_malloc(48);
        memset(node, 0, 48);
        node[0] = head;
        head = node;
    }
    head = NULL;
}

/* Two 64-byte blocks pointing to each other, lost. */
PM_VICTIM_FN void leak_cycle(void)
{
    void **a = pm_obj_malloc(64), **b = pm_obj_malloc(64);
    memset(a, 0, 64);
    memset(b, 0, 64);
    a[0] = b;
    b[0] = a;
    a = b = NULL;
}

/* Blocks that the debug modes record in their registry (no side word: a
 * libc block in malloc_debug, a big block or a raw one in the others),
 * lost. */
PM_VICTIM_FN void leak_registry(void)
{
    unsigned char *big = pm_mem_malloc(1000), *raw = pm_raw_malloc(100);
    memset(big, 3, 1000);
    memset(raw, 4, 100);
    big = raw = NULL;
}

/* Bugs after which the program goes on, as it does with libc's allocator
 * under memcheck: the pool must not act on them (count a block twice, put
 * an interior pointer on a free list, follow a link the program wrote). */
PM_VICTIM_FN void free_twice(unsigned char *p)
{
    pm_mem_free(p);
    pm_mem_free(p);
}

/* (The empty asm after the call: no tail call, so the frame stays for
 * memcheck's report to name.) */
PM_VICTIM_FN void free_interior(unsigned char *p)
{
    pm_mem_free(p + 8);
    __asm__ volatile("" ::: "memory");
}

PM_VICTIM_FN void *realloc_freed(unsigned char *p)
{
    pm_mem_free(p);
    void *q = pm_mem_realloc(p, 36);
    __asm__ volatile("" ::: "memory");
    return q;
}

PM_VICTIM_FN void write_link_after_free(unsigned char *p)
{
    pm_mem_free(p);
    memcpy(p, "oops!!!!oops!!!!", 16); /* its free-list link and check word */
}

/* The case's bug on a block, then a neighbour that must keep its bytes,
 * and new blocks of the same class that must all be distinct from it and
 * from each other. Prints "ok" if all is well. */
static int goes_on(const char *c)
{
    unsigned char *a = pm_mem_malloc(40), *b = pm_mem_malloc(40);
    memset(a, 'A', 40);
    memset(b, 'B', 40);
    int rc = 0;
    if (strcmp(c, "double-free") == 0) {
        free_twice(a);
    } else if (strcmp(c, "interior-free") == 0) {
        free_interior(a);
    } else if (strcmp(c, "realloc-freed") == 0) {
        if (realloc_freed(a) != NULL)
            rc = 4;
    } else {
        write_link_after_free(a);
    }
    unsigned char *n[64];
    for (int i = 0; i < 64; i++) {
        n[i] = pm_mem_malloc(40);
        memset(n[i], i, 40);
    }
    for (int i = 0; i < 40; i++)
        if (b[i] != 'B' || (strcmp(c, "interior-free") == 0 && a[i] != 'A'))
            rc = 5;
    for (int i = 0; i < 64; i++)
        for (int k = 0; k < 40; k++)
            if (n[i][k] != i || n[i] == b || (strcmp(c, "interior-free") == 0 && n[i] == a))
                rc = 6;
    for (int i = 0; i < 64; i++)
        pm_mem_free(n[i]);
    pm_mem_free(b);
    if (strcmp(c, "interior-free") == 0)
        pm_mem_free(a);
    printf(rc == 0 ? "ok\n" : "wrong: %d\n", rc);
    return 0;
}

PM_VICTIM_FN void write_past_shrunk(unsigned char *p)
{
    ((volatile unsigned char *)p)[95] = 1; /* a 100-byte block shrunk to 90 */
}

/* A correct program: many sizes, calloc, realloc in place and moving, both
 * pool domains, freed in an order other than allocation. */
static int clean(void)
{
    void *p[600];
    for (int i = 0; i < 600; i++) {
        size_t n = (size_t)i % 700;
        p[i] = i % 3 ? pm_mem_malloc(n) : pm_obj_calloc(n, 1);
        memset(p[i], i, n);
    }
    for (int i = 0; i < 600; i += 2) {
        size_t n = (size_t)i % 700;
        p[i] = i % 3 ? pm_mem_realloc(p[i], n + 40) : pm_obj_realloc(p[i], n / 2 + 1);
    }
    unsigned sum = 0;
    for (int i = 0; i < 600; i++)
        sum += ((unsigned char *)p[i])[0];
    for (int i = 599; i >= 0; i -= 2)
        i % 3 ? pm_mem_free(p[i]) : pm_obj_free(p[i]);
    for (int i = 0; i < 600; i += 2)
        i % 3 ? pm_mem_free(p[i]) : pm_obj_free(p[i]);
    printf("clean %u\n", sum);
    return 0;
}

/* A signal handler that allocates (not async-signal-safe, but common),
 * every half millisecond, while pm_trim gives the quarantine back. */
static volatile int ticks;
static void tick_alloc(int sig)
{
    (void)sig;
    pm_obj_free(pm_obj_malloc(24));
    ticks++;
}

/* A child that kills this process after 60 s: a hang ends in SIGKILL,
 * not in ctest's timeout. */
static pid_t watchdog(void)
{
    pid_t parent = getpid(), dog = fork();
    if (dog == 0) {
        sleep(60);
        kill(parent, SIGKILL);
        _exit(0);
    }
    return dog;
}

/* SIGALRM's handler h, every half millisecond of real time. */
static void alarm_every_500us(void (*h)(int))
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = h;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = {{0, 500}, {0, 500}};
    setitimer(ITIMER_REAL, &it, NULL);
}

static int trim_under_signals(void)
{
    pid_t dog = watchdog();
    alarm_every_500us(tick_alloc);
    static void *q[3000];
    for (int r = 0; r < 40; r++) {
        for (int i = 0; i < 3000; i++)
            q[i] = pm_obj_malloc(24);
        for (int i = 0; i < 3000; i++)
            pm_obj_free(q[i]);
        pm_trim();
    }
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    kill(dog, SIGKILL);
    waitpid(dog, NULL, 0);
    printf("trim-signal done\n");
    return 0;
}

/* The same handler while the program reallocates a block of its class
 * in place and asks its usable size, again and again: under memcheck both
 * take the class's lock (the requested size is kept under it), which the
 * handler's malloc waited for on its own thread (test_signal_nested hung
 * once in CI, pymalloc mode under valgrind). And a handler that reallocs,
 * and asks the usable size of, a block made outside it, while its thread
 * is in one of the pools' slow paths. */
static unsigned char *outside;
static volatile int outside_done;
static void tick_realloc(int sig)
{
    (void)sig;
    pm_obj_free(pm_obj_malloc(24));
    if (!outside_done) {
        unsigned char *q = pm_obj_realloc(outside, 30);
        if (q != NULL) {
            outside = q;
            if (pm_i_domain_usable_size(PM_DOMAIN_OBJ, q) < 30)
                _exit(4);
        }
    }
    ticks++;
}

static int realloc_under_signals(void)
{
    pid_t dog = watchdog();
    outside = pm_obj_malloc(28);
    alarm_every_500us(tick_realloc);
    unsigned char *p = pm_obj_malloc(25);
    static void *q[64];
    for (long i = 0; i < 200000; i++) {
        /* 25..31 bytes: moved each time (under memcheck a realloc always
         * moves, as memcheck's own does). */
        unsigned char *r = pm_obj_realloc(p, 25 + (size_t)(i % 7));
        if (r == NULL || r == p)
            return 3;
        p = r;
        if (pm_i_domain_usable_size(PM_DOMAIN_OBJ, p) < 25 + (size_t)(i % 7))
            return 5;
        if (i % 1000 == 0) { /* and the slow paths (the handler's realloc there) */
            for (int k = 0; k < 64; k++)
                q[k] = pm_obj_malloc(24);
            for (int k = 0; k < 64; k++)
                pm_obj_free(q[k]);
        }
    }
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    outside_done = 1;
    pm_obj_free(p);
    pm_obj_free(outside);
    kill(dog, SIGKILL);
    waitpid(dog, NULL, 0);
    printf("realloc-signal done, %d signals\n", ticks);
    return 0;
}

int main(int argc, char **argv)
{
    const char *c = argc > 1 ? argv[1] : "clean";
    if (strcmp(c, "clean") == 0)
        return clean();
    if (strcmp(c, "overflow") == 0) {
        unsigned char *a = pm_mem_malloc(32), *b = pm_mem_malloc(32);
        memset(a, 0, 32);
        memset(b, 0, 32);
        overflow_into_next(a);
        pm_mem_free(a);
        pm_mem_free(b);
        return 0;
    }
    size_t size, at;
    if (sscanf(c, "overflow-at=%zu,%zu", &size, &at) == 2) {
        /* Two blocks of n bytes, one after the other in their pool; a write
         * `at` bytes into the first (n: one past its end). */
        unsigned char *a = pm_mem_malloc(size), *b = pm_mem_malloc(size);
        memset(a, 0, size);
        memset(b, 0, size);
        overflow_by(a, at);
        pm_mem_free(a);
        pm_mem_free(b);
        return 0;
    }
    if (strcmp(c, "overflow-sizes") == 0) {
        /* Pairs of blocks of every size up to 480, all kept live; one past
         * the end of the first of a pair, for twelve sizes (of those
         * memcheck described as "1 bytes before" the second block, with
         * its allocation stack, when pool blocks had a byte of slack). */
        static void (*const write_past[12])(unsigned char *, size_t) = {
            overflow_one_past_0, overflow_one_past_1, overflow_one_past_2,
            overflow_one_past_3, overflow_one_past_4, overflow_one_past_5,
            overflow_one_past_6, overflow_one_past_7, overflow_one_past_8,
            overflow_one_past_9, overflow_one_past_10, overflow_one_past_11};
        static const size_t sizes[12] = {7, 27, 37, 64, 97, 111, 127, 152, 202, 255, 383, 480};
        static unsigned char *kept[2 * 480];
        int k = 0;
        for (size_t n = 1; n <= 480; n++) {
            unsigned char *a = pm_mem_malloc(n), *b = pm_mem_malloc(n);
            memset(a, 0, n);
            memset(b, 0, n);
            if (k < 12 && sizes[k] == n)
                write_past[k++](a, n);
            kept[2 * (n - 1)] = a;
            kept[2 * (n - 1) + 1] = b;
        }
        for (int i = 0; i < 2 * 480; i++)
            pm_mem_free(kept[i]);
        return 0;
    }
    if (strcmp(c, "overflow-far") == 0) {
        /* Three blocks of n bytes, one after the other; a write k bytes
         * past the end of the middle one (k < 16), for sizes whose
         * slack, with 32 bytes at least, left that byte within memcheck's
         * 24-byte margin of the next block: it was described as "24
         * bytes before" that block, with its allocation stack. */
        static void (*const write_past[6])(unsigned char *, size_t) = {
            overflow_one_past_0, overflow_one_past_1, overflow_one_past_2,
            overflow_one_past_3, overflow_one_past_4, overflow_one_past_5};
        static const size_t sizes[6] = {448, 464, 472, 440, 455, 479};
        static const size_t ks[6] = {8, 8, 15, 15, 12, 15};
        for (int i = 0; i < 6; i++) {
            unsigned char *b[3];
            for (int j = 0; j < 3; j++)
                memset(b[j] = pm_mem_malloc(sizes[i]), 0, sizes[i]);
            write_past[i](b[1], sizes[i] + ks[i]);
            for (int j = 0; j < 3; j++)
                pm_mem_free(b[j]);
        }
        return 0;
    }
    if (strcmp(c, "realloc-stale") == 0) {
        /* A realloc that CPython's rule keeps in place (20 -> 24 bytes),
         * then a read through the old pointer: memcheck's own realloc
         * always moves, so the read is a use after free. */
        unsigned char *p = pm_mem_malloc(20);
        memset(p, 1, 20);
        unsigned char *q = pm_mem_realloc(p, 24);
        read_after_realloc(p);
        pm_mem_free(q);
        return 0;
    }
    if (strcmp(c, "leak-after-trim") == 0) {
        leak_after_trim();
        return 0;
    }
    if (strcmp(c, "uaf-read") == 0 || strcmp(c, "uaf-write") == 0) {
        unsigned char *p = pm_obj_malloc(40);
        memset(p, 2, 40);
        pm_obj_free(p);
        if (c[4] == 'r')
            read_after_free(p);
        else
            write_after_free(p);
        return 0;
    }
    if (strcmp(c, "uaf-reused") == 0) {
        /* Freed, then more blocks of its size: the stale pointer must
         * still be caught (the pool's free list is LIFO). */
        unsigned char *p = pm_obj_malloc(40), *q[64];
        memset(p, 2, 40);
        pm_obj_free(p);
        for (int i = 0; i < 64; i++) {
            q[i] = pm_obj_malloc(40);
            memset(q[i], 3, 40);
        }
        write_after_reuse(p);
        for (int i = 0; i < 64; i++)
            pm_obj_free(q[i]);
        return 0;
    }
    if (strcmp(c, "uninit") == 0) {
        /* Bytes never written, after a malloc and past a realloc's old
         * size (a pool block moved; a libc block of 600 grown). */
        unsigned char *p = pm_mem_malloc(40), *q = pm_mem_malloc(600);
        branch_on_new(p);
        memset(p, 1, 40);
        memset(q, 1, 100);
        p = pm_mem_realloc(p, 200);
        q = pm_mem_realloc(q, 700);
        branch_on_grown(p);
        branch_on_grown(q);
        pm_mem_free(p);
        pm_mem_free(q);
        return 0;
    }
    if (strcmp(c, "leak") == 0) {
        leak_one();
        return 0;
    }
    if (strcmp(c, "leak-registry") == 0) {
        leak_registry();
        return 0;
    }
    if (strcmp(c, "leak-linked") == 0) {
        leak_list();
        leak_cycle();
        return 0;
    }
    if (strcmp(c, "double-free") == 0 || strcmp(c, "interior-free") == 0 ||
        strcmp(c, "realloc-freed") == 0 || strcmp(c, "link-after-free") == 0)
        return goes_on(c);
    if (strcmp(c, "trim-signal") == 0)
        return trim_under_signals();
    if (strcmp(c, "realloc-signal") == 0)
        return realloc_under_signals();
    if (strcmp(c, "deferred-tiny") == 0) {
        /* A 2-byte block freed the deferred way: its whole slot is
         * inaccessible after the free, as after a free the direct way
         * (the deferral's 8-byte link was left addressable). */
        unsigned char *p = pm_obj_malloc(2);
        memset(p, 1, 2);
        free_as_handler_in_slow_path(p);
        write_past_tiny_freed(p);
        return 0;
    }
    if (strcmp(c, "deferred-double-free") == 0) {
        /* A second free, the deferred way, of a block p given back to its
         * pool (pm_trim empties the quarantine), after the deferred free
         * of a live block r: reported, and the pool's free list left
         * whole. The deferral wrote its link (r) over p's, so the pool
         * handed r out while memcheck's quarantine held it, and again
         * once pm_trim gave it back: two live blocks at one address. */
        unsigned char *keep = pm_obj_malloc(40), *p = pm_obj_malloc(40);
        unsigned char *r = pm_obj_malloc(40), *n[128];
        memset(keep, 'K', 40);
        pm_obj_free(p);
        pm_trim();
        free_twice_deferred(r, p);
        int rc = 0;
        for (int i = 0; i < 64; i++) {
            n[i] = pm_obj_malloc(40);
            memset(n[i], i, 40);
        }
        pm_trim();
        for (int i = 64; i < 128; i++) {
            n[i] = pm_obj_malloc(40);
            memset(n[i], i, 40);
        }
        for (int i = 0; i < 128; i++)
            for (int k = 0; k < 40; k++)
                if (n[i][k] != i || keep[k] != 'K')
                    rc = 6;
        for (int i = 0; i < 128; i++)
            pm_obj_free(n[i]);
        pm_obj_free(keep);
        printf(rc == 0 ? "ok\n" : "wrong: %d\n", rc);
        return 0;
    }
    if (strcmp(c, "deferred-interior-free") == 0) {
        /* A free of an interior pointer, the deferred way: reported, and
         * the block's bytes kept (the deferral wrote its link there). */
        unsigned char *a = pm_obj_malloc(40);
        memset(a, 'A', 40);
        free_interior_deferred(a);
        int ok = 1;
        for (int i = 0; i < 40; i++)
            ok &= a[i] == 'A';
        pm_obj_free(a);
        printf(ok ? "ok\n" : "wrong\n");
        return 0;
    }
    if (strcmp(c, "nested") == 0) {
        /* Blocks of calls nested inside the debug hooks (the early
         * arena's) are heap blocks to memcheck, as the pools' are: an
         * overflow, a read after the free, a second free and a lost block
         * are reported. (They were static memory to it: none was.) */
        pm_i_debug_busy++;
        unsigned char *a = pm_obj_malloc(24), *b = pm_obj_malloc(24);
        pm_i_debug_busy--;
        if (a == NULL || b == NULL)
            return 3;
        memset(a, 1, 24);
        memset(b, 2, 24);
        overflow_nested(a);
        pm_i_debug_busy++;
        pm_obj_free(a);
        pm_i_debug_busy--;
        read_nested_after_free(a);
        free_nested_twice(a);
        leak_nested();
        int ok = b[0] == 2 && b[23] == 2;
        pm_i_debug_busy++;
        pm_obj_free(b);
        pm_i_debug_busy--;
        printf(ok ? "nested ok\n" : "nested wrong\n");
        return 0;
    }
    if (strcmp(c, "shrink") == 0) {
        unsigned char *p = pm_mem_malloc(100);
        unsigned char *q = pm_mem_realloc(p, 90); /* (moved, as by memcheck's realloc) */
        if (q == NULL || q == p)
            return 3;
        write_past_shrunk(q);
        pm_mem_free(q);
        return 0;
    }
    return 2;
}
