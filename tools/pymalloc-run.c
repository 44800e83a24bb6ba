/*
 * tools/pymalloc-run.c - run a program with every malloc going through pymalloc.
 *
 *   pymalloc-run [--mode M] [--stats] [--verbose] [--] program [args...]
 *
 * Sets PYMALLOC_MODE (and PYMALLOC_STATS, PYMALLOC_VERBOSE), puts
 * libpymalloc.so first in LD_PRELOAD and execs the program, so the exit
 * status (or the signal) is the program's own. The mode is checked against
 * the library's own list (pm_mode_names) before anything runs.
 *
 * Which library: $PYMALLOC_LIBRARY if set; else, when this binary sits in
 * the build tree, the build tree's libpymalloc.so; else the installed one,
 * found relative to this binary (bindir/../lib), so an installation can move.
 *
 * Exit status of the wrapper itself: 1 when the output of --help,
 * --list-modes or --version could not be written, 2 for a usage error, a bad mode or a
 * library that cannot be preloaded (missing, not an ELF shared object, one
 * without the malloc override such as libpymalloc_api.so, a path
 * LD_PRELOAD would split) or a program ld.so would run without it
 * (statically linked, of another ELF class or machine, set-user-ID,
 * set-group-ID or with file capabilities), 126 when the program cannot be
 * executed, 127 when it is not found (as env(1)), or when its interpreter
 * (a script's "#!" line, an ELF program's dynamic loader) is not: the
 * message then names the interpreter, not the program.
 */
#include <pymalloc.h>

#include "pm_internal.h" /* pm_i_buf, pm_i_buf_shown */

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <link.h> /* ElfW */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

extern char **environ;

static const char *prog = "pymalloc-run";

static void usage(FILE *f)
{
    fprintf(f,
            "usage: %s [--mode M] [--stats] [--verbose] [--] program [args...]\n"
            "       %s --list-modes | --help | --version\n"
            "\n"
            "Run program with libpymalloc.so preloaded: its malloc, free, calloc,\n"
            "realloc, posix_memalign, ... (and C++ new/delete) go through pymalloc.\n"
            "\n"
            "  -m, --mode M     the mode (sets PYMALLOC_MODE; also --mode=M); see --list-modes\n"
            "  -s, --stats      print the pool statistics at exit (sets\n"
            "                   PYMALLOC_STATS=1; zeros in the modes without pools)\n"
            "  -v, --verbose    say what is run, and have the library print its\n"
            "                   version, mode and options at start (PYMALLOC_VERBOSE=1)\n"
            "  --list-modes     print the modes the library accepts, one a line\n"
            "  -h, --help       this text\n"
            "  --version        the library version\n"
            "\n"
            "The exit status is the program's; 2 means a usage error, a bad mode, a\n"
            "library that cannot be preloaded or a program it cannot be preloaded into\n"
            "(statically linked, of another ELF class, set-user-ID, ...), 126 a program\n"
            "that cannot be run, 127 one that is not found; 1 a failed write of --help,\n"
            "--list-modes or --version.\n"
            "PYMALLOC_LIBRARY=/path/libpymalloc.so overrides the library used.\n",
            prog, prog);
}

__attribute__((noreturn)) static void die(int status, const char *fmt, const char *arg)
{
    fprintf(stderr, "%s: ", prog);
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    exit(status);
}

static int mode_is_valid(const char *m)
{
    for (const char *const *n = pm_mode_names(); *n != NULL; n++)
        if (strcmp(*n, m) == 0)
            return 1;
    return 0;
}

/* The bad value shown as the library shows one (pm_i_buf_shown): control
 * bytes escaped, cut after 64 bytes, so the message stays one line. */
__attribute__((noreturn)) static void bad_mode(const char *m)
{
    char storage[1024];
    pm_i_buf b;
    pm_i_buf_init(&b, storage, sizeof storage, 2);
    pm_i_buf_str(&b, prog);
    pm_i_buf_str(&b, ": unknown mode '");
    pm_i_buf_shown(&b, m, 64);
    pm_i_buf_str(&b, "' (valid:");
    for (const char *const *n = pm_mode_names(); *n != NULL; n++) {
        pm_i_buf_str(&b, n == pm_mode_names() ? " " : ", ");
        pm_i_buf_str(&b, *n);
    }
    pm_i_buf_str(&b, ")\n");
    pm_i_buf_flush(&b);
    exit(2);
}

