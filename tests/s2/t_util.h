/* t_util.h - shared set-up of the s2 tests: event base, fixture server,
 * loop, client and a log capture. */
#ifndef T_UTIL_H
#define T_UTIL_H

#include <stddef.h>

#include "fx_server.h"
#include "s2/client.h"
#include "s2/config.h"
#include "s2/loop.h"

#define T_TOKEN "sekret-token-4242"
#define T_BASIN "test-basin-01"

struct t_ctx {
    struct event_base *base;
    struct fx_server *fx;
    struct s2_loop *loop;
    struct s2_client *client;
    struct s2_config cfg;
    char log[1 << 16];
    size_t loglen;
};

extern struct t_ctx T;

/* Lookup over a NULL-terminated {key, value, key, value, ..., NULL} array. */
const char *t_lookup(const char *key, void *arg);

/* Start base + fixture server + loop + client with config from env pairs
 * (S2_ACCESS_TOKEN, S2_BASIN, endpoints and short timeouts preset). */
void t_setup_with(const char *const *env);
void t_setup(void);
void t_teardown(void);

/* Log sink appending to T.log. */
void t_log(int level, const char *msg, void *arg);
/* Check a message for the token. */
void t_check_no_token(const char *text);

/* Run the loop until *flag is non-zero. */
void t_run_until(const int *flag);
/* Run the loop for ms milliseconds. */
void t_run_for(unsigned ms);

#endif /* T_UTIL_H */
