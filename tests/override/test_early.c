/*
 * tests/override/test_early.c - an allocation made inside pymalloc's own
 * set-up, without deadlock or recursion.
 *
 * glibc keeps pthread_atfork handlers in an array with room for 48 entries
 * inside libc; the 49th registration mallocs, while holding the atfork lock.
 * This program (linked with libpymalloc.a) registers 48 handlers in a
 * constructor that runs before anything has allocated, so the handler that
 * pymalloc's set-up registers is the 49th: its malloc comes back into the
 * override in the middle of the set-up and must be served from the early
 * arena. Later registrations realloc that block (it moves to the mode) and
 * fork() runs every handler. Skipped if the libc did not allocate there.
 */
#include "../harness.h"
#include "pm_override.h"

#include <pthread.h>

#define FIRST 48
#define MORE 100

static atomic_int prepared;
static int state_before = -1;
static void on_prepare(void) { atomic_fetch_add(&prepared, 1); }

__attribute__((constructor(101))) static void register_first(void)
{
    state_before = atomic_load(&pm_i_state);
    for (int i = 0; i < FIRST; i++)
        pthread_atfork(on_prepare, NULL, NULL);
}

static void test_setup_allocation_went_to_the_arena(void)
{
    if (state_before != PM_I_STATE_UNINIT)
        PM_SKIP("something allocated before the first constructor");
    if (pm_i_early_used() == 0)
        PM_SKIP("this libc's pthread_atfork did not allocate for the 49th handler");
    PM_CHECK(atomic_load(&pm_i_state) >= PM_I_STATE_READY); /* set-up finished */
    size_t used = pm_i_early_used();
    for (int i = 0; i < MORE; i++) /* the handler array grows: realloc of an early block */
        PM_CHECK_EQ(pthread_atfork(on_prepare, NULL, NULL), 0);
    PM_CHECK(pm_i_early_used() <= used);
    atomic_store(&prepared, 0);
    pid_t pid = fork();
    if (pid == 0) {
        void *p = malloc(100);
        _exit(p != NULL ? 0 : 1);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    PM_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    PM_CHECK_EQ(atomic_load(&prepared), FIRST + MORE);
}

int main(void)
{
    PM_RUN(test_setup_allocation_went_to_the_arena);
    return pm_test_done();
}
