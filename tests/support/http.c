/*
 * http.c - blocking HTTP requests through libcurl easy, for tests.
 */
#include "internal.h"

#include <curl/curl.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define TS_BODY_MAX (64u << 20)
#define TS_HEADERS_MAX 256

struct collect {
    struct ts_resp *r;
    size_t cap;
    int overflow;
};

void ts__curl_init(void)
{
    static int done;
    if (!done) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        done = 1;
    }
}

static void free_headers(struct ts_resp *r)
{
    for (size_t i = 0; i < r->n_headers; i++)
        free(r->headers[i]);
    free(r->headers);
    r->headers = NULL;
    r->n_headers = 0;
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct collect *c = userdata;
    size_t n = size * nmemb;
    struct ts_resp *r = c->r;
    if (r->body_len + n > TS_BODY_MAX) {
        c->overflow = 1;
        return 0;
    }
    if (r->body_len + n + 1 > c->cap) {
        size_t cap = c->cap ? c->cap : 4096;
        while (cap < r->body_len + n + 1)
            cap *= 2;
        char *b = realloc(r->body, cap);
        if (b == NULL)
            return 0;
        r->body = b;
        c->cap = cap;
    }
    memcpy(r->body + r->body_len, ptr, n);
    r->body_len += n;
    r->body[r->body_len] = '\0';
    return n;
}

size_t ts__on_header(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct ts_resp *r = userdata;
    size_t n = size * nmemb, len = n;
    while (len > 0 && (ptr[len - 1] == '\r' || ptr[len - 1] == '\n'))
        len--;
    /* A status line starts a new header block (100 Continue, redirects):
     * keep only the final response's headers. */
    if (len >= 5 && strncmp(ptr, "HTTP/", 5) == 0) {
        free_headers(r);
        return n;
    }
    if (len == 0 || r->n_headers >= TS_HEADERS_MAX)
        return n;
    char **h = realloc(r->headers, (r->n_headers + 1) * sizeof(*h));
    if (h == NULL)
        return 0;
    r->headers = h;
    r->headers[r->n_headers] = strndup(ptr, len);
    if (r->headers[r->n_headers] == NULL)
        return 0;
    r->n_headers++;
    return n;
}

int ts_http(const char *method, const char *url, const char *body, size_t body_len,
            const char *const headers[], struct ts_resp *out)
{
    struct collect c = {.r = out};
    struct curl_slist *hl = NULL;
    CURL *e = NULL;
    int rc = -EIO;

    memset(out, 0, sizeof(*out));
    ts__curl_init();
    e = curl_easy_init();
    if (e == NULL)
        goto out;
    for (size_t i = 0; headers != NULL && headers[i] != NULL; i++) {
        struct curl_slist *n = curl_slist_append(hl, headers[i]);
        if (n == NULL)
            goto out;
        hl = n;
    }
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 30000L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &c);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, ts__on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, out);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, hl);
    /* Methods that may carry a body get an explicit Content-Length: 0, so a
     * server never waits for a body that does not come. */
    if (body == NULL && (strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
                         strcmp(method, "PATCH") == 0)) {
        body = "";
        body_len = 0;
    }
    if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else if (body != NULL) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    } else if (strcmp(method, "GET") != 0) {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    }
    if (curl_easy_perform(e) != CURLE_OK || c.overflow)
        goto out;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &out->status);
    if (out->body == NULL) {
        out->body = calloc(1, 1);
        if (out->body == NULL)
            goto out;
    }
    rc = 0;
out:
    if (rc != 0)
        ts_resp_free(out);
    curl_slist_free_all(hl);
    if (e != NULL)
        curl_easy_cleanup(e);
    return rc;
}

const char *ts_resp_header(const struct ts_resp *r, const char *name)
{
    size_t nlen = strlen(name);
    const char *found = NULL;
    for (size_t i = 0; i < r->n_headers; i++) {
        const char *h = r->headers[i];
        if (strncasecmp(h, name, nlen) == 0 && h[nlen] == ':') {
            found = h + nlen + 1;
            while (*found == ' ' || *found == '\t')
                found++;
        }
    }
    return found;
}

void ts_resp_free(struct ts_resp *r)
{
    free(r->body);
    free_headers(r);
    memset(r, 0, sizeof(*r));
}
