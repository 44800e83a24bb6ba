/*
 * modes/raw.c - the `malloc` mode's allocator: libc's malloc family.
 *
 * How we reach libc without recursion. Once the malloc override is linked in
 * (or preloaded), the symbol `malloc` is ours, so calling malloc() from here
 * would come straight back into pymalloc. On glibc we therefore call the
 * allocator under its other exported names, __libc_malloc, __libc_calloc,
 * __libc_realloc, __libc_free and __libc_memalign: these are glibc's own
 * implementations (ptmalloc), exported since glibc 2.2.5 precisely so that
 * malloc replacements and debuggers can reach them. The override exports
 * those names too (a program that calls __libc_malloc and free, or malloc
 * and __libc_free, mixes no allocators: src/override.c), so a call by name
 * from here would bind to its own definition. Each is therefore looked up
 * by address, as dlsym(RTLD_NEXT, ...) would find it: the first definition
 * in an object loaded after the one holding this code (else in any other
 * object), read from that object's dynamic symbol table (libc_find below),
 * skipping every copy of pymalloc (one that defines pm_mem_malloc).
 * The look-up neither allocates nor calls dlsym, which allocates, so it may
 * run inside malloc, in the set-up, or first in a signal handler; it runs
 * once, at the first call (and in the override's constructor).
 *
 * In a sanitizer build (ASan, TSan) the sanitizer owns `malloc` and must see
 * every block, or it reports false races and misses real bugs, so the plain
 * names are used there (the override is not built with sanitizers). On a libc
 * without the __libc_ names (musl, the BSDs) the build also uses the plain
 * names; the override is then only supported where the platform offers
 * another way to reach the system allocator.
 *
 * The pm_* layer has already handled the edge cases, except that this
 * allocator must honour the pm_* rules for size 0: malloc(0) and calloc with a
 * zero product give a unique non-NULL block, and realloc(p, 0) returns a
 * minimal block and never frees (glibc's realloc(p, 0) frees and returns NULL).
 */
#define _GNU_SOURCE 1 /* dladdr */
#include "../src/pm_internal.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* PM_UNDER_SANITIZER: pm_internal.h. */

#if defined(__GLIBC__)
#include <link.h>

/* The loaded object (its link map) that holds address a, else NULL. With
 * glibc's _dl_find_object (2.35 and later): a search of the loader's
 * table of objects, which takes no lock and does not allocate. dladdr1
 * looks for the nearest symbol too, by a walk of the object's whole symbol
 * table: the override's constructor made four such look-ups, 264,000
 * instructions, half of all a preloaded `/bin/true` ran. */
struct link_map *pm_i_object_of(const void *a)
{
#if __GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 35)
    struct dl_find_object fo;
    if (_dl_find_object((void *)(uintptr_t)a, &fo) == 0 && fo.dlfo_link_map != NULL)
        return fo.dlfo_link_map;
#endif
    Dl_info info;
    struct link_map *m = NULL;
    if (dladdr1(a, &info, (void **)&m, RTLD_DL_LINKMAP) == 0)
        return NULL;
    return m;
}
#endif

#if defined(__GLIBC__) && !defined(PM_UNDER_SANITIZER)
#include <elf.h>
#include <link.h>

/* glibc's five, in the order of libc_names. */
enum { LF_MALLOC, LF_CALLOC, LF_REALLOC, LF_FREE, LF_MEMALIGN, LF_COUNT };
static const char *const libc_names[LF_COUNT] = {"__libc_malloc", "__libc_calloc",
                                                 "__libc_realloc", "__libc_free",
                                                 "__libc_memalign"};

/* An address in the object holding this code (the library, or a program
 * linked with its static archive). */
static void libc_anchor(void) {}

struct libc_walk {
    uintptr_t self;           /* libc_anchor */
    int passed;               /* the walk is past the object holding it */
    void *after[LF_COUNT];    /* the first definition after that object */
    void *any[LF_COUNT];      /* the first in any other object */
};

/* A pointer from the dynamic section: glibc adjusts the entries of a
 * loaded object's section to addresses, except where the section is read
 * only (the vDSO's), whose entries stay offsets from its base. */
static uintptr_t dyn_ptr(uintptr_t base, ElfW(Addr) v) { return v < base ? base + v : v; }

/* The dynamic section of the object of info, or NULL. */
static const ElfW(Dyn) *obj_dynamic(const struct dl_phdr_info *info)
{
    for (int i = 0; i < info->dlpi_phnum; i++)
        if (info->dlpi_phdr[i].p_type == PT_DYNAMIC)
            return (const ElfW(Dyn) *)(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
    return NULL;
}

/* Whether address a lies in a segment of the object of info. */
static int obj_holds(const struct dl_phdr_info *info, uintptr_t a)
{
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t start = info->dlpi_addr + ph->p_vaddr;
        if (ph->p_type == PT_LOAD && a >= start && a - start < ph->p_memsz)
            return 1;
    }
    return 0;
}

/* Whether symbol sym of this object defines a function by that name in
 * its default version (not a hidden, older version: versym's bit 15). */
static int sym_defines(const ElfW(Sym) *sym, const ElfW(Half) *versym, size_t ix)
{
    return sym->st_shndx != SHN_UNDEF && sym->st_value != 0 &&
           ELF64_ST_TYPE(sym->st_info) == STT_FUNC &&
           (versym == NULL || (versym[ix] & 0x8000) == 0);
}

