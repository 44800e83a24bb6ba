/* The program of shlib_user.c's library: prints "shlib ok" if it sees the
 * library's counter move and its own shlib_name called by the library. */
#include <stdio.h>
#include <stddef.h>
#include <string.h>

extern int shlib_counter;
void shlib_inc(void);
const char *shlib_which(void);
void *shlib_alloc(size_t n);
void shlib_free(void *p);

const char *shlib_name(void) { return "program's"; }

int main(void)
{
    shlib_inc();
    shlib_inc();
    void *p = shlib_alloc(10);
    int ok = shlib_counter == 2 && strcmp(shlib_which(), "program's") == 0 && p != NULL;
    shlib_free(p);
    printf("%s: counter %d, %s name\n", ok ? "shlib ok" : "shlib WRONG", shlib_counter,
           shlib_which());
    return ok ? 0 : 1;
}
