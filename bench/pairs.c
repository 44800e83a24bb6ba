/*
 * bench/pairs.c - N malloc+free pairs of small sizes (16..512 bytes, the
 * pool range), with a window of 64 live blocks so that frees are not all
 * of the block just allocated. Run under callgrind at two N: the difference
 * in instructions divided by the difference in N is the cost of one pair,
 * start-up excluded.
 *   pairs N
 */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    void *win[64] = {0};
    unsigned x = 12345;
    for (long i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        size_t sz = 16 + (x >> 16) % 497;
        unsigned k = (x >> 8) & 63;
        free(win[k]);
        win[k] = malloc(sz);
        if (win[k] == NULL)
            return 1;
        *(volatile char *)win[k] = 1;
    }
    for (int k = 0; k < 64; k++)
        free(win[k]);
    return 0;
}