/* The address of function `name` as the object of info defines it, else
 * NULL: a look-up in its GNU hash table (or its SysV one). */
static void *elf_lookup(const struct dl_phdr_info *info, const char *name)
{
    const ElfW(Dyn) *dyn = obj_dynamic(info);
    uintptr_t base = info->dlpi_addr;
    if (dyn == NULL)
        return NULL;
    const char *strtab = NULL;
    const ElfW(Sym) *symtab = NULL;
    const uint32_t *gnu = NULL, *sysv = NULL;
    const ElfW(Half) *versym = NULL;
    for (; dyn->d_tag != DT_NULL; dyn++) {
        switch (dyn->d_tag) {
        case DT_STRTAB: strtab = (const char *)dyn_ptr(base, dyn->d_un.d_ptr); break;
        case DT_SYMTAB: symtab = (const ElfW(Sym) *)dyn_ptr(base, dyn->d_un.d_ptr); break;
        case DT_GNU_HASH: gnu = (const uint32_t *)dyn_ptr(base, dyn->d_un.d_ptr); break;
        case DT_HASH: sysv = (const uint32_t *)dyn_ptr(base, dyn->d_un.d_ptr); break;
        case DT_VERSYM: versym = (const ElfW(Half) *)dyn_ptr(base, dyn->d_un.d_ptr); break;
        default: break;
        }
    }
    if (strtab == NULL || symtab == NULL)
        return NULL;
    if (gnu != NULL) {
        uint32_t h = 5381;
        for (const unsigned char *c = (const unsigned char *)name; *c != 0; c++)
            h = h * 33 + *c;
        uint32_t nbuckets = gnu[0], symoffset = gnu[1], bloom_size = gnu[2], shift = gnu[3];
        if (nbuckets == 0 || bloom_size == 0)
            return NULL;
        const ElfW(Addr) *bloom = (const ElfW(Addr) *)(const void *)(gnu + 4);
        const uint32_t *buckets = (const uint32_t *)(const void *)(bloom + bloom_size);
        const uint32_t *chain = buckets + nbuckets;
        enum { BITS = 8 * sizeof(ElfW(Addr)) };
        ElfW(Addr) word = bloom[(h / BITS) % bloom_size];
        ElfW(Addr) mask = ((ElfW(Addr))1 << (h % BITS)) | ((ElfW(Addr))1 << ((h >> shift) % BITS));
        if ((word & mask) != mask)
            return NULL;
        uint32_t ix = buckets[h % nbuckets];
        if (ix < symoffset)
            return NULL;
        for (;; ix++) {
            uint32_t h2 = chain[ix - symoffset];
            if ((h | 1) == (h2 | 1) && strcmp(name, strtab + symtab[ix].st_name) == 0 &&
                sym_defines(&symtab[ix], versym, ix))
                return (void *)(info->dlpi_addr + symtab[ix].st_value);
            if (h2 & 1)
                return NULL;
        }
    }
    if (sysv != NULL) {
        uint32_t h = 0;
        for (const unsigned char *c = (const unsigned char *)name; *c != 0; c++) {
            h = (h << 4) + *c;
            uint32_t g = h & 0xf0000000u;
            if (g != 0)
                h ^= g >> 24;
            h &= ~g;
        }
        uint32_t nbucket = sysv[0];
        if (nbucket == 0)
            return NULL;
        const uint32_t *bucket = sysv + 2, *chain = bucket + nbucket;
        for (uint32_t ix = bucket[h % nbucket]; ix != STN_UNDEF; ix = chain[ix])
            if (strcmp(name, strtab + symtab[ix].st_name) == 0 &&
                sym_defines(&symtab[ix], versym, ix))
                return (void *)(info->dlpi_addr + symtab[ix].st_value);
    }
    return NULL;
}

static int libc_find(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    struct libc_walk *w = data;
    if (obj_holds(info, w->self)) {
        w->passed = 1; /* ours: never the answer */
        return 0;
    }
    /* Another copy of pymalloc (libpymalloc.so preloaded into a program
     * linked with libpymalloc.a): its __libc_malloc is its malloc, which
     * would start that copy up too. */
    if (elf_lookup(info, "pm_mem_malloc") != NULL)
        return 0;
    int done = 1;
    for (int k = 0; k < LF_COUNT; k++) {
        if (w->after[k] != NULL)
            continue;
        void *f = elf_lookup(info, libc_names[k]);
        if (f != NULL && w->any[k] == NULL)
            w->any[k] = f;
        if (w->passed)
            w->after[k] = f;
        done &= w->after[k] != NULL;
    }
    return done; /* nonzero: stop */
}

/* Each call goes through a pointer, which starts at a function that
 * looks the five up, then calls the one found (a load and an indirect
 * call, as the call through the PLT was). */
static void *first_malloc(size_t n);
static void *first_calloc(size_t nelem, size_t elsize);
static void *first_realloc(void *p, size_t n);
static void first_free(void *p);
static void *first_memalign(size_t alignment, size_t n);
static void *(*_Atomic libc_malloc_)(size_t) = first_malloc;
static void *(*_Atomic libc_calloc_)(size_t, size_t) = first_calloc;
static void *(*_Atomic libc_realloc_)(void *, size_t) = first_realloc;
static void (*_Atomic libc_free_)(void *) = first_free;
static void *(*_Atomic libc_memalign_)(size_t, size_t) = first_memalign;

