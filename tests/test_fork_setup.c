/*
 * tests/test_fork_setup.c - fork() while another thread installs the debug
 * hooks. pm_setup_debug_hooks runs under the mode lock and gives the debug
 * registry its first tables; fork()'s prepare handlers take the registry's
 * stripe locks, then the mode lock. Taking the stripe locks there as well
 * deadlocked the two threads (found by a review). This program's mmap
 * holds the set-up's first mapping for a moment while the other thread
 * forks; alarm() turns a hang into a failure. Run in the modes without
 * debug hooks (the set-up then installs them).
 */
#define _GNU_SOURCE
#include "pin_env.h"
#include "pymalloc.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static atomic_int armed, in_mmap;

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    if (atomic_exchange(&armed, 0)) {
        atomic_store(&in_mmap, 1);
        usleep(200 * 1000); /* the other thread forks meanwhile */
    }
#ifdef SYS_mmap2 /* 32-bit: SYS_mmap there takes a pointer to its arguments */
    long r = syscall(SYS_mmap2, addr, len, prot, flags, fd, (long)(off / 4096));
#else
    long r = syscall(SYS_mmap, addr, len, prot, flags, fd, off);
#endif
    if (r < 0 && r > -4096)
        return MAP_FAILED;
    return (void *)r;
}

static void *forker(void *arg)
{
    (void)arg;
    while (!atomic_load(&in_mmap))
        usleep(100);
    pid_t pid = fork();
    if (pid == 0)
        _exit(pm_mem_malloc(10) != NULL ? 0 : 1);
    int st = 0;
    waitpid(pid, &st, 0);
    return (void *)(intptr_t)(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

int main(void)
{
    pm_t_pin_env(NULL);
    alarm(20);
    if (pm_debug_enabled()) {
        puts("test_fork_setup: the mode has debug hooks already: skipped");
        return 77;
    }
    pthread_t t;
    if (pthread_create(&t, NULL, forker, NULL) != 0)
        return 2;
    atomic_store(&armed, 1);
    int rc = pm_setup_debug_hooks();
    void *child_ok = NULL;
    pthread_join(t, &child_ok);
    int ok = rc == 0 && pm_debug_enabled() && child_ok != NULL;
    void *p = pm_mem_malloc(24);
    ok = ok && p != NULL && pm_check_block(p) == 0;
    pm_mem_free(p);
    printf("test_fork_setup: mode %s: %s\n", pm_mode_name(), ok ? "ok" : "FAILED");
    return ok ? 0 : 1;
}
