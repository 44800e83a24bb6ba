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
 * Its own main, not the harness (one thread, all along). Not under the
 * sanitizers: their runtimes' own locks are not safe against a fork from a
 * signal handler.
 */
#include "pin_env.h"
#include "pymalloc.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define PM_T_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define PM_T_SANITIZED 1
#endif
#endif

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

int main(void)
{
    pm_t_pin_env(NULL);
#ifdef PM_T_SANITIZED
    puts("skipped: sanitizer runtimes are not fork-safe in a signal handler");
    return 77;
#endif
    alarm(120);
    static void *slots[SLOTS];
    static int raw[SLOTS];
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_prof;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGPROF, &sa, NULL);
    struct itimerval it = {{0, 2000}, {0, 2000}};
    setitimer(ITIMER_PROF, &it, NULL);
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
        if (slots[k] == NULL)
            return 3;
        if (n != 0)
            ((unsigned char *)slots[k])[n - 1] = 1;
    }
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_PROF, &off, NULL);
    for (int k = 0; k < SLOTS; k++) {
        if (raw[k])
            pm_raw_free(slots[k]);
        else
            pm_mem_free(slots[k]);
    }
    if (in_child)
        exit(0);
    printf("%d forks from the signal handler, %d children failed\n", (int)forks, (int)failed);
    return forks == FORKS && failed == 0 ? 0 : 1;
}
