/* Shared by the libFuzzer harnesses (tests/fuzz/fuzz_*.c): each parser of ditrt that reads a
 * file from a user gets its bytes through a file in a private temp folder, as it would in
 * use. The same harnesses run without libFuzzer through replay.c (`make test` replays the
 * regression corpus tests/fuzz/corpus/<target>/ that way). */
#ifndef DT_FUZZ_UTIL_H
#define DT_FUZZ_UTIL_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static char fz_dir[512];

static inline void fz_cleanup(void)
{
    if (!fz_dir[0]) return;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fz_dir);
    if (system(cmd) != 0) { /* a stale temp folder is harmless */ }
}

/* The private temp folder (created on first use, removed at exit). */
static inline const char *fz_folder(void)
{
    if (!fz_dir[0]) {
        const char *t = getenv("TMPDIR");
        snprintf(fz_dir, sizeof fz_dir, "%s/ditrt-fuzz-XXXXXX", t && *t ? t : "/tmp");
        if (!mkdtemp(fz_dir)) { perror("mkdtemp"); abort(); }
        atexit(fz_cleanup);
    }
    return fz_dir;
}

/* <folder>/name as a path (a static buffer per slot: up to 4 live at once). */
static inline const char *fz_path(const char *name)
{
    static char buf[4][700];
    static int slot;
    char *p = buf[slot++ & 3];
    snprintf(p, sizeof buf[0], "%s/%s", fz_folder(), name);
    return p;
}

/* Writes data to <folder>/name and returns its path. */
static inline const char *fz_write(const char *name, const void *data, size_t n)
{
    const char *p = fz_path(name);
    FILE *f = fopen(p, "wb");
    if (!f || (n && fwrite(data, 1, n, f) != n) || fclose(f) != 0) { perror(p); abort(); }
    return p;
}

/* Sets an environment variable unless the user set it (bounds for the decoders under ASan). */
static inline void fz_default_env(const char *name, const char *value)
{
    if (!getenv(name)) setenv(name, value, 1);
}

#endif
