/* store.c - s2-local's storage: append-only logs, a dense index, recovery. */
#include "store.h"
#include "s2/logf.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <zlib.h>

/* Record header, little-endian:
 *   0 u32 crc32 of bytes 4..end of payload   4 u32 payload length
 *   8 u64 seq_num                           16 u64 timestamp
 *  24 u32 number of headers                 28 u16 records left in the batch
 *  30 u16 magic
 * Payload: per header u32 name length, u32 value length, name, value; then
 * the body (the rest). */
#define REC_HDR 32
#define REC_MAGIC 0x5332u
#define IDX_ENT 16
/* Commands file entry: u32 crc, u32 payload length, u64 seq_num, u8 op,
 * payload. */
#define CMD_HDR 17
#define CMD_FENCE 1
#define CMD_TRIM 2
#define CMD_FILE_MAX ((off_t)16 << 20)
#define CMD_COMPACT_AT 64
/* The read window starts small (a short read stays cheap) and doubles on
 * each refill up to READ_CHUNK_MAX (long scans make few syscalls). */
#define READ_CHUNK_MIN ((size_t)8 << 10)
#define READ_CHUNK_MAX ((size_t)256 << 10)
#define HEX_NAME_MAX 100
#define META_MAGIC "S2LMETA1"
#define BASIN_MAGIC "S2LBASN1"

struct s2l_store {
    char *dir; /* NULL in memory */
    enum s2l_fsync fsync;
    s2l_log_fn log;
    void *log_arg;
    struct s2l_basin **basins; /* sorted by name */
    size_t nbasins, basins_cap;
    size_t nstreams;
    struct s2l_stream *lru_head, *lru_tail; /* streams with open files */
    size_t nopen;
    size_t mem_bytes;
    /* An append's encoded records and index entries are built here before
     * the write, and reads use it as their window on the log: kept between
     * uses (up to SCRATCH_KEEP), as buffers of tens of KiB malloc'd and
     * freed each time cost more than the work (glibc consolidates its fast
     * bins for every such request; larger ones are mapped and zeroed). */
    uint8_t *scratch;
    size_t scratch_cap;
};

#define SCRATCH_KEEP (256u * 1024u)

struct s2l_basin {
    struct s2l_store *store;
    char name[S2L_BASIN_NAME_MAX + 1];
    char *path; /* NULL in memory */
    uint64_t created_ms;
    struct s2l_basin_config cfg;
    struct s2l_stream **streams; /* sorted by name bytes */
    size_t nstreams, streams_cap;
};

struct idx_ent {
    uint64_t off, ts;
};

struct s2l_stream {
    struct s2l_basin *basin;
    uint8_t *name;
    size_t name_len;
    char *path; /* stream directory; NULL in memory */
    uint64_t created_ms;
    struct s2l_stream_config cfg;
    bool loaded; /* tail state known (recovered) */
    bool broken; /* a failed write could not be rolled back */
    uint64_t next_seq, last_ts, log_size;
    char fence[S2L_FENCE_MAX];
    size_t fence_len;
    uint64_t fence_seq; /* seq_num of the command that set it */
    uint64_t trim, trim_seq;
    char req_token[S2L_FENCE_MAX + 1];
    int fd_log, fd_idx; /* -1 when closed */
    struct s2l_stream *lru_prev, *lru_next;
    bool in_lru;
    uint8_t *mem_log; /* in memory: the log and the index */
    size_t mem_log_cap;
    struct idx_ent *mem_idx;
    size_t mem_idx_cap;
};

/* ---- small helpers ---- */

