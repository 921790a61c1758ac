/* test_store.c - s2-local's storage: append/read, timestamps, recovery. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include "store.h"

#define BASIN "test-basin-1"

static char tmpdir[64];

static void mk_tmpdir(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/s2l-store-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}

static void rm_tmpdir(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    cr_expect(eq(int, system(cmd), 0));
}

TestSuite(store, .init = mk_tmpdir, .fini = rm_tmpdir, .timeout = 60);

static struct s2l_store *open_store(const char *dir)
{
    struct s2l_store *s = NULL;
    cr_assert(eq(int, s2l_store_open(dir, S2L_FSYNC_NONE, NULL, NULL, &s), 0));
    return s;
}

static struct s2l_stream *get_stream(struct s2l_store *s, const char *name)
{
    struct s2l_basin *b;
    enum s2l_provision res;
    cr_assert(eq(int, s2l_store_basin_ensure(s, BASIN, NULL, &res, &b), 0));
    struct s2l_stream *st;
    cr_assert(
        eq(int,
           s2l_basin_stream_ensure(b, (const uint8_t *)name, strlen(name), NULL, false, &res, &st),
           0));
    return st;
}

/* Record i: body "rec-<i>", a header ("k", "<i>") on odd i, timestamp ts. */
static void make_rec(uint64_t i, uint64_t ts, char *body, char *val, struct s2l_hdr *h,
                     struct s2l_rec *r)
{
    sprintf(body, "rec-%" PRIu64, i);
    sprintf(val, "%" PRIu64, i);
    *h = (struct s2l_hdr){(const uint8_t *)"k", 1, (const uint8_t *)val, strlen(val)};
    *r = (struct s2l_rec){0, ts, (i % 2) ? 1 : 0, h, (const uint8_t *)body, strlen(body)};
}

/* Append n records (in batches of batch) numbered from the tail, with
 * timestamp 1000 + 10 * seq. */
static void append_n(struct s2l_stream *st, uint64_t n, size_t batch)
{
    uint64_t next, ts;
    s2l_stream_tail(st, &next, &ts);
    char bodies[64][32], vals[64][32];
    struct s2l_hdr hs[64];
    struct s2l_rec rs[64];
    cr_assert(le(sz, batch, 64));
    for (uint64_t done = 0; done < n;) {
        size_t k = n - done < batch ? (size_t)(n - done) : batch;
        for (size_t j = 0; j < k; j++) {
            uint64_t i = next + done + j;
            make_rec(i, 1000 + 10 * i, bodies[j], vals[j], &hs[j], &rs[j]);
        }
        uint64_t first = UINT64_MAX;
        cr_assert(eq(int, s2l_stream_append(st, rs, k, &first), 0));
        cr_assert(eq(u64, first, next + done));
        done += k;
    }
}

struct check {
    uint64_t expect; /* next seq_num expected */
    uint64_t seen;
};

static int check_rec(const struct s2l_rec *r, void *arg)
{
    struct check *c = arg;
    char body[32], val[32];
    sprintf(body, "rec-%" PRIu64, c->expect);
    sprintf(val, "%" PRIu64, c->expect);
    cr_assert(eq(u64, r->seq_num, c->expect));
    cr_assert(eq(u64, r->timestamp, 1000 + 10 * c->expect));
    cr_assert(eq(sz, r->body_len, strlen(body)));
    cr_assert(eq(int, memcmp(r->body, body, r->body_len), 0));
    cr_assert(eq(sz, r->nheaders, (c->expect % 2) ? 1 : 0));
    if (r->nheaders == 1) {
        cr_assert(eq(sz, r->headers[0].name_len, 1));
        cr_assert(eq(int, r->headers[0].name[0], 'k'));
        cr_assert(eq(sz, r->headers[0].value_len, strlen(val)));
        cr_assert(eq(int, memcmp(r->headers[0].value, val, strlen(val)), 0));
    }
    c->expect++;
    c->seen++;
    return 0;
}

