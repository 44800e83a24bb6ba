/*
 * tests/override/plugin.c - loaded with dlopen after start: allocates in its
 * constructor, hands blocks to the program and frees the program's blocks.
 */
#include <stdlib.h>
#include <string.h>

static char *kept;
/* Dynamic TLS: the loader allocates each thread's copy with malloc on first
 * use and frees it when the thread exits or the library is closed. */
static __thread char scratch[512];

__attribute__((constructor)) static void plugin_init(void) { kept = strdup("plugin kept"); }
__attribute__((destructor)) static void plugin_fini(void) { free(kept); }

char *pm_t_plugin_make(const char *what)
{
    scratch[0] = what[0]; /* touch this thread's copy */
    size_t n = strlen(what) + strlen(kept) + 3 + (scratch[0] != what[0]);
    char *s = malloc(n);
    if (s != NULL) {
        strcpy(s, kept);
        strcat(s, ": ");
        strcat(s, what);
    }
    return s;
}

void pm_t_plugin_take(void *p) { free(p); }
