/*
 * sse.c - a Server-Sent Events client for tests: libcurl multi, polled with
 * timeouts, frames reassembled across reads.
 */
#include "internal.h"

#include <curl/curl.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define TS_SSE_LINE_MAX (4u << 20)

struct frame {
    int comment;
    char *id;
    char *event;
    char *data;
};

struct ts_sse {
    CURLM *multi;
    CURL *easy;
    struct curl_slist *hl;
    struct ts_resp hdr; /* status and header lines */
    int headers_done;
    int ended; /* 0 running, 1 ended cleanly, -1 transfer error */
    int too_big;

    char *buf; /* received bytes not yet parsed into lines */
    size_t len, cap;

    struct frame cur; /* the frame being assembled */
    int cur_has;      /* cur has at least one field */
    size_t cur_data_len;

    struct frame *q; /* parsed frames, FIFO */
    size_t q_head, q_len, q_cap;
    struct frame last; /* the frame handed out last, freed on the next call */
};

static void frame_free(struct frame *f)
{
    free(f->id);
    free(f->event);
    free(f->data);
    memset(f, 0, sizeof(*f));
}

static int queue_push(struct ts_sse *s, struct frame *f)
{
    if (s->q_head > 0 && s->q_head == s->q_len) {
        s->q_head = s->q_len = 0;
    }
    if (s->q_len == s->q_cap) {
        size_t cap = s->q_cap ? s->q_cap * 2 : 16;
        struct frame *q = realloc(s->q, cap * sizeof(*q));
        if (q == NULL)
            return -ENOMEM;
        s->q = q;
        s->q_cap = cap;
    }
    s->q[s->q_len++] = *f;
    memset(f, 0, sizeof(*f));
    return 0;
}

static int set_str(char **dst, const char *v, size_t n)
{
    char *c = strndup(v, n);
    if (c == NULL)
        return -ENOMEM;
    free(*dst);
    *dst = c;
    return 0;
}

/* One line of the stream, without its line ending. */
static int parse_line(struct ts_sse *s, const char *line, size_t n)
{
    if (n == 0) {
        if (!s->cur_has)
            return 0;
        s->cur_has = 0;
        s->cur_data_len = 0;
        return queue_push(s, &s->cur);
    }
    if (line[0] == ':') {
        struct frame c = {.comment = 1};
        size_t skip = (n > 1 && line[1] == ' ') ? 2 : 1;
        if (set_str(&c.data, line + skip, n - skip) != 0)
            return -ENOMEM;
        return queue_push(s, &c);
    }
    const char *colon = memchr(line, ':', n);
    size_t nlen = colon ? (size_t)(colon - line) : n;
    const char *v = colon ? colon + 1 : line + n;
    size_t vlen = n - (size_t)(v - line);
    if (vlen > 0 && *v == ' ') {
        v++;
        vlen--;
    }
    if (nlen == 4 && memcmp(line, "data", 4) == 0) {
        size_t old = s->cur.data ? s->cur_data_len : 0;
        size_t extra = (s->cur.data ? 1 : 0) + vlen;
        char *d = realloc(s->cur.data, old + extra + 1);
        if (d == NULL)
            return -ENOMEM;
        if (s->cur.data != NULL)
            d[old++] = '\n';
        memcpy(d + old, v, vlen);
        d[old + vlen] = '\0';
        s->cur.data = d;
        s->cur_data_len = old + vlen;
        s->cur_has = 1;
    } else if (nlen == 2 && memcmp(line, "id", 2) == 0) {
        if (set_str(&s->cur.id, v, vlen) != 0)
            return -ENOMEM;
        s->cur_has = 1;
    } else if (nlen == 5 && memcmp(line, "event", 5) == 0) {
        if (set_str(&s->cur.event, v, vlen) != 0)
            return -ENOMEM;
        s->cur_has = 1;
    }
    return 0;
}

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct ts_sse *s = userdata;
    size_t n = size * nmemb, start = 0;
    s->headers_done = 1;
    if (s->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 4096;
        while (cap < s->len + n + 1)
            cap *= 2;
        char *b = realloc(s->buf, cap);
        if (b == NULL)
            return 0;
        s->buf = b;
        s->cap = cap;
    }
    memcpy(s->buf + s->len, ptr, n);
    s->len += n;
    s->buf[s->len] = '\0';
    for (;;) {
        char *nl = memchr(s->buf + start, '\n', s->len - start);
        if (nl == NULL)
            break;
        size_t ll = (size_t)(nl - (s->buf + start));
        if (ll > 0 && s->buf[start + ll - 1] == '\r')
            ll--;
        if (parse_line(s, s->buf + start, ll) != 0)
            return 0;
        start = (size_t)(nl - s->buf) + 1;
    }
    memmove(s->buf, s->buf + start, s->len - start);
    s->len -= start;
    s->buf[s->len] = '\0';
    if (s->len > TS_SSE_LINE_MAX) {
        s->too_big = 1;
        return 0;
    }
    return n;
}