/* Whether the directories a (this binary's, resolved) and b (the build
 * tree's, as CMake was given it) are one: the same path, or the same
 * directory reached another way. /proc/self/exe names the binary by its
 * real path, while the build tree's path may go through a symbolic link (a
 * build configured as /link/build where /link points elsewhere): compared
 * as strings alone, a wrapper run from its own build tree took itself for
 * an installed one and looked for bindir/../lib there. */
static int same_dir(const char *a, const char *b)
{
    if (strcmp(a, b) == 0)
        return 1;
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && S_ISDIR(sa.st_mode) &&
           sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* The library to preload, in static storage. */
static const char *find_library(void)
{
    const char *env = getenv("PYMALLOC_LIBRARY");
    if (env != NULL && *env != '\0') {
        /* Made absolute: ld.so looks a bare name up in the library path,
         * not here, and a program that changes directory before starting
         * another would lose a relative one (and run without pymalloc). */
        static char abs[PATH_MAX];
        return env[0] == '/' || realpath(env, abs) == NULL ? env : abs;
    }
    static char self[PATH_MAX], lib[PATH_MAX + 64];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        return PM_RUN_BUILD_LIB;
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (slash != NULL)
        *slash = '\0';
    if (same_dir(self, PM_RUN_BUILD_DIR))
        return PM_RUN_BUILD_LIB;
    snprintf(lib, sizeof lib, "%s/%s", self, PM_RUN_INSTALL_LIB);
    static char resolved[PATH_MAX]; /* bin/../lib/x -> lib/x, for the reader */
    return realpath(lib, resolved) != NULL ? resolved : lib;
}

/* Whether path is a shared object ld.so could preload: a regular file with
 * an ELF header of type ET_DYN. ld.so skips anything else (a directory, a
 * static archive) with a message of its own ("cannot be preloaded ...:
 * ignored") and runs the program without pymalloc, which must not pass for
 * a run under it. */
static int read_ehdr(const char *path, ElfW(Ehdr) *eh);

static int is_shared_object(const char *path)
{
    struct stat st;
    ElfW(Ehdr) eh; /* (e_type follows e_ident in either class) */
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && read_ehdr(path, &eh) &&
           eh.e_type == ET_DYN;
}

/* Which of `names` (at most 32) the shared object at path defines in its
 * dynamic symbol table, as a bit mask (bit i: names[i]), the way ld.so
 * would bind them from a preload: global or weak, default or protected
 * visibility, not undefined. The table is read from the file (its
 * SHT_DYNSYM section), never by loading the library, whose constructor
 * would run here; no tool (nm, readelf) is needed. An object of another
 * ELF class or byte order than this program's, or one whose section
 * headers were removed, defines none: ld.so could not preload the first,
 * and the second cannot be told from a library without the override. */
static unsigned defined_symbols(const char *path, const char *const *names, unsigned count)
{
    unsigned found = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    struct stat st;
    if (fstat(fd, &st) != 0 || (uintmax_t)st.st_size < sizeof(ElfW(Ehdr)) ||
        (uintmax_t)st.st_size > SIZE_MAX) {
        close(fd);
        return 0;
    }
    size_t size = (size_t)st.st_size;
    const unsigned char *f = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (f == MAP_FAILED)
        return 0;
    const ElfW(Ehdr) *eh = (const void *)f;
    const unsigned char host_class = sizeof(void *) == 8 ? ELFCLASS64 : ELFCLASS32;
    const unsigned char host_data =
        __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ ? ELFDATA2LSB : ELFDATA2MSB;
    if (eh->e_ident[EI_CLASS] != host_class || eh->e_ident[EI_DATA] != host_data ||
        eh->e_shentsize != sizeof(ElfW(Shdr)) || eh->e_shoff > size ||
        (size - eh->e_shoff) / sizeof(ElfW(Shdr)) < eh->e_shnum)
        goto out;
    const ElfW(Shdr) *sh = (const void *)(f + eh->e_shoff);
    for (unsigned i = 0; i < eh->e_shnum; i++) {
        if (sh[i].sh_type != SHT_DYNSYM || sh[i].sh_entsize != sizeof(ElfW(Sym)) ||
            sh[i].sh_link >= eh->e_shnum || sh[i].sh_offset > size ||
            size - sh[i].sh_offset < sh[i].sh_size)
            continue;
        const ElfW(Shdr) *strs = &sh[sh[i].sh_link];
        if (strs->sh_offset > size || size - strs->sh_offset < strs->sh_size)
            continue;
        const char *str = (const char *)(f + strs->sh_offset);
        const ElfW(Sym) *sym = (const void *)(f + sh[i].sh_offset);
        for (size_t k = 0; k < sh[i].sh_size / sizeof(ElfW(Sym)); k++) {
            /* (the ELF64_ST_* macros are the ELF32_ST_* ones) */
            unsigned bind = ELF64_ST_BIND(sym[k].st_info);
            unsigned vis = ELF64_ST_VISIBILITY(sym[k].st_other);
            if (sym[k].st_shndx == SHN_UNDEF || sym[k].st_name >= strs->sh_size ||
                (bind != STB_GLOBAL && bind != STB_WEAK) ||
                (vis != STV_DEFAULT && vis != STV_PROTECTED))
                continue;
            const char *name = str + sym[k].st_name;
            size_t room = strs->sh_size - sym[k].st_name;
            for (unsigned n = 0; n < count; n++) {
                size_t len = strlen(names[n]);
                if (len < room && memcmp(name, names[n], len + 1) == 0)
                    found |= 1u << n;
            }
        }
    }
out:
    munmap((void *)f, size);
    return found;
}

/* The file execvp would run for name: name itself when it has a slash, else
 * the first regular file of that name in $PATH that may be executed
 * (glibc's default search path when PATH is unset; an empty entry is the
 * current directory). NULL when there is none: execvp then fails and says
 * why. In static storage. */
static const char *program_path(const char *name)
{
    if (strchr(name, '/') != NULL)
        return name;
    const char *path = getenv("PATH");
    if (path == NULL)
        path = "/bin:/usr/bin";
    static char buf[PATH_MAX];
    size_t name_len = strlen(name);
    for (const char *p = path;;) {
        const char *colon = strchr(p, ':');
        size_t len = colon != NULL ? (size_t)(colon - p) : strlen(p);
        struct stat st;
        if (len + 1 + name_len < sizeof buf) {
            if (len == 0) {
                memcpy(buf, name, name_len + 1);
            } else {
                memcpy(buf, p, len);
                buf[len] = '/';
                memcpy(buf + len + 1, name, name_len + 1);
            }
            if (stat(buf, &st) == 0 && S_ISREG(st.st_mode) && access(buf, X_OK) == 0)
                return buf;
        }
        if (colon == NULL)
            return NULL;
        p = colon + 1;
    }
}

/* The ELF header at the start of path, in *eh (of this program's class;
 * only e_ident is meaningful when the class differs): 1, or 0 when path
 * cannot be read or is not ELF. */
static int read_ehdr(const char *path, ElfW(Ehdr) *eh)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return 0;
    memset(eh, 0, sizeof *eh);
    ssize_t n = pread(fd, eh, sizeof *eh, 0);
    close(fd);
    return n >= (ssize_t)(EI_NIDENT + sizeof eh->e_type) &&
           memcmp(eh->e_ident, ELFMAG, SELFMAG) == 0;
}

