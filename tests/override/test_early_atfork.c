/*
 * tests/override/test_early_atfork.c - the process's first malloc comes
 * from inside glibc's pthread_atfork, with its atfork lock held.
 *
 * glibc keeps pthread_atfork handlers in an array with room for 48 entries
 * inside libc; the 49th registration mallocs while holding the atfork lock.
 * This program (linked with libpymalloc.a) registers 49 handlers in a
 * constructor that runs before anything has allocated, so that malloc is
 * the first call into pymalloc and starts its set-up there. The set-up's
 * own fork handlers must then wait for the load-time constructor: a
 * pthread_atfork call from the set-up would wait forever for the lock its
 * own thread holds (src/pm_internal.h, pm_i_atfork). An alarm turns such a
 * hang into a failure.
 *
 * Then the handlers must be in place all the same. The program's handlers,
 * registered before pymalloc's, run after pymalloc's prepare handlers: each
 * fork checks there that this thread holds the table's and the pools'
 * locks. And a thread allocates and frees without pause (taking the pools'
 * and the debug registry's locks) while the main thread forks; each child
 * allocates blocks of every size under an alarm. A child forked while the
 * other thread held a lock that no handler took would wait for it forever
 * (a missing handler shows in most runs, in every run of the debug modes).
 */
#include "../harness.h"
#include "pm_override.h"

#include <pthread.h>
#include <stdatomic.h>

#define FIRST 49
#define FORKS 200
#define BLOCKS 4000 /* the other thread's: more than its cache holds */
#define CHILD_BLOCKS 600

/* Set in the forking thread while it holds the pools' locks (modes/pool.h). */
extern __thread int pm_i_p_fork_held __attribute__((tls_model("initial-exec")));

static atomic_int prepared, held;
static int state_before = -1, state_after = -1;
static void on_prepare(void)
{
    atomic_fetch_add(&prepared, 1);
    if (pm_i_fork_held_api && pm_i_p_fork_held) /* pymalloc's prepare handlers ran */
        atomic_fetch_add(&held, 1);
}

__attribute__((constructor(101))) static void register_first(void)
{
    alarm(60); /* a deadlock in the set-up: SIGALRM, the test fails */
    state_before = atomic_load(&pm_i_state);
    for (int i = 0; i < FIRST; i++)
        pthread_atfork(on_prepare, NULL, NULL);
    state_after = atomic_load(&pm_i_state);
    alarm(0);
}

static void test_setup_inside_pthread_atfork(void)
{
    if (state_before != PM_I_STATE_UNINIT)
        PM_SKIP("something allocated before the first constructor");
    if (state_after == PM_I_STATE_UNINIT)
        PM_SKIP("this libc's pthread_atfork did not allocate for the 49th handler");
    PM_CHECK(state_after >= PM_I_STATE_READY); /* that malloc ran the set-up */
}

/* Blocks of 8 bytes to 8 KiB: every pool class, and blocks above them. */
static void churn(void **b, int blocks)
{
    for (int i = 0; i < blocks; i++) {
        b[i] = malloc((size_t)(8 + (i * 37) % 600 + (i % 50 == 0 ? 8192 : 0)));
        if (b[i] != NULL)
            memset(b[i], i, 8);
    }
    for (int i = 0; i < blocks; i += 2)
        free(b[i]);
    for (int i = 1; i < blocks; i += 2)
        free(b[i]);
}

static atomic_int stop;
static void *allocate(void *arg)
{
    (void)arg;
    void *b[BLOCKS];
    while (!atomic_load(&stop))
        churn(b, BLOCKS);
    return NULL;
}

static void test_fork_handlers_registered(void)
{
    pthread_t t;
    PM_CHECK_EQ(pthread_create(&t, NULL, allocate, NULL), 0);
    int bad = 0;
    atomic_store(&prepared, 0);
    atomic_store(&held, 0);
    for (int i = 0; i < FORKS; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            alarm(10);
            void *b[CHILD_BLOCKS];
            churn(b, CHILD_BLOCKS);
            _exit(0);
        }
        int st = 0;
        waitpid(pid, &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "child %d: %s %d\n", i, WIFSIGNALED(st) ? "signal" : "status",
                    WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
            bad++;
        }
    }
    atomic_store(&stop, 1);
    pthread_join(t, NULL);
    PM_CHECK_EQ(bad, 0);
    PM_CHECK_EQ(atomic_load(&prepared), FIRST * FORKS);
    PM_CHECK_EQ(atomic_load(&held), FIRST * FORKS);
}

int main(void)
{
    PM_RUN(test_setup_inside_pthread_atfork);
    PM_RUN(test_fork_handlers_registered);
    return pm_test_done();
}