/* By name: in this object, or the first definition in the process. */
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
extern void *__libc_memalign(size_t, size_t);
/* The override's own __libc_malloc (src/override.c), under a hidden name;
 * NULL in the API-only library, which has no override. */
extern void *pm_i_o_libc_malloc(size_t) __attribute__((weak, visibility("hidden")));

/* A reference to glibc's malloc.o, for a link with -static: libc.a's
 * malloc.o, which defines mallopt, defines malloc and free too, so a fully
 * static program linked with the override fails to link ("multiple
 * definition of `malloc'"), rather than build one whose malloc modes have
 * no allocator below them. (The API-only library's static programs need
 * glibc's malloc.o anyway.) */
__attribute__((used)) static int (*const libc_malloc_o)(int, int) = mallopt;

/* The lookup and fork(). dl_iterate_phdr holds the loader's lock of its
 * list of objects while it walks, and glibc's fork does not renew that
 * lock in the child: a child forked while another thread walked inherited
 * it held, by a thread it does not have, and waited for ever at the
 * lookup, its first call of the C library's allocator, or at its next
 * dl_iterate_phdr, dlopen or C++ exception (found by CI, 1 run in about
 * 500 of test_fork_first_use on i386: the thread's first block while main
 * forked). So a fork waits for other threads' walks under way
 * (pm_i_raw_fork_prepare; bounded, about a second, in case one waits for
 * the loader's lock held by a thread that waits for the forking one), and
 * a walk does not start while another thread's fork is under way (for at
 * most about 20 ms: its thread may hold a lock that the fork's handlers
 * take; past that, the fork is stuck on something, and a walk of a few
 * microseconds is unlikely to span its end). A thread's own forks, whose
 * handlers may make its first C library block, are not waited for. Both
 * sides count themselves first, then read the other's count, sequentially
 * consistent: either the walk sees the fork, or the fork the walk. The
 * waits are no cancellation point (the raw nanosleep system call): a
 * thread cancelled there was unwound out of the allocator (found by a
 * review). */
static _Atomic int walks, forks;
static __thread int walks_here __attribute__((tls_model("initial-exec")));
static __thread int forks_here __attribute__((tls_model("initial-exec")));

/* Count d in a shared counter and this thread's part of it, signals
 * blocked: a signal handler that forked between the two steps left the
 * child's count one off for good, and every later fork there waited a
 * second (found by a review). Walks and forks are rare: two system calls. */
static void count(_Atomic int *shared, int *here, int d)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    *here += d;
    atomic_fetch_add_explicit(shared, d, memory_order_seq_cst);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

static void walk_begin(void)
{
    for (int i = 0;; i++) {
        count(&walks, &walks_here, 1);
        if (atomic_load_explicit(&forks, memory_order_seq_cst) == forks_here || i >= 120)
            return;
        count(&walks, &walks_here, -1);
        pm_i_wait_round(i);
    }
}

static void walk_end(void) { count(&walks, &walks_here, -1); }

/* The library's fork handlers, each fork's (src/api.c); `wait` where other
 * threads exist, before the prepare handler takes any lock of ours. */
void pm_i_raw_fork_prepare(int wait)
{
    count(&forks, &forks_here, 1);
    for (int i = 0; wait && i < 1100 &&
                    atomic_load_explicit(&walks, memory_order_seq_cst) > walks_here;
         i++)
        pm_i_wait_round(i);
}

void pm_i_raw_fork_parent(void) { count(&forks, &forks_here, -1); }

void pm_i_raw_fork_child(void)
{
    /* (this thread alone, with its own walks and forks under way: a signal
     * handler that forked inside them) */
    forks_here--;
    atomic_store_explicit(&forks, forks_here, memory_order_relaxed);
    atomic_store_explicit(&walks, walks_here, memory_order_relaxed);
}

/* Failure is only possible without glibc's allocator in the process: then
 * this library cannot serve the malloc modes, and says so. Threads that
 * race here find and store the same addresses. */
static __attribute__((noinline, cold)) void libc_resolve(void)
{
    if (atomic_load_explicit(&libc_free_, memory_order_seq_cst) != first_free)
        return; /* (found by another thread) */
    walk_begin();
    if (atomic_load_explicit(&libc_free_, memory_order_seq_cst) != first_free) {
        walk_end(); /* (found meanwhile, by another thread) */
        return;
    }
    struct libc_walk w;
    memset(&w, 0, sizeof w);
    void (*anchor)(void) = libc_anchor;
    memcpy(&w.self, &anchor, sizeof anchor < sizeof w.self ? sizeof anchor : sizeof w.self);
    dl_iterate_phdr(libc_find, &w);
    void *f[LF_COUNT];
    int found = 1;
    for (int k = 0; k < LF_COUNT; k++) {
        f[k] = w.after[k] != NULL ? w.after[k] : w.any[k];
        found &= f[k] != NULL;
    }
    /* POSIX: the addresses of functions, as dlsym's results, are callable */
    void *(*m)(size_t) = __libc_malloc, *(*c)(size_t, size_t) = __libc_calloc,
         *(*r)(void *, size_t) = __libc_realloc, (*fr)(void *) = __libc_free,
         *(*a)(size_t, size_t) = __libc_memalign;
    if (found) {
        memcpy(&m, &f[LF_MALLOC], sizeof m);
        memcpy(&c, &f[LF_CALLOC], sizeof c);
        memcpy(&r, &f[LF_REALLOC], sizeof r);
        memcpy(&fr, &f[LF_FREE], sizeof fr);
        memcpy(&a, &f[LF_MEMALIGN], sizeof a);
    } else if (pm_i_o_libc_malloc != NULL && m == pm_i_o_libc_malloc) {
        /* (by name, this object's override: its own malloc) */
        static const char msg[] = "pymalloc: the C library's allocator was not found "
                                  "(no other object defines __libc_malloc)\n";
        pm_i_write_all(2, msg, sizeof msg - 1);
        abort();
    } /* else by name: glibc's, in this object (a program linked with -static) */
    atomic_store_explicit(&libc_malloc_, m, memory_order_relaxed);
    atomic_store_explicit(&libc_calloc_, c, memory_order_relaxed);
    atomic_store_explicit(&libc_realloc_, r, memory_order_relaxed);
    atomic_store_explicit(&libc_memalign_, a, memory_order_relaxed);
    /* (the last: a thread that sees it set finds the others set) */
    atomic_store_explicit(&libc_free_, fr, memory_order_seq_cst);
    walk_end();
}

