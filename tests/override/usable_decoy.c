/*
 * tests/override/usable_decoy.c - another allocator's malloc_usable_size,
 * preloaded after libpymalloc.so (as when LD_PRELOAD already names one and
 * pymalloc-run puts itself first). It must never be asked about a block:
 * the override's blocks are glibc's or its own, and only they can tell
 * their size. (Looked up as "the next definition", jemalloc's crashed on a
 * glibc block, and tcmalloc's and mimalloc's overstated its size.)
 */
#include <stddef.h>
#include <stdlib.h>
#include <unistd.h>

size_t malloc_usable_size(void *p)
{
    (void)p;
    static const char msg[] = "usable_decoy: malloc_usable_size of the next library called\n";
    (void)!write(2, msg, sizeof msg - 1);
    abort();
}
