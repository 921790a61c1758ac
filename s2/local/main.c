/*
 * main.c - the s2-local executable: an S2-compatible server on one port.
 *
 * Flags (each with an environment variable; a flag wins):
 *   --listen ADDR      S2LOCAL_LISTEN     address to bind (default 127.0.0.1)
 *   --port N           S2LOCAL_PORT       port (default 4243; 0 = pick a free one)
 *   --data-dir DIR     S2LOCAL_DATA_DIR   keep streams durably in DIR (default: in memory)
 *   --basin NAME       S2LOCAL_BASIN      the basin to create and serve (default: any basin)
 *   --fsync MODE       S2LOCAL_FSYNC      none (default): write(2) before acknowledging,
 *                                         survives kill -9; batch: also fdatasync per append,
 *                                         survives power loss
 *   --max-long-polls N S2LOCAL_MAX_LONG_POLLS  open wait= reads (default 1024)
 *   --max-read-sessions N S2LOCAL_MAX_READ_SESSIONS  open read sessions (SSE; default 1024)
 * On start it prints "s2-local: listening on http://ADDR:PORT" and the
 * environment for S2 SDKs and CLIs to stderr. SIGINT/SIGTERM stop it.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "s2/local.h"

#define DEFAULT_PORT 4243

static const char usage[] =
    "usage: s2-local [--listen ADDR] [--port N] [--data-dir DIR] [--basin NAME]\n"
    "                [--fsync none|batch] [--max-long-polls N] [--max-read-sessions N]\n"
    "  --listen ADDR       address to bind (S2LOCAL_LISTEN; default 127.0.0.1)\n"
    "  --port N            port, 0 picks a free one (S2LOCAL_PORT; default 4243)\n"
    "  --data-dir DIR      keep streams durably in DIR (S2LOCAL_DATA_DIR; default in memory)\n"
    "  --basin NAME        basin to create and serve (S2LOCAL_BASIN; default any basin)\n"
    "  --fsync MODE        none: acknowledge after write(2), survives kill -9 (default);\n"
    "                      batch: fdatasync each append first, survives power loss\n"
    "                      (S2LOCAL_FSYNC)\n"
    "  --max-long-polls N  bound on open wait= reads (S2LOCAL_MAX_LONG_POLLS; default 1024)\n"
    "  --max-read-sessions N\n"
    "                      bound on open read sessions, SSE (S2LOCAL_MAX_READ_SESSIONS;\n"
    "                      default 1024)\n";

static const char *const level_names[] = {"debug", "info", "warn", "error"};

static void log_stderr(int level, const char *msg, void *arg)
{
    (void)arg;
    if (level < 1)
        return;
    fprintf(stderr, "s2-local: %s: %s\n", level_names[level > 3 ? 3 : level], msg);
}

struct app {
    struct event_base *base;
    struct s2l_server *srv;
};

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    struct app *app = arg;
    fprintf(stderr, "s2-local: %s, stopping\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    /* Let the answers to open long polls and sessions go out first. */
    s2l_server_drain(app->srv);
    struct timeval tv = {0, 100 * 1000};
    event_base_loopexit(app->base, &tv);
}