static void check_range(struct s2l_stream *st, uint64_t start, size_t max, uint64_t want)
{
    struct check c = {start, 0};
    cr_assert(eq(int, s2l_stream_read(st, start, max, check_rec, &c), 0));
    cr_assert(eq(u64, c.seen, want), "read from %" PRIu64 ": %" PRIu64 " records, want %" PRIu64,
              start, c.seen, want);
}

static void check_tail(struct s2l_stream *st, uint64_t next)
{
    uint64_t n, ts;
    s2l_stream_tail(st, &n, &ts);
    cr_assert(eq(u64, n, next));
    cr_assert(eq(u64, ts, next ? 1000 + 10 * (next - 1) : 0));
}

static void append_read_seek(struct s2l_store *s)
{
    struct s2l_stream *st = get_stream(s, "orders");
    check_tail(st, 0);
    check_range(st, 0, 10, 0);
    append_n(st, 250, 7);
    check_tail(st, 250);
    check_range(st, 0, 1000, 250);
    check_range(st, 100, 20, 20);
    check_range(st, 249, 20, 1);
    check_range(st, 250, 20, 0);
    uint64_t seq;
    cr_assert(eq(int, s2l_stream_seek_timestamp(st, 0, &seq), 0));
    cr_assert(eq(u64, seq, 0));
    cr_assert(eq(int, s2l_stream_seek_timestamp(st, 1000 + 10 * 123, &seq), 0));
    cr_assert(eq(u64, seq, 123));
    cr_assert(eq(int, s2l_stream_seek_timestamp(st, 1000 + 10 * 123 + 1, &seq), 0));
    cr_assert(eq(u64, seq, 124));
    cr_assert(eq(int, s2l_stream_seek_timestamp(st, 1000 + 10 * 249 + 1, &seq), 0));
    cr_assert(eq(u64, seq, 250));
}

Test(store, memory_append_read_seek)
{
    struct s2l_store *s = open_store(NULL);
    append_read_seek(s);
    s2l_store_free(s);
}

Test(store, disk_append_read_seek)
{
    struct s2l_store *s = open_store(tmpdir);
    append_read_seek(s);
    s2l_store_free(s);
}

Test(store, equal_timestamps_seek_to_first)
{
    struct s2l_store *s = open_store(tmpdir);
    struct s2l_stream *st = get_stream(s, "same");
    struct s2l_rec r[4];
    for (int i = 0; i < 4; i++)
        r[i] = (struct s2l_rec){0, i < 2 ? 5 : 9, 0, NULL, (const uint8_t *)"x", 1};
    uint64_t first, seq;
    cr_assert(eq(int, s2l_stream_append(st, r, 4, &first), 0));
    cr_assert(eq(int, s2l_stream_seek_timestamp(st, 9, &seq), 0));
    cr_assert(eq(u64, seq, 2));
    cr_assert(eq(int, s2l_stream_seek_timestamp(st, 6, &seq), 0));
    cr_assert(eq(u64, seq, 2));
    cr_assert(eq(int, s2l_stream_seek_timestamp(st, 5, &seq), 0));
    cr_assert(eq(u64, seq, 0));
    /* Timestamps must not go backwards. */
    r[0].timestamp = 8;
    cr_assert(eq(int, s2l_stream_append(st, r, 1, &first), -EINVAL));
    s2l_store_free(s);
}

Test(store, restart_keeps_streams_and_tails)
{
    struct s2l_store *s = open_store(tmpdir);
    append_n(get_stream(s, "a"), 100, 10);
    append_n(get_stream(s, "b/c"), 3, 1);
    get_stream(s, "empty");
    s2l_store_free(s);

    s = open_store(tmpdir);
    struct s2l_basin *b;
    cr_assert(eq(int, s2l_store_basin(s, BASIN, &b), 0));
    struct s2l_stream *list[8];
    bool more;
    size_t n = s2l_basin_stream_list(b, NULL, 0, NULL, 0, list, 8, &more);
    cr_assert(eq(sz, n, 3));
    cr_assert(not(more));
    size_t len;
    cr_assert(eq(str, (char *)s2l_stream_name(list[0], &len), "a"));
    cr_assert(eq(str, (char *)s2l_stream_name(list[1], &len), "b/c"));
    cr_assert(eq(str, (char *)s2l_stream_name(list[2], &len), "empty"));
    struct s2l_stream *st;
    cr_assert(eq(int, s2l_basin_stream(b, (const uint8_t *)"a", 1, &st), 0));
    check_tail(st, 100);
    check_range(st, 0, 1000, 100);
    append_n(st, 5, 5);
    check_range(st, 95, 1000, 10);
    cr_assert(eq(int, s2l_basin_stream(b, (const uint8_t *)"b/c", 3, &st), 0));
    check_tail(st, 3);
    cr_assert(eq(int, s2l_basin_stream(b, (const uint8_t *)"empty", 5, &st), 0));
    check_tail(st, 0);
    s2l_store_free(s);
}

