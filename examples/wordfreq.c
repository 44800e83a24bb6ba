/*
 * examples/wordfreq.c - an ordinary C program with a heap bug, for the
 * override: it uses plain malloc/strdup/realloc/free and knows nothing
 * about pymalloc. Run it under pymalloc-run.
 *
 *   wordfreq [--off-by-one | --use-after-free] [FILE]    (no FILE: a built-in text)
 *
 * It counts the words of FILE in a hash table of malloc'ed nodes and prints
 * the ten most frequent. With --off-by-one, copy_word() makes the classic
 * mistake: it allocates strlen(word) bytes and then writes the terminating
 * NUL one byte past the end. glibc does not notice (the byte lands in
 * padding); `pymalloc-run --mode debug` reports it when the word is freed.
 * With --use-after-free, a new word that makes the table grow is linked
 * through a pointer to its bucket taken before the table was reallocated:
 * the pointer is written into the old table, already freed (the word is
 * lost). glibc does not notice either; the debug mode finds the write in
 * the freed block, at the latest when the program exits.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct node {
    struct node *next;
    char *word;
    unsigned long count;
} node;

static int off_by_one, use_after_free;

static char *copy_word(const char *s, size_t len)
{
    char *w = malloc(off_by_one ? len : len + 1); /* the bug: no room for the NUL */
    if (w == NULL) {
        perror("malloc");
        exit(1);
    }
    memcpy(w, s, len);
    w[len] = '\0';
    return w;
}

static const char builtin_text[] =
    "It must be as robust as the allocators people already preload: programs that "
    "work under glibc work under every mode, byte for byte. Link it into any test "
    "binary, or preload it into an existing program, set the mode, and every malloc "
    "and free of the program runs through the chosen mode, with no source change. "
    "The debug mode surrounds every block with guard bytes and checks them when the "
    "block is freed; the pool mode serves small blocks from pools of the same size.";

static unsigned long hash(const char *s)
{
    unsigned long h = 5381;
    while (*s)
        h = h * 33 + (unsigned char)*s++;
    return h;
}

/* The table, four times as large, every node moved; the old one freed. */
static void grow(node ***buckets, size_t *nbuckets)
{
    size_t nb = *nbuckets * 4;
    node **grown = calloc(nb, sizeof *grown);
    if (grown == NULL) {
        perror("calloc");
        exit(1);
    }
    for (size_t b = 0; b < *nbuckets; b++)
        for (node *m = (*buckets)[b], *next; m != NULL; m = next) {
            next = m->next;
            m->next = grown[hash(m->word) % nb];
            grown[hash(m->word) % nb] = m;
        }
    free(*buckets);
    *buckets = grown;
    *nbuckets = nb;
}

static int by_count(const void *a, const void *b)
{
    const node *x = *(node *const *)a, *y = *(node *const *)b;
    if (x->count != y->count)
        return x->count < y->count ? 1 : -1;
    return strcmp(x->word, y->word);
}

int main(int argc, char **argv)
{
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--off-by-one") == 0)
            off_by_one = 1;
        else if (strcmp(argv[i], "--use-after-free") == 0)
            use_after_free = 1;
        else
            path = argv[i];
    }

    char *text;
    if (path != NULL) {
        FILE *f = fopen(path, "r");
        if (f == NULL) {
            perror(path);
            return 1;
        }
        size_t cap = 4096, len = 0, n;
        text = malloc(cap);
        while (text != NULL && (n = fread(text + len, 1, cap - len - 1, f)) > 0) {
            len += n;
            if (cap - len < 2048)
                text = realloc(text, cap *= 2);
        }
        fclose(f);
        if (text == NULL)
            return 1;
        text[len] = '\0';
    } else {
        text = strdup(builtin_text);
    }

    size_t nbuckets = 16, nwords = 0, total = 0;
    node **buckets = calloc(nbuckets, sizeof *buckets);
    for (char *p = text; *p != '\0';) {
        while (*p != '\0' && !isalpha((unsigned char)*p))
            p++;
        char *start = p;
        while (isalpha((unsigned char)*p)) {
            *p = (char)tolower((unsigned char)*p);
            p++;
        }
        if (p == start)
            continue;
        char *w = copy_word(start, (size_t)(p - start));
        total++;
        node **slot = &buckets[hash(w) % nbuckets], *n = *slot;
        while (n != NULL && strcmp(n->word, w) != 0)
            n = n->next;
        if (n != NULL) {
            n->count++;
            free(w); /* with --off-by-one, the debug mode reports here */
            continue;
        }
        n = malloc(sizeof *n);
        n->word = w;
        n->count = 1;
        n->next = NULL;
        if (use_after_free && nwords + 1 > 2 * nbuckets) {
            grow(&buckets, &nbuckets);
            *slot = n; /* the bug: slot points into the table grow() freed */
            continue;
        }
        n->next = *slot;
        *slot = n;
        if (++nwords > 2 * nbuckets) /* grow the table and rehash */
            grow(&buckets, &nbuckets);
    }

    node **all = malloc((nwords ? nwords : 1) * sizeof *all);
    size_t k = 0;
    for (size_t b = 0; b < nbuckets; b++)
        for (node *n = buckets[b]; n != NULL; n = n->next)
            all[k++] = n;
    qsort(all, nwords, sizeof *all, by_count);
    printf("%zu words, %zu distinct\n", total, nwords);
    for (size_t i = 0; i < nwords && i < 10; i++)
        printf("%6lu %s\n", all[i]->count, all[i]->word);

    for (size_t i = 0; i < nwords; i++) {
        free(all[i]->word);
        free(all[i]);
    }
    free(all);
    free(buckets);
    free(text);
    return 0;
}