/* Whether path is the dynamic loader this wrapper runs under (which may be
 * run as a program: "ld.so ./prog" honours LD_PRELOAD). Its name is this
 * program's own PT_INTERP. */
static int is_own_loader(const struct stat *st)
{
    const ElfW(Phdr) *ph = (const ElfW(Phdr) *)getauxval(AT_PHDR);
    size_t n = (size_t)getauxval(AT_PHNUM);
    if (ph == NULL)
        return 0;
    uintptr_t bias = 0;
    for (size_t k = 0; k < n; k++)
        if (ph[k].p_type == PT_PHDR)
            bias = (uintptr_t)ph - (uintptr_t)ph[k].p_vaddr;
    for (size_t k = 0; k < n; k++) {
        struct stat ld;
        if (ph[k].p_type == PT_INTERP &&
            stat((const char *)(bias + (uintptr_t)ph[k].p_vaddr), &ld) == 0)
            return ld.st_dev == st->st_dev && ld.st_ino == st->st_ino;
    }
    return 0;
}

static const char *interpreter_of(const char *path);

/* The scripts deep Linux runs a program (fs/exec.c: an interpreter that is
 * a script in turn, 5 times; a sixth level fails with ELOOP). */
#define SCRIPT_DEPTH 5

/* Why ld.so would run the program at path without the library at lib (an
 * ELF shared object of this program's class), or NULL when it would preload
 * it or we cannot tell (a file we may run but not read; what a script's
 * interpreter runs in turn, such as the program "#!/usr/bin/env python3"
 * names). A script is looked at through its "#!" interpreter (an absolute
 * path; up to 5 scripts deep, as Linux runs them: a sixth is ELOOP; before
 * 2026-12-06, 4: a fifth script's static interpreter ran without pymalloc,
 * silently); a statically linked one
 * (busybox) ran the script without pymalloc. ld.so skips a library of another ELF class or
 * machine with a message and runs the program anyway; it never runs for a
 * statically linked program; and in secure-execution mode (a set-user-ID or
 * set-group-ID program run by another user or group, or one with file
 * capabilities run by a user other than root) it ignores LD_PRELOAD paths with a slash. Each time the run
 * would pass for one under pymalloc without a single check. */