static char *stream_file(const char *name, const char *file)
{
    static char path[1024];
    char hex[64] = "x";
    for (size_t i = 0; name[i]; i++)
        sprintf(hex + 1 + 2 * i, "%02x", (unsigned char)name[i]);
    snprintf(path, sizeof path, "%s/basins/%s/streams/%s/%s", tmpdir, BASIN, hex, file);
    return path;
}

static off_t file_size(const char *path)
{
    struct stat sb;
    cr_assert(eq(int, stat(path, &sb), 0), "stat %s", path);
    return sb.st_size;
}

static void truncate_file(const char *path, off_t size)
{
    cr_assert(eq(int, truncate(path, size), 0));
}

/* Reopen and return the stream "s". */
static struct s2l_stream *reopen(struct s2l_store **s)
{
    s2l_store_free(*s);
    *s = open_store(tmpdir);
    struct s2l_basin *b;
    struct s2l_stream *st;
    cr_assert(eq(int, s2l_store_basin(*s, BASIN, &b), 0));
    cr_assert(eq(int, s2l_basin_stream(b, (const uint8_t *)"s", 1, &st), 0));
    return st;
}

Test(store, torn_final_write_is_cut_off)
{
    struct s2l_store *s = open_store(tmpdir);
    struct s2l_stream *st = get_stream(s, "s");
    append_n(st, 10, 5);
    off_t good = file_size(stream_file("s", "log"));
    append_n(st, 5, 5);
    s2l_store_free(s);
    s = NULL;
    /* Tear the last batch: 3 bytes short; its index entries stay. */
    off_t full = file_size(stream_file("s", "log"));
    truncate_file(stream_file("s", "log"), full - 3);
    s = open_store(tmpdir);
    st = reopen(&s);
    check_tail(st, 10);
    check_range(st, 0, 100, 10);
    cr_assert(eq(i64, (int64_t)file_size(stream_file("s", "log")), (int64_t)good));
    cr_assert(eq(i64, (int64_t)file_size(stream_file("s", "index")), 10 * 16));
    /* The stream takes appends again at the cut. */
    append_n(st, 5, 5);
    check_range(st, 0, 100, 15);
    st = reopen(&s);
    check_tail(st, 15);
    check_range(st, 0, 100, 15);
    s2l_store_free(s);
}

Test(store, corrupt_final_record_drops_its_batch)
{
    struct s2l_store *s = open_store(tmpdir);
    struct s2l_stream *st = get_stream(s, "s");
    append_n(st, 4, 4);
    append_n(st, 3, 3);
    s2l_store_free(s);
    /* Flip a byte of the last record's body: its CRC fails, and the whole
     * 3-record batch goes (a batch is atomic). */
    const char *log = stream_file("s", "log");
    off_t size = file_size(log);
    int fd = open(log, O_RDWR);
    cr_assert(ge(int, fd, 0));
    char c;
    cr_assert(eq(sz, (size_t)pread(fd, &c, 1, size - 1), 1));
    c ^= 0x55;
    cr_assert(eq(sz, (size_t)pwrite(fd, &c, 1, size - 1), 1));
    close(fd);
    s = open_store(tmpdir);
    st = reopen(&s);
    check_tail(st, 4);
    check_range(st, 0, 100, 4);
    s2l_store_free(s);
}

