/* A program whose own code calls neither malloc nor any pm_* function,
 * linked with the shared override under -Wl,--as-needed: the override must
 * still be loaded (libc's and libstdc++'s calls must reach it). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>

int main(void)
{
    printf("as-needed override=%s\n", dlsym(RTLD_DEFAULT, "pm_mode_name") != NULL ? "yes" : "no");
    return 0;
}
