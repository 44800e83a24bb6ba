/*
 * tests/override/prog_arena_bit.c - bit 2 of a glibc chunk's size word
 * (NON_MAIN_ARENA) set by a stray write, on one of a preloaded program's
 * first blocks (600 bytes: glibc's in every debug mode). The debug modes
 * judge the chunk headers of glibc's main heap from its start on
 * (modes/raw.c, heap_start): the free reports a buffer underflow and keeps
 * the block from glibc. Before, the floor was the break after the set-up's
 * first call of glibc's allocator, above these chunks: no report, and the
 * trim that gave the block to glibc died in glibc's free (SIGSEGV).
 */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>

int main(void)
{
    unsigned char *a = malloc(600), *b = malloc(600), *c = malloc(600);
    if (a == NULL || b == NULL || c == NULL)
        return 2;
    b[-24] |= 4; /* the bug: the low byte of the chunk's size word */
    free(b);
    malloc_trim(0);
    free(a);
    free(c);
    puts("not reported");
    return 0;
}
