/* bench/fork_exit.c - what a fork child's exit costs with a big parent
 * heap (a test harness that forks a child per test, after its fixtures
 * allocated). Run under the preloaded library (bench/fork_exit.sh):
 *
 *   fork_exit BLOCKS CHILDREN
 *
 * allocates BLOCKS blocks of 16..520 bytes (kept live), then forks
 * CHILDREN children one after another, each of which exits at once with
 * exit(0) (its check at exit, in the debug modes), and prints the fastest
 * and the median time from fork() to the child's end (waitpid), in ms. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc != 3)
        return 2;
    int n = atoi(argv[1]), k = atoi(argv[2]);
    if (n < 1 || k < 1 || k > 1000)
        return 2;
    void **live = malloc(sizeof *live * (size_t)n);
    double *ms = malloc(sizeof *ms * (size_t)k);
    if (live == NULL || ms == NULL)
        return 1;
    for (int i = 0; i < n; i++)
        if ((live[i] = malloc(16 + (size_t)(i % 64) * 8)) == NULL)
            return 1;
    fflush(stdout);
    for (int c = 0; c < k; c++) {
        double t0 = now_ms();
        pid_t p = fork();
        if (p < 0)
            return 1;
        if (p == 0)
            exit(0);
        int st;
        if (waitpid(p, &st, 0) != p || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
            return 1;
        ms[c] = now_ms() - t0;
    }
    qsort(ms, (size_t)k, sizeof *ms, by_value);
    printf("fork_exit blocks=%d children=%d best_ms=%.2f median_ms=%.2f\n", n, k, ms[0], ms[k / 2]);
    for (int i = 0; i < n; i++)
        free(live[i]);
    free(live);
    free(ms);
    return 0;
}
