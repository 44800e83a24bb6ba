/* Two copies of the library in one process: this program is linked with
 * libpymalloc_api.a or libpymalloc.a (which export pm_*), and libpymalloc.so
 * is preloaded. Each copy has its own blocks, counts and work at exit; in
 * PYMALLOC_ON_ERROR=report mode neither copy's errors may go unreported or
 * leave the process with status 0 (check_two_copies.sh).
 *
 *   prog_two_copies WHO HOW DAMAGE
 *
 * WHO: none, program (a 24-byte block of the program's copy: pm_mem_malloc),
 * preload (a 40-byte block of the preloaded copy: its pm_mem_malloc, the next
 * definition after the program's) or both. DAMAGE: freed (one byte past the
 * end, then freed: reported at once) or live (one byte past the end, never
 * freed: the check at exit reports it). HOW the process ends: exit, _exit
 * or quick_exit, with status 0, or exec: this program takes its place
 * (with the environment: the preload and PYMALLOC_ON_ERROR), to make no
 * error and exit with status 0. */
#include <pymalloc.h>

#include <dlfcn.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void damage(char *p, size_t n, int freed, void (*release)(void *))
{
    if (p == NULL)
        exit(3);
    memset(p, 'x', n + 1); /* one byte past the end */
    if (freed)
        release(p);
}

int main(int argc, char **argv)
{
    if (argc != 4)
        return 2;
    const char *who = argv[1], *how = argv[2];
    int freed = strcmp(argv[3], "freed") == 0;
    int program = !strcmp(who, "program") || !strcmp(who, "both");
    int preload = !strcmp(who, "preload") || !strcmp(who, "both");
    if (program)
        damage(pm_mem_malloc(24), 24, freed, pm_mem_free);
    if (preload) {
        void *m = dlsym(RTLD_NEXT, "pm_mem_malloc"), *f = dlsym(RTLD_NEXT, "pm_mem_free");
        if (m == NULL || f == NULL) {
            fprintf(stderr, "prog_two_copies: no pm_mem_malloc after the program's\n");
            return 3;
        }
        void *(*other_malloc)(size_t);
        void (*other_free)(void *);
        memcpy(&other_malloc, &m, sizeof m); /* (POSIX: dlsym results are callable) */
        memcpy(&other_free, &f, sizeof f);
        damage(other_malloc(40), 40, freed, other_free);
    }
    printf("prog_two_copies %s %s %s\n", who, how, argv[3]);
    fflush(stdout);
    if (!strcmp(how, "_exit"))
        _exit(0);
    if (!strcmp(how, "quick_exit"))
        quick_exit(0);
    if (!strcmp(how, "exec")) {
        execl("/proc/self/exe", argv[0], "none", "exit", "freed", (char *)NULL);
        return 4;
    }
    return 0;
}
