/*
 * tests/harness.h - the test harness: checks, a test list, death tests.
 *
 * A test program defines test functions, lists them in main() with
 * PM_RUN(fn), and returns pm_test_done(). A failed check prints the file,
 * line and expression and marks the test failed (the test goes on). A test
 * that does not apply to the current mode calls PM_SKIP("why"); a program
 * whose every test was skipped exits 77, which CTest reports as skipped.
 *
 * Death tests: pm_death(fn, arg, &result) runs fn(arg) in a forked child
 * with stderr captured, and reports how the child ended and what it wrote.
 */
#ifndef PM_TEST_HARNESS_H
#define PM_TEST_HARNESS_H

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "pin_env.h"

/* A request that passes the library's overflow checks (N + 32 <=
 * PTRDIFF_MAX) and that no allocator below can serve: 2^60 bytes on 64-bit.
 * On 32-bit no such size is certain (a 64-bit kernel gives a 32-bit process
 * almost 4 GiB, and glibc's realloc of PTRDIFF_MAX - 8 bytes succeeded
 * there): the size is then one every mode refuses (above PTRDIFF_MAX), so
 * the test still sees a failed call (NULL, ENOMEM, the old block intact),
 * though not the failure of the allocator below. */
#if UINTPTR_MAX > UINT32_MAX
#define PM_T_HUGE ((size_t)1 << 60)
#else
#define PM_T_HUGE ((size_t)PTRDIFF_MAX + 1)
#endif

static int pm_t_failed_checks, pm_t_tests_run, pm_t_tests_failed, pm_t_tests_skipped;
static int pm_t_cur_failed, pm_t_cur_skipped;

#define PM_CHECK(cond)                                                              \
    do {                                                                            \
        if (!(cond)) {                                                              \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);  \
            pm_t_failed_checks++;                                                   \
            pm_t_cur_failed = 1;                                                    \
        }                                                                           \
    } while (0)

