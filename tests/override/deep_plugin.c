/*
 * tests/override/deep_plugin.c - a library for prog_deepbind, opened with
 * dlopen(..., RTLD_DEEPBIND): its malloc and free bind to the C library's,
 * not to the preloaded override. Built three ways (CMakeLists.txt): with
 * lazy binding, with -z now and RELRO, and (DEEP_VIA_POINTER) taking the
 * functions' addresses into data only, so that the loader fills data
 * relocations (R_X86_64_64) rather than PLT slots; DEEP_NONE references
 * neither.
 */
#include <stdlib.h>
#include <string.h>

#if defined(DEEP_NONE)
char *deep_make(size_t n)
{
    static char buf[64];
    (void)n;
    return buf;
}
void deep_release(void *p) { (void)p; }
#else
#if defined(DEEP_VIA_POINTER)
void *(*volatile deep_alloc)(size_t) = malloc;
void (*volatile deep_free)(void *) = free;
#else
#define deep_alloc malloc
#define deep_free free
#endif
char *deep_make(size_t n)
{
    char *p = deep_alloc(n);
    if (p != NULL)
        memset(p, 'a', n);
    return p;
}
void deep_release(void *p) { deep_free(p); }
#endif