Test(store, garbage_after_the_tail_is_cut_off)
{
    struct s2l_store *s = open_store(tmpdir);
    append_n(get_stream(s, "s"), 6, 3);
    s2l_store_free(s);
    const char *log = stream_file("s", "log");
    off_t size = file_size(log);
    FILE *f = fopen(log, "ab");
    cr_assert_not_null(f);
    for (int i = 0; i < 100; i++)
        fputc(i * 7, f);
    fclose(f);
    s = open_store(tmpdir);
    struct s2l_stream *st = reopen(&s);
    check_tail(st, 6);
    check_range(st, 0, 100, 6);
    cr_assert(eq(i64, (int64_t)file_size(log), (int64_t)size));
    s2l_store_free(s);
}

Test(store, lost_index_is_rebuilt)
{
    struct s2l_store *s = open_store(tmpdir);
    append_n(get_stream(s, "s"), 300, 50);
    s2l_store_free(s);
    truncate_file(stream_file("s", "index"), 0);
    s = open_store(tmpdir);
    struct s2l_stream *st = reopen(&s);
    check_tail(st, 300);
    check_range(st, 0, 1000, 300);
    check_range(st, 217, 5, 5);
    uint64_t seq;
    cr_assert(eq(int, s2l_stream_seek_timestamp(st, 1000 + 10 * 150, &seq), 0));
    cr_assert(eq(u64, seq, 150));
    cr_assert(eq(i64, (int64_t)file_size(stream_file("s", "index")), 300 * 16));
    s2l_store_free(s);
}

Test(store, index_tail_torn_and_stale_entries)
{
    struct s2l_store *s = open_store(tmpdir);
    append_n(get_stream(s, "s"), 20, 4);
    s2l_store_free(s);
    /* Half an index entry short: the last entries are rebuilt. */
    truncate_file(stream_file("s", "index"), 20 * 16 - 24);
    s = open_store(tmpdir);
    struct s2l_stream *st = reopen(&s);
    check_tail(st, 20);
    check_range(st, 0, 100, 20);
    s2l_store_free(s);
    s = NULL;
    /* Index entries past the log (log cut behind the index's back). */
    truncate_file(stream_file("s", "log"), 0);
    s = open_store(tmpdir);
    st = reopen(&s);
    check_tail(st, 0);
    check_range(st, 0, 100, 0);
    cr_assert(eq(i64, (int64_t)file_size(stream_file("s", "index")), 0));
    append_n(st, 3, 3);
    check_range(st, 0, 100, 3);
    s2l_store_free(s);
}

static int count_rec(const struct s2l_rec *r, void *arg)
{
    (void)r;
    (*(int *)arg)++;
    return 0;
}

Test(store, corrupt_middle_record_fails_the_read)
{
    struct s2l_store *s = open_store(tmpdir);
    append_n(get_stream(s, "s"), 10, 10);
    s2l_store_free(s);
    /* Record 0 is 32 + 5 bytes; corrupt a byte of record 1's body. */
    int fd = open(stream_file("s", "log"), O_RDWR);
    cr_assert(ge(int, fd, 0));
    cr_assert(eq(sz, (size_t)pwrite(fd, "#", 1, 37 + 32 + 8 + 2), 1));
    close(fd);
    s = open_store(tmpdir);
    struct s2l_stream *st = reopen(&s);
    check_tail(st, 10);
    int n = 0;
    cr_assert(eq(int, s2l_stream_read(st, 0, 100, count_rec, &n), -EIO));
    cr_assert(eq(int, n, 1));
    n = 0;
    cr_assert(eq(int, s2l_stream_read(st, 2, 100, count_rec, &n), 0));
    cr_assert(eq(int, n, 8));
    s2l_store_free(s);
}

static void append_cmd(struct s2l_stream *st, const char *op, const void *arg, size_t len)
{
    uint64_t next, ts;
    s2l_stream_tail(st, &next, &ts);
    struct s2l_hdr h = {(const uint8_t *)"", 0, (const uint8_t *)op, strlen(op)};
    struct s2l_rec r = {0, ts, 1, &h, arg, len};
    uint64_t first;
    cr_assert(eq(int, s2l_stream_append(st, &r, 1, &first), 0));
}