static void *first_malloc(size_t n)
{
    libc_resolve();
    return atomic_load_explicit(&libc_malloc_, memory_order_relaxed)(n);
}
static void *first_calloc(size_t nelem, size_t elsize)
{
    libc_resolve();
    return atomic_load_explicit(&libc_calloc_, memory_order_relaxed)(nelem, elsize);
}
static void *first_realloc(void *p, size_t n)
{
    libc_resolve();
    return atomic_load_explicit(&libc_realloc_, memory_order_relaxed)(p, n);
}
static void first_free(void *p)
{
    libc_resolve();
    atomic_load_explicit(&libc_free_, memory_order_relaxed)(p);
}
static void *first_memalign(size_t alignment, size_t n)
{
    libc_resolve();
    return atomic_load_explicit(&libc_memalign_, memory_order_relaxed)(alignment, n);
}

/* The allocator that serves the calls below (glibc's __libc_malloc). */
static void *(*libc_serving_malloc(void))(size_t)
{
    if (atomic_load_explicit(&libc_malloc_, memory_order_relaxed) == first_malloc)
        libc_resolve();
    return atomic_load_explicit(&libc_malloc_, memory_order_relaxed);
}

#define PM_LIBC_MALLOC atomic_load_explicit(&libc_malloc_, memory_order_relaxed)
#define PM_LIBC_CALLOC atomic_load_explicit(&libc_calloc_, memory_order_relaxed)
#define PM_LIBC_REALLOC atomic_load_explicit(&libc_realloc_, memory_order_relaxed)
#define PM_LIBC_FREE atomic_load_explicit(&libc_free_, memory_order_relaxed)
#define PM_LIBC_MEMALIGN atomic_load_explicit(&libc_memalign_, memory_order_relaxed)
#else
#define PM_LIBC_MALLOC malloc
#define PM_LIBC_CALLOC calloc
#define PM_LIBC_REALLOC realloc
#define PM_LIBC_FREE free
#define PM_LIBC_MEMALIGN plain_memalign
static void *plain_memalign(size_t alignment, size_t n)
{
    void *p = NULL; /* posix_memalign: no size-multiple rule, unlike aligned_alloc */
    return posix_memalign(&p, alignment, n) == 0 ? p : NULL;
}
/* (no lookup: the C library's functions by name) */
void pm_i_raw_fork_prepare(int wait) { (void)wait; }
void pm_i_raw_fork_parent(void) {}
void pm_i_raw_fork_child(void) {}
#endif

void *pm_i_libc_malloc(size_t n) { return PM_LIBC_MALLOC(n ? n : 1); }

void *pm_i_libc_calloc(size_t nelem, size_t elsize)
{
    if (nelem == 0 || elsize == 0)
        nelem = elsize = 1;
    return PM_LIBC_CALLOC(nelem, elsize);
}

void *pm_i_libc_realloc(void *p, size_t n) { return PM_LIBC_REALLOC(p, n ? n : 1); }

void pm_i_libc_free(void *p) { PM_LIBC_FREE(p); }

void *pm_i_libc_memalign(size_t alignment, size_t n)
{
    return PM_LIBC_MEMALIGN(alignment, n ? n : 1);
}

/* glibc exports no second name for malloc_usable_size, and once the override
 * defines `malloc_usable_size` a direct call would come back to us. The
 * blocks are __libc_malloc's, so ask the library that defines the
 * __libc_malloc we call: glibc, or an allocator preloaded after us that
 * replaces it too (tcmalloc does). Not simply the next definition after
 * ours (RTLD_NEXT): with an allocator after us in LD_PRELOAD that replaces
 * malloc but not __libc_malloc (pymalloc-run puts itself first), that one
 * was asked about glibc's blocks, and crashed (jemalloc). Looked up once:
 * by the override's constructor (pm_i_libc_usable_resolve), else by the
 * first call, from malloc_usable_size(), never from inside malloc, so the
 * loader's own allocations are safe here, except in a signal handler that
 * interrupted malloc: hence the constructor. */
typedef size_t (*usable_fn)(void *);
static _Atomic(usable_fn) libc_usable;

#if defined(__GLIBC__) && !defined(PM_UNDER_SANITIZER)
/* Symbol `name` as defined by the object holding function f (and its
 * dependencies), if that is not this library; else NULL. */
