/*
 * bench_million.c - s2-local with 1,000,000 records: durability and read cost.
 *
 * 1. Start the s2-local executable on a fresh data directory, append N
 *    small records (default 1,000,000; argv[1] overrides) in batches of 1000
 *    over HTTP, with client timestamps one millisecond apart.
 * 2. kill -9 it right after the last acknowledgement, restart it, check the
 *    tail and read every record back over HTTP, comparing byte for byte.
 * 3. Print the cost of reads at several seq_nums and timestamps, over HTTP
 *    and directly on the store, to show that a read deep in the stream
 *    costs the same as one at the start (the index; no scan).
 * Prints figures; exits 1 on any mismatch. Needs S2LOCAL_BIN.
 */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include "s2/wire.h"
#include "store.h"

#define BASIN "bench-basin-1"
#define BATCH 1000

extern char **environ;

static char dir[64];
static CURL *curl;
static uint64_t base_ts;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "bench_million: FAILED: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

/* Record i: its body text (ASCII, 21 bytes) and, every 10th, a header. */
static int body_of(uint64_t i, char *out)
{
    uint32_t h = (uint32_t)(i * 2654435761u);
    return sprintf(out, "rec %07" PRIu64 " %08x", i, h);
}

struct buf {
    char *p;
    size_t len, cap;
};

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *arg)
{
    struct buf *b = arg;
    size_t n = size * nmemb;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 65536;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *np = realloc(b->p, cap);
        if (np == NULL)
            return 0;
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, ptr, n);
    b->len += n;
    b->p[b->len] = 0;
    return n;
}

/* One request on the shared (keep-alive) handle. */
static long http(int port, const char *method, const char *path, const char *body, struct buf *out)
{
    char url[512];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    struct curl_slist *h = NULL;
    h = curl_slist_append(h, "S2-Basin: " BASIN);
    h = curl_slist_append(h, "Content-Type: application/json");
    out->len = 0;
    curl_easy_reset(curl);
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, 60L);
    if (body) {
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    CURLcode rc = curl_easy_perform(curl);
    curl_slist_free_all(h);
    if (rc != CURLE_OK)
        return -1;
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    return status;
}

static pid_t start_server(int *port)
{
    char logpath[128];
    snprintf(logpath, sizeof logpath, "%s/server.log", dir);
    unlink(logpath);
    const char *bin = getenv("S2LOCAL_BIN");
    if (bin == NULL)
        die("S2LOCAL_BIN is not set");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 2, logpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    char datadir[96];
    snprintf(datadir, sizeof datadir, "%s/data", dir);
    char *argv[] = {(char *)bin, "--port", "0", "--data-dir", datadir, NULL};
    pid_t pid;
    if (posix_spawn(&pid, bin, &fa, NULL, argv, environ) != 0)
        die("cannot start %s", bin);
    posix_spawn_file_actions_destroy(&fa);
    for (int i = 0; i < 3000; i++) {
        FILE *f = fopen(logpath, "r");
        char line[512];
        while (f && fgets(line, sizeof line, f)) {
            const char *m = strstr(line, "listening on http://127.0.0.1:");
            if (m) {
                *port = atoi(m + strlen("listening on http://127.0.0.1:"));
                fclose(f);
                return pid;
            }
        }
        if (f)
            fclose(f);
        usleep(10000);
    }
    die("s2-local did not start");
}

static void append_all(int port, uint64_t n)
{
    size_t cap = 64 + BATCH * 128;
    char *body = malloc(cap);
    struct buf out = {0};
    char text[64];
    for (uint64_t from = 0; from < n; from += BATCH) {
        uint64_t k = n - from < BATCH ? n - from : BATCH;
        size_t o =
            (size_t)snprintf(body, cap, "{\"match_seq_num\":%" PRIu64 ",\"records\":[", from);
        for (uint64_t i = from; i < from + k; i++) {
            body_of(i, text);
            o += (size_t)snprintf(body + o, cap - o,
                                  "%s{\"timestamp\":%" PRIu64 ",%s\"body\":\"%s\"}",
                                  i > from ? "," : "", base_ts + i,
                                  i % 10 == 0 ? "\"headers\":[[\"tenth\",\"yes\"]]," : "", text);
        }
        snprintf(body + o, cap - o, "]}");
        long st = http(port, "POST", "/v1/streams/million/records", body, &out);
        if (st != 200)
            die("append at %" PRIu64 ": status %ld %s", from, st, out.p ? out.p : "");
    }
    free(out.p);
    free(body);
}

