/*
 * selftest.c - the support library tested against canned servers: a forked
 * child that accepts one connection on loopback and writes a scripted
 * response in pieces, with pauses, so frames arrive split across reads.
 */
#include "support.h"

#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* Pieces of a response, written one by one with a pause between them. */
struct script {
    const char *const *pieces;
    int pause_ms;
};

static pid_t serve_once(const struct script *sc, int *port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(lfd >= 0);
    cr_assert(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    cr_assert(getsockname(lfd, (struct sockaddr *)&sa, &len) == 0);
    cr_assert(listen(lfd, 4) == 0);
    *port = ntohs(sa.sin_port);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid > 0) {
        close(lfd);
        return pid;
    }
    int fd = accept(lfd, NULL, NULL);
    char req[8192];
    size_t got = 0;
    while (fd >= 0 && got < sizeof(req) - 1) {
        ssize_t n = read(fd, req + got, sizeof(req) - 1 - got);
        if (n <= 0)
            break;
        got += (size_t)n;
        req[got] = '\0';
        if (strstr(req, "\r\n\r\n") != NULL)
            break;
    }
    for (size_t i = 0; fd >= 0 && sc->pieces[i] != NULL; i++) {
        if (write(fd, sc->pieces[i], strlen(sc->pieces[i])) < 0)
            break;
        ts_sleep_ms(sc->pause_ms);
    }
    _exit(0);
}

static void reap(pid_t pid)
{
    int st;
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
}

Test(support, http_status_headers_body, .timeout = 20)
{
    static const char *const pieces[] = {
        "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n",
        "X-Request-Id:   abc-1\r\nContent-Length: 12\r\nConnection: close\r\n\r\n",
        "{\"ok\":", "true}\n", NULL};
    struct script sc = {pieces, 20};
    int port;
    pid_t pid = serve_once(&sc, &port);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/x", port);
    struct ts_resp r;
    cr_assert(eq(int, ts_http("POST", url, "{}", 2, NULL, &r), 0));
    cr_expect(eq(long, r.status, 201));
    cr_expect(eq(str, r.body, "{\"ok\":true}\n"));
    cr_expect(eq(sz, r.body_len, 12));
    cr_expect(eq(str, (char *)ts_resp_header(&r, "x-request-id"), "abc-1"));
    cr_expect(eq(str, (char *)ts_resp_header(&r, "CONTENT-TYPE"), "application/json"));
    cr_expect(eq(ptr, (void *)ts_resp_header(&r, "X-Absent"), NULL));
    ts_resp_free(&r);
    reap(pid);
}

Test(support, http_connection_refused, .timeout = 20)
{
    int port = ts_free_port();
    char url[64];
    struct ts_resp r;
    cr_assert(port > 0);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", port);
    cr_expect(eq(int, ts_http("GET", url, NULL, 0, NULL, &r), -EIO));
    cr_expect(eq(ptr, r.body, NULL));
}

Test(support, sse_split_frames_comments_and_end, .timeout = 20)
{
    static const char *const pieces[] = {
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n",
        ": hello\n\n",
        "id: 1\nda",
        "ta: one\n",
        "\n",
        "id: 2\r\nevent: multi\r\ndata: a\r\ndata: b\r\n\r\n",
        ":ping\n\nid: 3\ndata:",
        " x y\n\nid: 4\n",
        NULL};
    struct script sc = {pieces, 30};
    int port;
    pid_t pid = serve_once(&sc, &port);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/stream", port);
    struct ts_sse *s;
    struct ts_sse_event ev;
    cr_assert(eq(int, ts_sse_open(url, NULL, 5000, &s), 0));
    cr_expect(eq(long, ts_sse_status(s), 200));
    cr_expect(eq(str, (char *)ts_sse_header(s, "content-type"), "text/event-stream"));

    cr_assert(eq(int, ts_sse_next(s, 5000, &ev), 0));
    cr_expect(eq(int, ev.comment, 1));
    cr_expect(eq(str, (char *)ev.data, "hello"));

    cr_assert(eq(int, ts_sse_next(s, 5000, &ev), 0));
    cr_expect(eq(int, ev.comment, 0));
    cr_expect(eq(str, (char *)ev.id, "1"));
    cr_expect(eq(ptr, (void *)ev.event, NULL));
    cr_expect(eq(str, (char *)ev.data, "one"));

    cr_assert(eq(int, ts_sse_next(s, 5000, &ev), 0));
    cr_expect(eq(str, (char *)ev.id, "2"));
    cr_expect(eq(str, (char *)ev.event, "multi"));
    cr_expect(eq(str, (char *)ev.data, "a\nb"));

    cr_assert(eq(int, ts_sse_next(s, 5000, &ev), 0));
    cr_expect(eq(int, ev.comment, 1));
    cr_expect(eq(str, (char *)ev.data, "ping"));

    cr_assert(eq(int, ts_sse_next(s, 5000, &ev), 0));
    cr_expect(eq(str, (char *)ev.id, "3"));
    cr_expect(eq(str, (char *)ev.data, "x y"));

    /* "id: 4" never got its blank line: the stream ended, no frame. */
    cr_expect(eq(int, ts_sse_next(s, 5000, &ev), -EPIPE));
    ts_sse_close(s);
    reap(pid);
}