Test(store, fence_and_trim_survive_restart)
{
    struct s2l_store *s = open_store(tmpdir);
    struct s2l_stream *st = get_stream(s, "s");
    size_t len;
    s2l_stream_fence(st, &len);
    cr_assert(eq(sz, len, 0));
    append_n(st, 5, 5);
    append_cmd(st, "fence", "writer-1", 8);
    const uint8_t trim[8] = {0, 0, 0, 0, 0, 0, 0, 3};
    append_cmd(st, "trim", trim, 8);
    const char *f = s2l_stream_fence(st, &len);
    cr_assert(eq(sz, len, 8));
    cr_assert(eq(int, memcmp(f, "writer-1", 8), 0));
    cr_assert(eq(u64, s2l_stream_trim_point(st), 3));
    /* Invalid commands change nothing. */
    struct s2l_hdr h = {(const uint8_t *)"", 0, (const uint8_t *)"nope", 4};
    struct s2l_rec r = {0, 5000, 1, &h, (const uint8_t *)"", 0};
    uint64_t first;
    cr_assert(eq(int, s2l_stream_append(st, &r, 1, &first), -EINVAL));
    s2l_store_free(s);

    s = open_store(tmpdir);
    st = reopen(&s);
    f = s2l_stream_fence(st, &len);
    cr_assert(eq(sz, len, 8));
    cr_assert(eq(int, memcmp(f, "writer-1", 8), 0));
    cr_assert(eq(u64, s2l_stream_trim_point(st), 3));
    uint64_t next, ts;
    s2l_stream_tail(st, &next, &ts);
    cr_assert(eq(u64, next, 7));
    /* A fence whose record was torn off is forgotten. */
    append_cmd(st, "fence", "writer-2", 8);
    s2l_store_free(s);
    s = NULL;
    off_t size = file_size(stream_file("s", "log"));
    truncate_file(stream_file("s", "log"), size - 1);
    s = open_store(tmpdir);
    st = reopen(&s);
    f = s2l_stream_fence(st, &len);
    cr_assert(eq(sz, len, 8));
    cr_assert(eq(int, memcmp(f, "writer-1", 8), 0));
    s2l_stream_tail(st, &next, &ts);
    cr_assert(eq(u64, next, 7));
    s2l_store_free(s);
}

