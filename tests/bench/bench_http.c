/*
 * bench_http.c - HTTP load generators of the benchmark (libcurl, one
 * keep-alive connection, one request at a time). Each mode prints one JSON
 * line of figures on stdout.
 *
 *   bench_http s2-append URL BASIN STREAM BATCH SECONDS MAX_RECORDS BODY_BYTES
 *       ensure the stream, then append batches of BATCH records of BODY_BYTES
 *       until SECONDS or MAX_RECORDS -> {"records","bytes","seconds","requests"}
 *   bench_http s2-read URL BASIN STREAM COUNT SECONDS TOTAL [verify]
 *       read from seq_num 0, COUNT per request, until TOTAL records (0: the
 *       tail) or SECONDS. With "verify", each body must start with
 *       {"seq":<seq_num + 1>, (the telemetry archive's layout); mismatches
 *       are counted -> {"records","bytes","seconds","requests","mismatches"}
 *   bench_http walk URL LIMIT SECONDS TOTAL
 *       walk GET URL/telemetry/events?limit=LIMIT&offset=N by X-Next-Offset,
 *       parsing every page, until TOTAL envelopes, the end, or SECONDS
 *       -> {"records","bytes","seconds","requests","first_seq","last_seq","gaps"}
 *   bench_http tail URL BASIN STREAM
 *       -> {"tail": N} (check-tail)
 *
 * Exit status: 0, 1 on an HTTP or parse failure (with a message on stderr),
 * 2 for bad arguments.
 */
#include <cjson/cJSON.h>
#include <curl/curl.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* The largest response body taken (s2-local caps a read at 1 MiB of
 * records; base64 and JSON add to that). */
#define BH_MAX_BODY (16u * 1024 * 1024)

struct bh_buf {
    char *data;
    size_t len, cap;
};

struct bh_conn {
    CURL *curl;
    struct bh_buf body;
    char next_offset[32];
    int has_more;
    char errbuf[CURL_ERROR_SIZE];
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int buf_add(struct bh_buf *b, const void *p, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 65536;
        while (cap < b->len + n + 1)
            cap *= 2;
        if (cap > BH_MAX_BODY + 1)
            return -EMSGSIZE;
        char *d = realloc(b->data, cap);
        if (d == NULL)
            return -ENOMEM;
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    struct bh_conn *c = arg;
    return buf_add(&c->body, p, size * n) == 0 ? size * n : 0;
}

/* X-Has-More and X-Next-Offset of the read route. */
static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
    struct bh_conn *c = arg;
    size_t len = size * n;
    if (len > 14 && strncasecmp(p, "X-Next-Offset:", 14) == 0) {
        size_t i = 14, k = 0;
        while (i < len && p[i] == ' ')
            i++;
        while (i < len && p[i] >= '0' && p[i] <= '9' && k + 1 < sizeof c->next_offset)
            c->next_offset[k++] = p[i++];
        c->next_offset[k] = '\0';
    } else if (len > 11 && strncasecmp(p, "X-Has-More:", 11) == 0) {
        c->has_more = memmem(p, len, "true", 4) != NULL;
    }
    return len;
}

static int conn_init(struct bh_conn *c)
{
    memset(c, 0, sizeof *c);
    if ((c->curl = curl_easy_init()) == NULL)
        return -ENOMEM;
    curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(c->curl, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c->curl, CURLOPT_HEADERDATA, c);
    curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, c->errbuf);
    curl_easy_setopt(c->curl, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c->curl, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(c->curl, CURLOPT_BUFFERSIZE, 512L * 1024);
    return 0;
}

static void conn_free(struct bh_conn *c)
{
    curl_easy_cleanup(c->curl);
    free(c->body.data);
}

/* One request; body (NULL: GET) is borrowed. *status gets the HTTP status. */
static int conn_do(struct bh_conn *c, const char *method, const char *url,
                   struct curl_slist *headers, const char *body, size_t body_len, long *status)
{
    c->body.len = 0;
    c->next_offset[0] = '\0';
    c->has_more = 0;
    curl_easy_setopt(c->curl, CURLOPT_URL, url);
    curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, headers);
    if (body != NULL) {
        curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    } else {
        curl_easy_setopt(c->curl, CURLOPT_HTTPGET, 1L);
    }
    curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, strcmp(method, "PUT") == 0 ? "PUT" : NULL);
    CURLcode rc = curl_easy_perform(c->curl);
    if (rc != CURLE_OK) {
        fprintf(stderr, "bench_http: %s %s: %s\n", method, url,
                c->errbuf[0] ? c->errbuf : curl_easy_strerror(rc));
        return -EIO;
    }
    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, status);
    return 0;
}

