/*
 * src/exec.c - the exec family, so that heap errors counted before an exec
 * are not lost with the program that counted them.
 *
 * With PYMALLOC_ON_ERROR=report a program ends with status 1 and a summary
 * line when it counted heap errors (src/report.c). A program that execs
 * another never reaches its own exit: before, the new program ended with
 * its own status, 0 for a clean one, and a CI run with heap errors passed.
 * Here each exported exec function (execve, execv, execvp, execvpe, execl,
 * execle, execlp, fexecve, execveat) asks pm_i_debug_exec_handoff for the
 * environment entry PYMALLOC_ERRORS_BEFORE_EXEC=<pid>.<start time>:<counts
 * per class>, and when there is one (errors counted, by this process
 * itself) starts the new program with it added to the environment it is
 * given (an entry of that name already there is replaced). pymalloc, set up
 * in the new program, takes the counts as its own when <pid> and <start
 * time> are its own (exec keeps both; a child that inherits the variable
 * has another pid, and a process given the pid again once this one has
 * ended another start time), so it ends with the summary and status 1. A
 * line on stderr says that the errors were passed on, for a new program
 * that pymalloc does not run in (one started with an environment without
 * LD_PRELOAD, a set-user-ID program).
 *
 * Without errors to pass on, each function calls the C library's own with
 * its arguments unchanged (execl, execle and execlp gather theirs into an
 * array first, as glibc's do). The new environment array is an anonymous
 * mapping, not a heap block: exec may be called from a vfork() child (which
 * shares its parent's heap; it passes on only the errors it made itself)
 * or from a signal handler. If exec fails, the mapping goes, errors a
 * child handed on are its own again (pm_i_debug_exec_failed), and errno is
 * the C library's.
 *
 * Built into the override libraries only (libpymalloc.so/.a), and not into
 * the renamed copy of the fuzz targets.
 */
#define _GNU_SOURCE 1 /* RTLD_NEXT, execvpe */
#include "pm_override.h"
#include "pm_debug.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef PM_O_PREFIX

#define PM_X_EXPORT __attribute__((visibility("default")))

extern char **environ;

typedef int (*execve_fn)(const char *, char *const[], char *const[]);
typedef int (*fexecve_fn)(int, char *const[], char *const[]);
typedef int (*execveat_fn)(int, const char *, char *const[], char *const[], int);

static _Atomic(execve_fn) real_execve, real_execvpe;
static _Atomic(fexecve_fn) real_fexecve;
static _Atomic(execveat_fn) real_execveat;

/* The next definition of name (the C library's). dlsym may allocate: done
 * at load time (pm_i_exec_resolve), here again only if a constructor that
 * ran before the override's execs. */
static void *next_symbol(const char *name)
{
    return dlsym(RTLD_NEXT, name);
}

#define RESOLVE(var, type, name)                                                   \
    do {                                                                           \
        if (atomic_load_explicit(&var, memory_order_acquire) == NULL) {            \
            void *sym_ = next_symbol(name);                                        \
            type fn_;                                                              \
            memcpy(&fn_, &sym_, sizeof fn_); /* POSIX: dlsym results are callable */ \
            atomic_store_explicit(&var, fn_, memory_order_release);                \
        }                                                                          \
    } while (0)

void pm_i_exec_resolve(void)
{
    RESOLVE(real_execve, execve_fn, "execve");
    RESOLVE(real_execvpe, execve_fn, "execvpe");
    RESOLVE(real_fexecve, fexecve_fn, "fexecve");
    RESOLVE(real_execveat, execveat_fn, "execveat");
}

/* envp with entry added (and any entry of the same name left out), in an
 * anonymous mapping of *len bytes; NULL if none can be made. */
static char **with_entry(char *const envp[], const char *entry, size_t *len)
{
    size_t n = 0;
    while (envp != NULL && envp[n] != NULL)
        n++;
    *len = (n + 2) * sizeof(char *);
    void *m = mmap(NULL, *len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return NULL;
    char **e = m;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(envp[i], PM_I_HANDOFF_NAME "=", sizeof PM_I_HANDOFF_NAME) != 0)
            e[k++] = envp[i];
    e[k++] = (char *)entry;
    e[k] = NULL;
    return e;
}

enum x_kind { X_PATH, X_SEARCH, X_FD, X_AT };

