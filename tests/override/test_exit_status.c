/*
 * tests/override/test_exit_status.c - PYMALLOC_ON_ERROR=report and _exit:
 * a process that counted heap errors and ends with _exit(0) or _Exit(0) (a
 * test harness's child, typically) prints the summary line and exits with
 * status 1, like one ending with exit(0); any other status is kept, without
 * the line; a process without errors exits as it asked. quick_exit does
 * the same. Linked with the override (libpymalloc.a), whose _exit and
 * _Exit do this, and its at_quick_exit handler. Run in every mode (ctest
 * sets PYMALLOC_MODE and PYMALLOC_ON_ERROR=report); the heap error is made
 * only in the debug modes.
 */
#include "../harness.h"
#include "pymalloc.h"

#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct how {
    int error;  /* make a heap error first */
    int status; /* then end with this status */
    int big_e;  /* through _Exit rather than _exit */
} how;

static void child(void *arg)
{
    const how *h = arg;
    if (h->error) {
        volatile size_t n = 24; /* hidden from the compiler's bounds checks */
        unsigned char *p = malloc(n);
        /* One byte past the end (volatile: a store before free() is dead to
         * the compiler): reported at the free, the block leaked. */
        ((volatile unsigned char *)p)[n] = 'x';
        free(p);
    }
    if (h->big_e)
        _Exit(h->status);
    _exit(h->status);
}