static size_t on_header(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct ts_sse *s = userdata;
    size_t n = size * nmemb;
    if (n >= 12 && strncmp(ptr, "HTTP/", 5) == 0) {
        const char *sp = memchr(ptr, ' ', n);
        s->hdr.status = sp ? strtol(sp + 1, NULL, 10) : 0;
    } else if ((n == 2 && ptr[0] == '\r') || (n == 1 && ptr[0] == '\n')) {
        /* End of a header block; 1xx blocks are followed by the real one. */
        if (s->hdr.status >= 200)
            s->headers_done = 1;
    }
    return ts__on_header(ptr, size, nmemb, &s->hdr);
}

/* Drive the transfer for at most wait_ms. */
static void pump(struct ts_sse *s, int wait_ms)
{
    int running = 0;
    if (wait_ms > 0)
        curl_multi_poll(s->multi, NULL, 0, wait_ms, NULL);
    curl_multi_perform(s->multi, &running);
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(s->multi, &left)) != NULL) {
        if (m->msg == CURLMSG_DONE)
            s->ended = (m->data.result == CURLE_OK) ? 1 : -1;
    }
}

int ts_sse_open(const char *url, const char *const headers[], int timeout_ms, struct ts_sse **out)
{
    int rc = -ENOMEM;
    struct ts_sse *s = calloc(1, sizeof(*s));

    *out = NULL;
    ts__curl_init();
    if (s == NULL)
        goto fail;
    s->multi = curl_multi_init();
    s->easy = curl_easy_init();
    if (s->multi == NULL || s->easy == NULL)
        goto fail;
    for (size_t i = 0; headers != NULL && headers[i] != NULL; i++) {
        struct curl_slist *n = curl_slist_append(s->hl, headers[i]);
        if (n == NULL)
            goto fail;
        s->hl = n;
    }
    curl_easy_setopt(s->easy, CURLOPT_URL, url);
    curl_easy_setopt(s->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(s->easy, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(s->easy, CURLOPT_HTTPHEADER, s->hl);
    curl_easy_setopt(s->easy, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(s->easy, CURLOPT_WRITEDATA, s);
    curl_easy_setopt(s->easy, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(s->easy, CURLOPT_HEADERDATA, s);
    if (curl_multi_add_handle(s->multi, s->easy) != CURLM_OK)
        goto fail;
    long long deadline = ts_now_ms() + timeout_ms;
    while (!s->headers_done && s->ended == 0) {
        long long left = deadline - ts_now_ms();
        if (left <= 0) {
            rc = -ETIMEDOUT;
            goto fail;
        }
        pump(s, left > 100 ? 100 : (int)left);
    }
    if (!s->headers_done) {
        rc = -EIO;
        goto fail;
    }
    *out = s;
    return 0;
fail:
    ts_sse_close(s);
    return rc;
}

long ts_sse_status(const struct ts_sse *s)
{
    return s->hdr.status;
}

const char *ts_sse_header(const struct ts_sse *s, const char *name)
{
    return ts_resp_header(&s->hdr, name);
}

const char *ts_sse_pending(const struct ts_sse *s)
{
    return s->buf ? s->buf : "";
}

int ts_sse_next(struct ts_sse *s, int timeout_ms, struct ts_sse_event *ev)
{
    long long deadline = ts_now_ms() + timeout_ms;
    memset(ev, 0, sizeof(*ev));
    frame_free(&s->last);
    for (;;) {
        if (s->q_head < s->q_len) {
            s->last = s->q[s->q_head++];
            ev->comment = s->last.comment;
            ev->id = s->last.id;
            ev->event = s->last.event;
            ev->data = s->last.data;
            return 0;
        }
        if (s->too_big)
            return -E2BIG;
        if (s->ended != 0)
            return s->ended > 0 ? -EPIPE : -EIO;
        long long left = deadline - ts_now_ms();
        if (left <= 0) {
            pump(s, 0);
            if (s->q_head < s->q_len || s->ended != 0)
                continue;
            return -ETIMEDOUT;
        }
        pump(s, left > 100 ? 100 : (int)left);
    }
}

void ts_sse_close(struct ts_sse *s)
{
    if (s == NULL)
        return;
    if (s->multi != NULL && s->easy != NULL)
        curl_multi_remove_handle(s->multi, s->easy);
    if (s->easy != NULL)
        curl_easy_cleanup(s->easy);
    if (s->multi != NULL)
        curl_multi_cleanup(s->multi);
    curl_slist_free_all(s->hl);
    ts_resp_free(&s->hdr);
    for (size_t i = s->q_head; i < s->q_len; i++)
        frame_free(&s->q[i]);
    free(s->q);
    frame_free(&s->cur);
    frame_free(&s->last);
    free(s->buf);
    free(s);
}
