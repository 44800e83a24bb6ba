/*
 * examples/demo.c - the main job: a small workload through the pm_* API.
 *
 * It prints the mode pymalloc installed (chosen by PYMALLOC_MODE), builds a
 * word-frequency table with blocks from all three domains (strings in MEM,
 * nodes in OBJ, the bucket array in RAW, grown with realloc), wraps the MEM
 * domain with a counting hook to show how hooks chain, and frees everything.
 *
 *   PYMALLOC_MODE=malloc build/examples/pymalloc-demo
 */
#include <pymalloc.h>

#include <stdio.h>
#include <string.h>

typedef struct node {
    struct node *next;
    char *word;
    unsigned count;
} node;

static unsigned long hook_calls;
static pm_allocator below;

static void *count_malloc(void *ctx, size_t n) { (void)ctx; hook_calls++; return below.malloc(below.ctx, n); }
static void *count_calloc(void *ctx, size_t a, size_t b) { (void)ctx; hook_calls++; return below.calloc(below.ctx, a, b); }
static void *count_realloc(void *ctx, void *p, size_t n) { (void)ctx; hook_calls++; return below.realloc(below.ctx, p, n); }
static void count_free(void *ctx, void *p) { (void)ctx; hook_calls++; below.free(below.ctx, p); }

static unsigned hash(const char *s)
{
    unsigned h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

int main(void)
{
    static const char *const text[] = {
        "the", "allocator", "that", "people", "reach", "for", "when", "a", "test",
        "suite", "must", "catch", "heap", "bugs", "is", "the", "one", "that", "is",
        "as", "easy", "as", "setting", "one", "environment", "variable"};
    const size_t nwords = sizeof text / sizeof text[0];

    printf("pymalloc %s, active mode: %s\n", pm_version(), pm_mode_name());

    /* Wrap MEM with a counting hook: get the current allocator, set ours. */
    pm_get_allocator(PM_DOMAIN_MEM, &below);
    pm_allocator hook = {NULL, count_malloc, count_calloc, count_realloc, count_free};
    pm_set_allocator(PM_DOMAIN_MEM, &hook);

    size_t nbuckets = 4, nentries = 0;
    node **buckets = pm_raw_calloc(nbuckets, sizeof *buckets);
    if (buckets == NULL)
        return 1;
    for (int round = 0; round < 200; round++) {
        for (size_t i = 0; i < nwords; i++) {
            const char *w = text[i];
            unsigned h = hash(w);
            node *n = buckets[h % nbuckets];
            while (n != NULL && strcmp(n->word, w) != 0)
                n = n->next;
            if (n != NULL) {
                n->count++;
                continue;
            }
            n = pm_obj_malloc(sizeof *n);
            if (n == NULL || (n->word = pm_mem_malloc(strlen(w) + 1)) == NULL)
                return 1;
            strcpy(n->word, w);
            n->count = 1;
            n->next = buckets[h % nbuckets];
            buckets[h % nbuckets] = n;
            if (++nentries > 2 * nbuckets) { /* grow and rehash */
                size_t old = nbuckets;
                nbuckets *= 2;
                node **nb = pm_raw_calloc(nbuckets, sizeof *nb);
                if (nb == NULL)
                    return 1;
                for (size_t b = 0; b < old; b++)
                    for (node *m = buckets[b], *next; m != NULL; m = next) {
                        next = m->next;
                        m->next = nb[hash(m->word) % nbuckets];
                        nb[hash(m->word) % nbuckets] = m;
                    }
                pm_raw_free(buckets);
                buckets = nb;
            }
        }
        /* Some churn: temporary buffers grown with realloc. */
        char *buf = NULL;
        for (size_t n = 16; n <= 4096; n *= 2) {
            char *grown = pm_mem_realloc(buf, n);
            if (grown == NULL)
                return 1;
            buf = grown;
            memset(buf, 'x', n);
        }
        pm_mem_free(buf);
    }

    unsigned top = 0;
    const char *topword = "";
    for (size_t b = 0; b < nbuckets; b++)
        for (node *n = buckets[b]; n != NULL; n = n->next)
            if (n->count > top) {
                top = n->count;
                topword = n->word;
            }
    printf("%zu distinct words in %zu buckets; most frequent: \"%s\" x%u\n", nentries,
           nbuckets, topword, top);

    for (size_t b = 0; b < nbuckets; b++)
        for (node *n = buckets[b], *next; n != NULL; n = next) {
            next = n->next;
            pm_mem_free(n->word);
            pm_obj_free(n);
        }
    pm_raw_free(buckets);
    pm_set_allocator(PM_DOMAIN_MEM, &below);
    printf("the counting hook on the mem domain saw %lu calls\n", hook_calls);
    return 0;
}