static struct curl_slist *s2_headers(const char *basin)
{
    char h[300];
    struct curl_slist *l = NULL;
    snprintf(h, sizeof h, "S2-Basin: %s", basin);
    l = curl_slist_append(l, h);
    l = curl_slist_append(l, "Authorization: Bearer local");
    l = curl_slist_append(l, "Content-Type: application/json");
    return curl_slist_append(l, "Expect:");
}

static int s2_tail(struct bh_conn *c, const char *url, struct curl_slist *h, const char *stream,
                   uint64_t *tail)
{
    char u[1024];
    long status = 0;
    snprintf(u, sizeof u, "%s/v1/streams/%s/records/tail", url, stream);
    if (conn_do(c, "GET", u, h, NULL, 0, &status) != 0)
        return -EIO;
    const char *p = status == 200 ? strstr(c->body.data, "\"seq_num\":") : NULL;
    if (p == NULL) {
        fprintf(stderr, "bench_http: check-tail answered %ld: %.200s\n", status,
                c->body.data ? c->body.data : "");
        return -EIO;
    }
    *tail = strtoull(p + 10, NULL, 10);
    return 0;
}

static int mode_tail(char **argv)
{
    struct bh_conn c;
    uint64_t tail = 0;
    int rc = 1;
    if (conn_init(&c) != 0)
        return 1;
    struct curl_slist *h = s2_headers(argv[1]);
    if (s2_tail(&c, argv[0], h, argv[2], &tail) == 0) {
        printf("{\"tail\":%" PRIu64 "}\n", tail);
        rc = 0;
    }
    curl_slist_free_all(h);
    conn_free(&c);
    return rc;
}

/* A minimal keep-alive HTTP/1.1 client for the append loop: the request is
 * built once and the reply read by Content-Length, so the figure is
 * s2-local's and not the client library's (Redis' client is as thin). */
struct bh_raw {
    int fd;
    char buf[65536];
    size_t len;
};