static int parse_uint(const char *s, unsigned long max, unsigned long *out)
{
    char *end = NULL;
    errno = 0;
    if (s == NULL || *s < '0' || *s > '9')
        return -EINVAL;
    unsigned long v = strtoul(s, &end, 10);
    if (errno != 0 || *end != '\0' || v > max)
        return -EINVAL;
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    const char *listen = getenv("S2LOCAL_LISTEN");
    const char *port_s = getenv("S2LOCAL_PORT");
    const char *dir = getenv("S2LOCAL_DATA_DIR");
    const char *basin = getenv("S2LOCAL_BASIN");
    const char *fsync_s = getenv("S2LOCAL_FSYNC");
    const char *polls_s = getenv("S2LOCAL_MAX_LONG_POLLS");
    const char *sessions_s = getenv("S2LOCAL_MAX_READ_SESSIONS");
    static const struct option longopts[] = {
        {"listen", required_argument, NULL, 'l'},
        {"port", required_argument, NULL, 'p'},
        {"data-dir", required_argument, NULL, 'd'},
        {"basin", required_argument, NULL, 'b'},
        {"fsync", required_argument, NULL, 'f'},
        {"max-long-polls", required_argument, NULL, 'm'},
        {"max-read-sessions", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "l:p:d:b:f:m:s:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'l':
            listen = optarg;
            break;
        case 'p':
            port_s = optarg;
            break;
        case 'd':
            dir = optarg;
            break;
        case 'b':
            basin = optarg;
            break;
        case 'f':
            fsync_s = optarg;
            break;
        case 'm':
            polls_s = optarg;
            break;
        case 's':
            sessions_s = optarg;
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        default:
            fputs(usage, stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fputs(usage, stderr);
        return 2;
    }
    struct s2l_opts opts = {0};
    opts.listen_addr = listen && *listen ? listen : "127.0.0.1";
    opts.data_dir = dir && *dir ? dir : NULL;
    opts.basin = basin && *basin ? basin : NULL;
    unsigned long v = DEFAULT_PORT;
    if (port_s && *port_s && parse_uint(port_s, 65535, &v) != 0) {
        fprintf(stderr, "s2-local: invalid port: %s\n", port_s);
        return 2;
    }
    opts.port = (uint16_t)v;
    v = 0;
    if (polls_s && *polls_s && parse_uint(polls_s, 1000000, &v) != 0) {
        fprintf(stderr, "s2-local: invalid --max-long-polls: %s\n", polls_s);
        return 2;
    }
    opts.max_long_polls = (uint32_t)v;
    v = 0;
    if (sessions_s && *sessions_s && parse_uint(sessions_s, 1000000, &v) != 0) {
        fprintf(stderr, "s2-local: invalid --max-read-sessions: %s\n", sessions_s);
        return 2;
    }
    opts.max_read_sessions = (uint32_t)v;
    if (fsync_s == NULL || *fsync_s == 0 || strcmp(fsync_s, "none") == 0) {
        opts.fsync = S2L_FSYNC_NONE;
    } else if (strcmp(fsync_s, "batch") == 0) {
        opts.fsync = S2L_FSYNC_BATCH;
    } else {
        fprintf(stderr, "s2-local: invalid --fsync: %s (none or batch)\n", fsync_s);
        return 2;
    }

    int status = 1;
    struct app app = {0};
    struct event *sigint = NULL, *sigterm = NULL;
    struct event_base *base = event_base_new();
    if (base == NULL) {
        fprintf(stderr, "s2-local: cannot create the event loop\n");
        return 1;
    }
    app.base = base;
    signal(SIGPIPE, SIG_IGN);
    int rc = s2l_server_new(base, &opts, log_stderr, NULL, &app.srv);
    if (rc != 0) {
        fprintf(stderr, "s2-local: cannot start: %s\n", strerror(-rc));
        goto OUT;
    }
    sigint = evsignal_new(base, SIGINT, on_signal, &app);
    sigterm = evsignal_new(base, SIGTERM, on_signal, &app);
    if (sigint == NULL || sigterm == NULL || evsignal_add(sigint, NULL) != 0 ||
        evsignal_add(sigterm, NULL) != 0) {
        fprintf(stderr, "s2-local: cannot install signal handlers\n");
        goto OUT;
    }
    unsigned port = s2l_server_port(app.srv);
    const char *host = opts.listen_addr;
    if (strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0)
        host = "127.0.0.1";
    const char *lb = strchr(host, ':') ? "[" : "", *rb = strchr(host, ':') ? "]" : "";
    fprintf(stderr, "s2-local: listening on http://%s%s%s:%u (%s%s, fsync %s%s%s)\n", lb,
            opts.listen_addr, rb, port, opts.data_dir ? "data in " : "in memory",
            opts.data_dir ? opts.data_dir : "", opts.fsync == S2L_FSYNC_BATCH ? "batch" : "none",
            opts.basin ? ", basin " : "", opts.basin ? opts.basin : "");
    fprintf(stderr,
            "s2-local: to use it with S2 SDKs and the CLI:\n"
            "  export S2_ACCOUNT_ENDPOINT=http://%s%s%s:%u\n"
            "  export S2_BASIN_ENDPOINT=http://%s%s%s:%u\n"
            "  export S2_ACCESS_TOKEN=ignored\n",
            lb, host, rb, port, lb, host, rb, port);
    fflush(stderr);
    if (event_base_dispatch(base) < 0) {
        fprintf(stderr, "s2-local: event loop failed\n");
        goto OUT;
    }
    status = 0;
OUT:
    s2l_server_free(app.srv);
    if (sigint)
        event_free(sigint);
    if (sigterm)
        event_free(sigterm);
    event_base_free(base);
    return status;
}
