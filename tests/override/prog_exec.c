/*
 * tests/override/prog_exec.c - heap errors counted before an exec reach the
 * exit status of the program exec starts (src/exec.c). Run by
 * check_exec.sh, preloaded and linked with libpymalloc.a.
 *
 *   prog_exec exec VARIANT    one heap error, then this program again through
 *                             VARIANT (execve, execv, execvp, execvpe, execl,
 *                             execle, execlp, fexecve, execveat) as "clean"
 *   prog_exec exec-emfile [vfork]  one error, then "clean" by an exec made
 *                             with no free file descriptor (after a vfork
 *                             child's error and exec)
 *   prog_exec chain           one error, then "error-exec": one more, then "clean"
 *   prog_exec clean-exec      no error, then "handoff?" (prints what it got)
 *   prog_exec fork-after      one error, then "forker": forks a child that
 *                             exits 0 and one that execs "clean"; both must
 *                             end with status 0 (the errors are the parent's)
 *   prog_exec no-pymalloc SH  one error, then SH -c (without LD_PRELOAD)
 *   prog_exec other-mode      one error, then "clean" with PYMALLOC_MODE=pymalloc
 *                             and no PYMALLOC_ON_ERROR
 *   prog_exec failed-exec     one error, an exec that fails, then exit(0)
 *   prog_exec failed-twice    one error, two execs that fail, then "clean"
 *   prog_exec vfork           one error, then a vfork child that execs "clean"
 *   prog_exec own-exec KIND   a child made by KIND (vfork, or raw: the fork
 *                             system call, without the fork handlers, as
 *                             _Fork() makes one) makes one error and execs
 *                             "clean"; the parent makes none
 *   prog_exec own-failed KIND as own-exec, but the exec fails and the child
 *                             ends with _exit(3)
 *   prog_exec own-then-parent as own-exec vfork, then the parent makes one
 *                             error and an exec that fails, and exits 0
 *   prog_exec pid-reuse       pid 1 of a new pid namespace (unshare -Urpf): a
 *                             child makes one error and execs "reuser", which
 *                             leaves a child behind and ends; once it is gone,
 *                             that child has its pid given again (ns_last_pid)
 *                             to "clean", which inherited the variable and must
 *                             end with status 0; pid 1 reaps them all
 *   prog_exec pidns-fork      pid 1 of a new pid namespace (unshare -Urpf),
 *                             which read its start time at set-up, forks
 *                             into a pid namespace of its own: the child is
 *                             pid 1 again, makes one error and execs
 *                             "clean", which must end with status 1 (the
 *                             child's own start time passed on, not the
 *                             parent's); prints the child's status
 *   prog_exec null-arg0       no error, then execle(self, NULL, NULL, envp):
 *                             the list is read past the NULL first argument,
 *                             as glibc reads it, so the new program (with no
 *                             arguments) gets envp, which has PM_EXEC_MARK
 *
 * The heap error (one byte written past a 24-byte block) is made and
 * counted in the debug modes only; elsewhere the programs run clean.
 */
#define _GNU_SOURCE 1
#include <errno.h>
#include <sched.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;
static const char *self;

static void heap_error(void)
{
    volatile size_t n = 24; /* hidden from the compiler's bounds checks */
    unsigned char *p = malloc(n);
    ((volatile unsigned char *)p)[n] = 'x';
    free(p);
}

/* This program's directory, put first in PATH (for the searching
 * variants), and its file name. */
static const char *search_name(void)
{
    static char dir[4096];
    snprintf(dir, sizeof dir, "%s", self);
    char *slash = strrchr(dir, '/');
    if (slash == NULL)
        return self;
    *slash = '\0';
    char path[8192];
    const char *old = getenv("PATH");
    snprintf(path, sizeof path, "%s:%s", dir, old != NULL ? old : "/usr/bin:/bin");
    setenv("PATH", path, 1);
    return slash + 1;
}

static int run_variant(const char *variant, const char *next)
{
    char *argv[] = {(char *)self, (char *)next, NULL};
    fflush(stdout);
    if (strcmp(variant, "execve") == 0)
        execve(self, argv, environ);
    else if (strcmp(variant, "execv") == 0)
        execv(self, argv);
    else if (strcmp(variant, "execl") == 0)
        execl(self, self, next, (char *)NULL);
    else if (strcmp(variant, "execle") == 0)
        execle(self, self, next, (char *)NULL, environ);
    else if (strcmp(variant, "execvp") == 0) {
        const char *name = search_name();
        argv[0] = (char *)name;
        execvp(name, argv);
    } else if (strcmp(variant, "execvpe") == 0) {
        const char *name = search_name();
        argv[0] = (char *)name;
        execvpe(name, argv, environ);
    } else if (strcmp(variant, "execlp") == 0) {
        const char *name = search_name();
        execlp(name, name, next, (char *)NULL);
    } else if (strcmp(variant, "fexecve") == 0) {
        int fd = open(self, O_RDONLY);
        if (fd >= 0)
            fexecve(fd, argv, environ);
    } else if (strcmp(variant, "execveat") == 0) {
        execveat(AT_FDCWD, self, argv, environ, 0);
    } else {
        fprintf(stderr, "prog_exec: unknown variant %s\n", variant);
        return 2;
    }
    fprintf(stderr, "prog_exec: %s failed: %s\n", variant, strerror(errno));
    return 2;
}

