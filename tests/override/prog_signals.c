/*
 * tests/override/prog_signals.c - a program whose signal handler calls the
 * malloc family, run under glibc and under the preload in every mode.
 *
 * malloc is not async-signal-safe, but programs call it from handlers all
 * the same (printf, strdup, a logger), and they work under glibc. Under
 * pymalloc they hung: the handler interrupted its own thread inside the
 * library, holding a pool's lock (pymalloc mode: 2 runs in 6 of a simpler
 * program) or a registry stripe's (the debug modes: nearly every run).
 *
 * Two threads churn blocks of every size (pool, raw and registry blocks),
 * each block filled with its own byte and checked before it is freed or
 * grown. A profiling timer's handler, on whichever thread it interrupts,
 * allocates with malloc and strdup, checks what it wrote, and frees it all
 * again, last allocated first (as a handler's printf does): what glibc
 * survives (see hsizes). The handler also frees the
 * block its thread handed it through a slot (a free of a block made
 * outside the handler), and asks malloc_usable_size about the big blocks
 * its thread shows it (registry blocks in every debug mode), which must be at
 * least the size requested (under glibc too; exactly it in the debug
 * modes, where it hung: the interrupted call held the block's registry
 * stripe, 5 runs in 5 of each debug mode of a simpler program). The output
 * is the same under every allocator: a checksum of the threads' work and
 * whether the handler ran. A hang becomes a failure through alarm(), whose
 * default action kills.
 */
#define _GNU_SOURCE 1
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#define SLOTS 128
#define OPS 3000000L

static volatile sig_atomic_t handled, bad;
/* A block of each thread, for its handler to free. */
static __thread void *volatile gift;
/* Big blocks of each thread and their sizes, for its handler's
 * malloc_usable_size (a slot is cleared before the thread frees or grows
 * its block, and set after its size). */
#define SHOWN 16
static __thread unsigned char *volatile shown[SHOWN];
static __thread volatile size_t shown_n[SHOWN];
static volatile sig_atomic_t asked;

static void show(unsigned char *p, size_t n)
{
    for (int i = 0; i < SHOWN; i++)
        if (shown[i] == NULL) {
            shown_n[i] = n;
            shown[i] = p;
            return;
        }
}

static void unshow(const unsigned char *p)
{
    for (int i = 0; i < SHOWN; i++)
        if (shown[i] == p)
            shown[i] = NULL;
}

static int check(const unsigned char *p, size_t n, unsigned char c)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != c)
            return 0;
    return 1;
}

/* Sizes of the handler's blocks: glibc's thread cache serves them, and the
 * threads allocate none of them (they are warmed up first), so glibc
 * never takes its arena lock in the handler (which its interrupted thread
 * may hold: glibc hangs then). */
static const size_t hsizes[] = {600, 650, 700, 800, 900, 1000};
#define HSIZES (sizeof hsizes / sizeof hsizes[0])
static char text[600]; /* strdup: hsizes[0] bytes */

static void on_prof(int sig)
{
    (void)sig;
    unsigned k = (unsigned)handled;
    size_t n = hsizes[k % HSIZES], m = hsizes[(k + 3) % HSIZES];
    unsigned char *a = malloc(n);
    unsigned char *b = malloc(m);
    char *s = strdup(text);
    if (a == NULL || b == NULL || s == NULL) {
        bad = 1;
    } else {
        memset(a, 0x5a, n);
        memset(b, 0xa5, m);
        if (!check(a, n, 0x5a) || !check(b, m, 0xa5) || strcmp(s, text) != 0)
            bad = 1;
    }
    free(s);
    free(b);
    free(a);
    void *g = gift;
    if (g != NULL) {
        gift = NULL;
        free(g);
    }
    for (int i = 0; i < SHOWN; i++) {
        unsigned char *sh = shown[i];
        if (sh != NULL) {
            if (malloc_usable_size(sh) < shown_n[i])
                bad = 1;
            asked++;
        }
    }
    handled++;
}

