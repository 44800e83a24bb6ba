/*
 * tests/test_atfork.c - pthread_atfork handlers registered before pymalloc's
 * own may allocate. glibc runs prepare handlers in reverse order of
 * registration and parent/child handlers in order, so handlers registered
 * first run while pymalloc's handlers hold every pool lock and every
 * registry stripe lock; an allocation there that needed a lock waited for
 * its own thread forever (found by an audit: in every mode but malloc), and
 * so did reading or setting an allocator, or setting the mode.
 *
 * Its own main, not the harness: the handlers must be registered before
 * the first pm_* call of the process. A second thread churns all along
 * (not under ASan, see PM_T_CHURN).
 * alarm() turns a hang into a failure.
 */
#include "pin_env.h"
#include "pymalloc.h"
#include "sanitizers.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* The second thread churns across the forks, except under ASan: clang 14's
 * ASan allocator (which serves the libc-sized blocks there) is not made
 * fork-safe, so a child forked while that thread was inside it could hang
 * in ASan's own lock (seen once in CI: a child stopped by its alarm). */
#define PM_T_CHURN (!PM_T_ASAN)

static _Atomic int prepared, parented, stop;
static int childed;

/* Sizes of every class (thread caches miss), a libc-sized block, all three
 * domains, a realloc across classes, and the statistics (all locks). */
static int allocate_everywhere(int salt)
{
    int bad = 0;
    for (size_t n = 1; n <= 600; n += 16 + (size_t)salt) {
        void *r = pm_raw_malloc(n), *m = pm_mem_malloc(n), *o = pm_obj_calloc(1, n);
        bad |= r == NULL || m == NULL || o == NULL;
        m = pm_mem_realloc(m, n * 3);
        bad |= m == NULL;
        pm_raw_free(r);
        pm_mem_free(m);
        pm_obj_free(o);
    }
    struct pm_stats s;
    bad |= pm_get_stats(&s) != 0;
    /* The table and the mode: read, set back as it was, and the mode set
     * again (in use: nothing changes), under our fork handlers' locks. */
    pm_allocator a;
    bad |= pm_get_allocator(PM_DOMAIN_OBJ, &a) != 0;
    bad |= pm_set_allocator(PM_DOMAIN_OBJ, &a) != 0;
    bad |= pm_set_mode(pm_mode_name()) != 0;
    return bad;
}

static void on_prepare(void) { atomic_store(&prepared, allocate_everywhere(1) ? -1 : 1); }
static void on_parent(void) { atomic_store(&parented, allocate_everywhere(2) ? -1 : 1); }
static void on_child(void) { childed = allocate_everywhere(3) ? -1 : 1; }

static void *churn(void *arg)
{
    (void)arg;
    void *keep[64] = {0};
    for (unsigned i = 0; !atomic_load(&stop); i++) {
        unsigned k = i % 64;
        pm_obj_free(keep[k]);
        keep[k] = pm_obj_malloc(8 + (i * 37) % 500);
    }
    for (int k = 0; k < 64; k++)
        pm_obj_free(keep[k]);
    return NULL;
}

int main(void)
{
    pm_t_pin_env(NULL);
    if (pthread_atfork(on_prepare, on_parent, on_child) != 0)
        return 2;
    alarm(60);
    pm_mem_free(pm_mem_malloc(16)); /* pymalloc's set-up: its handlers come after ours */
    pthread_t t;
    if (PM_T_CHURN && pthread_create(&t, NULL, churn, NULL) != 0)
        return 2;
    int failures = 0;
    for (int round = 0; round < 20; round++) {
        atomic_store(&prepared, 0);
        atomic_store(&parented, 0);
        pid_t pid = fork();
        if (pid < 0)
            return 2;
        if (pid == 0) {
            alarm(30);
            /* The child's handlers ran; pymalloc works after them. */
            int bad = childed != 1 || allocate_everywhere(4);
            _exit(bad ? 3 : 0);
        }
        int st = 0;
        if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "round %d: child status %#x\n", round, st);
            failures++;
        }
        if (atomic_load(&prepared) != 1 || atomic_load(&parented) != 1) {
            fprintf(stderr, "round %d: prepare %d parent %d\n", round, atomic_load(&prepared),
                    atomic_load(&parented));
            failures++;
        }
    }
    atomic_store(&stop, 1);
    if (PM_T_CHURN)
        pthread_join(t, NULL);
    if (allocate_everywhere(5))
        failures++;
    printf("test_atfork: mode %s: %s\n", pm_mode_name(), failures ? "FAILED" : "ok");
    return failures ? 1 : 0;
}
