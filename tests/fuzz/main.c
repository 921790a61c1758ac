/*
 * main.c - standalone driver for the fuzz targets, used when no fuzzing
 * engine is configured (meson option fuzzing_engine=none).
 *
 * Replays every file named on the command line, or every regular file of a
 * named directory, through LLVMFuzzerTestOneInput, plus the empty input.
 * Each input is copied into a buffer of exactly its size so that AddressSanitizer
 * catches reads past the end. Exits 0 when every input ran, 1 when a file
 * could not be read (a crash ends the process on its own).
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Largest corpus file replayed; the seeds are tiny. */
#define FUZZ_MAX_INPUT (1u << 20)

static int run_file(const char *path)
{
    FILE *f = NULL;
    uint8_t *buf = NULL;
    long size;
    int rc = -1;

    if ((f = fopen(path, "rb")) == NULL)
        goto out;
    if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || size > (long)FUZZ_MAX_INPUT ||
        fseek(f, 0, SEEK_SET) != 0)
        goto out;
    /* malloc(0) may return NULL: keep one byte but pass the exact size. */
    if ((buf = malloc(size > 0 ? (size_t)size : 1)) == NULL)
        goto out;
    if (size > 0 && fread(buf, 1, (size_t)size, f) != (size_t)size)
        goto out;
    LLVMFuzzerTestOneInput(buf, (size_t)size);
    rc = 0;
out:
    if (rc != 0)
        fprintf(stderr, "fuzz: cannot read %s: %s\n", path, errno ? strerror(errno) : "too big");
    free(buf);
    if (f != NULL)
        fclose(f);
    return rc;
}

/* Replays path (a file or a directory); returns the inputs run or -1. */
static long run_path(const char *path)
{
    struct stat st;
    struct dirent *de;
    DIR *d;
    long n = 0;

    if (stat(path, &st) != 0) {
        fprintf(stderr, "fuzz: %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode))
        return run_file(path) == 0 ? 1 : -1;
    if ((d = opendir(path)) == NULL) {
        fprintf(stderr, "fuzz: %s: %s\n", path, strerror(errno));
        return -1;
    }
    while ((de = readdir(d)) != NULL) {
        char sub[4096];
        if (de->d_name[0] == '.')
            continue;
        snprintf(sub, sizeof sub, "%s/%s", path, de->d_name);
        if (stat(sub, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (run_file(sub) != 0) {
            n = -1;
            break;
        }
        n++;
    }
    closedir(d);
    return n;
}

int main(int argc, char **argv)
{
    long total = 0;
    uint8_t empty = 0;

    LLVMFuzzerTestOneInput(&empty, 0);
    for (int i = 1; i < argc; i++) {
        long n = run_path(argv[i]);
        if (n < 0)
            return 1;
        total += n;
    }
    printf("%s: %ld inputs replayed\n", argv[0], total);
    return 0;
}
