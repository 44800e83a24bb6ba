/*
 * tests/override/prog_faults.c - what a debug mode costs a short process:
 * the pages it touches (minor page faults, from wait4's rusage, which count
 * the same from run to run, unlike time). A test suite starts thousands of
 * processes; each page a mode touches costs microseconds of every one.
 *
 *   prog_faults LIBRARY BUDGET MODE:BASE...
 *
 * Runs itself ("work": a few blocks of the override's main kinds made and
 * freed, then exit, which in a debug mode checks the heap) with LIBRARY
 * preloaded, in each debug MODE and in the BASE mode it wraps, the fewest
 * faults of 5 runs each (the loader's work moves a little with the address
 * space's layout). Fails when MODE touches more than BUDGET pages beyond
 * BASE's. What a debug mode adds is a few dozen pages: the headers of the
 * registry's stripes and of the quarantine's shards (a page each), a page
 * of table per stripe that records a block, and the side words of the
 * pools' carved blocks. It was 200 more: every stripe (6 KiB of FIFO
 * behind its lock) was locked at install and at exit, every stripe's empty
 * table read at exit, and every pool's side words read to the last block
 * the pool could hold.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static int work(void)
{
    /* small (the pools in pymalloc_debug) and middling (the registry in
     * every debug mode), and aligned; half freed before exit. (No big
     * block: a debug mode writes every byte of a freed block up to 1 MiB,
     * so its pages count, as they should, and would hide the fixed part.) */
    static const size_t sizes[] = {24, 100, 480, 1000, 4000, 20000};
    void *keep[8];
    int k = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        void *a = malloc(sizes[i]), *b = calloc(1, sizes[i]);
        if (a == NULL || b == NULL)
            return 3;
        memset(a, 1, sizes[i]);
        free(b);
        if (k < 8)
            keep[k++] = a;
    }
    void *al = NULL;
    if (posix_memalign(&al, 64, 200) != 0)
        return 3;
    free(al);
    for (int i = 0; i < k; i += 2)
        free(keep[i]);
    return 0;
}

extern char **environ;

/* The environment, with PYMALLOC_MODE and LD_PRELOAD set (and no other
 * PYMALLOC_ variable). */
static char **env_for(const char *lib, const char *mode)
{
    static char *envp[512];
    static char mode_var[64], preload_var[4200];
    snprintf(mode_var, sizeof mode_var, "PYMALLOC_MODE=%s", mode);
    snprintf(preload_var, sizeof preload_var, "LD_PRELOAD=%s", lib);
    size_t n = 0;
    envp[n++] = mode_var;
    envp[n++] = preload_var;
    for (char **e = environ; *e != NULL && n < 511; e++)
        if (strncmp(*e, "PYMALLOC_", 9) != 0 && strncmp(*e, "LD_PRELOAD=", 11) != 0)
            envp[n++] = *e;
    envp[n] = NULL;
    return envp;
}

/* posix_spawn, not fork: the child's faults are then the program's own
 * (a forked child's copies of its parent's pages before exec would count). */
static long faults_of(const char *self, const char *lib, const char *mode)
{
    long best = -1;
    for (int run = 0; run < 5; run++) {
        char *args[] = {(char *)self, (char *)"work", NULL};
        pid_t pid;
        int err = posix_spawn(&pid, self, NULL, NULL, args, env_for(lib, mode));
        if (err != 0) {
            fprintf(stderr, "posix_spawn %s: %s\n", self, strerror(err));
            exit(2);
        }
        int st;
        struct rusage ru;
        if (wait4(pid, &st, 0, &ru) != pid) {
            perror("wait4");
            exit(2);
        }
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "FAIL: %s mode: the program ended with status %d\n", mode, st);
            exit(1);
        }
        if (best < 0 || ru.ru_minflt < best)
            best = ru.ru_minflt;
    }
    return best;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "work") == 0)
        return work();
    if (argc < 4) {
        fprintf(stderr, "usage: prog_faults LIBRARY BUDGET MODE:BASE...\n");
        return 2;
    }
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) {
        perror("/proc/self/exe");
        return 2;
    }
    self[n] = '\0';
    long budget = strtol(argv[2], NULL, 10);
    int fails = 0;
    for (int i = 3; i < argc; i++) {
        char mode[64];
        snprintf(mode, sizeof mode, "%s", argv[i]);
        char *base = strchr(mode, ':');
        if (base == NULL) {
            fprintf(stderr, "prog_faults: %s: MODE:BASE expected\n", argv[i]);
            return 2;
        }
        *base++ = '\0';
        long b = faults_of(self, argv[1], base), f = faults_of(self, argv[1], mode);
        int bad = f - b > budget;
        printf("%s %s mode: %ld pages, %s mode: %ld, %+ld (budget %ld)\n", bad ? "FAIL:" : "ok:",
               mode, f, base, b, f - b, budget);
        fails += bad;
    }
    return fails != 0;
}