static void *symbol_of_object_of(void *(*f)(size_t), const char *name)
{
    void *addr, *me = (void *)(uintptr_t)&pm_i_libc_usable_size;
    memcpy(&addr, &f, sizeof addr);
    struct link_map *at = pm_i_object_of(addr), *self = pm_i_object_of(me);
    if (at == NULL || at->l_name == NULL || self == NULL || at == self)
        return NULL;
    /* The next definition after ours, when it is that object's (glibc's,
     * as a rule): no dlopen, which allocates (for glibc, the search list
     * of a library loaded at start-up: 40 bytes, kept), and the override's
     * constructor makes this look-up. */
    void *next = dlsym(RTLD_NEXT, name);
    if (next != NULL && pm_i_object_of(next) == at)
        return next;
    void *sym;
    if (at->l_name[0] == '\0') {
        /* the program itself (its link map has no name): its definition
         * comes first in the global scope */
        sym = dlsym(RTLD_DEFAULT, name);
    } else {
        void *h = dlopen(at->l_name, RTLD_LAZY | RTLD_NOLOAD); /* loaded already */
        if (h == NULL)
            return NULL;
        sym = dlsym(h, name);
    }
    if (sym != NULL && pm_i_object_of(sym) == self)
        sym = NULL; /* ours (an object that does not define it, searched on) */
    return sym;
}

/* Symbol `name` of the library that serves __libc_malloc, else the next
 * definition after ours. */
static void *libc_symbol(const char *name)
{
    void *sym = symbol_of_object_of(libc_serving_malloc(), name);
    return sym != NULL ? sym : dlsym(RTLD_NEXT, name);
}

/* Objects that call the C library's allocator past the override
 * (pm_i_libc_bypassers). Under the override every object's malloc, free
 * and the rest bind to pymalloc's, the first definition in the global
 * scope; a library opened with dlopen(..., RTLD_DEEPBIND) looks in its own
 * dependencies first, the C library among them, and binds them to glibc's
 * own (as it does with every preloaded allocator). Such a binding is told
 * from the object's relocations: a slot of one of these names, undefined
 * in the object, that holds the C library's definition (a slot the loader
 * has not filled yet, a lazy binding's before its first call, holds an
 * address in the object itself: not counted until that call). */
#if defined(__x86_64__) && defined(__LP64__)
#define PM_SLOT_RELOC(t) ((t) == R_X86_64_JUMP_SLOT || (t) == R_X86_64_GLOB_DAT || (t) == R_X86_64_64)
#elif defined(__i386__)
#define PM_SLOT_RELOC(t) ((t) == R_386_JMP_SLOT || (t) == R_386_GLOB_DAT || (t) == R_386_32)
#elif defined(__aarch64__) && defined(__LP64__)
#define PM_SLOT_RELOC(t)                                                       \
    ((t) == R_AARCH64_JUMP_SLOT || (t) == R_AARCH64_GLOB_DAT || (t) == R_AARCH64_ABS64)
#endif

#ifdef PM_SLOT_RELOC
#if __ELF_NATIVE_CLASS == 64
#define PM_R_SYM ELF64_R_SYM
#define PM_R_TYPE ELF64_R_TYPE
#else
#define PM_R_SYM ELF32_R_SYM
#define PM_R_TYPE ELF32_R_TYPE
#endif
static const char *const bypass_names[] = {
    "malloc",         "free",          "calloc",        "realloc",
    "reallocarray",   "posix_memalign", "aligned_alloc", "memalign",
    "valloc",         "pvalloc",       "malloc_usable_size", "__libc_malloc",
    "__libc_free",    "__libc_calloc", "__libc_realloc", "__libc_memalign",
    "__libc_valloc",  "__libc_pvalloc"};
enum { BYPASS_N = sizeof bypass_names / sizeof bypass_names[0] };

struct bypass_walk {
    uintptr_t self;          /* libc_anchor: this object */
    uintptr_t libc_at;       /* glibc's __libc_malloc: the C library's object */
    int libc_seen;
    void *defs[BYPASS_N];    /* the C library's definitions (NULL: none) */
    void (*fn)(void *ctx, const char *path, const char *names);
    void *ctx;
    int found;
};

static int bypass_defs(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    struct bypass_walk *w = data;
    if (!obj_holds(info, w->libc_at))
        return 0;
    for (int k = 0; k < BYPASS_N; k++)
        w->defs[k] = elf_lookup(info, bypass_names[k]);
    w->libc_seen = 1;
    return 1;
}

/* The bits (1 << index in bypass_names) of the names whose slots in table
 * tab (size bytes, entries of ent bytes: Rel or Rela, whose first two
 * words are r_offset and r_info) hold the C library's definitions. */
static uint32_t bypass_table(const struct bypass_walk *w, uintptr_t base, uintptr_t tab,
                             size_t size, size_t ent, const ElfW(Sym) *symtab, const char *strtab,
                             size_t strsz)
{
    uint32_t mask = 0;
    if (tab == 0 || ent < sizeof(ElfW(Rel)))
        return 0;
    for (size_t at = 0; at + ent <= size; at += ent) {
        const ElfW(Rel) *r = (const ElfW(Rel) *)(tab + at);
        size_t sym = PM_R_SYM(r->r_info);
        if (sym == 0 || !PM_SLOT_RELOC(PM_R_TYPE(r->r_info)))
            continue;
        const ElfW(Sym) *sy = &symtab[sym];
        if (sy->st_shndx != SHN_UNDEF || (strsz != 0 && sy->st_name >= strsz))
            continue;
        const char *name = strtab + sy->st_name;
        if (name[0] != '_' && strchr("acfmprv", name[0]) == NULL)
            continue;
        for (int k = 0; k < BYPASS_N; k++) {
            if (w->defs[k] == NULL || strcmp(name, bypass_names[k]) != 0)
                continue;
            uintptr_t slot;
            memcpy(&slot, (const void *)(base + r->r_offset), sizeof slot);
            if (slot == (uintptr_t)w->defs[k])
                mask |= (uint32_t)1 << k;
            break;
        }
    }
    return mask;
}

