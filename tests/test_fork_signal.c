/*
 * tests/test_fork_signal.c - fork() from a signal handler in a process
 * that has never had a second thread. fork is async-signal-safe, and glibc
 * takes none of its malloc's locks then; pymalloc's fork handlers took
 * theirs, and a handler that interrupted this very thread inside the
 * allocator (holding a registry stripe's lock, a pool lock) waited for it
 * for ever (the debug modes hung within a second; found by a hunt of the
 * override in hostile programs).
 *
 * A profiling timer's handler forks while main allocates and frees blocks
 * of every size through the raw and mem domains (registry and pool blocks
 * in the debug modes). Each child returns from the handler into the
 * interrupted operation, which completes in it as in the parent, runs the
 * loop a little longer, frees everything and exits 0 (the check at exit
 * included); the parent waits for it in the handler. alarm() turns a hang
 * into a failure.
 *
 * One thread, all along. Not under the sanitizers: their runtimes' own locks are not safe against a fork from a
 * signal handler.
 */
#include "harness.h"
#include "pin_env.h"
#include "pymalloc.h"
#include "sanitizers.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#define FORKS 200
#define SLOTS 256

static volatile sig_atomic_t forks, failed, in_child;

static void on_prof(int sig)
{
    (void)sig;
    if (in_child || forks >= FORKS)
        return;
    pid_t pid = fork();
    if (pid == 0) {
        in_child = 1;
        return; /* back into the interrupted operation, in the child */
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0)
        failed++;
    forks++;
}

static void test_fork_in_handler(void)
{
    if (PM_T_ASAN || PM_T_TSAN)
        PM_SKIP("sanitizer runtimes are not fork-safe in a signal handler");
    alarm(120);
    static void *slots[SLOTS];
    static int raw[SLOTS];
    pm_t_prof_start(on_prof, 2000, NULL);
    unsigned s = 1;
    long child_left = 2000;
    for (long i = 0; i < 200000000 && forks < FORKS; i++) {
        if (in_child && --child_left == 0)
            break;
        s = s * 1103515245u + 12345u;
        int k = (int)((s >> 8) % SLOTS);
        if (raw[k])
            pm_raw_free(slots[k]);
        else
            pm_mem_free(slots[k]);
        raw[k] = (s >> 30) & 1;
        size_t n = (s >> 16) % 2000;
        slots[k] = raw[k] ? pm_raw_malloc(n) : pm_mem_malloc(n);
        if (slots[k] == NULL) {
            if (in_child)
                _exit(3);
            PM_CHECK(slots[k] != NULL);
            break;
        }
        if (n != 0)
            ((unsigned char *)slots[k])[n - 1] = 1;
    }
    pm_t_prof_stop();
    for (int k = 0; k < SLOTS; k++) {
        if (raw[k])
            pm_raw_free(slots[k]);
        else
            pm_mem_free(slots[k]);
    }
    if (in_child)
        exit(0); /* (the check at exit included) */
    alarm(0);
    printf("%d forks from the signal handler, %d children failed\n", (int)forks, (int)failed);
    PM_CHECK_EQ(forks, FORKS);
    PM_CHECK_EQ(failed, 0);
}

int main(void)
{
    pm_t_pin_env(NULL);
    PM_RUN(test_fork_in_handler);
    return pm_test_done();
}