static const char *unreachable_at(const char *path, const char *lib, int depth);

static const char *unreachable(const char *path, const char *lib)
{
    return unreachable_at(path, lib, 0);
}

static const char *unreachable_at(const char *path, const char *lib, int depth)
{
    static char why[PATH_MAX + 256];
    ElfW(Ehdr) eh, lh;
    struct stat st;
    /* (a regular file only: opening a FIFO would wait for a writer) */
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return NULL;
    if (!read_ehdr(path, &eh)) {
        /* A script: the kernel runs its interpreter (set-user-ID bits on
         * a script are ignored), which must be one ld.so preloads into. */
        const char *interp = interpreter_of(path);
        if (interp == NULL || interp[0] != '/' || depth >= SCRIPT_DEPTH)
            return NULL;
        char name[PATH_MAX];
        snprintf(name, sizeof name, "%s", interp);
        const char *r = unreachable_at(name, lib, depth + 1);
        if (r == NULL)
            return NULL;
        char reason[sizeof why];
        snprintf(reason, sizeof reason, "%s", r);
        /* (cut if it must be: the message stays one line) */
        int n = snprintf(why, sizeof why, "it is a script run by %s, and %s", name, reason);
        return n > 0 ? why : NULL;
    }
    if (!read_ehdr(lib, &lh))
        return NULL;
    if (eh.e_ident[EI_CLASS] != lh.e_ident[EI_CLASS]) {
        int bits = eh.e_ident[EI_CLASS] == ELFCLASS32 ? 32 : eh.e_ident[EI_CLASS] == ELFCLASS64 ? 64 : 0;
        snprintf(why, sizeof why, "it is a %s program and the library a %d-bit one",
                 bits == 32 ? "32-bit" : bits == 64 ? "64-bit" : "non-32/64-bit ELF",
                 (int)sizeof(void *) * 8);
        return why;
    }
    if (eh.e_ident[EI_DATA] != lh.e_ident[EI_DATA] || eh.e_machine != lh.e_machine) {
        snprintf(why, sizeof why, "it is built for another machine (ELF machine %u, the library's %u)",
                 (unsigned)eh.e_machine, (unsigned)lh.e_machine);
        return why;
    }
    if (eh.e_type == ET_EXEC || eh.e_type == ET_DYN) {
        int interp = 0, ok = 0;
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd >= 0 && eh.e_phentsize == sizeof(ElfW(Phdr)) && eh.e_phnum < 4096) {
            ok = 1;
            for (unsigned k = 0; k < eh.e_phnum; k++) {
                ElfW(Phdr) ph;
                if (pread(fd, &ph, sizeof ph, (off_t)(eh.e_phoff + k * sizeof ph)) !=
                    (ssize_t)sizeof ph) {
                    ok = 0;
                    break;
                }
                interp |= ph.p_type == PT_INTERP;
            }
        }
        if (fd >= 0)
            close(fd);
        /* (ET_DYN without PT_INTERP: static-pie, or a loader run as a
         * program, or a library, which the kernel would not run) */
        if (ok && !interp && !is_own_loader(&st))
            return "it is statically linked (ld.so does not run for it)";
    }
    struct statvfs fs;
    int suid_honoured = statvfs(path, &fs) != 0 || !(fs.f_flag & ST_NOSUID);
    if (suid_honoured && (st.st_mode & S_ISUID) && st.st_uid != getuid())
        return "it is set-user-ID: ld.so ignores LD_PRELOAD in it";
    if (suid_honoured && (st.st_mode & S_ISGID) && (st.st_mode & S_IXGRP) && st.st_gid != getgid())
        return "it is set-group-ID: ld.so ignores LD_PRELOAD in it";
    /* (file capabilities make a secure execution for users other than root,
     * whose own capabilities they do not add to) */
    if (suid_honoured && getuid() != 0 && getxattr(path, "security.capability", NULL, 0) >= 0)
        return "it has file capabilities: ld.so ignores LD_PRELOAD in it";
    return NULL;
}