#define PM_CHECK_EQ(a, b)                                                           \
    do {                                                                            \
        long long a_ = (long long)(a), b_ = (long long)(b);                         \
        if (a_ != b_) {                                                             \
            fprintf(stderr, "%s:%d: check failed: %s == %s (%lld != %lld)\n",       \
                    __FILE__, __LINE__, #a, #b, a_, b_);                            \
            pm_t_failed_checks++;                                                   \
            pm_t_cur_failed = 1;                                                    \
        }                                                                           \
    } while (0)

#define PM_CHECK_STR(hay, needle)                                                   \
    do {                                                                            \
        const char *h_ = (hay), *n_ = (needle);                                     \
        if (h_ == NULL || strstr(h_, n_) == NULL) {                                 \
            fprintf(stderr, "%s:%d: check failed: \"%s\" not found in:\n%s\n",      \
                    __FILE__, __LINE__, n_, h_ ? h_ : "(null)");                   \
            pm_t_failed_checks++;                                                   \
            pm_t_cur_failed = 1;                                                    \
        }                                                                           \
    } while (0)

#define PM_SKIP(why)                                                                \
    do {                                                                            \
        fprintf(stderr, "  skipped: %s\n", why);                                    \
        pm_t_cur_skipped = 1;                                                       \
        return;                                                                     \
    } while (0)

#define PM_RUN(fn) pm_t_run(#fn, fn)

/* PM_TEST_FILTER=text runs only the tests whose name contains text (a
 * debugging aid: some tests count on those before them having run). */
static inline void pm_t_run(const char *name, void (*fn)(void))
{
    const char *only = getenv("PM_TEST_FILTER");
    if (only != NULL && *only != '\0' && strstr(name, only) == NULL)
        return;
    pm_t_cur_failed = pm_t_cur_skipped = 0;
    fprintf(stderr, "[ RUN  ] %s\n", name);
    fn();
    pm_t_tests_run++;
    if (pm_t_cur_failed) {
        pm_t_tests_failed++;
        fprintf(stderr, "[ FAIL ] %s\n", name);
    } else if (pm_t_cur_skipped) {
        pm_t_tests_skipped++;
        fprintf(stderr, "[ SKIP ] %s\n", name);
    } else {
        fprintf(stderr, "[  OK  ] %s\n", name);
    }
}

static inline int pm_test_done(void)
{
    int passed = pm_t_tests_run - pm_t_tests_failed - pm_t_tests_skipped;
    fprintf(stderr, "%d passed, %d failed, %d skipped\n", passed, pm_t_tests_failed,
            pm_t_tests_skipped);
    if (pm_t_tests_failed > 0)
        return 1;
    if (pm_t_tests_run > 0 && pm_t_tests_skipped == pm_t_tests_run)
        return 77;
    return 0;
}

/* Reports go to stderr; a test that expects them silences it:
 * quiet_begin() sends fd 2 to /dev/null and returns the saved fd (-1 if
 * it could not), quiet_end() puts it back. */
static inline int quiet_begin(void)
{
    int saved = dup(2);
    int null = open("/dev/null", O_WRONLY);
    if (saved < 0 || null < 0) {
        if (saved >= 0)
            close(saved);
        if (null >= 0)
            close(null);
        return -1;
    }
    dup2(null, 2);
    close(null);
    return saved;
}

static inline void quiet_end(int saved)
{
    if (saved >= 0) {
        dup2(saved, 2);
        close(saved);
    }
}

/* Reports kept for the test to read: capture_begin() sends fd 2 to an
 * unlinked temporary file and returns its fd (-1 if it could not, fd 2
 * left alone), with the old fd 2 in *saved; capture_end() puts fd 2 back,
 * closes the file and returns what was written to it, NUL-terminated, in a
 * block of malloc's for the caller to free (NULL if it could not read). */
static inline int capture_begin(int *saved)
{
    char path[] = "/tmp/pm_test_capture_XXXXXX";
    int fd = mkstemp(path);
    *saved = -1;
    if (fd < 0)
        return -1;
    unlink(path);
    fflush(stderr);
    *saved = dup(2);
    if (*saved < 0 || dup2(fd, 2) < 0) {
        if (*saved >= 0)
            close(*saved);
        close(fd);
        return -1;
    }
    return fd;
}

static inline char *capture_end(int saved, int fd)
{
    if (fd < 0)
        return NULL;
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    off_t size = lseek(fd, 0, SEEK_END);
    char *text = size >= 0 ? malloc((size_t)size + 1) : NULL;
    if (text != NULL && pread(fd, text, (size_t)size, 0) != size) {
        free(text);
        text = NULL;
    }
    if (text != NULL)
        text[size] = '\0';
    close(fd);
    return text;
}

static inline int pm_t_under_valgrind(void);

/* How a death-test child ended. */
typedef struct pm_death_result {
    int exited;      /* 1: exited with exit_status; 0: killed by signal */
    int exit_status;
    int signal;
    char output[16384]; /* what it wrote to stderr (and stdout), NUL-terminated */
} pm_death_result;

/* fork() after stdio's buffers are written (a child's exit would write
 * them again); a failed fork stops the test. */
static inline pid_t pm_t_fork(void)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        exit(2);
    }
    return pid;
}

/* The wait status of child pid. */
static inline int pm_t_wait(pid_t pid)
{
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return status;
}

/* The exit status of a child whose own checks failed (PM_CHECK in fn):
 * pm_death and pm_t_child_within count it as a failed check here, so that
 * a check made in a child is never lost. */
#define PM_T_CHILD_CHECKS_FAILED 113

/* The child's end once fn returned: 0, or PM_T_CHILD_CHECKS_FAILED if a
 * check failed in it since the fork (failed_before: the count then). */
static inline void pm_t_child_end(int failed_before)
{
    fflush(NULL);
    _exit(pm_t_failed_checks > failed_before ? PM_T_CHILD_CHECKS_FAILED : 0);
}

/* Run fn(arg) in a child; the child exits 0 if fn returns (or
 * PM_T_CHILD_CHECKS_FAILED if a check of fn failed: then the child's
 * output is shown and the check counts as failed here). */