/* The C library's exec of this kind, with envp. Returns only on failure. */
static int x_call(enum x_kind kind, int fd, const char *path, char *const argv[],
                  char *const envp[], int flags)
{
    if (kind == X_PATH) {
        execve_fn fn = atomic_load_explicit(&real_execve, memory_order_acquire);
        return fn != NULL ? fn(path, argv, envp) : (int)syscall(SYS_execve, path, argv, envp);
    }
    if (kind == X_AT) {
        execveat_fn fn = atomic_load_explicit(&real_execveat, memory_order_acquire);
        return fn != NULL ? fn(fd, path, argv, envp, flags)
                          : (int)syscall(SYS_execveat, fd, path, argv, envp, flags);
    }
    if (kind == X_SEARCH) { /* the path search is the C library's */
        RESOLVE(real_execvpe, execve_fn, "execvpe");
        execve_fn fn = atomic_load_explicit(&real_execvpe, memory_order_acquire);
        if (fn != NULL)
            return fn(path, argv, envp);
    } else {
        RESOLVE(real_fexecve, fexecve_fn, "fexecve");
        fexecve_fn fn = atomic_load_explicit(&real_fexecve, memory_order_acquire);
        if (fn != NULL)
            return fn(fd, argv, envp);
    }
    errno = ENOSYS;
    return -1;
}

/* Every exported exec function comes here. */
static int x_exec(enum x_kind kind, int fd, const char *path, char *const argv[],
                  char *const envp[], int flags)
{
    /* (exec is no cancellation point: the hand-off's line and its read of
     * /proc/self/stat must not act on a pending request) */
    int cancel_state;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel_state);
    const char *entry = pm_i_debug_exec_handoff();
    pthread_setcancelstate(cancel_state, NULL);
    if (entry == NULL)
        return x_call(kind, fd, path, argv, envp, flags);
    size_t len = 0;
    char **mine = with_entry(envp, entry, &len);
    int r = x_call(kind, fd, path, argv, mine != NULL ? mine : envp, flags);
    int saved = errno;
    pm_i_debug_exec_failed();
    if (mine != NULL)
        munmap(mine, len);
    errno = saved;
    return r;
}

PM_X_EXPORT int execve(const char *path, char *const argv[], char *const envp[])
{
    return x_exec(X_PATH, -1, path, argv, envp, 0);
}

PM_X_EXPORT int execv(const char *path, char *const argv[])
{
    return x_exec(X_PATH, -1, path, argv, environ, 0);
}

PM_X_EXPORT int execvpe(const char *file, char *const argv[], char *const envp[])
{
    return x_exec(X_SEARCH, -1, file, argv, envp, 0);
}

PM_X_EXPORT int execvp(const char *file, char *const argv[])
{
    return x_exec(X_SEARCH, -1, file, argv, environ, 0);
}

PM_X_EXPORT int fexecve(int fd, char *const argv[], char *const envp[])
{
    return x_exec(X_FD, fd, NULL, argv, envp, 0);
}

PM_X_EXPORT int execveat(int dirfd, const char *path, char *const argv[], char *const envp[],
                         int flags)
{
    return x_exec(X_AT, dirfd, path, argv, envp, flags);
}

/* execl, execle, execlp: the arguments up to the NULL, into an array on the
 * stack (E2BIG past INT_MAX of them), then the v form, exactly as glibc's
 * own (and musl's) gather them: the NULL that ends the list is looked for
 * after the first argument, even a NULL one. So execle(path, NULL, NULL,
 * envp) starts the program with envp, as it does without pymalloc (a list
 * ended at a NULL first argument would read envp from the NULL after it:
 * an empty environment). */
#define GATHER(arg, ap, argv, n)                                                    \
    size_t n = 1;                                                                   \
    do {                                                                            \
        va_list c_;                                                                 \
        va_copy(c_, ap);                                                            \
        for (; va_arg(c_, const char *) != NULL; n++)                               \
            if (n == INT_MAX) {                                                     \
                va_end(c_);                                                         \
                va_end(ap);                                                         \
                errno = E2BIG;                                                      \
                return -1;                                                          \
            }                                                                       \
        va_end(c_);                                                                 \
    } while (0);                                                                    \
    const char *argv[n + 1];                                                        \
    argv[0] = arg;                                                                  \
    for (size_t i_ = 1; i_ <= n; i_++)                                              \
        argv[i_] = va_arg(ap, const char *)

PM_X_EXPORT int execl(const char *path, const char *arg, ...)
{
    va_list ap;
    va_start(ap, arg);
    GATHER(arg, ap, argv, n);
    va_end(ap);
    return x_exec(X_PATH, -1, path, (char *const *)argv, environ, 0);
}

PM_X_EXPORT int execlp(const char *file, const char *arg, ...)
{
    va_list ap;
    va_start(ap, arg);
    GATHER(arg, ap, argv, n);
    va_end(ap);
    return x_exec(X_SEARCH, -1, file, (char *const *)argv, environ, 0);
}

PM_X_EXPORT int execle(const char *path, const char *arg, ...)
{
    va_list ap;
    va_start(ap, arg);
    GATHER(arg, ap, argv, n);
    char *const *envp = va_arg(ap, char *const *);
    va_end(ap);
    return x_exec(X_PATH, -1, path, (char *const *)argv, envp, 0);
}

#endif /* !PM_O_PREFIX */