/* The status of --help, --list-modes and --version: 0 if their output was
 * written, else 1 after a line on stderr (a full disk, a closed stdout: a
 * script that reads the modes must not take an empty list for one). */
static int output_status(void)
{
    if (fflush(stdout) == 0 && !ferror(stdout))
        return 0;
    int err = errno;
    fprintf(stderr, "%s: write error: %s\n", prog, strerror(err != 0 ? err : EIO));
    return 1;
}

/* The interpreter the kernel looks for to run the file at path: a script's
 * (the "#!" line's first word) or an ELF program's dynamic loader
 * (PT_INTERP), in static storage; NULL when path has none or cannot be
 * read. When it is missing, exec fails with ENOENT, the error of a program
 * that is not there: the message must not say so of a file that is. */
static const char *interpreter_of(const char *path)
{
    static char name[PATH_MAX];
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return NULL;
    char head[256];
    ssize_t n = pread(fd, head, sizeof head - 1, 0);
    const char *found = NULL;
    if (n >= 2 && head[0] == '#' && head[1] == '!') {
        head[n] = '\0';
        char *s = head + 2;
        s += strspn(s, " \t");
        /* Where the kernel ends the name (binfmt_script): a space, a tab,
         * the line's end; a '\r' is part of it ("#!/bin/sh\r\n", a DOS
         * line end: before 2026-12-06 it was cut there, /bin/sh was found,
         * and the message said the script itself was not there). */
        size_t len = strcspn(s, " \t\n");
        if (len > 0 && len < sizeof name) {
            memcpy(name, s, len);
            name[len] = '\0';
            found = name;
        }
    } else if (n >= (ssize_t)sizeof(ElfW(Ehdr)) && memcmp(head, ELFMAG, SELFMAG) == 0 &&
               (unsigned char)head[EI_CLASS] == (sizeof(void *) == 8 ? ELFCLASS64 : ELFCLASS32)) {
        ElfW(Ehdr) eh;
        memcpy(&eh, head, sizeof eh);
        for (unsigned k = 0; eh.e_phentsize == sizeof(ElfW(Phdr)) && k < eh.e_phnum && k < 4096;
             k++) {
            ElfW(Phdr) ph;
            if (pread(fd, &ph, sizeof ph, (off_t)(eh.e_phoff + k * sizeof ph)) != (ssize_t)sizeof ph)
                break;
            if (ph.p_type != PT_INTERP)
                continue;
            if (ph.p_filesz > 0 && ph.p_filesz < sizeof name &&
                pread(fd, name, ph.p_filesz, (off_t)ph.p_offset) == (ssize_t)ph.p_filesz) {
                name[ph.p_filesz] = '\0';
                found = name;
            }
            break;
        }
    }
    close(fd);
    return found;
}

/* When path is the dynamic loader this wrapper runs under, run as a program
 * ("ld.so [OPTIONS] PROGRAM [ARGS]"), the program it runs (its first
 * argument that is not an option of glibc's ld.so, nor the value of one),
 * if that names a file by a path (ld.so looks a bare name up as a library);
 * else NULL. Before 2026-12-06 a statically linked program run that way ran
 * without pymalloc, silently. */
static const char *loader_program(const char *path, char *const *args)
{
    struct stat st;
    if (stat(path, &st) != 0 || !is_own_loader(&st))
        return NULL;
    static const char *const with_value[] = {
        "--library-path", "--inhibit-rpath", "--audit", "--preload", "--argv0",
        "--glibc-hwcaps-prepend", "--glibc-hwcaps-mask"};
    for (; *args != NULL; args++) {
        const char *a = *args;
        if (strcmp(a, "--") == 0)
            return args[1] != NULL && strchr(args[1], '/') != NULL ? args[1] : NULL;
        if (strncmp(a, "--", 2) != 0)
            return strchr(a, '/') != NULL ? a : NULL;
        for (size_t k = 0; k < sizeof with_value / sizeof *with_value; k++)
            if (strcmp(a, with_value[k]) == 0 && args[1] != NULL) {
                args++;
                break;
            }
    }
    return NULL;
}