static void put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t get_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t get_u32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* CRC-32 (zlib's) by carry-less multiplication: records are checksummed on
 * every append and read, and zlib's table code takes about 3 instructions
 * a byte. Folding as in Intel's "Fast CRC Computation for Generic
 * Polynomials Using PCLMULQDQ" (bit-reflected constants of its appendix,
 * as in Chromium's zlib crc32_simd.c); used when the CPU has it. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define CRC_CLMUL 1

/* The raw (not inverted) CRC state over len bytes, len >= 64 and a
 * multiple of 16. */
__attribute__((target("pclmul,sse4.1"))) static uint32_t crc_fold(const uint8_t *buf, size_t len,
                                                                  uint32_t crc)
{
    const __m128i k1k2 = _mm_set_epi64x(0x01c6e41596, 0x0154442bd4);
    const __m128i k3k4 = _mm_set_epi64x(0x00ccaa009e, 0x01751997d0);
    const __m128i k5k0 = _mm_set_epi64x(0, 0x0163cd6124);
    const __m128i poly = _mm_set_epi64x(0x01f7011641, 0x01db710641);
    const __m128i mask32 = _mm_setr_epi32(~0, 0, ~0, 0);
    __m128i x1, x2, x3, x4, x5, x6, x7, x8;

    x1 = _mm_loadu_si128((const __m128i *)(const void *)(buf + 0x00));
    x2 = _mm_loadu_si128((const __m128i *)(const void *)(buf + 0x10));
    x3 = _mm_loadu_si128((const __m128i *)(const void *)(buf + 0x20));
    x4 = _mm_loadu_si128((const __m128i *)(const void *)(buf + 0x30));
    x1 = _mm_xor_si128(x1, _mm_cvtsi32_si128((int)crc));
    buf += 64;
    len -= 64;
    /* Four lanes folded 64 bytes at a time. */
    while (len >= 64) {
        x5 = _mm_clmulepi64_si128(x1, k1k2, 0x00);
        x6 = _mm_clmulepi64_si128(x2, k1k2, 0x00);
        x7 = _mm_clmulepi64_si128(x3, k1k2, 0x00);
        x8 = _mm_clmulepi64_si128(x4, k1k2, 0x00);
        x1 = _mm_clmulepi64_si128(x1, k1k2, 0x11);
        x2 = _mm_clmulepi64_si128(x2, k1k2, 0x11);
        x3 = _mm_clmulepi64_si128(x3, k1k2, 0x11);
        x4 = _mm_clmulepi64_si128(x4, k1k2, 0x11);
        x1 = _mm_xor_si128(_mm_xor_si128(x1, x5),
                           _mm_loadu_si128((const __m128i *)(const void *)(buf + 0x00)));
        x2 = _mm_xor_si128(_mm_xor_si128(x2, x6),
                           _mm_loadu_si128((const __m128i *)(const void *)(buf + 0x10)));
        x3 = _mm_xor_si128(_mm_xor_si128(x3, x7),
                           _mm_loadu_si128((const __m128i *)(const void *)(buf + 0x20)));
        x4 = _mm_xor_si128(_mm_xor_si128(x4, x8),
                           _mm_loadu_si128((const __m128i *)(const void *)(buf + 0x30)));
        buf += 64;
        len -= 64;
    }
    /* The four lanes into one. */
    x5 = _mm_clmulepi64_si128(x1, k3k4, 0x00);
    x1 = _mm_clmulepi64_si128(x1, k3k4, 0x11);
    x1 = _mm_xor_si128(_mm_xor_si128(x1, x2), x5);
    x5 = _mm_clmulepi64_si128(x1, k3k4, 0x00);
    x1 = _mm_clmulepi64_si128(x1, k3k4, 0x11);
    x1 = _mm_xor_si128(_mm_xor_si128(x1, x3), x5);
    x5 = _mm_clmulepi64_si128(x1, k3k4, 0x00);
    x1 = _mm_clmulepi64_si128(x1, k3k4, 0x11);
    x1 = _mm_xor_si128(_mm_xor_si128(x1, x4), x5);
    /* The remaining 16-byte blocks. */
    while (len >= 16) {
        x2 = _mm_loadu_si128((const __m128i *)(const void *)buf);
        x5 = _mm_clmulepi64_si128(x1, k3k4, 0x00);
        x1 = _mm_clmulepi64_si128(x1, k3k4, 0x11);
        x1 = _mm_xor_si128(_mm_xor_si128(x1, x2), x5);
        buf += 16;
        len -= 16;
    }
    /* 128 bits to 64. */
    x2 = _mm_clmulepi64_si128(x1, k3k4, 0x10);
    x1 = _mm_xor_si128(_mm_srli_si128(x1, 8), x2);
    x2 = _mm_srli_si128(x1, 4);
    x1 = _mm_and_si128(x1, mask32);
    x1 = _mm_clmulepi64_si128(x1, k5k0, 0x00);
    x1 = _mm_xor_si128(x1, x2);
    /* Barrett reduction to 32 bits. */
    x2 = _mm_and_si128(x1, mask32);
    x2 = _mm_clmulepi64_si128(x2, poly, 0x10);
    x2 = _mm_and_si128(x2, mask32);
    x2 = _mm_clmulepi64_si128(x2, poly, 0x00);
    x1 = _mm_xor_si128(x1, x2);
    return (uint32_t)_mm_extract_epi32(x1, 1);
}

static int crc_clmul_ok(void)
{
    static int ok = -1;
    if (ok < 0) {
        __builtin_cpu_init();
        ok = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
    }
    return ok;
}
#endif

static uint32_t crc_of(const uint8_t *p, size_t len)
{
    uLong c = crc32(0L, Z_NULL, 0);
#ifdef CRC_CLMUL
    if (len >= 64 && crc_clmul_ok()) {
        size_t bulk = len & ~(size_t)15;
        c = ~crc_fold(p, bulk, 0xFFFFFFFFu) & 0xFFFFFFFFu;
        p += bulk;
        len -= bulk;
    }
#endif
    /* zlib takes uInt lengths; feed in pieces. */
    while (len > 0) {
        uInt n = len > (1u << 30) ? (1u << 30) : (uInt)len;
        c = crc32(c, p, n);
        p += n;
        len -= n;
    }
    return (uint32_t)c;
}

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* One log line through the store's sink. */
#define slog(store, level, ...) s2_logf((store)->log, (store)->log_arg, (level), __VA_ARGS__)

static int pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t w = pwrite(fd, p, len, (off_t)off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (w == 0)
            return -EIO;
        p += w;
        len -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

/* Read exactly len bytes at off; -EIO on a short file. */
static int pread_all(int fd, void *buf, size_t len, uint64_t off)
{
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t r = pread(fd, p, len, (off_t)off);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (r == 0)
            return -EIO;
        p += r;
        len -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

static char *path_join(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *p = malloc(la + lb + 2);
    if (p == NULL)
        return NULL;
    memcpy(p, a, la);
    p[la] = '/';
    memcpy(p + la + 1, b, lb + 1);
    return p;
}

static int fsync_path(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

static int mkdir_p(const char *path)
{
    if (mkdir(path, 0755) == 0 || errno == EEXIST)
        return 0;
    return -errno;
}

/* Write name in dir atomically: a temporary file, then rename. */
static int write_file_atomic(const char *dir, const char *name, const uint8_t *data, size_t len,
                             bool sync)
{
    int rc = -ENOMEM;
    char tmpname[64];
    snprintf(tmpname, sizeof tmpname, ".%s.tmp", name);
    char *tmp = path_join(dir, tmpname);
    char *final = path_join(dir, name);
    int fd = -1;
    if (tmp == NULL || final == NULL)
        goto OUT;
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = -errno;
        goto OUT;
    }
    rc = pwrite_all(fd, data, len, 0);
    if (rc == 0 && sync && fdatasync(fd) < 0)
        rc = -errno;
    close(fd);
    fd = -1;
    if (rc == 0 && rename(tmp, final) < 0)
        rc = -errno;
    if (rc != 0)
        unlink(tmp);
    if (rc == 0 && sync)
        rc = fsync_path(dir);
OUT:
    free(tmp);
    free(final);
    return rc;
}

/* Read a whole small file (at most max bytes). */
static int read_small_file(const char *path, size_t max, uint8_t **out, size_t *out_len)
{
    int rc = 0;
    uint8_t *buf = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat sb;
    if (fstat(fd, &sb) < 0) {
        rc = -errno;
        goto OUT;
    }
    if ((uint64_t)sb.st_size > max) {
        rc = -EFBIG;
        goto OUT;
    }
    buf = malloc((size_t)sb.st_size + 1);
    if (buf == NULL) {
        rc = -ENOMEM;
        goto OUT;
    }
    rc = pread_all(fd, buf, (size_t)sb.st_size, 0);
    if (rc == 0) {
        *out = buf;
        *out_len = (size_t)sb.st_size;
        buf = NULL;
    }
OUT:
    free(buf);
    close(fd);
    return rc;
}

/* ---- names ---- */

bool s2l_basin_name_valid(const char *name, size_t len)
{
    if (len < S2L_BASIN_NAME_MIN || len > S2L_BASIN_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && (c != '-' || i == 0 || i == len - 1))
            return false;
    }
    return true;
}

static bool utf8_valid(const uint8_t *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        size_t n;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            n = 1;
            cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            n = 2;
            cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            n = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (len - i <= n)
            return false;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += n + 1;
    }
    return true;
}

bool s2l_stream_name_valid(const uint8_t *name, size_t len)
{
    if (len < 1 || len > S2L_STREAM_NAME_MAX)
        return false;
    if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.'))
        return false;
    if (memchr(name, 0, len) != NULL)
        return false;
    return utf8_valid(name, len);
}

static int name_cmp(const uint8_t *a, size_t la, const uint8_t *b, size_t lb)
{
    size_t n = la < lb ? la : lb;
    int c = n ? memcmp(a, b, n) : 0;
    if (c != 0)
        return c;
    return la < lb ? -1 : la > lb;
}

/* ---- files of a stream ---- */

static void lru_unlink(struct s2l_store *store, struct s2l_stream *st)
{
    if (!st->in_lru)
        return;
    if (st->lru_prev)
        st->lru_prev->lru_next = st->lru_next;
    else
        store->lru_head = st->lru_next;
    if (st->lru_next)
        st->lru_next->lru_prev = st->lru_prev;
    else
        store->lru_tail = st->lru_prev;
    st->lru_prev = st->lru_next = NULL;
    st->in_lru = false;
}

static void lru_push_front(struct s2l_store *store, struct s2l_stream *st)
{
    st->lru_prev = NULL;
    st->lru_next = store->lru_head;
    if (store->lru_head)
        store->lru_head->lru_prev = st;
    store->lru_head = st;
    if (store->lru_tail == NULL)
        store->lru_tail = st;
    st->in_lru = true;
}

static void stream_close_files(struct s2l_stream *st)
{
    struct s2l_store *store = st->basin->store;
    if (st->fd_log >= 0)
        close(st->fd_log);
    if (st->fd_idx >= 0)
        close(st->fd_idx);
    if (st->in_lru) {
        lru_unlink(store, st);
        store->nopen--;
    }
    st->fd_log = st->fd_idx = -1;
}

/* Make sure the log and index files are open; keeps at most
 * S2L_MAX_OPEN_STREAMS streams open. */
static int stream_files(struct s2l_stream *st)
{
    struct s2l_store *store = st->basin->store;
    if (st->path == NULL)
        return 0;
    if (st->fd_log >= 0) {
        lru_unlink(store, st);
        lru_push_front(store, st);
        return 0;
    }
    int rc = 0;
    char *plog = path_join(st->path, "log");
    char *pidx = path_join(st->path, "index");
    if (plog == NULL || pidx == NULL) {
        rc = -ENOMEM;
        goto OUT;
    }
    st->fd_log = open(plog, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (st->fd_log < 0) {
        rc = -errno;
        goto OUT;
    }
    st->fd_idx = open(pidx, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (st->fd_idx < 0) {
        rc = -errno;
        close(st->fd_log);
        st->fd_log = -1;
        goto OUT;
    }
    lru_push_front(store, st);
    store->nopen++;
    while (store->nopen > S2L_MAX_OPEN_STREAMS && store->lru_tail != st)
        stream_close_files(store->lru_tail);
OUT:
    free(plog);
    free(pidx);
    return rc;
}

static int idx_get(struct s2l_stream *st, uint64_t i, struct idx_ent *e)
{
    if (st->path == NULL) {
        *e = st->mem_idx[i];
        return 0;
    }
    uint8_t b[IDX_ENT];
    int rc = pread_all(st->fd_idx, b, sizeof b, i * IDX_ENT);
    if (rc != 0)
        return rc;
    e->off = get_u64(b);
    e->ts = get_u64(b + 8);
    return 0;
}

/* A window over the log: on disk a buffer filled by pread, in memory a
 * pointer into the log. */
struct reader {
    struct s2l_stream *st;
    uint64_t end; /* log size */
    uint8_t *buf;
    size_t cap, len;
    size_t chunk;  /* next window size */
    uint64_t base; /* log offset of buf[0] */
};

/* The reader's window is the store's scratch buffer, borrowed for the
 * read (an append meanwhile gets a buffer of its own). */
static void reader_init(struct reader *r, struct s2l_stream *st, uint64_t end)
{
    struct s2l_store *store = st->basin->store;
    memset(r, 0, sizeof *r);
    r->st = st;
    r->end = end;
    r->chunk = READ_CHUNK_MIN;
    r->buf = store->scratch;
    r->cap = store->scratch_cap;
    store->scratch = NULL;
    store->scratch_cap = 0;
}

static void reader_free(struct reader *r)
{
    struct s2l_store *store = r->st->basin->store;
    if (store->scratch == NULL && r->cap <= SCRATCH_KEEP) {
        store->scratch = r->buf;
        store->scratch_cap = r->cap;
    } else {
        free(r->buf);
    }
}

/* Point *p at log bytes [off, off + n). -EIO when they are past the end. */
static int reader_get(struct reader *r, uint64_t off, size_t n, const uint8_t **p)
{
    if (off > r->end || n > r->end - off)
        return -EIO;
    if (r->st->path == NULL) {
        *p = r->st->mem_log + off;
        return 0;
    }
    if (r->buf && off >= r->base && off + n <= r->base + r->len) {
        *p = r->buf + (off - r->base);
        return 0;
    }
    size_t want = n > r->chunk ? n : r->chunk;
    if (r->chunk < READ_CHUNK_MAX)
        r->chunk *= 2;
    if (want > r->cap) {
        uint8_t *nb = realloc(r->buf, want);
        if (nb == NULL)
            return -ENOMEM;
        r->buf = nb;
        r->cap = want;
    }
    size_t len = want;
    if (len > r->end - off)
        len = (size_t)(r->end - off);
    int rc = pread_all(r->st->fd_log, r->buf, len, off);
    if (rc != 0) {
        r->len = 0;
        return rc;
    }
    r->base = off;
    r->len = len;
    *p = r->buf;
    return 0;
}

struct rec_head {
    uint32_t crc, payload_len, nheaders;
    uint64_t seq, ts;
    uint16_t batch_left;
};

/* Read and check the record at off: header sanity and CRC. *p points at
 * its first byte (header included). */
static int record_at(struct reader *r, uint64_t off, struct rec_head *h, const uint8_t **p)
{
    const uint8_t *b;
    int rc = reader_get(r, off, REC_HDR, &b);
    if (rc != 0)
        return rc;
    h->crc = get_u32(b);
    h->payload_len = get_u32(b + 4);
    h->seq = get_u64(b + 8);
    h->ts = get_u64(b + 16);
    h->nheaders = get_u32(b + 24);
    h->batch_left = get_u16(b + 28);
    if (get_u16(b + 30) != REC_MAGIC || h->payload_len > S2L_PAYLOAD_MAX ||
        (uint64_t)h->nheaders * 8 > h->payload_len)
        return -EIO;
    rc = reader_get(r, off, REC_HDR + (size_t)h->payload_len, &b);
    if (rc != 0)
        return rc;
    if (crc_of(b + 4, REC_HDR - 4 + (size_t)h->payload_len) != h->crc)
        return -EIO;
    *p = b;
    return 0;
}

/* Fill rec from a checked record; headers go to a growable scratch array. */
static int record_view(const uint8_t *p, const struct rec_head *h, struct s2l_hdr **scratch,
                       size_t *scap, struct s2l_rec *rec)
{
    if (h->nheaders > *scap) {
        struct s2l_hdr *n = realloc(*scratch, h->nheaders * sizeof *n);
        if (n == NULL)
            return -ENOMEM;
        *scratch = n;
        *scap = h->nheaders;
    }
    const uint8_t *q = p + REC_HDR;
    size_t left = h->payload_len;
    for (uint32_t i = 0; i < h->nheaders; i++) {
        if (left < 8)
            return -EIO;
        size_t nl = get_u32(q), vl = get_u32(q + 4);
        q += 8;
        left -= 8;
        if (nl > left || vl > left - nl)
            return -EIO;
        (*scratch)[i] = (struct s2l_hdr){q, nl, q + nl, vl};
        q += nl + vl;
        left -= nl + vl;
    }
    rec->seq_num = h->seq;
    rec->timestamp = h->ts;
    rec->nheaders = h->nheaders;
    rec->headers = *scratch;
    rec->body = q;
    rec->body_len = left;
    return 0;
}

static size_t record_payload_len(const struct s2l_rec *r)
{
    size_t n = r->body_len;
    for (size_t i = 0; i < r->nheaders; i++)
        n += 8 + r->headers[i].name_len + r->headers[i].value_len;
    return n;
}

static void record_encode(uint8_t *p, const struct s2l_rec *r, size_t payload_len, uint64_t seq,
                          uint16_t batch_left)
{
    put_u32(p + 4, (uint32_t)payload_len);
    put_u64(p + 8, seq);
    put_u64(p + 16, r->timestamp);
    put_u32(p + 24, (uint32_t)r->nheaders);
    put_u16(p + 28, batch_left);
    put_u16(p + 30, REC_MAGIC);
    uint8_t *q = p + REC_HDR;
    for (size_t i = 0; i < r->nheaders; i++) {
        const struct s2l_hdr *h = &r->headers[i];
        put_u32(q, (uint32_t)h->name_len);
        put_u32(q + 4, (uint32_t)h->value_len);
        q += 8;
        if (h->name_len)
            memcpy(q, h->name, h->name_len);
        q += h->name_len;
        if (h->value_len)
            memcpy(q, h->value, h->value_len);
        q += h->value_len;
    }
    if (r->body_len)
        memcpy(q, r->body, r->body_len);
    put_u32(p, crc_of(p + 4, REC_HDR - 4 + payload_len));
}

/* A command record: exactly one header, with an empty name. */
static int record_command(const struct s2l_rec *r)
{
    if (r->nheaders != 1 || r->headers[0].name_len != 0)
        return 0;
    const struct s2l_hdr *h = &r->headers[0];
    if (h->value_len == 5 && memcmp(h->value, "fence", 5) == 0)
        return CMD_FENCE;
    if (h->value_len == 4 && memcmp(h->value, "trim", 4) == 0)
        return CMD_TRIM;
    return -1;
}

static uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

/* ---- commands file ---- */

static size_t cmd_encode(uint8_t *p, uint64_t seq, int op, const uint8_t *payload, size_t len)
{
    put_u32(p + 4, (uint32_t)len);
    put_u64(p + 8, seq);
    p[16] = (uint8_t)op;
    if (len)
        memcpy(p + CMD_HDR, payload, len);
    put_u32(p, crc_of(p + 4, CMD_HDR - 4 + len));
    return CMD_HDR + len;
}

/* Rewrite the commands file with the current state only. */
static int cmd_compact(struct s2l_stream *st)
{
    uint8_t buf[2 * (CMD_HDR + S2L_FENCE_MAX + 8)];
    size_t n = 0;
    if (st->fence_len > 0)
        n += cmd_encode(buf + n, st->fence_seq, CMD_FENCE, (const uint8_t *)st->fence,
                        st->fence_len);
    if (st->trim > 0) {
        uint8_t be[8];
        for (int i = 0; i < 8; i++)
            be[i] = (uint8_t)(st->trim >> (56 - 8 * i));
        n += cmd_encode(buf + n, st->trim_seq, CMD_TRIM, be, 8);
    }
    return write_file_atomic(st->path, "commands", buf, n,
                             st->basin->store->fsync == S2L_FSYNC_BATCH);
}

/* Load fence and trim state: entries at or past the recovered tail belong
 * to appends that were never acknowledged and are dropped. */
static int cmd_load(struct s2l_stream *st)
{
    char *path = path_join(st->path, "commands");
    if (path == NULL)
        return -ENOMEM;
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = read_small_file(path, (size_t)CMD_FILE_MAX, &buf, &len);
    free(path);
    if (rc == -ENOENT)
        return 0;
    if (rc != 0)
        return rc;
    size_t off = 0, count = 0;
    while (len - off >= CMD_HDR) {
        const uint8_t *p = buf + off;
        size_t plen = get_u32(p + 4);
        uint64_t seq = get_u64(p + 8);
        if (plen > S2L_FENCE_MAX || len - off - CMD_HDR < plen ||
            crc_of(p + 4, CMD_HDR - 4 + plen) != get_u32(p) || seq >= st->next_seq)
            break;
        if (p[16] == CMD_FENCE) {
            memcpy(st->fence, p + CMD_HDR, plen);
            st->fence_len = plen;
            st->fence_seq = seq;
        } else if (p[16] == CMD_TRIM && plen == 8) {
            uint64_t t = get_be64(p + CMD_HDR);
            if (t > st->trim) {
                st->trim = t > st->next_seq ? st->next_seq : t;
                st->trim_seq = seq;
            }
        }
        off += CMD_HDR + plen;
        count++;
    }
    if (off < len || count > CMD_COMPACT_AT)
        rc = cmd_compact(st);
    free(buf);
    return rc;
}

/* ---- recovery ---- */

/* Write index entries [from, from + n) to the index file. */
static int idx_write(struct s2l_stream *st, uint64_t from, const struct idx_ent *e, size_t n)
{
    if (n == 0)
        return 0;
    uint8_t *b = malloc(n * IDX_ENT);
    if (b == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        put_u64(b + i * IDX_ENT, e[i].off);
        put_u64(b + i * IDX_ENT + 8, e[i].ts);
    }
    int rc = pwrite_all(st->fd_idx, b, n * IDX_ENT, from * IDX_ENT);
    free(b);
    return rc;
}

/* Verify the tail of the log against the index, cut off a torn or
 * incomplete final batch, and rebuild missing index entries. */
static int stream_recover(struct s2l_stream *st)
{
    struct s2l_store *store = st->basin->store;
    struct stat sl, si;
    struct reader r;
    struct idx_ent *pend = NULL;
    size_t npend = 0, pend_cap = 4096;
    int rc;
    if (fstat(st->fd_log, &sl) < 0 || fstat(st->fd_idx, &si) < 0)
        return -errno;
    uint64_t log_size = (uint64_t)sl.st_size;
    uint64_t n = (uint64_t)si.st_size / IDX_ENT;
    reader_init(&r, st, log_size);
    pend = malloc(pend_cap * sizeof *pend);
    if (pend == NULL) {
        rc = -ENOMEM;
        goto OUT;
    }

    /* Anchor: the last indexed record that is intact and ends a batch. */
    uint64_t anchor_n = 0, anchor_pos = 0, anchor_ts = 0;
    while (n > 0) {
        struct idx_ent e;
        struct rec_head h;
        const uint8_t *p;
        rc = idx_get(st, n - 1, &e);
        if (rc != 0)
            goto OUT;
        if (record_at(&r, e.off, &h, &p) == 0 && h.seq == n - 1 && h.ts == e.ts &&
            h.batch_left == 0) {
            anchor_n = n;
            anchor_pos = e.off + REC_HDR + h.payload_len;
            anchor_ts = h.ts;
            break;
        }
        n--;
    }

    /* Scan forward from the anchor; commit at every batch end. */
    uint64_t pos = anchor_pos, seq = anchor_n, ts = anchor_ts;
    uint64_t good_n = anchor_n, good_pos = anchor_pos, good_ts = anchor_ts;
    uint64_t flushed = anchor_n; /* index entries written up to here */
    while (pos + REC_HDR <= log_size) {
        struct rec_head h;
        const uint8_t *p;
        if (record_at(&r, pos, &h, &p) != 0 || h.seq != seq || h.ts < ts)
            break;
        if (npend == pend_cap) {
            rc = idx_write(st, flushed, pend, npend);
            if (rc != 0)
                goto OUT;
            flushed += npend;
            npend = 0;
        }
        pend[npend++] = (struct idx_ent){pos, h.ts};
        pos += REC_HDR + h.payload_len;
        seq++;
        ts = h.ts;
        if (h.batch_left == 0) {
            good_n = seq;
            good_pos = pos;
            good_ts = ts;
        }
    }
    rc = idx_write(st, flushed, pend, npend);
    if (rc != 0)
        goto OUT;
    bool changed = false;
    if (good_pos < log_size) {
        slog(store, 2,
             "stream %s: cut off %" PRIu64 " bytes of a torn or incomplete write at %" PRIu64,
             st->path, log_size - good_pos, good_pos);
        if (ftruncate(st->fd_log, (off_t)good_pos) < 0) {
            rc = -errno;
            goto OUT;
        }
        changed = true;
    }
    if ((uint64_t)si.st_size != good_n * IDX_ENT) {
        if (ftruncate(st->fd_idx, (off_t)(good_n * IDX_ENT)) < 0) {
            rc = -errno;
            goto OUT;
        }
        changed = true;
    }
    if (good_n > anchor_n && (uint64_t)si.st_size / IDX_ENT < good_n) {
        slog(store, 1, "stream %s: rebuilt %" PRIu64 " index entries", st->path,
             good_n - (uint64_t)si.st_size / IDX_ENT);
    }
    if (changed && store->fsync == S2L_FSYNC_BATCH &&
        (fdatasync(st->fd_log) < 0 || fdatasync(st->fd_idx) < 0)) {
        rc = -errno;
        goto OUT;
    }
    st->next_seq = good_n;
    st->last_ts = good_ts;
    st->log_size = good_pos;
    rc = 0;
OUT:
    free(pend);
    reader_free(&r);
    return rc;
}

/* Open the stream's files and learn its tail (once). */
static int stream_load(struct s2l_stream *st)
{
    if (st->path == NULL) {
        st->loaded = true;
        return 0;
    }
    int rc = stream_files(st);
    if (rc != 0 || st->loaded)
        return rc;
    rc = stream_recover(st);
    if (rc == 0)
        rc = cmd_load(st);
    if (rc != 0) {
        slog(st->basin->store, 3, "stream %s: recovery failed: %s", st->path, strerror(-rc));
        stream_close_files(st);
        return rc;
    }
    st->loaded = true;
    return 0;
}

/* ---- append ---- */

static int mem_reserve(struct s2l_stream *st, size_t log_add, size_t idx_add)
{
    struct s2l_store *store = st->basin->store;
    if (log_add + idx_add * sizeof(struct idx_ent) > S2L_MEM_MAX - store->mem_bytes)
        return -ENOSPC;
    if (st->log_size + log_add > st->mem_log_cap) {
        size_t cap = st->mem_log_cap ? st->mem_log_cap : 4096;
        while (cap < st->log_size + log_add)
            cap *= 2;
        uint8_t *n = realloc(st->mem_log, cap);
        if (n == NULL)
            return -ENOMEM;
        st->mem_log = n;
        st->mem_log_cap = cap;
    }
    if (st->next_seq + idx_add > st->mem_idx_cap) {
        size_t cap = st->mem_idx_cap ? st->mem_idx_cap : 64;
        while (cap < st->next_seq + idx_add)
            cap *= 2;
        struct idx_ent *n = realloc(st->mem_idx, cap * sizeof *n);
        if (n == NULL)
            return -ENOMEM;
        st->mem_idx = n;
        st->mem_idx_cap = cap;
    }
    store->mem_bytes += log_add + idx_add * sizeof(struct idx_ent);
    return 0;
}

/* Write the batch to the stream's files; on failure roll them back. */
static int disk_append(struct s2l_stream *st, const uint8_t *log, size_t log_len,
                       const struct idx_ent *ents, size_t n, const uint8_t *cmds, size_t cmds_len)
{
    bool sync = st->basin->store->fsync == S2L_FSYNC_BATCH;
    int rc = 0, fd_cmd = -1;
    off_t cmd_size = 0;
    char *pcmd = NULL;
    if (cmds_len > 0) {
        /* Commands first: recovery drops entries past the recovered tail. */
        pcmd = path_join(st->path, "commands");
        if (pcmd == NULL)
            return -ENOMEM;
        fd_cmd = open(pcmd, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        struct stat sb;
        if (fd_cmd < 0 || fstat(fd_cmd, &sb) < 0) {
            rc = -errno;
            goto OUT;
        }
        cmd_size = sb.st_size;
        rc = pwrite_all(fd_cmd, cmds, cmds_len, (uint64_t)cmd_size);
        if (rc == 0 && sync && fdatasync(fd_cmd) < 0)
            rc = -errno;
        if (rc != 0)
            goto ROLLBACK;
    }
    rc = pwrite_all(st->fd_log, log, log_len, st->log_size);
    if (rc == 0)
        rc = idx_write(st, st->next_seq, ents, n);
    if (rc == 0 && sync && (fdatasync(st->fd_log) < 0 || fdatasync(st->fd_idx) < 0))
        rc = -errno;
    if (rc == 0)
        goto OUT;
ROLLBACK:
    if (ftruncate(st->fd_log, (off_t)st->log_size) < 0 ||
        ftruncate(st->fd_idx, (off_t)(st->next_seq * IDX_ENT)) < 0 ||
        (fd_cmd >= 0 && ftruncate(fd_cmd, cmd_size) < 0)) {
        st->broken = true;
        slog(st->basin->store, 3, "stream %s: rollback of a failed append failed: %s", st->path,
             strerror(errno));
    }
OUT:
    if (fd_cmd >= 0)
        close(fd_cmd);
    free(pcmd);
    return rc;
}

/* A buffer of at least len bytes for one append (scratch_put after it). */
static uint8_t *scratch_get(struct s2l_store *store, size_t len)
{
    if (len > store->scratch_cap) {
        uint8_t *p = realloc(store->scratch, len);
        if (p == NULL)
            return NULL;
        store->scratch = p;
        store->scratch_cap = len;
    }
    return store->scratch;
}

/* After an append: an unusually large buffer is not kept. */
static void scratch_put(struct s2l_store *store)
{
    if (store->scratch_cap > SCRATCH_KEEP) {
        free(store->scratch);
        store->scratch = NULL;
        store->scratch_cap = 0;
    }
}

int s2l_stream_append(struct s2l_stream *st, const struct s2l_rec *recs, size_t n, uint64_t *first)
{
    int rc;
    uint8_t *log = NULL, *cmds = NULL;
    struct idx_ent *ents = NULL;
    if (n == 0 || n > UINT16_MAX)
        return -EINVAL;
    rc = stream_load(st);
    if (rc != 0)
        return rc;
    if (st->broken)
        return -EIO;
    /* Validate everything before touching state. */
    size_t total = 0, ncmds = 0, cmds_len = 0;
    uint64_t ts = st->last_ts;
    for (size_t i = 0; i < n; i++) {
        const struct s2l_rec *r = &recs[i];
        size_t pl = record_payload_len(r);
        if (pl > S2L_PAYLOAD_MAX || r->timestamp < ts || r->nheaders > UINT32_MAX)
            return -EINVAL;
        ts = r->timestamp;
        int cmd = record_command(r);
        if (cmd < 0 || (cmd == CMD_FENCE && r->body_len > S2L_FENCE_MAX) ||
            (cmd == CMD_TRIM && r->body_len != 8))
            return -EINVAL;
        if (cmd > 0) {
            ncmds++;
            cmds_len += CMD_HDR + r->body_len;
        }
        total += REC_HDR + pl;
    }
    if (st->path == NULL) {
        rc = mem_reserve(st, total, n);
        if (rc != 0)
            return rc;
        log = st->mem_log + st->log_size;
    } else {
        /* ents first: 16-byte entries stay aligned. */
        size_t ents_len = n * sizeof *ents;
        uint8_t *buf = scratch_get(st->basin->store, ents_len + total);
        cmds = cmds_len ? malloc(cmds_len) : NULL;
        if (buf == NULL || (cmds_len && cmds == NULL)) {
            rc = -ENOMEM;
            goto OUT;
        }
        ents = (struct idx_ent *)(void *)buf;
        log = buf + ents_len;
    }
    /* Encode, and work out the command state the batch leaves behind. */
    char fence[S2L_FENCE_MAX];
    size_t fence_len = st->fence_len;
    memcpy(fence, st->fence, fence_len);
    uint64_t fence_seq = st->fence_seq, trim = st->trim, trim_seq = st->trim_seq;
    uint64_t end_seq = st->next_seq + n;
    size_t off = 0, coff = 0;
    for (size_t i = 0; i < n; i++) {
        const struct s2l_rec *r = &recs[i];
        size_t pl = record_payload_len(r);
        uint64_t seq = st->next_seq + i;
        record_encode(log + off, r, pl, seq, (uint16_t)(n - 1 - i));
        struct idx_ent e = {st->log_size + off, r->timestamp};
        if (st->path == NULL)
            st->mem_idx[seq] = e;
        else
            ents[i] = e;
        off += REC_HDR + pl;
        int cmd = record_command(r);
        if (cmd == CMD_FENCE) {
            memcpy(fence, r->body, r->body_len);
            fence_len = r->body_len;
            fence_seq = seq;
        } else if (cmd == CMD_TRIM) {
            uint64_t t = get_be64(r->body);
            if (t > end_seq)
                t = end_seq;
            if (t > trim) {
                trim = t;
                trim_seq = seq;
            }
        }
        if (cmd > 0 && cmds != NULL)
            coff += cmd_encode(cmds + coff, seq, cmd, r->body, r->body_len);
    }
    if (st->path != NULL) {
        rc = disk_append(st, log, total, ents, n, cmds, cmds_len);
        if (rc != 0)
            goto OUT;
    }
    *first = st->next_seq;
    st->log_size += total;
    st->next_seq = end_seq;
    st->last_ts = recs[n - 1].timestamp;
    memcpy(st->fence, fence, fence_len);
    st->fence_len = fence_len;
    st->fence_seq = fence_seq;
    st->trim = trim;
    st->trim_seq = trim_seq;
    rc = 0;
OUT:
    if (st->path != NULL)
        scratch_put(st->basin->store);
    free(cmds);
    return rc;
}

/* ---- read ---- */

int s2l_stream_read(struct s2l_stream *st, uint64_t start, size_t max, s2l_read_fn fn, void *arg)
{
    int rc = stream_load(st);
    if (rc != 0)
        return rc;
    if (start >= st->next_seq || max == 0)
        return 0;
    uint64_t count = st->next_seq - start;
    if (count > max)
        count = max;
    struct idx_ent e;
    rc = idx_get(st, start, &e);
    if (rc != 0)
        return rc;
    struct reader r;
    reader_init(&r, st, st->log_size);
    struct s2l_hdr *scratch = NULL;
    size_t scap = 0;
    uint64_t off = e.off;
    for (uint64_t i = 0; i < count; i++) {
        struct rec_head h;
        const uint8_t *p;
        struct s2l_rec rec;
        rc = record_at(&r, off, &h, &p);
        if (rc == 0 && h.seq != start + i)
            rc = -EIO;
        if (rc == 0)
            rc = record_view(p, &h, &scratch, &scap, &rec);
        if (rc != 0) {
            if (rc == -EIO)
                slog(st->basin->store, 3, "stream %s: corrupt record %" PRIu64 " at %" PRIu64,
                     st->path ? st->path : "(memory)", start + i, off);
            break;
        }
        off += REC_HDR + h.payload_len;
        rc = fn(&rec, arg);
        if (rc != 0) {
            if (rc > 0)
                rc = 0;
            break;
        }
    }
    free(scratch);
    reader_free(&r);
    return rc;
}

int s2l_stream_seek_timestamp(struct s2l_stream *st, uint64_t ts, uint64_t *seq)
{
    int rc = stream_load(st);
    if (rc != 0)
        return rc;
    uint64_t lo = 0, hi = st->next_seq;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        struct idx_ent e;
        rc = idx_get(st, mid, &e);
        if (rc != 0)
            return rc;
        if (e.ts < ts)
            lo = mid + 1;
        else
            hi = mid;
    }
    *seq = lo;
    return 0;
}

void s2l_stream_tail(const struct s2l_stream *st, uint64_t *next_seq, uint64_t *last_ts)
{
    *next_seq = st->next_seq;
    *last_ts = st->last_ts;
}

const char *s2l_stream_fence(const struct s2l_stream *st, size_t *len)
{
    *len = st->fence_len;
    return st->fence;
}

const char *s2l_stream_request_token(const struct s2l_stream *st)
{
    return st->req_token;
}

void s2l_stream_set_request_token(struct s2l_stream *st, const char *token)
{
    snprintf(st->req_token, sizeof st->req_token, "%s", token ? token : "");
}

uint64_t s2l_stream_trim_point(const struct s2l_stream *st)
{
    return st->trim;
}

const uint8_t *s2l_stream_name(const struct s2l_stream *st, size_t *len)
{
    *len = st->name_len;
    return st->name;
}

uint64_t s2l_stream_created_ms(const struct s2l_stream *st)
{
    return st->created_ms;
}

struct s2l_stream_config s2l_stream_get_config(const struct s2l_stream *st)
{
    return st->cfg;
}

/* ---- streams: metadata and the table ---- */

static void stream_free(struct s2l_stream *st)
{
    if (st == NULL)
        return;
    stream_close_files(st);
    if (st->path == NULL)
        st->basin->store->mem_bytes -= st->log_size + st->next_seq * sizeof(struct idx_ent);
    free(st->mem_log);
    free(st->mem_idx);
    free(st->name);
    free(st->path);
    free(st);
}

static struct s2l_stream *stream_alloc(struct s2l_basin *basin, const uint8_t *name, size_t len)
{
    struct s2l_stream *st = calloc(1, sizeof *st);
    if (st == NULL)
        return NULL;
    st->name = malloc(len + 1);
    if (st->name == NULL) {
        free(st);
        return NULL;
    }
    memcpy(st->name, name, len);
    st->name[len] = 0;
    st->name_len = len;
    st->basin = basin;
    st->fd_log = st->fd_idx = -1;
    return st;
}

/* meta: magic, u64 created_ms, u8 ts_mode, u8 uncapped, u16 0, u32 name
 * length, name, u32 crc of everything before. */
static int meta_write(struct s2l_stream *st, const char *dir)
{
    size_t len = 24 + st->name_len + 4;
    uint8_t *b = calloc(1, len);
    if (b == NULL)
        return -ENOMEM;
    memcpy(b, META_MAGIC, 8);
    put_u64(b + 8, st->created_ms);
    b[16] = (uint8_t)st->cfg.ts_mode;
    b[17] = st->cfg.ts_uncapped;
    put_u32(b + 20, (uint32_t)st->name_len);
    memcpy(b + 24, st->name, st->name_len);
    put_u32(b + 24 + st->name_len, crc_of(b, 24 + st->name_len));
    int rc = write_file_atomic(dir, "meta", b, len, st->basin->store->fsync == S2L_FSYNC_BATCH);
    free(b);
    return rc;
}

static int meta_read(struct s2l_basin *basin, const char *dir, struct s2l_stream **out)
{
    char *path = path_join(dir, "meta");
    if (path == NULL)
        return -ENOMEM;
    uint8_t *b = NULL;
    size_t len = 0;
    int rc = read_small_file(path, 4096, &b, &len);
    free(path);
    if (rc != 0)
        return rc;
    rc = -EINVAL;
    if (len < 28 || memcmp(b, META_MAGIC, 8) != 0)
        goto OUT;
    size_t nl = get_u32(b + 20);
    if (nl != len - 28 || crc_of(b, 24 + nl) != get_u32(b + 24 + nl) ||
        !s2l_stream_name_valid(b + 24, nl) || b[16] > S2L_TS_ARRIVAL)
        goto OUT;
    struct s2l_stream *st = stream_alloc(basin, b + 24, nl);
    if (st == NULL) {
        rc = -ENOMEM;
        goto OUT;
    }
    st->created_ms = get_u64(b + 8);
    st->cfg.ts_mode = (enum s2l_ts_mode)b[16];
    st->cfg.ts_uncapped = b[17] != 0;
    st->path = strdup(dir);
    if (st->path == NULL) {
        stream_free(st);
        rc = -ENOMEM;
        goto OUT;
    }
    *out = st;
    rc = 0;
OUT:
    free(b);
    return rc;
}

/* Index in basin->streams where name is or would go. */
static size_t stream_pos(struct s2l_basin *basin, const uint8_t *name, size_t len, bool *found)
{
    size_t lo = 0, hi = basin->nstreams;
    *found = false;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        struct s2l_stream *s = basin->streams[mid];
        int c = name_cmp(s->name, s->name_len, name, len);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int stream_insert(struct s2l_basin *basin, struct s2l_stream *st, size_t at)
{
    if (basin->nstreams == basin->streams_cap) {
        size_t cap = basin->streams_cap ? basin->streams_cap * 2 : 16;
        struct s2l_stream **n = realloc(basin->streams, cap * sizeof *n);
        if (n == NULL)
            return -ENOMEM;
        basin->streams = n;
        basin->streams_cap = cap;
    }
    memmove(basin->streams + at + 1, basin->streams + at,
            (basin->nstreams - at) * sizeof *basin->streams);
    basin->streams[at] = st;
    basin->nstreams++;
    basin->store->nstreams++;
    return 0;
}

static void remove_stream_dir(const char *dir)
{
    static const char *const files[] = {"meta",     "log",       "index",
                                        "commands", ".meta.tmp", ".commands.tmp"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char *p = path_join(dir, files[i]);
        if (p)
            unlink(p);
        free(p);
    }
    rmdir(dir);
}

static uint64_t fnv1a(const uint8_t *p, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* A directory name for a new stream: never derived unescaped from the
 * client's name, so nothing can escape the data directory. */
static int stream_dir_name(const char *streams_dir, const uint8_t *name, size_t len, char *out,
                           size_t cap)
{
    static const char hex[] = "0123456789abcdef";
    if (len <= HEX_NAME_MAX) {
        out[0] = 'x';
        for (size_t i = 0; i < len; i++) {
            out[1 + 2 * i] = hex[name[i] >> 4];
            out[2 + 2 * i] = hex[name[i] & 15];
        }
        out[1 + 2 * len] = 0;
        return 0;
    }
    uint64_t h = fnv1a(name, len);
    for (unsigned n = 0; n < 1000; n++) {
        snprintf(out, cap, "h%016" PRIx64 "-%u", h, n);
        char *p = path_join(streams_dir, out);
        if (p == NULL)
            return -ENOMEM;
        struct stat sb;
        int exists = stat(p, &sb) == 0;
        free(p);
        if (!exists)
            return 0;
    }
    return -EEXIST;
}

static int stream_create_disk(struct s2l_basin *basin, struct s2l_stream *st)
{
    bool sync = basin->store->fsync == S2L_FSYNC_BATCH;
    char dname[2 * HEX_NAME_MAX + 8], tname[2 * HEX_NAME_MAX + 16];
    char *streams = path_join(basin->path, "streams");
    char *tmp = NULL, *final = NULL;
    int rc = -ENOMEM;
    if (streams == NULL)
        goto OUT;
    rc = stream_dir_name(streams, st->name, st->name_len, dname, sizeof dname);
    if (rc != 0)
        goto OUT;
    snprintf(tname, sizeof tname, ".new-%s", dname);
    tmp = path_join(streams, tname);
    final = path_join(streams, dname);
    rc = -ENOMEM;
    if (tmp == NULL || final == NULL)
        goto OUT;
    remove_stream_dir(tmp);
    if (mkdir(tmp, 0755) < 0) {
        rc = -errno;
        goto OUT;
    }
    rc = meta_write(st, tmp);
    /* Create the data files before the rename, so that one directory fsync
     * makes every entry durable. */
    static const char *const files[] = {"log", "index"};
    for (size_t i = 0; rc == 0 && i < 2; i++) {
        char *p = path_join(tmp, files[i]);
        int fd = p ? open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644) : -1;
        rc = p == NULL ? -ENOMEM : fd < 0 ? -errno : 0;
        if (fd >= 0)
            close(fd);
        free(p);
    }
    if (rc == 0 && sync)
        rc = fsync_path(tmp);
    if (rc == 0 && rename(tmp, final) < 0)
        rc = -errno;
    if (rc != 0) {
        remove_stream_dir(tmp);
        goto OUT;
    }
    if (sync)
        rc = fsync_path(streams);
    st->path = final;
    final = NULL;
OUT:
    free(streams);
    free(tmp);
    free(final);
    return rc;
}

int s2l_basin_stream(struct s2l_basin *basin, const uint8_t *name, size_t len,
                     struct s2l_stream **out)
{
    bool found;
    size_t at = stream_pos(basin, name, len, &found);
    if (!found)
        return -ENOENT;
    int rc = stream_load(basin->streams[at]);
    if (rc != 0)
        return rc;
    *out = basin->streams[at];
    return 0;
}

int s2l_basin_stream_ensure(struct s2l_basin *basin, const uint8_t *name, size_t len,
                            const struct s2l_stream_config *cfg, bool exclusive,
                            enum s2l_provision *result, struct s2l_stream **out)
{
    if (!s2l_stream_name_valid(name, len))
        return -EINVAL;
    bool found;
    size_t at = stream_pos(basin, name, len, &found);
    if (found) {
        struct s2l_stream *st = basin->streams[at];
        if (exclusive)
            return -EEXIST;
        int rc = stream_load(st);
        if (rc != 0)
            return rc;
        *result = S2L_PROVISION_NOOP;
        if (cfg && (cfg->ts_mode != st->cfg.ts_mode || cfg->ts_uncapped != st->cfg.ts_uncapped)) {
            struct s2l_stream_config old = st->cfg;
            st->cfg = *cfg;
            if (st->path && (rc = meta_write(st, st->path)) != 0) {
                st->cfg = old;
                return rc;
            }
            *result = S2L_PROVISION_UPDATED;
        }
        *out = st;
        return 0;
    }
    if (basin->store->nstreams >= S2L_MAX_STREAMS)
        return -ENOSPC;
    struct s2l_stream *st = stream_alloc(basin, name, len);
    if (st == NULL)
        return -ENOMEM;
    st->created_ms = wall_ms();
    if (cfg)
        st->cfg = *cfg;
    int rc = 0;
    if (basin->path != NULL)
        rc = stream_create_disk(basin, st);
    if (rc == 0)
        rc = stream_insert(basin, st, at);
    if (rc == 0)
        rc = stream_load(st);
    if (rc != 0) {
        /* A created directory stays; the next start loads it. */
        if (found || basin->streams[at] != st)
            stream_free(st);
        return rc;
    }
    *result = S2L_PROVISION_CREATED;
    *out = st;
    return 0;
}

size_t s2l_basin_stream_list(struct s2l_basin *basin, const uint8_t *prefix, size_t prefix_len,
                             const uint8_t *start_after, size_t start_after_len,
                             struct s2l_stream **out, size_t max, bool *has_more)
{
    bool found;
    size_t i = 0;
    *has_more = false;
    if (start_after_len > 0) {
        i = stream_pos(basin, start_after, start_after_len, &found);
        if (found)
            i++;
    }
    if (prefix_len > 0) {
        size_t p = stream_pos(basin, prefix, prefix_len, &found);
        if (p > i)
            i = p;
    }
    size_t n = 0;
    for (; i < basin->nstreams; i++) {
        struct s2l_stream *st = basin->streams[i];
        if (prefix_len > 0 &&
            (st->name_len < prefix_len || memcmp(st->name, prefix, prefix_len) != 0))
            break;
        if (n == max) {
            *has_more = true;
            break;
        }
        out[n++] = st;
    }
    return n;
}

/* ---- basins ---- */

static void basin_free(struct s2l_basin *b)
{
    if (b == NULL)
        return;
    for (size_t i = 0; i < b->nstreams; i++)
        stream_free(b->streams[i]);
    free(b->streams);
    free(b->path);
    free(b);
}

static int basin_cfg_write(struct s2l_basin *b)
{
    uint8_t buf[28] = {0};
    memcpy(buf, BASIN_MAGIC, 8);
    put_u64(buf + 8, b->created_ms);
    buf[16] = b->cfg.create_stream_on_append;
    buf[17] = b->cfg.create_stream_on_read;
    put_u32(buf + 24, crc_of(buf, 24));
    return write_file_atomic(b->path, "basin.cfg", buf, sizeof buf,
                             b->store->fsync == S2L_FSYNC_BATCH);
}

static size_t basin_pos(struct s2l_store *store, const char *name, bool *found)
{
    size_t lo = 0, hi = store->nbasins;
    *found = false;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(store->basins[mid]->name, name);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int basin_insert(struct s2l_store *store, struct s2l_basin *b)
{
    bool found;
    size_t at = basin_pos(store, b->name, &found);
    if (found)
        return -EEXIST;
    if (store->nbasins == store->basins_cap) {
        size_t cap = store->basins_cap ? store->basins_cap * 2 : 8;
        struct s2l_basin **n = realloc(store->basins, cap * sizeof *n);
        if (n == NULL)
            return -ENOMEM;
        store->basins = n;
        store->basins_cap = cap;
    }
    memmove(store->basins + at + 1, store->basins + at,
            (store->nbasins - at) * sizeof *store->basins);
    store->basins[at] = b;
    store->nbasins++;
    return 0;
}

static struct s2l_basin *basin_alloc(struct s2l_store *store, const char *name)
{
    struct s2l_basin *b = calloc(1, sizeof *b);
    if (b == NULL)
        return NULL;
    b->store = store;
    snprintf(b->name, sizeof b->name, "%s", name);
    b->cfg.create_stream_on_append = true;
    b->cfg.create_stream_on_read = true;
    if (store->dir != NULL) {
        char *basins = path_join(store->dir, "basins");
        b->path = basins ? path_join(basins, name) : NULL;
        free(basins);
        if (b->path == NULL) {
            free(b);
            return NULL;
        }
    }
    return b;
}

int s2l_store_basin(struct s2l_store *store, const char *name, struct s2l_basin **out)
{
    bool found;
    size_t at = basin_pos(store, name, &found);
    if (!found)
        return -ENOENT;
    *out = store->basins[at];
    return 0;
}

int s2l_store_basin_ensure(struct s2l_store *store, const char *name,
                           const struct s2l_basin_config *cfg, enum s2l_provision *result,
                           struct s2l_basin **out)
{
    if (!s2l_basin_name_valid(name, strlen(name)))
        return -EINVAL;
    struct s2l_basin *b = NULL;
    int rc;
    if (s2l_store_basin(store, name, &b) == 0) {
        *result = S2L_PROVISION_NOOP;
        if (cfg && (cfg->create_stream_on_append != b->cfg.create_stream_on_append ||
                    cfg->create_stream_on_read != b->cfg.create_stream_on_read)) {
            struct s2l_basin_config old = b->cfg;
            b->cfg = *cfg;
            if (b->path && (rc = basin_cfg_write(b)) != 0) {
                b->cfg = old;
                return rc;
            }
            *result = S2L_PROVISION_UPDATED;
        }
        *out = b;
        return 0;
    }
    if (store->nbasins >= S2L_MAX_BASINS)
        return -ENOSPC;
    b = basin_alloc(store, name);
    if (b == NULL)
        return -ENOMEM;
    b->created_ms = wall_ms();
    if (cfg)
        b->cfg = *cfg;
    if (b->path != NULL) {
        char *streams = path_join(b->path, "streams");
        rc = streams ? mkdir_p(b->path) : -ENOMEM;
        if (rc == 0)
            rc = mkdir_p(streams);
        free(streams);
        if (rc == 0)
            rc = basin_cfg_write(b);
        if (rc != 0)
            goto FAIL;
    }
    rc = basin_insert(store, b);
    if (rc != 0)
        goto FAIL;
    *result = S2L_PROVISION_CREATED;
    *out = b;
    return 0;
FAIL:
    basin_free(b);
    return rc;
}

size_t s2l_store_basin_list(struct s2l_store *store, const char *prefix, const char *start_after,
                            struct s2l_basin **out, size_t max, bool *has_more)
{
    bool found;
    size_t i = 0, n = 0, plen = prefix ? strlen(prefix) : 0;
    *has_more = false;
    if (start_after && *start_after) {
        i = basin_pos(store, start_after, &found);
        if (found)
            i++;
    }
    for (; i < store->nbasins; i++) {
        struct s2l_basin *b = store->basins[i];
        if (plen && strncmp(b->name, prefix, plen) != 0) {
            if (strncmp(b->name, prefix, plen) > 0)
                break;
            continue;
        }
        if (n == max) {
            *has_more = true;
            break;
        }
        out[n++] = b;
    }
    return n;
}

const char *s2l_basin_name(const struct s2l_basin *basin)
{
    return basin->name;
}

uint64_t s2l_basin_created_ms(const struct s2l_basin *basin)
{
    return basin->created_ms;
}

struct s2l_basin_config s2l_basin_get_config(const struct s2l_basin *basin)
{
    return basin->cfg;
}

/* ---- loading a data directory ---- */

static int basin_load_streams(struct s2l_basin *b)
{
    char *streams = path_join(b->path, "streams");
    if (streams == NULL)
        return -ENOMEM;
    int rc = mkdir_p(streams);
    DIR *d = rc == 0 ? opendir(streams) : NULL;
    if (d == NULL) {
        rc = rc ? rc : -errno;
        free(streams);
        return rc;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.') {
            /* A stream whose creation did not finish. */
            if (strncmp(de->d_name, ".new-", 5) == 0) {
                char *p = path_join(streams, de->d_name);
                if (p)
                    remove_stream_dir(p);
                free(p);
            }
            continue;
        }
        char *p = path_join(streams, de->d_name);
        if (p == NULL) {
            rc = -ENOMEM;
            break;
        }
        struct s2l_stream *st = NULL;
        int mrc = meta_read(b, p, &st);
        if (mrc != 0) {
            slog(b->store, 2, "skipping %s: no valid stream metadata (%s)", p, strerror(-mrc));
            free(p);
            continue;
        }
        free(p);
        bool found;
        size_t at = stream_pos(b, st->name, st->name_len, &found);
        if (found) {
            slog(b->store, 2, "skipping %s: duplicate stream name", st->path);
            stream_free(st);
            continue;
        }
        rc = stream_insert(b, st, at);
        if (rc != 0) {
            stream_free(st);
            break;
        }
    }
    closedir(d);
    free(streams);
    return rc;
}

static int store_load(struct s2l_store *store)
{
    char *basins = path_join(store->dir, "basins");
    if (basins == NULL)
        return -ENOMEM;
    int rc = mkdir_p(store->dir);
    if (rc == 0)
        rc = mkdir_p(basins);
    DIR *d = rc == 0 ? opendir(basins) : NULL;
    if (d == NULL) {
        rc = rc ? rc : -errno;
        free(basins);
        return rc;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!s2l_basin_name_valid(de->d_name, strlen(de->d_name)))
            continue;
        struct s2l_basin *b = basin_alloc(store, de->d_name);
        if (b == NULL) {
            rc = -ENOMEM;
            break;
        }
        char *cfgp = path_join(b->path, "basin.cfg");
        uint8_t *buf = NULL;
        size_t len = 0;
        if (cfgp && read_small_file(cfgp, 64, &buf, &len) == 0 && len == 28 &&
            memcmp(buf, BASIN_MAGIC, 8) == 0 && crc_of(buf, 24) == get_u32(buf + 24)) {
            b->created_ms = get_u64(buf + 8);
            b->cfg.create_stream_on_append = buf[16] != 0;
            b->cfg.create_stream_on_read = buf[17] != 0;
        } else {
            slog(store, 2, "basin %s: no valid basin.cfg, using defaults", de->d_name);
        }
        free(buf);
        free(cfgp);
        rc = basin_load_streams(b);
        if (rc == 0)
            rc = basin_insert(store, b);
        if (rc != 0) {
            basin_free(b);
            break;
        }
    }
    closedir(d);
    free(basins);
    return rc;
}

int s2l_store_open(const char *dir, enum s2l_fsync fsync, s2l_log_fn log, void *log_arg,
                   struct s2l_store **out)
{
    struct s2l_store *store = calloc(1, sizeof *store);
    if (store == NULL)
        return -ENOMEM;
    store->fsync = fsync;
    store->log = log;
    store->log_arg = log_arg;
    int rc = 0;
    if (dir != NULL) {
        store->dir = strdup(dir);
        rc = store->dir ? store_load(store) : -ENOMEM;
    }
    if (rc != 0) {
        s2l_store_free(store);
        return rc;
    }
    *out = store;
    return 0;
}

void s2l_store_free(struct s2l_store *store)
{
    if (store == NULL)
        return;
    for (size_t i = 0; i < store->nbasins; i++)
        basin_free(store->basins[i]);
    free(store->basins);
    free(store->dir);
    free(store->scratch);
    free(store);
}
