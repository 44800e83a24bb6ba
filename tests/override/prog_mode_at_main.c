/*
 * tests/override/prog_mode_at_main.c - a program linked with the override
 * that allocates nothing before main, then chooses its mode there:
 *
 *   prog_mode_at_main mode    pm_set_mode(another mode than PYMALLOC_MODE's)
 *   prog_mode_at_main hooks   pm_setup_debug_hooks(), then a report about a
 *                             block of malloc's names free
 *   prog_mode_at_main raw     the same, with the raw domain's hooks replaced
 *                             by an allocator of its own before the first
 *                             allocation (pm_debug_enabled() is then 0; the
 *                             override's choice of its named path went by it,
 *                             and the report named pm_mem_free)
 *
 * Both must succeed: the mode is fixed by the first allocation, and there
 * was none. Before, the override's constructor made one itself (its look-up
 * of glibc's malloc_usable_size, a dlopen), so both returned -1 with EBUSY
 * in every program. Exit status 0 when they worked, 1 otherwise.
 */
#include "pymalloc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char entry[32];
static int reports;

static void on_error(const pm_error_report *r, void *ctx)
{
    (void)ctx;
    reports++;
    snprintf(entry, sizeof entry, "%s", r->entry);
}

static void *(*volatile v_malloc)(size_t) = malloc;

/* The raw domain's allocator of its own (libc's, through the pymalloc API's
 * contract: a unique block for size 0). */
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
static void *own_malloc(void *ctx, size_t n)
{
    (void)ctx;
    return __libc_malloc(n ? n : 1);
}
static void *own_calloc(void *ctx, size_t nelem, size_t elsize)
{
    (void)ctx;
    return __libc_calloc(nelem ? nelem : 1, elsize ? elsize : 1);
}
static void *own_realloc(void *ctx, void *p, size_t n)
{
    (void)ctx;
    return __libc_realloc(p, n ? n : 1);
}
static void own_free(void *ctx, void *p)
{
    (void)ctx;
    __libc_free(p);
}

int main(int argc, char **argv)
{
    const char *what = argc > 1 ? argv[1] : "mode";
    if (strcmp(what, "mode") == 0) {
        const char *before = pm_mode_name();
        const char *other = strcmp(before, "malloc") == 0 ? "pymalloc" : "malloc";
        errno = 0;
        int rc = pm_set_mode(other);
        int e = errno;
        const char *now = pm_mode_name();
        void *p = v_malloc(100);
        free(p);
        printf("pm_set_mode(%s) in mode %s: %d (%s), now %s\n", other, before, rc,
               rc == 0 ? "ok" : strerror(e), now);
        return rc == 0 && strcmp(now, other) == 0 && p != NULL ? 0 : 1;
    }
    errno = 0;
    int rc = pm_setup_debug_hooks();
    int e = errno;
    int enabled = pm_debug_enabled();
    if (strcmp(what, "raw") == 0) {
        pm_allocator own = {NULL, own_malloc, own_calloc, own_realloc, own_free};
        if (pm_set_allocator(PM_DOMAIN_RAW, &own) != 0 || pm_debug_enabled() != 0)
            return 1;
        enabled = 1; /* (on the mem domain, which malloc uses) */
    }
    pm_set_error_handler(on_error, NULL);
    char *volatile p = v_malloc(10);
    p[10] = 'x'; /* one byte past the end */
    free(p);     /* reported (and leaked) by the hooks, naming free */
    pm_set_error_handler(NULL, NULL);
    printf("pm_setup_debug_hooks in mode %s: %d (%s), enabled %d, reports %d, entry %s\n",
           pm_mode_name(), rc, rc == 0 ? "ok" : strerror(e), enabled, reports, entry);
    return rc == 0 && enabled == 1 && reports == 1 && strcmp(entry, "free") == 0 ? 0 : 1;
}
