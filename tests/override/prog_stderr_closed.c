/*
 * tests/override/prog_stderr_closed.c - a program started with its stderr
 * closed, for check_stderr_closed.sh: it opens the file argv[2] (which
 * would get file descriptor 2) and writes its data there, then, by
 * argv[1]:
 *   clean     nothing more;
 *   overflow  writes one byte past the end of a block and frees it;
 *   log       makes argv[2] its stderr on purpose (dup2 onto 2), then the
 *             overflow;
 *   fd        prints the descriptor the file got ("descriptor N").
 * It exits 0 (through a return from main).
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void overflow(void)
{
    volatile size_t n = 24;
    unsigned char *p = malloc(n);
    ((volatile unsigned char *)p)[n] = 'x'; /* one byte past the end */
    free(p);
}

int main(int argc, char **argv)
{
    if (argc != 3)
        return 2;
    int fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return 2;
    static const char data[] = "the program's data\n";
    if (write(fd, data, sizeof data - 1) != (ssize_t)(sizeof data - 1))
        return 2;
    if (strcmp(argv[1], "log") == 0 && fd != 2 && dup2(fd, 2) != 2)
        return 2;
    if (strcmp(argv[1], "fd") == 0) {
        printf("descriptor %d\n", fd);
        return 0;
    }
    if (strcmp(argv[1], "clean") != 0)
        overflow();
    return 0;
}
