/* A plugin that calls the pm_* API, linked with the installed
 * libpymalloc_api.so: dlopened by dlopen_main.c, a program with a static
 * copy of pymalloc of its own, it must reach the program's copy. */
#include <pymalloc.h>

#include <string.h>

void *plugin_alloc(size_t n);
void plugin_free(void *p);

void *plugin_alloc(size_t n)
{
    char *p = pm_mem_malloc(n);
    if (p != NULL)
        memset(p, 'p', n);
    return p;
}

void plugin_free(void *p)
{
    pm_mem_free(p);
}