Test(store, names_never_escape_the_data_dir)
{
    struct s2l_store *s = open_store(tmpdir);
    char longname[S2L_STREAM_NAME_MAX + 1];
    memset(longname, 'n', S2L_STREAM_NAME_MAX);
    longname[S2L_STREAM_NAME_MAX] = 0;
    const char *names[] = {"../../escape", "/etc/passwd", "a/../../b", longname,
                           "\xc3\xa9t\xc3\xa9"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        append_n(get_stream(s, names[i]), 2, 2);
    s2l_store_free(s);
    /* Nothing outside the streams directory was made. */
    char path[256];
    snprintf(path, sizeof path, "%s/escape", tmpdir);
    cr_assert(ne(int, access(path, F_OK), 0));
    snprintf(path, sizeof path, "%s/basins/b", tmpdir);
    cr_assert(ne(int, access(path, F_OK), 0));
    s = open_store(tmpdir);
    struct s2l_basin *b;
    cr_assert(eq(int, s2l_store_basin(s, BASIN, &b), 0));
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        struct s2l_stream *st;
        cr_assert(eq(int, s2l_basin_stream(b, (const uint8_t *)names[i], strlen(names[i]), &st), 0),
                  "stream %zu after restart", i);
        check_tail(st, 2);
    }
    /* Invalid names are refused. */
    enum s2l_provision res;
    struct s2l_stream *st;
    char toolong[S2L_STREAM_NAME_MAX + 2];
    memset(toolong, 'n', sizeof toolong - 1);
    toolong[sizeof toolong - 1] = 0;
    const char *bad[] = {"", ".", "..", toolong, "\xff\xfe", "\xc0\xaf"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert(eq(int,
                     s2l_basin_stream_ensure(b, (const uint8_t *)bad[i], strlen(bad[i]), NULL,
                                             false, &res, &st),
                     -EINVAL),
                  "bad name %zu", i);
    cr_assert(eq(int,
                 s2l_basin_stream_ensure(b, (const uint8_t *)"a\0b", 3, NULL, false, &res, &st),
                 -EINVAL));
    s2l_store_free(s);
}

Test(store, list_prefix_start_after_limit)
{
    struct s2l_store *s = open_store(NULL);
    const char *names[] = {"b", "a/2", "a/1", "a/3", "c", "a"};
    for (size_t i = 0; i < 6; i++)
        get_stream(s, names[i]);
    struct s2l_basin *b;
    cr_assert(eq(int, s2l_store_basin(s, BASIN, &b), 0));
    struct s2l_stream *out[6];
    bool more;
    size_t len;
    size_t n = s2l_basin_stream_list(b, (const uint8_t *)"a/", 2, NULL, 0, out, 2, &more);
    cr_assert(eq(sz, n, 2));
    cr_assert(more);
    cr_assert(eq(str, (char *)s2l_stream_name(out[0], &len), "a/1"));
    cr_assert(eq(str, (char *)s2l_stream_name(out[1], &len), "a/2"));
    n = s2l_basin_stream_list(b, (const uint8_t *)"a/", 2, (const uint8_t *)"a/2", 3, out, 2,
                              &more);
    cr_assert(eq(sz, n, 1));
    cr_assert(not(more));
    cr_assert(eq(str, (char *)s2l_stream_name(out[0], &len), "a/3"));
    n = s2l_basin_stream_list(b, NULL, 0, (const uint8_t *)"a/3", 3, out, 6, &more);
    cr_assert(eq(sz, n, 2));
    cr_assert(eq(str, (char *)s2l_stream_name(out[0], &len), "b"));
    s2l_store_free(s);
}

Test(store, many_streams_recycle_open_files)
{
    struct s2l_store *s = open_store(tmpdir);
    char name[32];
    int n = S2L_MAX_OPEN_STREAMS + 40;
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof name, "s%04d", i);
        append_n(get_stream(s, name), 2, 2);
    }
    for (int i = 0; i < n; i += 7) {
        snprintf(name, sizeof name, "s%04d", i);
        struct s2l_stream *st = get_stream(s, name);
        append_n(st, 1, 1);
        check_range(st, 0, 10, 3);
    }
    /* Far fewer descriptors than streams are open. */
    int fds = 0;
    for (int fd = 0; fd < 4096; fd++)
        fds += fcntl(fd, F_GETFD) != -1;
    cr_assert(lt(int, fds, 2 * S2L_MAX_OPEN_STREAMS + 32));
    s2l_store_free(s);
}

Test(store, basins_persist_config)
{
    struct s2l_store *s = open_store(tmpdir);
    struct s2l_basin *b;
    enum s2l_provision res;
    struct s2l_basin_config cfg = {false, true};
    cr_assert(eq(int, s2l_store_basin_ensure(s, "other-basin", &cfg, &res, &b), 0));
    cr_assert(eq(int, res, S2L_PROVISION_CREATED));
    cr_assert(eq(int, s2l_store_basin_ensure(s, "other-basin", &cfg, &res, &b), 0));
    cr_assert(eq(int, res, S2L_PROVISION_NOOP));
    cr_assert(eq(int, s2l_store_basin_ensure(s, "Bad_Name", NULL, &res, &b), -EINVAL));
    cr_assert(eq(int, s2l_store_basin_ensure(s, "short", NULL, &res, &b), -EINVAL));
    s2l_store_free(s);
    s = open_store(tmpdir);
    cr_assert(eq(int, s2l_store_basin(s, "other-basin", &b), 0));
    struct s2l_basin_config got = s2l_basin_get_config(b);
    cr_assert(not(got.create_stream_on_append));
    cr_assert(got.create_stream_on_read);
    s2l_store_free(s);
}