/* envp without PYMALLOC_MODE and PYMALLOC_ON_ERROR, and without LD_PRELOAD
 * unless keep_preload, plus extra (may be NULL). */
static char **stripped_env(int keep_preload, const char *extra)
{
    size_t n = 0;
    while (environ[n] != NULL)
        n++;
    char **e = calloc(n + 2, sizeof *e);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if ((keep_preload || strncmp(environ[i], "LD_PRELOAD=", 11) != 0) &&
            strncmp(environ[i], "PYMALLOC_MODE=", 14) != 0 &&
            strncmp(environ[i], "PYMALLOC_ON_ERROR=", 18) != 0)
            e[k++] = environ[i];
    if (extra != NULL)
        e[k++] = (char *)extra;
    e[k] = NULL;
    return e;
}

static int wait_status(pid_t pid)
{
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int main(int argc, char **argv)
{
    if (argc == 0 || argv[0][0] == '\0') { /* null-arg0's (the kernel may add "") */
        const char *mark = getenv("PM_EXEC_MARK");
        printf("no arguments: PM_EXEC_MARK=%s\n", mark != NULL ? mark : "(none)");
        return 0;
    }
    self = argv[0];
    const char *what = argc > 1 ? argv[1] : "";
    if (strcmp(what, "clean") == 0) {
        printf("child ran\n");
        return 0;
    }
    if (strcmp(what, "handoff?") == 0) {
        const char *v = getenv("PYMALLOC_ERRORS_BEFORE_EXEC");
        printf("handoff: %s\n", v != NULL ? v : "(none)");
        return 0;
    }
    if (strcmp(what, "error-exec") == 0) {
        heap_error();
        return run_variant("execv", "clean");
    }
    if (strcmp(what, "forker") == 0) {
        fflush(stdout);
        pid_t a = fork();
        if (a == 0)
            exit(0);
        pid_t b = fork();
        if (b == 0) {
            char *cargv[] = {(char *)self, "clean", NULL};
            execv(self, cargv);
            _exit(2);
        }
        printf("forked children: %d %d\n", wait_status(a), wait_status(b));
        return 0;
    }
    if (strcmp(what, "exec") == 0 && argc > 2) {
        heap_error();
        return run_variant(argv[2], "clean");
    }
    if (strcmp(what, "exec-emfile") == 0) {
        /* One error, then an exec with every file descriptor taken (by
         * ones closed at the exec, so that the new program can load): the
         * process's start time cannot be read at the exec. With "vfork",
         * a vfork child makes an error of its own after this one, and
         * execs /bin/true (its exec read its own start time into memory
         * it shares with this process). */
        heap_error();
        if (argc > 2 && strcmp(argv[2], "vfork") == 0) {
            fflush(stdout);
            pid_t pid = vfork();
            if (pid == 0) {
                heap_error();
                execl("/bin/true", "true", (char *)NULL);
                _exit(3);
            }
            if (wait_status(pid) == 3)
                return 4;
        }
        struct rlimit rl = {64, 64};
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            return 5;
        while (open("/dev/null", O_RDONLY | O_CLOEXEC) >= 0)
            ;
        if (errno != EMFILE)
            return 6;
        execl(self, self, "clean", (char *)NULL);
        return 7;
    }
    if (strcmp(what, "chain") == 0) {
        heap_error();
        return run_variant("execv", "error-exec");
    }
    if (strcmp(what, "clean-exec") == 0)
        return run_variant("execv", "handoff?");
    if (strcmp(what, "fork-after") == 0) {
        heap_error();
        return run_variant("execv", "forker");
    }
    if (strcmp(what, "no-pymalloc") == 0 && argc > 2) {
        heap_error();
        char *sargv[] = {argv[2], "-c", "echo \"sh got: ${PYMALLOC_ERRORS_BEFORE_EXEC:-(none)}\"",
                         NULL};
        execve(argv[2], sargv, stripped_env(0, NULL));
        return 2;
    }
    if (strcmp(what, "other-mode") == 0) {
        heap_error();
        char *cargv[] = {(char *)self, "clean", NULL};
        execve(self, cargv, stripped_env(1, "PYMALLOC_MODE=pymalloc"));
        return 2;
    }
    if (strcmp(what, "failed-exec") == 0) {
        heap_error();
        char *cargv[] = {"/nonexistent/prog", NULL};
        errno = 0;
        int r = execv("/nonexistent/prog", cargv);
        printf("exec failed: %d %s\n", r, errno == ENOENT ? "ENOENT" : strerror(errno));
        return 0;
    }
    if (strcmp(what, "failed-twice") == 0) {
        heap_error();
        char *cargv[] = {"/nonexistent/prog", NULL};
        execv(cargv[0], cargv);
        execv(cargv[0], cargv);
        return run_variant("execv", "clean");
    }
    if (strcmp(what, "vfork") == 0) {
        heap_error();
        fflush(stdout);
        pid_t pid = vfork();
        if (pid == 0) {
            char *cargv[] = {(char *)self, "handoff?", NULL};
            execv(self, cargv);
            _exit(2);
        }
        printf("vfork child: %d\n", wait_status(pid));
        return 0;
    }
    if (strcmp(what, "own-exec") == 0 || strcmp(what, "own-failed") == 0 ||
        strcmp(what, "own-then-parent") == 0) {
        int failed = strcmp(what, "own-failed") == 0;
        int then_parent = strcmp(what, "own-then-parent") == 0;
        int raw = argc > 2 && strcmp(argv[2], "raw") == 0;
        fflush(stdout);
        pid_t pid;
        if (raw) {
#ifdef SYS_fork
            pid = (pid_t)syscall(SYS_fork);
#else
            pid = (pid_t)syscall(SYS_clone, SIGCHLD, 0, NULL, NULL, 0);
#endif
        } else {
            pid = vfork();
        }
        if (pid == 0) {
            heap_error();
            char *cargv[] = {failed ? "/nonexistent/prog" : (char *)self, "clean", NULL};
            execv(cargv[0], cargv);
            _exit(3);
        }
        printf("own-exec child: %d\n", wait_status(pid));
        if (then_parent) {
            heap_error();
            char *cargv[] = {"/nonexistent/prog", NULL};
            execv(cargv[0], cargv);
        }
        return 0;
    }
    if (strcmp(what, "pid-reuse") == 0) {
        fflush(stdout);
        pid_t first = fork();
        if (first == 0) {
            heap_error();
            return run_variant("execv", "reuser");
        }
        /* As pid 1, every orphan of the namespace comes here. */
        int st;
        pid_t w;
        while ((w = wait(&st)) > 0 || (w < 0 && errno == EINTR))
            if (w == first)
                printf("first program: %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
        return 0;
    }
    if (strcmp(what, "reuser") == 0) {
        pid_t me = getpid();
        fflush(stdout);
        if (fork() != 0)
            return 0;
        while (getppid() == me) /* until this program has ended */
            usleep(1000);
        /* and a clock tick on (the start time that tells a reused pid is
         * in ticks of 10 ms: a pid given again within the first program's
         * tick cannot be told, and since processes start and end faster,
         * 2026-12-06, the test got there within it 1 time in 4) */
        usleep(30000);
        char num[32];
        int len = snprintf(num, sizeof num, "%ld", (long)me - 1);
        int fd = open("/proc/sys/kernel/ns_last_pid", O_WRONLY);
        if (fd < 0 || write(fd, num, (size_t)len) != len) {
            printf("pid not reused: ns_last_pid: %s\n", strerror(errno));
            exit(0);
        }
        close(fd);
        fflush(stdout);
        pid_t again = fork();
        if (again == 0) {
            char *cargv[] = {(char *)self, "clean", NULL};
            execv(self, cargv);
            _exit(2);
        }
        int st = wait_status(again);
        if (again == me)
            printf("pid reused: clean program's status %d\n", st);
        else
            printf("pid not reused: %ld, not %ld\n", (long)again, (long)me);
        exit(0);
    }
    if (strcmp(what, "pidns-fork") == 0) {
        if (getpid() != 1 || unshare(CLONE_NEWPID) != 0) {
            printf("no nested pid namespace: %s\n", getpid() != 1 ? "not pid 1" : strerror(errno));
            return 0;
        }
        usleep(30000); /* a clock tick on: the start times then differ */
        fflush(stdout);
        pid_t child = fork();
        if (child == 0) {
            if (getpid() != 1)
                _exit(5);
            heap_error();
            return run_variant("execv", "clean");
        }
        printf("child program: %d\n", wait_status(child));
        return 0;
    }
    if (strcmp(what, "null-arg0") == 0) {
        char *const *envp = stripped_env(1, "PM_EXEC_MARK=1");
        const char *volatile none = NULL; /* the argument is declared nonnull */
        fflush(stdout);
        execle(self, none, (char *)NULL, envp);
        fprintf(stderr, "prog_exec: execle failed: %s\n", strerror(errno));
        return 2;
    }
    fprintf(stderr, "usage: prog_exec CASE (see the source)\n");
    return 2;
}