/* exec failed with ENOENT for a file that is there: the interpreter the
 * kernel did not find, as "its interpreter A: its interpreter B" (a script
 * run by a script whose own interpreter is missing), names shown with
 * their control bytes escaped as the library shows a bad value
 * (pm_i_buf_shown: "/bin/sh\x0d"); NULL if none is missing (then the error is
 * the file's own). */
static int missing_has_cr; /* the missing one's name holds a '\r' */
static const char *missing_interpreter(const char *path)
{
    static char chain[2048];
    char at[PATH_MAX];
    pm_i_buf b;
    pm_i_buf_init(&b, chain, sizeof chain - 1, -1); /* (cut if it must be) */
    snprintf(at, sizeof at, "%s", path);
    for (int depth = 0; depth < SCRIPT_DEPTH; depth++) {
        const char *interp = interpreter_of(at);
        if (interp == NULL)
            return NULL;
        pm_i_buf_str(&b, depth == 0 ? "its interpreter " : ": its interpreter ");
        pm_i_buf_shown(&b, interp, PATH_MAX);
        chain[b.len] = '\0';
        if (access(interp, F_OK) != 0) {
            missing_has_cr = strchr(interp, '\r') != NULL;
            return chain;
        }
        snprintf(at, sizeof at, "%s", interp);
    }
    return NULL;
}

/* The LD_PRELOAD that ld.so would use: the last entry of that name in the
 * environment (glibc's ld.so reads them all, each replacing the one
 * before), where getenv gives the first. An environment with two of them
 * (one a program built by hand) is rare; before 2026-12-06 the wrapper
 * replaced the first, ld.so took the second, and the program ran without
 * pymalloc, silently. */
static const char *loader_preload(void)
{
    const char *found = NULL;
    for (char **e = environ; e != NULL && *e != NULL; e++)
        if (strncmp(*e, "LD_PRELOAD=", 11) == 0)
            found = *e + 11;
    return found;
}

static void set(const char *name, const char *value)
{
    if (setenv(name, value, 1) != 0)
        die(2, "cannot set %s", name);
}

