/* A program outside the tree that uses an installed pymalloc. */
#include <pymalloc.h>

#include <stdio.h>
#include <string.h>

int main(void)
{
    char *p = pm_mem_malloc(32);
    if (p == NULL)
        return 1;
    strcpy(p, "consumer");
    pm_allocator a;
    if (pm_get_allocator(PM_DOMAIN_OBJ, &a) != 0)
        return 2;
    printf("%s %s mode=%s\n", p, pm_version(), pm_mode_name());
    pm_mem_free(p);
    return strcmp(pm_version(), PYMALLOC_VERSION_STRING) == 0 ? 0 : 3;
}