static uint64_t get_u64(const cJSON *o, const char *k)
{
    uint64_t v;
    if (s2_wire_get_u64(cJSON_GetObjectItemCaseSensitive(o, k), &v) != 0)
        die("no %s", k);
    return v;
}

static void verify_all(int port, uint64_t n)
{
    struct buf out = {0};
    char path[128], text[64];
    uint64_t next = 0;
    while (next < n) {
        snprintf(path, sizeof path, "/v1/streams/million/records?seq_num=%" PRIu64, next);
        long st = http(port, "GET", path, NULL, &out);
        if (st != 200)
            die("read at %" PRIu64 ": status %ld", next, st);
        cJSON *j = NULL;
        if (s2_wire_parse(out.p, out.len, &j) != 0)
            die("read at %" PRIu64 ": not JSON", next);
        const cJSON *rec;
        cJSON_ArrayForEach(rec, cJSON_GetObjectItemCaseSensitive(j, "records"))
        {
            if (get_u64(rec, "seq_num") != next || get_u64(rec, "timestamp") != base_ts + next)
                die("record %" PRIu64 ": wrong seq_num or timestamp", next);
            int len = body_of(next, text);
            const cJSON *b = cJSON_GetObjectItemCaseSensitive(rec, "body");
            if (!cJSON_IsString(b) || strlen(b->valuestring) != (size_t)len ||
                memcmp(b->valuestring, text, (size_t)len) != 0)
                die("record %" PRIu64 ": body differs", next);
            const cJSON *hs = cJSON_GetObjectItemCaseSensitive(rec, "headers");
            if (next % 10 == 0) {
                const cJSON *h = cJSON_GetArrayItem(hs, 0);
                if (cJSON_GetArraySize(hs) != 1 ||
                    strcmp(cJSON_GetArrayItem(h, 0)->valuestring, "tenth") != 0 ||
                    strcmp(cJSON_GetArrayItem(h, 1)->valuestring, "yes") != 0)
                    die("record %" PRIu64 ": headers differ", next);
            } else if (hs != NULL) {
                die("record %" PRIu64 ": unexpected headers", next);
            }
            next++;
        }
        cJSON_Delete(j);
    }
    free(out.p);
}

/* Average microseconds of reps HTTP reads (count=10) at a position. */
static double http_read_us(int port, const char *sel, uint64_t v, int reps)
{
    struct buf out = {0};
    char path[160];
    snprintf(path, sizeof path, "/v1/streams/million/records?%s=%" PRIu64 "&count=10", sel, v);
    double t0 = now_s();
    for (int i = 0; i < reps; i++) {
        if (http(port, "GET", path, NULL, &out) != 200)
            die("read %s", path);
    }
    double us = (now_s() - t0) * 1e6 / reps;
    free(out.p);
    return us;
}

static int count_one(const struct s2l_rec *r, void *arg)
{
    (void)r;
    (*(int *)arg)++;
    return 0;
}