Test(support, sse_timeout_when_silent, .timeout = 20)
{
    static const char *const pieces[] = {
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n", "data: a\n\n", NULL};
    struct script sc = {pieces, 3000};
    int port;
    pid_t pid = serve_once(&sc, &port);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", port);
    struct ts_sse *s;
    struct ts_sse_event ev;
    cr_assert(eq(int, ts_sse_open(url, NULL, 5000, &s), 0));
    cr_expect(eq(int, ts_sse_next(s, 5000, &ev), 0));
    cr_expect(eq(str, (char *)ev.data, "a"));
    cr_expect(eq(int, ts_sse_next(s, 200, &ev), -ETIMEDOUT));
    ts_sse_close(s);
    reap(pid);
}

Test(support, proc_output_exit_and_signal, .timeout = 20)
{
    const char *const argv[] = {"/bin/sh", "-c", "echo out-$TS_X; echo err >&2; exit 3", NULL};
    const char *const env[] = {"TS_X=42", NULL};
    struct ts_proc *p;
    int st = -1;
    cr_assert(eq(int, ts_proc_start(argv, env, &p), 0));
    cr_assert(eq(int, ts_proc_wait(p, 10000, &st), 0));
    cr_expect(eq(int, st, 3));
    cr_expect(ne(ptr, strstr(ts_proc_log(p), "out-42\n"), NULL));
    cr_expect(ne(ptr, strstr(ts_proc_log(p), "err\n"), NULL));
    ts_proc_free(p);

    const char *const sleeper[] = {"sleep", "30", NULL};
    cr_assert(eq(int, ts_proc_start(sleeper, NULL, &p), 0));
    cr_expect(eq(int, ts_proc_wait(p, 50, &st), -ETIMEDOUT));
    cr_expect(eq(int, ts_proc_signal(p, SIGTERM), 0));
    cr_assert(eq(int, ts_proc_wait(p, 10000, &st), 0));
    cr_expect(eq(int, st, 128 + SIGTERM));
    cr_expect(eq(int, ts_proc_signal(p, SIGTERM), -ESRCH));
    ts_proc_free(p);
}

Test(support, proc_missing_binary, .timeout = 20)
{
    const char *const argv[] = {"/nonexistent/binary", NULL};
    struct ts_proc *p = (struct ts_proc *)1;
    cr_expect(eq(int, ts_proc_start(argv, NULL, &p), -ENOENT));
    cr_expect(eq(ptr, p, NULL));
}

Test(support, wait_log_and_port, .timeout = 20)
{
    const char *const argv[] = {"/bin/sh", "-c", "sleep 0.2; echo ready; sleep 30", NULL};
    struct ts_proc *p;
    cr_assert(eq(int, ts_proc_start(argv, NULL, &p), 0));
    cr_expect(eq(int, ts_proc_wait_log(p, "ready", 10000), 0));
    ts_proc_free(p);

    int port = ts_free_port();
    cr_assert(port > 0);
    cr_expect(eq(int, ts_wait_port(port, 100), -ETIMEDOUT));
}
