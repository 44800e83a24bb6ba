/*
 * pm_override.h - what the malloc override (src/override.c) shares with its
 * helper files and its tests. Only built into libpymalloc.so/.a (and, renamed,
 * into the fuzz targets), never into the API-only libpymalloc_api. (The
 * early arena it serves nested calls from, src/early.c, is the library's:
 * src/pm_internal.h.)
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
/* glibc's other names of its allocator, and cfree (src/override.c). */
void *PM_O_NAME(__libc_malloc)(size_t n);
void PM_O_NAME(__libc_free)(void *p);
void PM_O_NAME(cfree)(void *p);
void *PM_O_NAME(__libc_calloc)(size_t nelem, size_t elsize);
void *PM_O_NAME(__libc_realloc)(void *p, size_t n);
void *PM_O_NAME(__libc_memalign)(size_t alignment, size_t n);
void *PM_O_NAME(__libc_valloc)(size_t n);
void *PM_O_NAME(__libc_pvalloc)(size_t n);

#endif /* PM_OVERRIDE_H */
