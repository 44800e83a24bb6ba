/*
 * tests/test_first_use_signal.c - a program's first pm_* call made by a
 * signal handler that interrupted glibc's malloc or free (a program that
 * uses glibc's malloc family and the pm_* API, as the tests do).
 *
 * That first call runs the lazy set-up. In the debug modes the set-up ran
 * the C library's self-test of its chunk headers (modes/raw.c,
 * pm_i_libc_header_probe), whose malloc and free, inside glibc's
 * interrupted one, corrupted glibc's heap: glibc aborted ("corrupted size
 * vs. prev_size", "malloc(): unsorted double linked list corrupted") or
 * the program died of SIGSEGV, in 4 to 9 children of 40 in
 * pymalloc_debug and 17 of 60 in debug, though the handler's block came
 * from the pool and needed nothing of glibc's. The self-test now runs
 * just before the hooks' first request that the C library serves.
 *
 * Each child is a fresh start (main never calls pm_*): it allocates and
 * frees glibc blocks of 500 to 3500 bytes (glibc's own bins, not only its
 * thread cache) while a profiling timer's handler allocates, writes and
 * frees a 40-byte MEM block, until the handler has run 20 times; then it
 * goes on with glibc alone for a while, so that glibc meets any damage,
 * and asks for a large MEM block (the self-test then, outside the
 * handler). A child that dies or whose handler got no block fails.
 *
 * Only in the modes whose MEM domain is the pool: in malloc and
 * malloc_debug the handler's block is glibc's, whose malloc is not safe in
 * a handler that interrupted it (glibc's own limit). Not under valgrind
 * (NO_LAUNCHER): it replaces glibc's malloc and delivers signals between
 * its calls. Not under the sanitizers: their malloc is theirs.
 */
#include "harness.h"
#include "pymalloc.h"

#define CHILDREN 60
#define HANDLER_CALLS 20
#define SLOTS 64

static volatile sig_atomic_t calls, no_block;

static void on_prof(int sig)
{
    (void)sig;
    int saved = errno;
    unsigned char *p = pm_mem_malloc(40);
    if (p == NULL) {
        no_block = 1;
    } else {
        memset(p, 1, 40);
        pm_mem_free(p);
    }
    calls++;
    errno = saved;
}

/* A fresh start: returns the child's exit status. */
static int child(void)
{
    pm_t_prof_start(on_prof, 100, NULL);
    static void *keep[SLOTS];
    unsigned k = 0;
    while (calls < HANDLER_CALLS) {
        unsigned i = (k * 7) & (SLOTS - 1);
        free(keep[i]);
        keep[i] = malloc(500 + (k * 37) % 3000);
        if (keep[i] == NULL)
            return 12;
        k++;
    }
    pm_t_prof_stop();
    for (unsigned j = 0; j < 20000; j++, k++) {
        unsigned i = (k * 7) & (SLOTS - 1);
        free(keep[i]);
        keep[i] = malloc(16 + (k * 37) % 3000);
        if (keep[i] == NULL)
            return 12;
    }
    for (int i = 0; i < SLOTS; i++)
        free(keep[i]);
    void *big = pm_mem_malloc(5000); /* glibc's: after the handler's calls */
    if (big == NULL)
        return 13;
    memset(big, 2, 5000);
    pm_mem_free(big);
    return no_block ? 14 : 0;
}

static void test_first_call_in_handler(void)
{
    const char *mode = getenv("PYMALLOC_MODE");
    if (mode != NULL && (strcmp(mode, "malloc") == 0 || strcmp(mode, "malloc_debug") == 0))
        PM_SKIP("the handler's block would be glibc's, whose malloc is not safe in a handler "
                "that interrupted it");
    if (PM_T_ASAN || PM_T_TSAN)
        PM_SKIP("under a sanitizer the C library's malloc is the sanitizer's");
    int failed = 0;
    for (int r = 0; r < CHILDREN; r++) {
        fflush(stdout);
        fflush(stderr);
        pid_t pid = fork();
        PM_CHECK(pid >= 0);
        if (pid < 0)
            return;
        if (pid == 0)
            _exit(child());
        int status = 0;
        PM_CHECK_EQ(waitpid(pid, &status, 0), pid);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            if (WIFSIGNALED(status))
                fprintf(stderr, "child %d: killed by signal %d\n", r, WTERMSIG(status));
            else
                fprintf(stderr, "child %d: exit status %d\n", r, WEXITSTATUS(status));
            failed++;
        }
    }
    fprintf(stderr, "%d of %d children failed\n", failed, CHILDREN);
    PM_CHECK_EQ(failed, 0);
}

int main(void)
{
    pm_t_pin_env(NULL); /* (before the first allocation: main makes none) */
    alarm(240);
    PM_RUN(test_first_call_in_handler);
    return pm_test_done();
}