int main(int argc, char **argv)
{
    uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 1000000;
    if (n == 0)
        die("bad record count");
    snprintf(dir, sizeof dir, "/tmp/s2l-bench-XXXXXX");
    if (mkdtemp(dir) == NULL)
        die("mkdtemp");
    curl_global_init(CURL_GLOBAL_ALL);
    curl = curl_easy_init();
    struct timespec rt;
    clock_gettime(CLOCK_REALTIME, &rt);
    base_ts = (uint64_t)rt.tv_sec * 1000 - n - 60000; /* in the past: never capped */

    int port;
    pid_t pid = start_server(&port);
    double t0 = now_s();
    append_all(port, n);
    double t_append = now_s() - t0;
    printf("append: %" PRIu64 " records in batches of %d over HTTP: %.2f s (%.0f records/s)\n", n,
           BATCH, t_append, (double)n / t_append);

    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    printf("kill -9: s2-local killed right after the last acknowledgement (signal %d)\n",
           WIFSIGNALED(status) ? WTERMSIG(status) : 0);

    t0 = now_s();
    pid = start_server(&port);
    struct buf out = {0};
    if (http(port, "GET", "/v1/streams/million/records/tail", NULL, &out) != 200)
        die("check-tail");
    double t_restart = now_s() - t0;
    cJSON *j = NULL;
    if (s2_wire_parse(out.p, out.len, &j) != 0)
        die("tail JSON");
    uint64_t tail = get_u64(cJSON_GetObjectItemCaseSensitive(j, "tail"), "seq_num");
    uint64_t tail_ts = get_u64(cJSON_GetObjectItemCaseSensitive(j, "tail"), "timestamp");
    cJSON_Delete(j);
    free(out.p);
    printf("restart: tail %" PRIu64 " (want %" PRIu64 "), last timestamp %s, up and answering "
           "check-tail in %.3f s\n",
           tail, n, tail_ts == base_ts + n - 1 ? "exact" : "WRONG", t_restart);
    if (tail != n || tail_ts != base_ts + n - 1)
        die("tail after kill -9");

    t0 = now_s();
    verify_all(port, n);
    printf("verify: all %" PRIu64 " records read back byte for byte over HTTP in %.2f s\n", n,
           now_s() - t0);

    printf("read cost over HTTP (average of 200 reads of 10 records, keep-alive):\n");
    uint64_t at[] = {0, n / 4, n / 2, 3 * n / 4, n - 10};
    for (size_t i = 0; i < sizeof at / sizeof at[0]; i++)
        printf("  seq_num=%-8" PRIu64 " %7.1f us    timestamp=start+%-8" PRIu64 " %7.1f us\n",
               at[i], http_read_us(port, "seq_num", at[i], 200), at[i],
               http_read_us(port, "timestamp", base_ts + at[i], 200));
    kill(pid, SIGTERM);
    waitpid(pid, &status, 0);

    /* The same directly on the store (no HTTP): open, then time reads. */
    char datadir[96];
    snprintf(datadir, sizeof datadir, "%s/data", dir);
    struct s2l_store *store;
    t0 = now_s();
    if (s2l_store_open(datadir, S2L_FSYNC_NONE, NULL, NULL, &store) != 0)
        die("store open");
    struct s2l_basin *b;
    struct s2l_stream *st;
    if (s2l_store_basin(store, BASIN, &b) != 0 ||
        s2l_basin_stream(b, (const uint8_t *)"million", 7, &st) != 0)
        die("store stream");
    printf("store: open + recover the %" PRIu64 "-record stream: %.1f ms\n", n,
           (now_s() - t0) * 1e3);
    printf("read cost on the store (average of 20000 one-record reads / timestamp seeks):\n");
    for (size_t i = 0; i < sizeof at / sizeof at[0]; i++) {
        int cnt = 0;
        double s0 = now_s();
        for (int k = 0; k < 20000; k++)
            s2l_stream_read(st, at[i], 1, count_one, &cnt);
        double read_us = (now_s() - s0) * 1e6 / 20000;
        uint64_t seq = 0;
        s0 = now_s();
        for (int k = 0; k < 20000; k++)
            s2l_stream_seek_timestamp(st, base_ts + at[i], &seq);
        double seek_us = (now_s() - s0) * 1e6 / 20000;
        if (cnt != 20000 || seq != at[i])
            die("store read at %" PRIu64, at[i]);
        printf("  seq_num=%-8" PRIu64 " read %6.2f us    seek timestamp -> seq %-8" PRIu64
               " %6.2f us\n",
               at[i], read_us, seq, seek_us);
    }
    s2l_store_free(store);
    curl_easy_cleanup(curl);
    curl_global_cleanup();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "bench_million: could not remove %s\n", dir);
    printf("bench_million: OK\n");
    return 0;
}