static inline void pm_death(void (*fn)(void *), void *arg, pm_death_result *r)
{
    int fds[2];
    memset(r, 0, sizeof *r);
    if (pipe(fds) != 0) {
        perror("pipe");
        exit(2);
    }
    pid_t pid = pm_t_fork();
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], 2);
        dup2(fds[1], 1);
        close(fds[1]);
        signal(SIGABRT, SIG_DFL);
        /* A hung child ends with SIGALRM, named below, rather than the
         * whole test in CTest's timeout (a child of TSan's runtime once
         * hung after a fork: tests/test_threads.c). */
        alarm(pm_t_under_valgrind() ? 600 : 120);
        int failed_before = pm_t_failed_checks;
        fn(arg);
        pm_t_child_end(failed_before);
    }
    close(fds[1]);
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fds[0], r->output + len, sizeof r->output - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
        if (len == sizeof r->output - 1) {
            char sink[256]; /* drain the rest so the child never blocks */
            while (read(fds[0], sink, sizeof sink) > 0) {
            }
            break;
        }
    }
    r->output[len] = '\0';
    close(fds[0]);
    int status = pm_t_wait(pid);
    if (WIFEXITED(status)) {
        r->exited = 1;
        r->exit_status = WEXITSTATUS(status);
        if (r->exit_status == PM_T_CHILD_CHECKS_FAILED) {
            fprintf(stderr, "    checks failed in the child; its output:\n%s\n", r->output);
            pm_t_failed_checks++;
            pm_t_cur_failed = 1;
        }
    } else if (WIFSIGNALED(status)) {
        r->signal = WTERMSIG(status);
        if (r->signal == SIGALRM)
            fprintf(stderr, "    a death test's child hung: ended by its alarm after %d s; its "
                            "output:\n%s\n",
                    pm_t_under_valgrind() ? 600 : 120, r->output);
    }
}

/* Run fn(arg) in a child that SIGALRM ends after `seconds`, so that a
 * hang is a failure, not a stuck test; its output goes where ours does
 * (unlike pm_death's). 1 if it exited 0 (fn returned with its checks
 * passed, or _exit(0)), else 0, after a line saying how it ended. */
static inline int pm_t_child_within(void (*fn)(void *), void *arg, unsigned seconds)
{
    pid_t pid = pm_t_fork();
    if (pid == 0) {
        alarm(seconds); /* SIGALRM's default action ends a hung child */
        int failed_before = pm_t_failed_checks;
        fn(arg);
        pm_t_child_end(failed_before);
    }
    int status = pm_t_wait(pid);
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)
        fprintf(stderr, "    hung: still running after %u s\n", seconds);
    else if (WIFSIGNALED(status))
        fprintf(stderr, "    killed by signal %d\n", WTERMSIG(status));
    else if (WEXITSTATUS(status) == PM_T_CHILD_CHECKS_FAILED)
        fprintf(stderr, "    checks failed in the child (above)\n");
    else if (WEXITSTATUS(status) != 0)
        fprintf(stderr, "    exit status %d\n", WEXITSTATUS(status));
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* fn(arg) in `rounds` children in turn, each within `seconds`
 * (pm_t_child_within); stops at the first that fails, naming its round.
 * 1 when every round passed. */
static inline int pm_t_rounds(void (*fn)(void *), void *arg, int rounds, unsigned seconds)
{
    for (int r = 0; r < rounds; r++) {
        if (!pm_t_child_within(fn, arg, seconds)) {
            fprintf(stderr, "    (round %d of %d)\n", r, rounds);
            return 0;
        }
    }
    return 1;
}

/* handler runs on SIGPROF (SA_RESTART); the action before it in *old if
 * old is not NULL. */
static inline void pm_t_prof_handler(void (*handler)(int), struct sigaction *old)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGPROF, &sa, old);
}

/* SIGPROF blocked (SIG_BLOCK) or unblocked (SIG_UNBLOCK) in this thread. */
static inline void pm_t_prof_mask(int how)
{
    sigset_t prof;
    sigemptyset(&prof);
    sigaddset(&prof, SIGPROF);
    pthread_sigmask(how, &prof, NULL);
}

/* A profiling timer every usec microseconds of CPU time whose SIGPROF runs
 * handler (SA_RESTART) on the thread it interrupts; the action before it in
 * *old if old is not NULL. pm_t_prof_stop stops the timer. */
