/*
 * tests/override/prog_sigabrt_race.c - two threads set SIGABRT's default
 * action at once, each with a mask and flags of its own, and read the
 * action each call replaced. The C library's sigaction is one system call:
 * the old action is always one that was set, whole. In the debug modes the
 * override shows a stored copy in place of its check-at-abort handler
 * (src/signal.c); a copy written while another thread read it came back
 * torn: one thread's mask with the other's flags.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#define ROUNDS 200000

/* Thread i's action: SIG_DFL, SIGUSR1 + i in its mask, SA_NODEFER or
 * SA_RESETHAND as its flag. */
static void make(struct sigaction *sa, int i)
{
    memset(sa, 0, sizeof *sa);
    sa->sa_handler = SIG_DFL;
    sigemptyset(&sa->sa_mask);
    sigaddset(&sa->sa_mask, i == 0 ? SIGUSR1 : SIGUSR2);
    sa->sa_flags = i == 0 ? SA_NODEFER : SA_RESETHAND;
}

/* Is old whole: thread 0's, thread 1's, or the default the program began
 * with (empty mask, neither flag)? */
static int whole(const struct sigaction *old)
{
    int u1 = sigismember(&old->sa_mask, SIGUSR1), u2 = sigismember(&old->sa_mask, SIGUSR2);
    int nd = (old->sa_flags & SA_NODEFER) != 0, rh = (old->sa_flags & SA_RESETHAND) != 0;
    if (old->sa_handler != SIG_DFL)
        return 0;
    return (u1 && !u2 && nd && !rh) || (!u1 && u2 && !nd && rh) || (!u1 && !u2 && !nd && !rh);
}

static long torn[2];

static void *run(void *arg)
{
    int i = (int)(long)arg;
    struct sigaction sa, old;
    make(&sa, i);
    for (int r = 0; r < ROUNDS; r++) {
        if (sigaction(SIGABRT, &sa, &old) != 0) {
            perror("sigaction");
            torn[i] = -1;
            return NULL;
        }
        if (!whole(&old))
            torn[i]++;
    }
    return NULL;
}

int main(void)
{
    pthread_t t[2];
    for (long i = 0; i < 2; i++)
        if (pthread_create(&t[i], NULL, run, (void *)i) != 0) {
            fprintf(stderr, "pthread_create failed\n");
            return 2;
        }
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    printf("torn old actions: %ld %ld\n", torn[0], torn[1]);
    return torn[0] != 0 || torn[1] != 0;
}
