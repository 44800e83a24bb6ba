/*
 * fuzz/replay.c - a plain main() that runs a fuzz target over corpus files,
 * so that CTest replays the committed corpus in every build, without clang
 * or libFuzzer.
 *
 *   replay_<target> [--no-fork] [--threads] PATH...
 *   replay_<target> --list-modes
 *
 * Each PATH is a file or a directory (its regular files, in name order,
 * skipping names that start with '.' or "README"). Each input runs in a
 * forked child, a fresh process: the mode is set per process (see
 * operations.c), and a crash stays with the input that caused it. The child
 * passes when LLVMFuzzerTestOneInput returns 0; it fails when the target
 * rejects the input (-1: in a fresh process nothing should be rejected),
 * aborts (an oracle failure), crashes or is stopped by a sanitizer.
 * LLVMFuzzerInitialize is not called: it is libFuzzer's per-process set-up.
 *
 * --no-fork runs the inputs in this process, one after another (for a
 * debugger); a target may then reject inputs that need a fresh process.
 *
 * --threads starts (and joins) a thread before each input, so that the
 * input runs in a process that has had a second thread, as under libFuzzer
 * (whose RSS-limit thread runs unless -rss_limit_mb=0): the library's
 * single-threaded fast paths (plain stores instead of atomics, serials
 * taken one by one instead of in runs per thread) are then off, as they
 * were when libFuzzer found the input. An oracle failure says which state
 * its process was in ("replay with ... --threads"). CTest replays each
 * corpus both ways.
 *
 * --list-modes prints the canonical name of every mode, one a line (what
 * fuzz/run.sh loops over to fuzz a target in every mode).
 *
 * Exit status: 0 if every input passed, 1 if any failed or none was found,
 * 2 on a usage or I/O error.
 */
#include "fuzz.h"
#include "../src/pm_internal.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static int no_fork, threads;

static void *idle(void *arg) { return arg; }

/* Make this process one that has had a second thread (--threads). */
static void go_threaded(void)
{
    pthread_t t;
    if (pthread_create(&t, NULL, idle, NULL) != 0 || pthread_join(t, NULL) != 0) {
        fprintf(stderr, "replay: --threads: cannot start a thread\n");
        exit(2);
    }
}
static int n_run, n_failed;

static int read_file(const char *path, uint8_t **data, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return -1;
    size_t cap = 4096, len = 0;
    uint8_t *buf = malloc(cap);
    for (;;) {
        if (buf == NULL) {
            fclose(f);
            return -1;
        }
        len += fread(buf + len, 1, cap - len, f);
        if (len < cap)
            break;
        cap *= 2;
        uint8_t *bigger = realloc(buf, cap);
        if (bigger == NULL)
            free(buf);
        buf = bigger;
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        return -1;
    }
    *data = buf;
    *size = len;
    return 0;
}

static void run_one(const char *path)
{
    uint8_t *data;
    size_t size;
    if (read_file(path, &data, &size) != 0) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        exit(2);
    }
    n_run++;
    if (no_fork) {
        if (threads)
            go_threaded();
        if (LLVMFuzzerTestOneInput(data, size) != 0) {
            fprintf(stderr, "replay: %s: rejected (needs a fresh process: drop --no-fork)\n",
                    path);
            n_failed++;
        }
        free(data);
        return;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("replay: fork");
        exit(2);
    }
    if (pid == 0) {
        if (threads)
            go_threaded();
        int rc = LLVMFuzzerTestOneInput(data, size);
        fflush(NULL);
        _exit(rc == 0 ? 0 : 3);
    }
    free(data);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            perror("replay: waitpid");
            exit(2);
        }
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return;
    n_failed++;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 3)
        fprintf(stderr, "replay: FAIL %s: rejected by the target in a fresh process\n", path);
    else if (WIFEXITED(status))
        fprintf(stderr, "replay: FAIL %s: exit status %d\n", path, WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        fprintf(stderr, "replay: FAIL %s: killed by signal %d (%s)\n", path, WTERMSIG(status),
                strsignal(WTERMSIG(status)));
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void run_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
        exit(2);
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' || strncmp(e->d_name, "README", 6) == 0)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char **bigger = realloc(names, cap * sizeof *names);
            if (bigger == NULL) {
                perror("replay");
                exit(2);
            }
            names = bigger;
        }
        names[n] = malloc(strlen(dir) + strlen(e->d_name) + 2);
        if (names[n] == NULL) {
            perror("replay");
            exit(2);
        }
        sprintf(names[n], "%s/%s", dir, e->d_name);
        n++;
    }
    closedir(d);
    qsort(names, n, sizeof *names, by_name);
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        if (stat(names[i], &st) == 0 && S_ISREG(st.st_mode))
            run_one(names[i]);
        free(names[i]);
    }
    free(names);
}

static void list_modes(void)
{
    const char *const *names = pm_mode_names();
    for (size_t i = 0; names[i] != NULL; i++) {
        const char *canon = pm_i_mode_find(names[i], strlen(names[i]))->name;
        size_t j = 0;
        while (j < i && strcmp(pm_i_mode_find(names[j], strlen(names[j]))->name, canon) != 0)
            j++;
        if (j == i)
            printf("%s\n", canon);
    }
}

int main(int argc, char **argv)
{
    int paths = 0;
    if (argc == 2 && strcmp(argv[1], "--list-modes") == 0) {
        list_modes();
        return 0;
    }
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--no-fork") == 0) {
            no_fork = 1;
            continue;
        }
        if (strcmp(argv[i], "--threads") == 0) {
            threads = 1;
            continue;
        }
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
            return 2;
        }
        paths++;
        if (S_ISDIR(st.st_mode))
            run_dir(argv[i]);
        else
            run_one(argv[i]);
    }
    if (paths == 0) {
        fprintf(stderr, "usage: %s [--no-fork] [--threads] FILE|DIR...\n       %s --list-modes\n",
                argv[0], argv[0]);
        return 2;
    }
    fprintf(stderr, "replay: %d inputs, %d failed\n", n_run, n_failed);
    if (n_run == 0) {
        fprintf(stderr, "replay: no inputs found\n");
        return 1;
    }
    return n_failed ? 1 : 0;
}