static int bypass_scan(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    struct bypass_walk *w = data;
    const ElfW(Dyn) *dyn = obj_dynamic(info);
    if (dyn == NULL || obj_holds(info, w->self) || obj_holds(info, w->libc_at) ||
        elf_lookup(info, "pm_mem_malloc") != NULL) /* another copy of pymalloc */
        return 0;
    uintptr_t base = info->dlpi_addr, jmprel = 0, rela = 0, rel = 0;
    size_t pltrelsz = 0, relasz = 0, relsz = 0, strsz = 0;
    size_t relaent = sizeof(ElfW(Rela)), relent = sizeof(ElfW(Rel)), pltent = 0;
    const ElfW(Sym) *symtab = NULL;
    const char *strtab = NULL;
    for (; dyn->d_tag != DT_NULL; dyn++) {
        switch (dyn->d_tag) {
        case DT_SYMTAB: symtab = (const ElfW(Sym) *)dyn_ptr(base, dyn->d_un.d_ptr); break;
        case DT_STRTAB: strtab = (const char *)dyn_ptr(base, dyn->d_un.d_ptr); break;
        case DT_STRSZ: strsz = dyn->d_un.d_val; break;
        case DT_JMPREL: jmprel = dyn_ptr(base, dyn->d_un.d_ptr); break;
        case DT_PLTRELSZ: pltrelsz = dyn->d_un.d_val; break;
        case DT_PLTREL:
            pltent = dyn->d_un.d_val == DT_RELA ? sizeof(ElfW(Rela)) : sizeof(ElfW(Rel));
            break;
        case DT_RELA: rela = dyn_ptr(base, dyn->d_un.d_ptr); break;
        case DT_RELASZ: relasz = dyn->d_un.d_val; break;
        case DT_RELAENT: relaent = dyn->d_un.d_val; break;
        case DT_REL: rel = dyn_ptr(base, dyn->d_un.d_ptr); break;
        case DT_RELSZ: relsz = dyn->d_un.d_val; break;
        case DT_RELENT: relent = dyn->d_un.d_val; break;
        default: break;
        }
    }
    if (symtab == NULL || strtab == NULL)
        return 0;
    uint32_t mask = bypass_table(w, base, jmprel, pltrelsz, pltent, symtab, strtab, strsz) |
                    bypass_table(w, base, rela, relasz, relaent, symtab, strtab, strsz) |
                    bypass_table(w, base, rel, relsz, relent, symtab, strtab, strsz);
    if (mask == 0)
        return 0;
    w->found++;
    /* "malloc, free and realloc", in the order of bypass_names (all of
     * them fit) */
    char names[256];
    size_t len = 0;
    int left = __builtin_popcount(mask);
    for (int k = 0; k < BYPASS_N; k++) {
        if (!(mask & ((uint32_t)1 << k)))
            continue;
        const char *sep = len == 0 ? "" : left == 1 ? " and " : ", ";
        size_t a = strlen(sep), n = strlen(bypass_names[k]);
        if (len + a + n < sizeof names) {
            memcpy(names + len, sep, a);
            memcpy(names + len + a, bypass_names[k], n);
            len += a + n;
        }
        left--;
    }
    names[len] = '\0';
    if (w->fn != NULL)
        w->fn(w->ctx, info->dlpi_name != NULL ? info->dlpi_name : "", names);
    return 0;
}
#endif /* PM_SLOT_RELOC */
#endif

#if defined(__GLIBC__) && !defined(PM_UNDER_SANITIZER)
static usable_fn libc_usable_fn(void)
{
    usable_fn fn = atomic_load_explicit(&libc_usable, memory_order_acquire);
    if (fn == NULL) {
        void *sym = libc_symbol("malloc_usable_size");
        memcpy(&fn, &sym, sizeof fn); /* POSIX: dlsym results are callable */
        if (fn == NULL)
            fn = malloc_usable_size; /* not overridden: the symbol is libc's */
        atomic_store_explicit(&libc_usable, fn, memory_order_release);
    }
    return fn;
}
#endif

size_t pm_i_libc_usable_size(void *p)
{
#if defined(__GLIBC__) && !defined(PM_UNDER_SANITIZER)
    return libc_usable_fn()(p);
#else
    (void)libc_usable;
    return malloc_usable_size(p);
#endif
}

/* glibc sets its allocator up in its first call (ptmalloc_init), with no
 * lock: it counts on that call being made before a second thread runs,
 * and so it is without pymalloc, as pthread_create's first allocation is
 * glibc's. Under the override, glibc's allocator is only called by the
 * mode (blocks over 512 bytes in the pymalloc modes), and that first call
 * could come from several threads at once: each ran the set-up, each took
 * the main arena as its own while it counted one thread, and the second of
 * them to exit stopped the process with "malloc assertion failure in
 * __malloc_arena_thread_freeres: a->attached_threads > 0" (7% of the runs
 * of 32 threads whose first malloc was of 100,000 bytes, in pymalloc
 * mode). A block made and freed here, by pymalloc's set-up, sets it up
 * while the process's other threads wait for that set-up: in the
 * constructor or the first allocation, whichever comes first (the
 * constructor was too late when another library's constructor started
 * threads in a program linked with libpymalloc.a). */
