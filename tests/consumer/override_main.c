/* A program outside the tree linked with the installed override: its own
 * malloc must reach pymalloc's MEM domain (a hook there sees it). */
#include <pymalloc.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pm_allocator below;
static unsigned long seen;
static void *h_malloc(void *c, size_t n) { (void)c; seen++; return below.malloc(below.ctx, n); }
static void *h_calloc(void *c, size_t a, size_t b) { (void)c; return below.calloc(below.ctx, a, b); }
static void *h_realloc(void *c, void *p, size_t n) { (void)c; return below.realloc(below.ctx, p, n); }
static void h_free(void *c, void *p) { (void)c; below.free(below.ctx, p); }

int main(void)
{
    void *(*volatile m)(size_t) = malloc;
    if (pm_get_allocator(PM_DOMAIN_MEM, &below) != 0)
        return 2;
    pm_allocator hook = {NULL, h_malloc, h_calloc, h_realloc, h_free};
    pm_set_allocator(PM_DOMAIN_MEM, &hook);
    char *p = m(32);
    pm_set_allocator(PM_DOMAIN_MEM, &below);
    if (p == NULL || seen != 1)
        return 3;
    strcpy(p, "consumer");
    printf("%s %s mode=%s override=yes\n", p, pm_version(), pm_mode_name());
    free(p);
    return 0;
}
