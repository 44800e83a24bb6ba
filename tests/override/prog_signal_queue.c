/*
 * tests/override/prog_signal_queue.c - a signal handler that keeps blocks
 * across signals, in a queue, while the thread it interrupts allocates.
 *
 * In the debug modes a handler's allocations come from the early arena
 * (src/override.c, o_nested). That arena used to reclaim only the last
 * block handed out: a handler that kept blocks across signals, or freed
 * them first-allocated first, used it up after a few hundred signals that
 * landed inside the allocator, and from then on every allocation in every
 * handler failed (about 3 in 4 of this program's, in each debug mode).
 *
 * A second thread sends SIGUSR1 to the main thread every 20 microseconds
 * while the main thread churns blocks of every size, each filled with its
 * own byte and checked before it is freed. The handler frees the oldest of
 * the 6 blocks it keeps and allocates a new one, then allocates two more
 * and frees them oldest first; every block is checked. The output is the
 * same under every allocator. The handler's sizes are ones glibc's thread
 * cache serves (warmed up first, never used by the churn, and every
 * handler call gives back as many blocks of each size as it takes), so
 * glibc never takes its arena lock in the handler: it would hang when the
 * handler interrupted its own thread holding it.
 */
#define _GNU_SOURCE 1
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define KEEP 6
#define SLOTS 64
#define OPS 4000000L
#define QSIZE 704

static volatile sig_atomic_t handled, bad;
static unsigned char *queue[KEEP];
static pthread_t main_thread;
static atomic_int stop;

static int check(const unsigned char *p, size_t n, unsigned char c)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != c)
            return 0;
    return 1;
}

static void on_usr1(int sig)
{
    (void)sig;
    unsigned k = (unsigned)handled % KEEP;
    unsigned char mark = (unsigned char)(handled + 1);
    if (queue[k] != NULL && !check(queue[k], QSIZE, queue[k][0]))
        bad = 1;
    free(queue[k]); /* the oldest */
    queue[k] = malloc(QSIZE);
    unsigned char *a = malloc(600);
    unsigned char *b = malloc(650);
    if (queue[k] == NULL || a == NULL || b == NULL) {
        bad = 1;
    } else {
        memset(queue[k], mark, QSIZE);
        memset(a, 0x5a, 600);
        memset(b, 0xa5, 650);
        if (!check(a, 600, 0x5a) || !check(b, 650, 0xa5))
            bad = 1;
    }
    free(a); /* first allocated, first freed */
    free(b);
    handled++;
}

static void *storm(void *arg)
{
    (void)arg;
    struct timespec d = {0, 20000};
    while (!atomic_load(&stop)) {
        pthread_kill(main_thread, SIGUSR1);
        nanosleep(&d, NULL);
    }
    return NULL;
}

int main(void)
{
    alarm(240);
    main_thread = pthread_self();
    /* glibc's thread cache: 7 blocks of each of the handler's sizes */
    static const size_t warm[] = {QSIZE, 600, 650};
    for (int i = 0; i < 3; i++) {
        void *w[7];
        for (int j = 0; j < 7; j++)
            w[j] = malloc(warm[i]);
        for (int j = 0; j < 7; j++)
            free(w[j]);
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    pthread_t t;
    if (pthread_create(&t, NULL, storm, NULL) != 0)
        return 2;

    unsigned char *slot[SLOTS] = {0};
    size_t size[SLOTS] = {0};
    unsigned long sum = 0;
    unsigned s = 1;
    for (long i = 0; i < OPS && !bad; i++) {
        s = s * 1103515245u + 12345u;
        unsigned k = (s >> 8) % SLOTS;
        unsigned char c = (unsigned char)(k + 1);
        if (slot[k] != NULL && !check(slot[k], size[k], c)) {
            bad = 1;
            break;
        }
        sum += size[k];
        free(slot[k]);
        /* never the handler's sizes (576..736 bytes) */
        size_t n = (s >> 16) % 8 == 0 ? 1100 + (s >> 12) % 4000 : (s >> 16) % 520;
        slot[k] = (s >> 20) % 4 == 0 ? calloc(1, n) : malloc(n);
        if (slot[k] == NULL) {
            bad = 1;
            break;
        }
        memset(slot[k], c, n);
        size[k] = n;
    }
    atomic_store(&stop, 1);
    pthread_join(t, NULL);
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &usr1, NULL);
    for (int k = 0; k < SLOTS; k++)
        free(slot[k]);
    for (int k = 0; k < KEEP; k++)
        free(queue[k]);
    printf("sum %lu\n", sum);
    printf("handler ran: %s\n", handled >= 1000 ? "yes" : "no");
    printf("%s\n", bad ? "BAD: a block's contents changed or an allocation failed" : "ok");
    return bad;
}
