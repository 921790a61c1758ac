/*
 * s2/loop.h - libcurl multi driven by a libevent event_base.
 *
 * The only module that knows curl's sockets and timers. One loop per
 * client; transfers complete through callbacks on the event_base thread.
 * Each loop holds a reference on libcurl's global state:
 * s2_loop_new calls curl_global_init(CURL_GLOBAL_DEFAULT) and s2_loop_free
 * curl_global_cleanup (reference-counted and thread-safe since libcurl
 * 7.84), so a process that never creates a loop never initialises libcurl
 * or its TLS library. libcurl (>= 7.84) is not linked but loaded by the
 * first loop, so a process that never creates one never maps it either.
 */
#ifndef S2_LOOP_H
#define S2_LOOP_H
#include <stddef.h>

struct event_base;
struct s2_loop;
typedef void CURL;

/* Called once when a transfer ends; result is a CURLcode. The easy handle is
 * already removed from the multi and is cleaned up by the loop after the
 * callback returns. */
typedef void (*s2_loop_done_fn)(CURL *easy, int result, void *arg);

/* Create a loop on base (borrowed; must outlive the loop). The first loop
 * of the process loads libcurl (dlopen of libcurl.so.4, or the file named
 * by S2_LIBCURL): -ELIBACC when it cannot, and s2_loop_libcurl_error says
 * why. */
int s2_loop_new(struct event_base *base, struct s2_loop **out);
/* Why libcurl cannot be loaded, written to buf (len > 0), which is
 * returned; NULL when it can be (it is then loaded). */
const char *s2_loop_libcurl_error(char *buf, size_t len);

/* The event_base the loop runs on (borrowed). */
struct event_base *s2_loop_base(const struct s2_loop *loop);

/* Start a transfer. The loop takes ownership of easy (even on failure) and
 * uses its CURLOPT_PRIVATE. */
int s2_loop_add(struct s2_loop *loop, CURL *easy, s2_loop_done_fn done, void *arg);

/* Abort a transfer without calling its done callback; frees easy. */
void s2_loop_cancel(struct s2_loop *loop, CURL *easy);

/* Number of transfers in flight. */
unsigned s2_loop_active(const struct s2_loop *loop);

/* Cancel every transfer (no callbacks) and free. NULL is a no-op. May be
 * called from a done callback (the free completes when it returns). */
void s2_loop_free(struct s2_loop *loop);

#endif /* S2_LOOP_H */
