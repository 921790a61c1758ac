/*
 * util.c - environment, ports and time helpers of the test support library.
 */
#include "support.h"

#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

const char *ts_env(const char *name)
{
    const char *v = getenv(name);
    if (v == NULL || *v == '\0')
        cr_assert_fail("environment variable %s is not set (run this test through meson test)",
                       name);
    return v;
}

long long ts_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void ts_sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static void loopback(struct sockaddr_in *sa, int port)
{
    memset(sa, 0, sizeof(*sa));
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)port);
    sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
}

int ts_free_port(void)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    int rc;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    loopback(&sa, 0);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) != 0) {
        rc = -errno;
        goto out;
    }
    rc = ntohs(sa.sin_port);
out:
    close(fd);
    return rc;
}

int ts_wait_port(int port, int timeout_ms)
{
    long long deadline = ts_now_ms() + timeout_ms;
    struct sockaddr_in sa;
    loopback(&sa, port);
    for (;;) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return -errno;
        int ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
        close(fd);
        if (ok)
            return 0;
        if (ts_now_ms() >= deadline)
            return -ETIMEDOUT;
        ts_sleep_ms(20);
    }
}
