/* A program linked with libpymalloc_api.a (it exports its pm_* functions),
 * run with libpymalloc.so preloaded: the preloaded override serves malloc,
 * free and malloc_trim by itself, and never reaches the program's copy of the
 * API through the exported names (that copy would start and print its own
 * start-up line at the first malloc). */
#include <pymalloc.h>

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>

int main(void)
{
    void *p = malloc(100);
    if (p == NULL)
        return 1;
    free(p);
    malloc_trim(0);
    printf("api_static %s\n", pm_version());
    return 0;
}
