/* A program linked with libpymalloc.a (or libpymalloc_api.a) that dlopens a
 * plugin calling pm_* (dlopen_plugin.c, linked with libpymalloc_api.so: a
 * second copy). The program exports its pm_* functions, so the plugin's
 * calls reach the program's copy: blocks cross between them either way. */
#include <pymalloc.h>

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc != 2)
        return 2;
    void *h = dlopen(argv[1], RTLD_NOW);
    if (h == NULL) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 2;
    }
    void *(*p_alloc)(size_t);
    void (*p_free)(void *);
    *(void **)&p_alloc = dlsym(h, "plugin_alloc");
    *(void **)&p_free = dlsym(h, "plugin_free");
    if (p_alloc == NULL || p_free == NULL)
        return 2;
    char *mine = pm_mem_malloc(40);
    if (mine == NULL)
        return 4;
    strcpy(mine, "program");
    p_free(mine); /* the program's block freed by the plugin */
    char *theirs = p_alloc(40);
    if (theirs == NULL || theirs[39] != 'p')
        return 4;
    pm_mem_free(theirs); /* the plugin's block freed by the program */
    printf("dlopen ok: %s mode=%s\n", pm_version(), pm_mode_name());
    return 0;
}