#ifdef PM_GLIBC_CHUNKS
/* The break before that first call: the start of glibc's main heap (the
 * chunk check's floor, pm_i_libc_header_probe), where the kernel's own
 * cannot be read. Set once, by the set-up. */
static uintptr_t break_before_libc;
#endif

void pm_i_libc_start(void)
{
#ifdef PM_GLIBC_CHUNKS
    if (break_before_libc == 0) {
        void *b = sbrk(0);
        if (b != (void *)-1)
            break_before_libc = (uintptr_t)b;
    }
#endif
    pm_i_libc_free(pm_i_libc_malloc(1));
}

/* The look-up allocates (dlopen, dlsym) and takes the loader's lock: done
 * in its first call, from a signal handler's malloc_usable_size that
 * interrupted malloc, it allocated inside the interrupted malloc (malloc
 * mode: glibc's, whose heap it broke, "malloc assertion failure in
 * sysmalloc"). */
void pm_i_libc_usable_resolve(void)
{
#if defined(__GLIBC__) && !defined(PM_UNDER_SANITIZER)
    (void)libc_usable_fn();
#endif
}

int pm_i_libc_bypassers(void (*fn)(void *ctx, const char *path, const char *names), void *ctx)
{
#if defined(__GLIBC__) && !defined(PM_UNDER_SANITIZER) && defined(PM_SLOT_RELOC)
    if (pm_i_o_libc_malloc == NULL)
        return 0; /* no override: every object's malloc is the C library's */
    struct bypass_walk w;
    memset(&w, 0, sizeof w);
    void (*anchor)(void) = libc_anchor;
    void *(*libc)(size_t) = libc_serving_malloc();
    memcpy(&w.self, &anchor, sizeof anchor < sizeof w.self ? sizeof anchor : sizeof w.self);
    memcpy(&w.libc_at, &libc, sizeof libc < sizeof w.libc_at ? sizeof libc : sizeof w.libc_at);
    w.fn = fn;
    w.ctx = ctx;
    walk_begin(); /* (see walks) */
    dl_iterate_phdr(bypass_defs, &w);
    if (w.libc_seen)
        dl_iterate_phdr(bypass_scan, &w);
    walk_end();
    return w.found;
#else
    (void)fn;
    (void)ctx;
    return 0;
#endif
}

/* malloc_trim of the library that serves __libc_malloc (glibc), found as
 * malloc_usable_size is, for the override's malloc_trim. */
typedef int (*trim_fn)(size_t);
static _Atomic(trim_fn) libc_trim;

static int no_trim(size_t pad)
{
    (void)pad;
    return 0;
}

int pm_i_libc_trim(size_t pad)
{
#if defined(__GLIBC__) && !defined(PM_UNDER_SANITIZER)
    trim_fn fn = atomic_load_explicit(&libc_trim, memory_order_acquire);
    if (fn == NULL) {
        void *sym = libc_symbol("malloc_trim");
        memcpy(&fn, &sym, sizeof fn);
        if (fn == NULL)
            fn = no_trim;
        atomic_store_explicit(&libc_trim, fn, memory_order_release);
    }
    return fn(pad);
#else
    (void)libc_trim;
    return no_trim(pad);
#endif
}

/* ---------------------------------------------------------------------------
 * glibc's chunk header of a block, for the debug hooks: a write past the
 * end of one block that skips its 16-byte trailer lands in the header of
 * the next chunk (its size word, the 8 bytes right before the block), and
 * glibc's free then aborts with a message naming the wrong bug ("double
 * free or corruption (out)", "free(): invalid size"). The hooks check the
 * word first and report the damage themselves.
 *
 * glibc, 64-bit: a chunk's size word is at block - 8, the size a multiple
 * of 16, bit 1 set for an mmapped chunk (bits 0 and 2 are flags too). A
 * chunk for a request of req bytes is at least nb = max(32, (req + 8 + 15)
 * & ~15) bytes; one from the heap at most nb + 32 (glibc splits off a
 * remainder of 32 bytes or more: malloc, calloc, realloc in place,
 * memalign's trimmed end); an mmapped one passes the test glibc's own
 * munmap_chunk makes (chunk start minus prev_size, and prev_size + size,
 * page-aligned), and its mapping (prev_size + size) is no larger than
 * glibc makes for it (pm_i_mmap_chunk_fits: a write into the size word's
 * high bytes passes glibc's test, whose free then unmaps far too much).
 *
 * Only when __libc_malloc is glibc's own: not under valgrind (whose
 * replacement has a redzone there, which memcheck forbids reading) or a
 * sanitizer, and not when an allocator loaded after us replaced
 * __libc_malloc (tcmalloc and jemalloc do): a self-test on first use
 * allocates two blocks and checks their headers look as described. */
_Atomic size_t pm_i_libc_chunk_page; /* pm_internal.h: 0, the check off */
uintptr_t pm_i_libc_heap_floor;      /* pm_internal.h */
#ifdef PM_GLIBC_CHUNKS
_Atomic int pm_i_libc_probed; /* pm_internal.h */
#else
_Atomic int pm_i_libc_probed = 1; /* nothing to test */
#endif

