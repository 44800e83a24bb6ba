/*
 * pm_override.h - what the malloc override (src/override.c) shares with its
 * helper files and its tests. Only built into libpymalloc.so/.a (and, renamed,
 * into the fuzz targets), never into the API-only libpymalloc_api.
 */
#ifndef PM_OVERRIDE_H
#define PM_OVERRIDE_H

#include "pm_internal.h"

/*
 * The names src/override.c defines the malloc family under: the plain names
 * (malloc, free, ...) normally; with -DPM_O_PREFIX=pfx_ the renamed copy
 * pfx_malloc, pfx_free, ... that the fuzz targets call directly (a sanitizer
 * owns the real symbols there; fuzz/CMakeLists.txt builds it with
 * PM_O_PREFIX=pm_fz_). The renamed copy has no load-time constructor.
 */
#ifdef PM_O_PREFIX
#define PM_O_NAME_CAT_(prefix, name) prefix##name
#define PM_O_NAME_CAT(prefix, name) PM_O_NAME_CAT_(prefix, name)
#define PM_O_NAME(name) PM_O_NAME_CAT(PM_O_PREFIX, name)
void *PM_O_NAME(malloc)(size_t n);
void PM_O_NAME(free)(void *p);
void *PM_O_NAME(calloc)(size_t nelem, size_t elsize);
void *PM_O_NAME(realloc)(void *p, size_t n);
void *PM_O_NAME(reallocarray)(void *p, size_t nelem, size_t elsize);
int PM_O_NAME(posix_memalign)(void **out, size_t alignment, size_t n);
void *PM_O_NAME(aligned_alloc)(size_t alignment, size_t n);
void *PM_O_NAME(memalign)(size_t alignment, size_t n);
void *PM_O_NAME(valloc)(size_t n);
void *PM_O_NAME(pvalloc)(size_t n);
size_t PM_O_NAME(malloc_usable_size)(void *p);
#else
#define PM_O_NAME(name) name
/* Find the C library's exec functions (src/exec.c, which passes heap errors
 * counted before an exec on to the new program), at load time. */
void pm_i_exec_resolve(void);
/* Find the next sigaction and signal (src/signal.c, which hides the debug
 * modes' SIGABRT handler from the program), at load time. */
void pm_i_signal_resolve(void);
#endif

/*
 * The early arena (src/early.c): where the malloc family's blocks come from
 * while this thread is inside pymalloc's own set-up (an allocation made by
 * pthread_atfork, by a mode's lazy init, by a decorator being installed).
 * At that moment the table may hold a half-installed mode, and libc's blocks
 * would later be freed through the mode's free (a debug mode would report
 * them, wrongly). The arena is static memory that the override recognises
 * by address, so free/realloc/malloc_usable_size of its blocks never reach
 * a mode. The debug modes also serve a signal handler's allocations from
 * it (src/override.c, o_nested). Blocks are zeroed when handed out; freed
 * blocks are merged and reused (src/early.c).
 */
#define PM_I_EARLY_SIZE ((size_t)256 * 1024)

/* A block of n bytes aligned to `alignment` (a power of two; values below 16
 * mean 16), zero-filled; NULL when the arena is exhausted. */
void *pm_i_early_alloc(size_t n, size_t alignment);
/* Is p a block of the early arena? (one subtraction and one compare) */
extern unsigned char pm_i_early_arena[PM_I_EARLY_SIZE] __attribute__((visibility("hidden")));
static inline int pm_i_early_owns(const void *p)
{
    return (uintptr_t)p - (uintptr_t)pm_i_early_arena < PM_I_EARLY_SIZE;
}
/* The size p was allocated with; 0 if p is not an allocated block. */
size_t pm_i_early_size(const void *p);
/* Frees an allocated block; any other pointer into the arena (freed
 * already, interior) is ignored. */
void pm_i_early_free(void *p);
/* Bytes of the arena's allocated chunks, headers included (for tests). */
size_t pm_i_early_used(void);
/* Register the arena's fork handlers, once: called by the set-up first of
 * all (src/api.c), so that fork takes the arena's lock after every other. */
void pm_i_early_atfork(void);

#endif /* PM_OVERRIDE_H */