static void test_exit_statuses(void)
{
    if (!pm_debug_enabled())
        PM_SKIP("no debug hooks in this mode: no heap error to count");
    static const how cases[] = {
        {1, 0, 0}, {1, 0, 1}, {1, 3, 0}, {1, 3, 1}, {0, 0, 0}, {0, 5, 1}, {1, 256, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const how *h = &cases[i];
        pm_death_result r;
        pm_death(child, (void *)h, &r);
        PM_CHECK(r.exited);
        int ok = (h->status & 0xff) == 0;
        int want = h->error && ok ? 1 : h->status & 0xff;
        PM_CHECK_EQ(r.exit_status, want);
        int summary = strstr(r.output, "pymalloc: PYMALLOC_ON_ERROR=report: 1 heap error "
                                       "(buffer overflow: 1); exit status 1") != NULL;
        PM_CHECK_EQ(summary, h->error && ok);
        if (h->error)
            PM_CHECK_STR(r.output, "buffer overflow: 1 byte written past the end");
    }
}

/* quick_exit: glibc's ends with its own _exit, not the override's; the
 * override's at_quick_exit handler, which runs after the program's, does
 * what _exit(status) does. The error is made in main (error 1) or in the
 * program's own at_quick_exit handler (error 2). */
static int quick_error;
static void quick_handler(void)
{
    if (quick_error == 2) {
        volatile size_t n = 24;
        unsigned char *p = malloc(n);
        ((volatile unsigned char *)p)[n] = 'x';
        free(p);
    }
}

static void quick_child(void *arg)
{
    const how *h = arg;
    quick_error = h->error;
    at_quick_exit(quick_handler);
    if (h->error == 1) {
        volatile size_t n = 24;
        unsigned char *p = malloc(n);
        ((volatile unsigned char *)p)[n] = 'x';
        free(p);
    }
    quick_exit(h->status);
}

static void test_quick_exit_statuses(void)
{
    if (!pm_debug_enabled())
        PM_SKIP("no debug hooks in this mode: no heap error to count");
    static const how cases[] = {{1, 0, 0}, {2, 0, 0}, {1, 3, 0}, {0, 0, 0}, {0, 5, 0}, {2, 256, 0}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const how *h = &cases[i];
        pm_death_result r;
        pm_death(quick_child, (void *)h, &r);
        PM_CHECK(r.exited);
        int ok = (h->status & 0xff) == 0;
        PM_CHECK_EQ(r.exit_status, h->error && ok ? 1 : h->status & 0xff);
        int summary = strstr(r.output, "pymalloc: PYMALLOC_ON_ERROR=report: 1 heap error "
                                       "(buffer overflow: 1); exit status 1") != NULL;
        PM_CHECK_EQ(summary, h->error && ok);
        if (h->error)
            PM_CHECK_STR(r.output, "buffer overflow: 1 byte written past the end");
    }
}

/* Without heap errors (any mode), _exit and _Exit end the process with the
 * status asked for, at once (no destructor, no stdio flush). */
static void quiet_child(void *arg)
{
    const how *h = arg;
    printf("unflushed");
    if (h->big_e)
        _Exit(h->status);
    _exit(h->status);
}

static void test_exit_plain(void)
{
    static const how cases[] = {{0, 0, 0}, {0, 7, 0}, {0, 0, 1}, {0, 255, 1}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pm_death_result r;
        pm_death(quiet_child, (void *)&cases[i], &r);
        PM_CHECK(r.exited);
        PM_CHECK_EQ(r.exit_status, cases[i].status);
        PM_CHECK(strstr(r.output, "unflushed") == NULL);
        PM_CHECK(strstr(r.output, "PYMALLOC_ON_ERROR") == NULL);
    }
}

/* A vfork child shares its parent's counts: its _exit(0) is a success,
 * without the line (the parent sums its errors up at its own exit). */
static void vfork_parent(void *arg)
{
    (void)arg;
    volatile size_t n = 24;
    unsigned char *p = malloc(n);
    ((volatile unsigned char *)p)[n] = 'x';
    free(p);
    pid_t pid = vfork();
    if (pid == 0)
        _exit(0);
    int st = -1;
    waitpid(pid, &st, 0);
    _exit(WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 42);
}

/* The summary line of one heap error in output, once. */
static void one_summary_line(const char *output)
{
    const char *line = "pymalloc: PYMALLOC_ON_ERROR=report: 1 heap error";
    const char *first = strstr(output, line);
    PM_CHECK(first != NULL);
    PM_CHECK(first == NULL || strstr(first + 1, line) == NULL);
}

/* The error made in the vfork child, which ends with _exit(*arg). With 3
 * the child keeps its status and the parent's _exit(0) sums the error up
 * (status 1 and the line); with 0 the child sums it up itself (status 1 and
 * the line) and the parent, which made none, exits 0. */
static volatile int vfork_status; /* not a local: vfork */
static void vfork_child_errs(void *arg)
{
    vfork_status = *(const int *)arg;
    pid_t pid = vfork();
    if (pid == 0) {
        volatile size_t n = 24;
        unsigned char *p = malloc(n);
        ((volatile unsigned char *)p)[n] = 'x';
        free(p);
        _exit(vfork_status);
    }
    int st = -1, want = vfork_status == 0 ? 1 : vfork_status;
    waitpid(pid, &st, 0);
    _exit(WIFEXITED(st) && WEXITSTATUS(st) == want ? 0 : 42);
}

static void test_exit_error_in_vfork_child(void)
{
    if (!pm_debug_enabled())
        PM_SKIP("no debug hooks in this mode: no heap error to count");
    static const int statuses[] = {3, 0};
    for (int i = 0; i < 2; i++) {
        pm_death_result r;
        pm_death(vfork_child_errs, (void *)&statuses[i], &r);
        PM_CHECK(r.exited);
        PM_CHECK_EQ(r.exit_status, statuses[i] == 0 ? 0 : 1);
        PM_CHECK_STR(r.output, "buffer overflow: 1 byte written past the end of a 24-byte block");
        one_summary_line(r.output);
    }
}

/* A child made by the fork system call itself, without the fork handlers
 * (as _Fork() or clone() make them): its own error, its _exit(0) sums it
 * up (status 1 and the line); the parent, which made none, exits 0. */
static void raw_fork_child_errs(void *arg)
{
    (void)arg;
#ifdef SYS_fork
    pid_t pid = (pid_t)syscall(SYS_fork);
    if (pid == 0) {
        volatile size_t n = 24;
        unsigned char *p = malloc(n);
        ((volatile unsigned char *)p)[n] = 'x';
        free(p);
        _exit(0);
    }
    int st = -1;
    waitpid(pid, &st, 0);
    _exit(WIFEXITED(st) && WEXITSTATUS(st) == 1 ? 0 : 42);
#else
    _exit(77);
#endif
}

static void test_exit_error_in_raw_fork_child(void)
{
    if (!pm_debug_enabled())
        PM_SKIP("no debug hooks in this mode: no heap error to count");
    pm_death_result r;
    pm_death(raw_fork_child_errs, NULL, &r);
    if (r.exited && r.exit_status == 77)
        PM_SKIP("no fork system call here");
    PM_CHECK(r.exited);
    PM_CHECK_EQ(r.exit_status, 0); /* the child exited 1, the parent 0 */
    PM_CHECK_STR(r.output, "buffer overflow: 1 byte written past the end of a 24-byte block");
    one_summary_line(r.output);
}

static void test_exit_vfork_child(void)
{
    if (!pm_debug_enabled())
        PM_SKIP("no debug hooks in this mode: no heap error to count");
    pm_death_result r;
    pm_death(vfork_parent, NULL, &r);
    PM_CHECK(r.exited);
    PM_CHECK_EQ(r.exit_status, 1); /* the parent's own _exit(0) */
    one_summary_line(r.output);
}

int main(void)
{
    PM_RUN(test_exit_vfork_child);
    PM_RUN(test_exit_error_in_vfork_child);
    PM_RUN(test_exit_error_in_raw_fork_child);
    PM_RUN(test_exit_statuses);
    PM_RUN(test_quick_exit_statuses);
    PM_RUN(test_exit_plain);
    return pm_test_done();
}
