/* A shared library of the user's with the static API library inside it
 * (pymalloc::pymalloc_api_static): a global the program reads, and a
 * function the program's own definition interposes, as ELF promises. Before
 * 2026-12-06 the static targets' --dynamic-list was linked into such a
 * library too, which bound these names inside it: the program saw another
 * copy of shlib_counter (0), and could not interpose shlib_name. */
#include "pymalloc.h"

int shlib_counter = 0;
void shlib_inc(void) { shlib_counter++; }
const char *shlib_name(void) { return "library's"; }
const char *shlib_which(void) { return shlib_name(); }
void *shlib_alloc(size_t n) { return pm_mem_malloc(n); }
void shlib_free(void *p) { pm_mem_free(p); }