static int check_bin(const struct s2l_rec *r, void *arg)
{
    const uint8_t *body = arg;
    cr_assert(eq(sz, r->body_len, 256));
    cr_assert(eq(int, memcmp(r->body, body, 256), 0));
    cr_assert(eq(sz, r->nheaders, 1));
    cr_assert(eq(sz, r->headers[0].name_len, 3));
    cr_assert(eq(int, memcmp(r->headers[0].name, body, 3), 0));
    cr_assert(eq(sz, r->headers[0].value_len, 6));
    cr_assert(eq(int, memcmp(r->headers[0].value, body + 250, 6), 0));
    return 1;
}

static void binary_round_trip(struct s2l_store *s)
{
    struct s2l_stream *st = get_stream(s, "bin");
    uint8_t body[256];
    for (int i = 0; i < 256; i++)
        body[i] = (uint8_t)i;
    struct s2l_hdr h = {body, 3, body + 250, 6};
    struct s2l_rec r = {0, 1, 1, &h, body, sizeof body};
    uint64_t first;
    cr_assert(eq(int, s2l_stream_append(st, &r, 1, &first), 0));
    cr_assert(eq(int, s2l_stream_read(st, 0, 1, check_bin, body), 0));
}

Test(store, binary_bytes_round_trip)
{
    struct s2l_store *s = open_store(NULL);
    binary_round_trip(s);
    s2l_store_free(s);
    s = open_store(tmpdir);
    binary_round_trip(s);
    s2l_store_free(s);
}

/* CRC-32 (zlib's polynomial), bit by bit: the reference for the store's. */
static uint32_t ref_crc32(const uint8_t *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
    }
    return ~c;
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Every record's checksum on disk is the CRC-32 of the rest of its header
 * and its payload, whatever the length (the store folds long records 16
 * bytes at a time: each length around those steps), and the records read
 * back after a restart. */
Test(store, record_crc_is_crc32_of_every_length)
{
    static const size_t lens[] = {0,  1,  15, 16,  17,  31,  32,  33,   47,   48,   63,   64,
                                  65, 79, 80, 127, 128, 200, 431, 1000, 4096, 4111, 70001};
    size_t nrec = sizeof lens / sizeof lens[0];
    struct s2l_store *s = open_store(tmpdir);
    struct s2l_stream *st = get_stream(s, "s");
    uint8_t *body = malloc(70001);
    cr_assert_not_null(body);
    for (size_t i = 0; i < 70001; i++)
        body[i] = (uint8_t)(i * 131 + (i >> 7));
    for (size_t i = 0; i < nrec; i++) {
        struct s2l_rec r = {0, 1000 + i, 0, NULL, body, lens[i]};
        uint64_t first;
        cr_assert(eq(int, s2l_stream_append(st, &r, 1, &first), 0));
        cr_assert(eq(u64, first, i));
    }
    s2l_store_free(s);

    const char *log = stream_file("s", "log");
    off_t size = file_size(log);
    uint8_t *file = malloc((size_t)size);
    cr_assert_not_null(file);
    int fd = open(log, O_RDONLY);
    cr_assert(ge(int, fd, 0));
    cr_assert(eq(i64, (int64_t)pread(fd, file, (size_t)size, 0), (int64_t)size));
    close(fd);
    size_t off = 0;
    for (size_t i = 0; i < nrec; i++) {
        cr_assert(le(sz, off + 32, (size_t)size));
        size_t plen = le32(file + off + 4);
        cr_assert(eq(sz, plen, lens[i]));
        cr_assert(eq(u32, le32(file + off), ref_crc32(file + off + 4, 28 + plen)),
                  "record %zu (%zu bytes)", i, plen);
        off += 32 + plen;
    }
    cr_assert(eq(sz, off, (size_t)size));

    s = open_store(tmpdir);
    st = reopen(&s);
    uint64_t next, ts;
    s2l_stream_tail(st, &next, &ts);
    cr_assert(eq(u64, next, nrec));
    int n = 0;
    cr_assert(eq(int, s2l_stream_read(st, 0, 100, count_rec, &n), 0));
    cr_assert(eq(int, n, (int)nrec));
    free(file);
    free(body);
    s2l_store_free(s);
}
