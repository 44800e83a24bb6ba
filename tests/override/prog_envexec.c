/*
 * tests/override/prog_envexec.c - exec a program with exactly the
 * environment given, entries of the same name included (which env(1)
 * cannot make: it sets each name once).
 *
 *   prog_envexec [NAME=VALUE ...] -- PROGRAM [ARG ...]
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    int sep = 1;
    while (sep < argc && strcmp(argv[sep], "--") != 0)
        sep++;
    if (sep + 1 >= argc) {
        fprintf(stderr, "usage: prog_envexec [NAME=VALUE ...] -- PROGRAM [ARG ...]\n");
        return 2;
    }
    char *envp[64];
    int n = 0;
    for (int i = 1; i < sep && n < 63; i++)
        envp[n++] = argv[i];
    envp[n] = NULL;
    argv[argc] = NULL;
    execve(argv[sep + 1], argv + sep + 1, envp);
    perror(argv[sep + 1]);
    return 127;
}