static int raw_connect(struct bh_raw *r, const char *url)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    char host[64];
    unsigned port = 0;
    int one = 1;
    if (sscanf(url, "http://%63[0-9.]:%u", host, &port) != 2 || port == 0 || port > 65535 ||
        inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        return -EINVAL;
    sa.sin_port = htons((uint16_t)port);
    r->len = 0;
    if ((r->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
        return -errno;
    setsockopt(r->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return connect(r->fd, (struct sockaddr *)&sa, sizeof sa) == 0 ? 0 : -errno;
}

/* Send req, read one reply; *status gets its status code. */
static int raw_exchange(struct bh_raw *r, const char *req, size_t req_len, int *status)
{
    for (size_t off = 0; off < req_len;) {
        ssize_t n = write(r->fd, req + off, req_len - off);
        if (n <= 0)
            return -EIO;
        off += (size_t)n;
    }
    char *eoh = NULL;
    while ((eoh = memmem(r->buf, r->len, "\r\n\r\n", 4)) == NULL) {
        if (r->len == sizeof r->buf)
            return -EMSGSIZE;
        ssize_t n = read(r->fd, r->buf + r->len, sizeof r->buf - r->len);
        if (n <= 0)
            return -EIO;
        r->len += (size_t)n;
    }
    size_t head = (size_t)(eoh + 4 - r->buf), clen = 0;
    const char *cl = memmem(r->buf, head, "Content-Length:", 15);
    if (cl == NULL)
        cl = memmem(r->buf, head, "content-length:", 15);
    if (cl != NULL)
        clen = strtoul(cl + 15, NULL, 10);
    if (head + clen > sizeof r->buf || sscanf(r->buf, "HTTP/1.%*d %d", status) != 1)
        return -EMSGSIZE;
    while (r->len < head + clen) {
        ssize_t n = read(r->fd, r->buf + r->len, sizeof r->buf - r->len);
        if (n <= 0)
            return -EIO;
        r->len += (size_t)n;
    }
    /* Keep what follows the reply (nothing, with one request at a time). */
    memmove(r->buf, r->buf + head + clen, r->len - head - clen);
    r->len -= head + clen;
    return 0;
}

static int mode_s2_append(char **argv)
{
    const char *url = argv[0], *basin = argv[1], *stream = argv[2];
    long batch = atol(argv[3]), max_records = atol(argv[5]), body_bytes = atol(argv[6]);
    double seconds = atof(argv[4]);
    struct bh_conn c;
    struct bh_buf req = {0}, wire = {0};
    struct bh_raw raw = {.fd = -1};
    char u[1024];
    long status = 0;
    int rc = 1;

    if (batch < 1 || batch > 1000 || body_bytes < 1 || body_bytes > 65536 || seconds <= 0) {
        fprintf(stderr, "bench_http: bad s2-append arguments\n");
        return 2;
    }
    if (conn_init(&c) != 0)
        return 1;
    struct curl_slist *h = s2_headers(basin);
    /* One batch body, sent again and again: the same bytes every time. */
    char *payload = malloc((size_t)body_bytes + 1);
    if (payload == NULL)
        goto out;
    for (long i = 0; i < body_bytes; i++)
        payload[i] = (char)('a' + i % 26);
    payload[body_bytes] = '\0';
    if (buf_add(&req, "{\"records\":[", 12) != 0)
        goto out;
    for (long i = 0; i < batch; i++) {
        if ((i > 0 && buf_add(&req, ",", 1) != 0) || buf_add(&req, "{\"body\":\"", 9) != 0 ||
            buf_add(&req, payload, (size_t)body_bytes) != 0 || buf_add(&req, "\"}", 2) != 0)
            goto out;
    }
    if (buf_add(&req, "]}", 2) != 0)
        goto out;

    snprintf(u, sizeof u, "%s/v1/streams/%s", url, stream);
    if (conn_do(&c, "PUT", u, h, "", 0, &status) != 0 || (status != 200 && status != 201)) {
        fprintf(stderr, "bench_http: ensure stream answered %ld\n", status);
        goto out;
    }
    /* The whole request, head and body, built once. */
    char head[512];
    int hl = snprintf(head, sizeof head,
                      "POST /v1/streams/%s/records HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      "S2-Basin: %s\r\nAuthorization: Bearer local\r\n"
                      "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                      stream, basin, req.len);
    if (hl < 0 || (size_t)hl >= sizeof head || buf_add(&wire, head, (size_t)hl) != 0 ||
        buf_add(&wire, req.data, req.len) != 0 || raw_connect(&raw, url) != 0) {
        fprintf(stderr, "bench_http: cannot connect to %s\n", url);
        goto out;
    }
    long records = 0, requests = 0;
    double t0 = now_s(), t = t0;
    while (t - t0 < seconds && records + batch <= max_records) {
        int st = 0;
        if (raw_exchange(&raw, wire.data, wire.len, &st) != 0 || st != 200) {
            fprintf(stderr, "bench_http: append failed (status %d)\n", st);
            goto out;
        }
        records += batch;
        requests++;
        t = now_s();
    }
    printf("{\"records\":%ld,\"bytes\":%ld,\"seconds\":%.6f,\"requests\":%ld}\n", records,
           records * body_bytes, t - t0, requests);
    rc = 0;
out:
    if (raw.fd >= 0)
        close(raw.fd);
    free(payload);
    free(req.data);
    free(wire.data);
    curl_slist_free_all(h);
    conn_free(&c);
    return rc;
}

/* Records of one s2-local read page (raw format): count, body bytes, and
 * whether each body starts with {"seq":<seq_num + 1>,. Returns the next
 * seq_num, or 0 when the page is not a read batch. */
static uint64_t s2_page(const char *json, long *records, long *bytes, long *mismatches, int verify)
{
    uint64_t next = 0;
    cJSON *root = cJSON_Parse(json);
    cJSON *recs = cJSON_GetObjectItemCaseSensitive(root, "records");
    const cJSON *r;
    if (!cJSON_IsArray(recs)) {
        cJSON_Delete(root);
        return 0;
    }
    cJSON_ArrayForEach(r, recs)
    {
        const cJSON *sn = cJSON_GetObjectItemCaseSensitive(r, "seq_num");
        const cJSON *body = cJSON_GetObjectItemCaseSensitive(r, "body");
        if (!cJSON_IsNumber(sn) || !cJSON_IsString(body))
            continue;
        uint64_t seq = (uint64_t)sn->valuedouble;
        size_t len = strlen(body->valuestring);
        (*records)++;
        *bytes += (long)len;
        next = seq + 1;
        if (verify) {
            char want[40];
            int n = snprintf(want, sizeof want, "{\"seq\":%" PRIu64 ",", seq + 1);
            if (len < (size_t)n || memcmp(body->valuestring, want, (size_t)n) != 0)
                (*mismatches)++;
        }
    }
    cJSON_Delete(root);
    return next;
}

static int mode_s2_read(int argc, char **argv)
{
    const char *url = argv[0], *basin = argv[1], *stream = argv[2];
    long count = atol(argv[3]), total = atol(argv[5]);
    double seconds = atof(argv[4]);
    int verify = argc > 6 && strcmp(argv[6], "verify") == 0;
    struct bh_conn c;
    char u[1024];
    long status = 0, records = 0, bytes = 0, requests = 0, mismatches = 0;
    uint64_t seq = 0, tail = 0;
    int rc = 1;

    if (count < 1 || count > 1000 || seconds <= 0 || total < 0) {
        fprintf(stderr, "bench_http: bad s2-read arguments\n");
        return 2;
    }
    if (conn_init(&c) != 0)
        return 1;
    struct curl_slist *h = s2_headers(basin);
    if (total == 0) {
        if (s2_tail(&c, url, h, stream, &tail) != 0)
            goto out;
        total = (long)tail;
    }
    double t0 = now_s(), t = t0;
    while (records < total && t - t0 < seconds) {
        long want = total - records < count ? total - records : count;
        snprintf(u, sizeof u, "%s/v1/streams/%s/records?seq_num=%" PRIu64 "&count=%ld", url, stream,
                 seq, want);
        if (conn_do(&c, "GET", u, h, NULL, 0, &status) != 0)
            goto out;
        requests++;
        if (status == 416)
            break;
        if (status != 200) {
            fprintf(stderr, "bench_http: read answered %ld: %.200s\n", status, c.body.data);
            goto out;
        }
        uint64_t next = s2_page(c.body.data, &records, &bytes, &mismatches, verify);
        if (next == 0)
            break;
        seq = next;
        t = now_s();
    }
    t = now_s();
    printf("{\"records\":%ld,\"bytes\":%ld,\"seconds\":%.6f,\"requests\":%ld,\"mismatches\":%ld}\n",
           records, bytes, t - t0, requests, mismatches);
    rc = 0;
out:
    curl_slist_free_all(h);
    conn_free(&c);
    return rc;
}

static int mode_walk(char **argv)
{
    const char *url = argv[0];
    long limit = atol(argv[1]), total = atol(argv[3]);
    double seconds = atof(argv[2]);
    struct bh_conn c;
    char u[1024], offset[32] = "";
    long status = 0, records = 0, bytes = 0, requests = 0, gaps = 0;
    double first_seq = -1, last_seq = -1;
    int rc = 1;

    if (limit < 1 || limit > 1000 || seconds <= 0 || total < 1) {
        fprintf(stderr, "bench_http: bad walk arguments\n");
        return 2;
    }
    if (conn_init(&c) != 0)
        return 1;
    double t0 = now_s(), t = t0;
    while (records < total && t - t0 < seconds) {
        long want = total - records < limit ? total - records : limit;
        snprintf(u, sizeof u, "%s/telemetry/events?limit=%ld%s%s", url, want,
                 offset[0] ? "&offset=" : "", offset);
        if (conn_do(&c, "GET", u, NULL, NULL, 0, &status) != 0)
            goto out;
        requests++;
        if (status != 200) {
            fprintf(stderr, "bench_http: walk answered %ld: %.200s\n", status, c.body.data);
            goto out;
        }
        bytes += (long)c.body.len;
        /* Parse the page as a client of the route would. */
        cJSON *page = cJSON_Parse(c.body.data);
        const cJSON *env;
        if (!cJSON_IsArray(page)) {
            fprintf(stderr, "bench_http: page is not a JSON array\n");
            cJSON_Delete(page);
            goto out;
        }
        cJSON_ArrayForEach(env, page)
        {
            const cJSON *seq = cJSON_GetObjectItemCaseSensitive(env, "seq");
            if (!cJSON_IsNumber(seq))
                continue;
            if (first_seq < 0)
                first_seq = seq->valuedouble;
            else if (seq->valuedouble != last_seq + 1)
                gaps++;
            last_seq = seq->valuedouble;
            records++;
        }
        cJSON_Delete(page);
        t = now_s();
        if (!c.has_more || c.next_offset[0] == '\0')
            break;
        snprintf(offset, sizeof offset, "%s", c.next_offset);
    }
    t = now_s();
    printf("{\"records\":%ld,\"bytes\":%ld,\"seconds\":%.6f,\"requests\":%ld,\"first_seq\":%.0f,"
           "\"last_seq\":%.0f,\"gaps\":%ld}\n",
           records, bytes, t - t0, requests, first_seq, last_seq, gaps);
    rc = 0;
out:
    conn_free(&c);
    return rc;
}

int main(int argc, char **argv)
{
    int rc = 2;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
        return 1;
    if (argc == 9 && strcmp(argv[1], "s2-append") == 0)
        rc = mode_s2_append(argv + 2);
    else if ((argc == 8 || argc == 9) && strcmp(argv[1], "s2-read") == 0)
        rc = mode_s2_read(argc - 2, argv + 2);
    else if (argc == 6 && strcmp(argv[1], "walk") == 0)
        rc = mode_walk(argv + 2);
    else if (argc == 5 && strcmp(argv[1], "tail") == 0)
        rc = mode_tail(argv + 2);
    else
        fprintf(stderr, "usage: see the comment at the top of bench_http.c\n");
    curl_global_cleanup();
    return rc;
}
