/*
 * tests/override/gen_data.c - deterministic input for the programs the
 * tests run under the preload (sort, gzip, sqlite3, perl...).
 *
 *   gen_data lines N       N lines of words and numbers (xorshift, fixed seed)
 *   gen_data sql N         an SQL script: tables, N inserts, joins, aggregates
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t s = 0x2545f4914f6cdd1dull;
static uint64_t rnd(void)
{
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
}

static void word(char *w, size_t max)
{
    size_t n = 1 + rnd() % (max - 1);
    for (size_t i = 0; i < n; i++)
        w[i] = (char)('a' + rnd() % 26);
    w[n] = '\0';
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: gen_data lines|sql N\n");
        return 2;
    }
    long n = atol(argv[2]);
    char w[64], v[64];
    if (strcmp(argv[1], "lines") == 0) {
        for (long i = 0; i < n; i++) {
            word(w, 20);
            word(v, 40);
            printf("%s %llu %s %ld\n", w, (unsigned long long)(rnd() % 100000), v, i);
        }
        return 0;
    }
    if (strcmp(argv[1], "sql") == 0) {
        printf("CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, grp INTEGER, val REAL);\n"
               "CREATE TABLE g(grp INTEGER PRIMARY KEY, label TEXT);\n"
               "CREATE INDEX t_grp ON t(grp);\nBEGIN;\n");
        for (int g = 0; g < 50; g++) {
            word(w, 30);
            printf("INSERT INTO g VALUES(%d, '%s');\n", g, w);
        }
        for (long i = 0; i < n; i++) {
            word(w, 40);
            printf("INSERT INTO t(name, grp, val) VALUES('%s', %llu, %llu.%02llu);\n", w,
                   (unsigned long long)(rnd() % 50), (unsigned long long)(rnd() % 10000),
                   (unsigned long long)(rnd() % 100));
        }
        printf("COMMIT;\n"
               "SELECT g.label, count(*), round(sum(t.val), 2), max(length(t.name))\n"
               "  FROM t JOIN g USING(grp) GROUP BY g.grp ORDER BY g.grp;\n"
               "SELECT name FROM t WHERE name LIKE 'a%%' ORDER BY name, id LIMIT 20;\n"
               "SELECT group_concat(name, ',') FROM (SELECT name FROM t ORDER BY val DESC LIMIT 50);\n"
               "UPDATE t SET name = upper(name) || name WHERE id %% 7 = 0;\n"
               "DELETE FROM t WHERE id %% 5 = 0;\n"
               "VACUUM;\n"
               "SELECT count(*), sum(length(name)) FROM t;\n");
        return 0;
    }
    fprintf(stderr, "gen_data: unknown kind '%s'\n", argv[1]);
    return 2;
}