static inline void pm_t_prof_start(void (*handler)(int), long usec, struct sigaction *old)
{
    pm_t_prof_handler(handler, old);
    struct itimerval it = {{0, usec}, {0, usec}};
    setitimer(ITIMER_PROF, &it, NULL);
}

#ifdef SIGEV_THREAD_ID
/* SIGPROF to this thread every period_ns, unblocked in it: a POSIX timer
 * (a profiling interval timer fires at the kernel's tick, a few hundred
 * times a second, too rarely to meet a window of a few instructions in a
 * short run). _exit(7) if the timer cannot be made.
 * pm_t_thread_timer_stop blocks SIGPROF again and deletes the timer. */
static inline timer_t pm_t_thread_timer_start(long period_ns)
{
    struct sigevent ev;
    memset(&ev, 0, sizeof ev);
    ev.sigev_notify = SIGEV_THREAD_ID;
    ev.sigev_signo = SIGPROF;
    ev._sigev_un._tid = (pid_t)syscall(SYS_gettid);
    timer_t timer;
    if (timer_create(CLOCK_MONOTONIC, &ev, &timer) != 0)
        _exit(7);
    struct itimerspec its = {{0, period_ns}, {0, period_ns}};
    timer_settime(timer, 0, &its, NULL);
    pm_t_prof_mask(SIG_UNBLOCK);
    return timer;
}

static inline void pm_t_thread_timer_stop(timer_t timer)
{
    pm_t_prof_mask(SIG_BLOCK);
    timer_delete(timer);
}
#endif

static inline void pm_t_prof_stop(void)
{
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_PROF, &off, NULL);
}

/* A test that asks libc for an impossible size on purpose (through the raw
 * allocator, which is libc's malloc in sanitizer builds) puts this at file
 * scope: the sanitizers then return NULL as libc does instead of stopping. */
#define PM_TEST_SANITIZER_MAY_RETURN_NULL                                           \
    const char *__asan_default_options(void);                                       \
    const char *__asan_default_options(void) { return "allocator_may_return_null=1"; } \
    const char *__tsan_default_options(void);                                       \
    const char *__tsan_default_options(void) { return "allocator_may_return_null=1"; }

#include "sanitizers.h"

/* 1 when the test runs under valgrind (any tool). */
#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define PM_T_HAVE_VALGRIND_H 1
#endif
#endif
static inline int pm_t_under_valgrind(void)
{
#ifdef PM_T_HAVE_VALGRIND_H
    return RUNNING_ON_VALGRIND != 0;
#else
    return 0;
#endif
}

/* This process's resident set in KiB, -1 if unknown. */
static inline long pm_t_resident_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, res = -1;
    if (f == NULL)
        return -1;
    if (fscanf(f, "%ld %ld", &pages, &res) != 2)
        res = -1;
    fclose(f);
    return res < 0 ? -1 : res * (sysconf(_SC_PAGESIZE) / 1024);
}

/* A fork child's last step: fork once more and run work(depth + 1) in the
 * grandchild (a child's own fork must work too: its handlers' locks and
 * counts were renewed, not inherited). 0 if that exited 0, else 5;
 * nothing at depth 1. */
static inline int pm_t_fork_again(int (*work)(int depth), int depth)
{
    if (depth != 0)
        return 0;
    pid_t pid = fork();
    if (pid == 0)
        _exit(work(depth + 1));
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        return 5;
    return 0;
}

/* The address space this process has mapped, in bytes (0 if unknown); read
 * without allocating (RLIMIT_AS is set from it). */
static inline size_t pm_t_mapped_bytes(void)
{
    char buf[64] = {0};
    int fd = open("/proc/self/statm", O_RDONLY);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    return n > 0 ? (size_t)strtoull(buf, NULL, 10) * (size_t)sysconf(_SC_PAGESIZE) : 0;
}

/* The PYMALLOC_MODE this test runs under ("default" when unset or empty). */
static inline const char *pm_t_env_mode(void)
{
    const char *m = getenv("PYMALLOC_MODE");
    return (m == NULL || *m == '\0') ? "default" : m;
}

#endif