#ifdef PM_GLIBC_CHUNKS
#if PM_HAVE_VALGRIND
#include <valgrind/valgrind.h>
#endif
#include <unistd.h>

void *pm_i_libc_break(void) { return sbrk(0); }


/* The self-test: a heap chunk (not mmapped) of the expected size. */
static int heap_chunk_ok(const void *block, size_t req)
{
    size_t word = ((const size_t *)block)[-1];
    return (word & 2) == 0 && pm_i_heap_chunk_fits(word, req);
}

static int under_valgrind(void)
{
#if PM_HAVE_VALGRIND
    if (RUNNING_ON_VALGRIND)
        return 1;
#endif
    /* Built without valgrind's headers: its preloads are in LD_PRELOAD. */
    const char *pre = pm_i_getenv("LD_PRELOAD");
    return pre != NULL && strstr(pre, "vgpreload") != NULL;
}

/* The start of the break's mapping, where glibc's main heap starts: field
 * 47 (start_brk) of /proc/self/stat, read without allocating (the program
 * name, field 2, in parentheses, may hold spaces and parentheses itself:
 * the fields are counted from its last ')'); else the break before the
 * set-up's first call of glibc's allocator (pm_i_libc_start); else the
 * break now. Blocks of glibc's main heap lie between it and the current
 * break, in one mapping. Before, it was the break when the probe ran: by
 * then the set-up's first call had grown the heap by some 132 KiB, and the
 * chunks of the program's first blocks, below it, were not judged (a
 * NON_MAIN_ARENA bit set on one: SIGSEGV in glibc's free, no report). */
static uintptr_t heap_start(void)
{
    uintptr_t now = (uintptr_t)sbrk(0);
    if (now == (uintptr_t)-1)
        now = 0;
    char buf[1024];
    size_t len = 0;
    /* (by syscall(2): open and read are cancellation points, and a thread
     * with a cancellation request pending unwound out of the malloc that
     * ran the probe; errno as it was) */
    int saved = errno;
    long fd = syscall(SYS_openat, AT_FDCWD, "/proc/self/stat", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        while (len < sizeof buf - 1) {
            long r = syscall(SYS_read, fd, buf + len, sizeof buf - 1 - len);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                break;
            len += (size_t)r;
        }
        syscall(SYS_close, fd);
    }
    errno = saved;
    buf[len] = '\0';
    char *c = strrchr(buf, ')');
    for (int field = 2; c != NULL && field < 47; field++) /* to the space before field 47 */
        c = strchr(c + 1, ' ');
    uint64_t v;
    if (c != NULL) {
        c++;
        c[strcspn(c, " \n")] = '\0';
        if (pm_i_parse_u64(c, &v) == 0 && v != 0 && v <= UINTPTR_MAX &&
            (now == 0 || v <= now))
            return (uintptr_t)v;
    }
    if (break_before_libc != 0 && (now == 0 || break_before_libc <= now))
        return break_before_libc;
    return now;
}

/* The self-test, once, just before the debug hooks' first request that the
 * C library serves (modes/debug.c, libc_probe; not under any lock of
 * theirs): sets pm_i_libc_chunk_page if it passes. Not at their set-up,
 * which a program's first pm_* call makes: from a signal handler that
 * interrupted glibc's malloc (a program that calls glibc's malloc and the
 * pm_* API), the test's malloc and free corrupted glibc's heap (glibc's
 * abort, "corrupted size vs. prev_size", or SIGSEGV: 5 runs of 40 in
 * pymalloc_debug, whose handler's small block needs nothing of glibc's). */
void pm_i_libc_header_probe(void)
{
    if (atomic_exchange(&pm_i_libc_probed, 1))
        return;
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0 || under_valgrind())
        return;
    pm_i_libc_heap_floor = heap_start();
    void *a = PM_LIBC_MALLOC(24), *b = PM_LIBC_MALLOC(1000);
    int ok = a != NULL && b != NULL && heap_chunk_ok(a, 24) && heap_chunk_ok(b, 1000);
    PM_LIBC_FREE(a);
    PM_LIBC_FREE(b);
    if (ok)
        atomic_store_explicit(&pm_i_libc_chunk_page, (size_t)page, memory_order_release);
}
#else
void pm_i_libc_header_probe(void) {}
void *pm_i_libc_break(void) { return NULL; }
#endif

static void *raw_malloc(void *ctx, size_t n)
{
    (void)ctx;
    return pm_i_libc_malloc(n);
}

static void *raw_calloc(void *ctx, size_t nelem, size_t elsize)
{
    (void)ctx;
    return pm_i_libc_calloc(nelem, elsize);
}

static void *raw_realloc(void *ctx, void *p, size_t n)
{
    (void)ctx;
    return pm_i_libc_realloc(p, n);
}

static void raw_free(void *ctx, void *p)
{
    (void)ctx;
    pm_i_libc_free(p);
}

static void *raw_memalign(void *ctx, size_t alignment, size_t n)
{
    (void)ctx;
    return pm_i_libc_memalign(alignment, n);
}

static size_t raw_usable_size(void *ctx, void *p)
{
    (void)ctx;
    return pm_i_libc_usable_size(p);
}

const pm_i_base pm_i_raw_base = {
    .a = {
        .ctx = NULL,
        .malloc = raw_malloc,
        .calloc = raw_calloc,
        .realloc = raw_realloc,
        .free = raw_free,
    },
    .xctx = NULL,
    .memalign = raw_memalign,
    .usable_size = raw_usable_size,
};