static void *churn(void *arg)
{
    unsigned s = (unsigned)(uintptr_t)arg;
    unsigned char *slot[SLOTS] = {0};
    size_t size[SLOTS] = {0};
    unsigned long sum = 0;
    sigset_t prof;
    sigemptyset(&prof);
    sigaddset(&prof, SIGPROF);
    pthread_sigmask(SIG_BLOCK, &prof, NULL);
    for (unsigned i = 0; i < HSIZES; i++) { /* into glibc's thread cache */
        void *w[3];
        for (int j = 0; j < 3; j++)
            w[j] = malloc(hsizes[i]);
        for (int j = 0; j < 3; j++)
            free(w[j]);
    }
    pthread_sigmask(SIG_UNBLOCK, &prof, NULL);
    for (long i = 0; i < OPS; i++) {
        s = s * 1103515245u + 12345u;
        unsigned k = (s >> 8) % SLOTS;
        unsigned char c = (unsigned char)(k + 1);
        if (slot[k] != NULL && !check(slot[k], size[k], c)) {
            bad = 1;
            break;
        }
        sum += size[k];
        size_t n = (s >> 16) % 8 == 0 ? 1100 + (s >> 12) % 4000 : (s >> 16) % 520;
        if (size[k] >= 1100)
            unshow(slot[k]); /* freed or grown below */
        if (slot[k] != NULL && (s >> 28) == 0) { /* grow or shrink in place */
            unsigned char *q = realloc(slot[k], n + 1);
            if (q == NULL) {
                bad = 1;
                break;
            }
            slot[k] = q;
            size[k] = n + 1;
            memset(q, c, n + 1);
            continue;
        }
        if (gift == NULL && (s >> 27) == 1 && size[k] >= 1 && size[k] <= 64) {
            /* (glibc frees a block this small without its arena lock) */
            gift = slot[k]; /* the handler may free it, or the loop's end */
            slot[k] = NULL;
        }
        free(slot[k]);
        slot[k] = (s >> 20) % 4 == 0 ? calloc(1, n) : malloc(n);
        if (slot[k] == NULL) {
            bad = 1;
            break;
        }
        memset(slot[k], c, n);
        size[k] = n;
        if (n >= 1100)
            show(slot[k], n);
    }
    for (int i = 0; i < SHOWN; i++)
        shown[i] = NULL;
    for (int k = 0; k < SLOTS; k++)
        free(slot[k]);
    pthread_sigmask(SIG_BLOCK, &prof, NULL);
    free(gift);
    gift = NULL;
    return (void *)sum;
}

int main(void)
{
    alarm(240);
    memset(text, 't', sizeof text - 1);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_prof;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGPROF, &sa, NULL);
    /* Not before this thread's warm-up in churn (the new thread inherits
     * the mask): a handler that ran inside pthread_create, whose calloc
     * may hold glibc's arena lock, would find glibc's thread cache empty
     * and wait for that lock (preload_prog_signals.malloc hung once so). */
    sigset_t prof;
    sigemptyset(&prof);
    sigaddset(&prof, SIGPROF);
    pthread_sigmask(SIG_BLOCK, &prof, NULL);
    struct itimerval it = {{0, 500}, {0, 500}};
    setitimer(ITIMER_PROF, &it, NULL);
    pthread_t t;
    if (pthread_create(&t, NULL, churn, (void *)(uintptr_t)7) != 0)
        return 2;
    void *mine = churn((void *)(uintptr_t)1);
    void *theirs = NULL;
    pthread_join(t, &theirs);
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_PROF, &off, NULL);
    printf("sums %lu %lu\n", (unsigned long)(uintptr_t)mine, (unsigned long)(uintptr_t)theirs);
    printf("handler ran: %s\n", handled >= 20 ? "yes" : "no");
    printf("handler asked usable sizes: %s\n", asked >= 10 ? "yes" : "no");
    printf("%s\n", bad ? "BAD: a block's contents changed or an allocation failed" : "ok");
    return bad;
}