int main(int argc, char **argv)
{
    const char *mode = NULL;
    int stats = 0, verbose = 0, i = 1;

    for (; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        if (a[0] != '-' || a[1] == '\0')
            break; /* the program */
        if (strcmp(a, "-m") == 0 || strcmp(a, "--mode") == 0) {
            if (++i >= argc)
                die(2, "%s needs a mode name (see --list-modes)", a);
            mode = argv[i];
        } else if (strncmp(a, "--mode=", 7) == 0) {
            mode = a + 7;
        } else if (strcmp(a, "-s") == 0 || strcmp(a, "--stats") == 0) {
            stats = 1;
        } else if (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0) {
            verbose = 1;
        } else if (strcmp(a, "--list-modes") == 0) {
            for (const char *const *n = pm_mode_names(); *n != NULL; n++)
                puts(*n);
            return output_status();
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return output_status();
        } else if (strcmp(a, "--version") == 0) {
            printf("pymalloc-run %s\n", pm_version());
            return output_status();
        } else {
            fprintf(stderr, "%s: unknown option '%s'\n", prog, a);
            usage(stderr);
            return 2;
        }
    }
    if (i >= argc) {
        fprintf(stderr, "%s: no program given\n", prog);
        usage(stderr);
        return 2;
    }

    /* The mode: --mode, else an inherited PYMALLOC_MODE; checked either way
     * (unset or empty means "default", as in the library). */
    if (mode == NULL)
        mode = getenv("PYMALLOC_MODE");
    if (mode != NULL && *mode != '\0' && !mode_is_valid(mode))
        bad_mode(mode);

    const char *lib = find_library();
    if (access(lib, R_OK) != 0)
        die(2, "cannot read the library %s (build it, or set PYMALLOC_LIBRARY)", lib);
    if (!is_shared_object(lib))
        die(2, "cannot preload %s: not an ELF shared library (set PYMALLOC_LIBRARY to libpymalloc.so)",
            lib);
    /* ld.so preloads any shared object: one without the override (the
     * API-only libpymalloc_api.so, another allocator) would leave the
     * program's malloc to someone else, and the run would pass for one under
     * pymalloc. The override defines malloc and the pm_* API both. */
    static const char *const needed[] = {"malloc", "pm_version"};
    unsigned defined = defined_symbols(lib, needed, 2);
    if (!(defined & 1u))
        die(2, "cannot preload %s: it does not export malloc, so the program would run "
               "without pymalloc (libpymalloc_api.so is the pm_* API only; set "
               "PYMALLOC_LIBRARY to libpymalloc.so)",
            lib);
    if (!(defined & 2u))
        die(2, "cannot preload %s: it exports malloc but not pm_version: not pymalloc's "
               "library (set PYMALLOC_LIBRARY to libpymalloc.so)",
            lib);
    if (strpbrk(lib, " :") != NULL)
        die(2, "cannot preload %s: LD_PRELOAD splits paths at spaces and colons", lib);
    const char *path = program_path(argv[i]);
    const char *why = path != NULL ? unreachable(path, lib) : NULL;
    /* The dynamic loader run as a program: the program it runs. */
    const char *ran = why == NULL && path != NULL ? loader_program(path, argv + i + 1) : NULL;
    if (ran != NULL && (why = unreachable(ran, lib)) != NULL) {
        fprintf(stderr, "%s: cannot run %s under pymalloc: it is run by the dynamic loader, and "
                        "%s, so it would run without pymalloc\n",
                prog, ran, why);
        return 2;
    }
    if (why != NULL) {
        fprintf(stderr, "%s: cannot run %s under pymalloc: %s, so it would run without pymalloc\n",
                prog, path, why);
        return 2;
    }

    /* Ours first: the first definition of malloc in the search order wins.
     * The inherited list is kept whole, however long (in a buffer of a fixed
     * size it was cut, and ld.so then skipped the library whose path was cut
     * and every one after it). */
    const char *old = loader_preload();
    if (old == NULL)
        old = "";
    size_t preload_len = strlen(lib) + 1 + strlen(old) + 1;
    char *preload = malloc(preload_len);
    if (preload == NULL)
        die(2, "cannot set %s", "LD_PRELOAD");
    snprintf(preload, preload_len, *old != '\0' ? "%s:%s" : "%s", lib, old);
    unsetenv("LD_PRELOAD"); /* every entry of it (see loader_preload) */
    set("LD_PRELOAD", preload);
    if (mode != NULL)
        set("PYMALLOC_MODE", mode);
    if (stats)
        set("PYMALLOC_STATS", "1");
    if (verbose) {
        set("PYMALLOC_VERBOSE", "1");
        /* The environment as the program gets it: an unset or empty
         * PYMALLOC_MODE is said so (the library then runs its default). */
        if (mode != NULL && *mode != '\0')
            fprintf(stderr, "%s: LD_PRELOAD=%s PYMALLOC_MODE=%s", prog, preload, mode);
        else
            fprintf(stderr, "%s: LD_PRELOAD=%s (PYMALLOC_MODE %s: mode default)", prog, preload,
                    mode == NULL ? "unset" : "empty");
        for (int k = i; k < argc; k++)
            fprintf(stderr, " %s", argv[k]);
        fputc('\n', stderr);
    }

    fflush(NULL);
    execvp(argv[i], argv + i);
    int err = errno;
    /* ENOENT for a file that is there: its interpreter (a script's "#!"
     * line, an ELF program's dynamic loader) is not (before, the message
     * said the program itself was not found). */
    const char *chain = err == ENOENT && path != NULL ? missing_interpreter(path) : NULL;
    if (chain != NULL)
        fprintf(stderr, "%s: cannot run '%s': %s: %s%s\n", prog, argv[i], chain, strerror(err),
                missing_has_cr ? " (a \"#!\" line that ends with \\x0d\\n: a DOS line end)" : "");
    else
        fprintf(stderr, "%s: cannot run '%s': %s\n", prog, argv[i],
                err == ENOENT && strchr(argv[i], '/') == NULL ? "command not found"
                                                              : strerror(err));
    return err == ENOENT ? 127 : 126;
}
