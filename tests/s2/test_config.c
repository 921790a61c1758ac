/* test_config.c - S2 configuration: Go durations, endpoints, defaults, errors. */
#include <errno.h>
#include <string.h>

#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include "t_util.h"

/* Parameters cross into the test process: inline strings, no pointers. */
struct dur_case {
    char text[32];
    int rc;
    uint64_t ns;
};

ParameterizedTestParameters(s2_config, duration)
{
    static struct dur_case cases[] = {
        {"0", 0, 0},
        {"100ms", 0, 100000000ULL},
        {"1s", 0, 1000000000ULL},
        {"1m30s", 0, 90000000000ULL},
        {"1.5h", 0, 5400000000000ULL},
        {"300us", 0, 300000ULL},
        {"300\xc2\xb5s", 0, 300000ULL},
        {"2h45m0.5s", 0, 9900500000000ULL},
        {".5s", 0, 500000000ULL},
        {"1.s", 0, 1000000000ULL},
        {"+5ns", 0, 5ULL},
        {"-0", 0, 0},
        {"2562047h47m16.854775807s", 0, 9223372036854775807ULL},
        {"2562048h", -ERANGE, 0},
        {"", -EINVAL, 0},
        {"10", -EINVAL, 0},
        {"abc", -EINVAL, 0},
        {"1x", -EINVAL, 0},
        {"-1s", -EINVAL, 0},
        {"1s ", -EINVAL, 0},
        {".s", -EINVAL, 0},
        {"1.5", -EINVAL, 0},
    };
    return cr_make_param_array(struct dur_case, cases, sizeof cases / sizeof cases[0]);
}

ParameterizedTest(struct dur_case *c, s2_config, duration)
{
    uint64_t ns = 12345;
    int rc = s2_duration_parse(c->text, &ns);
    cr_assert_eq(rc, c->rc, "\"%s\": rc %d, want %d", c->text, rc, c->rc);
    if (c->rc == 0)
        cr_assert_eq(ns, c->ns, "\"%s\": %llu ns, want %llu", c->text, (unsigned long long)ns,
                     (unsigned long long)c->ns);
}

struct ep_case {
    char text[40];
    char want[40]; /* "" = -EINVAL */
};

ParameterizedTestParameters(s2_config, endpoint)
{
    static struct ep_case cases[] = {
        {"localhost:8080", "http://localhost:8080/v1"},
        {"127.0.0.1:9", "http://127.0.0.1:9/v1"},
        {"[::1]:8080", "http://[::1]:8080/v1"},
        {"http://localhost:8080/", "http://localhost:8080/v1"},
        {"aws.s2.dev", "https://aws.s2.dev/v1"},
        {"https://{basin}.b.example.com", "https://{basin}.b.example.com/v1"},
        {"http://h.example:81/custom/v1/", "http://h.example:81/custom/v1"},
        {"ftp://x", ""},
        {"", ""},
        {"http://", ""},
        {"host:0", ""},
        {"host:70000", ""},
        {"host:8x", ""},
        {"has space", ""},
        {"host?q=1", ""},
    };
    return cr_make_param_array(struct ep_case, cases, sizeof cases / sizeof cases[0]);
}

ParameterizedTest(struct ep_case *c, s2_config, endpoint)
{
    char *out = NULL;
    int rc = s2_endpoint_normalize(c->text, &out);
    if (c->want[0] == '\0') {
        cr_assert_eq(rc, -EINVAL, "\"%s\" accepted as %s", c->text, out ? out : "");
        cr_assert_null(out);
    } else {
        cr_assert_eq(rc, 0, "\"%s\": rc %d", c->text, rc);
        cr_assert_str_eq(out, c->want);
    }
    free(out);
}

Test(s2_config, defaults)
{
    const char *env[] = {NULL};
    struct s2_config cfg;
    char err[256];
    cr_assert_eq(s2_config_load(t_lookup, (void *)env, &cfg, err, sizeof err), 0);
    cr_assert_not(s2_config_enabled(&cfg));
    cr_assert_str_eq(cfg.account_endpoint, "https://aws.s2.dev/v1");
    cr_assert_str_eq(cfg.basin_endpoint, "https://{basin}.b.s2.dev/v1");
    cr_assert_eq(cfg.linger_ms, 100);
    cr_assert_eq(cfg.max_records, 50);
    cr_assert_eq(cfg.queue_records, 65536);
    cr_assert_eq(cfg.request_timeout_ms, 5000);
    cr_assert_eq(cfg.connect_timeout_ms, 3000);
    cr_assert_null(cfg.access_token);
    s2_config_clear(&cfg);
    cr_assert_null(cfg.account_endpoint);
}

Test(s2_config, full)
{
    const char *env[] = {"S2_ACCESS_TOKEN",
                         T_TOKEN,
                         "S2_BASIN",
                         "my-basin-01",
                         "S2_STREAM",
                         "vm/events",
                         "S2_ACCOUNT_ENDPOINT",
                         "localhost:8080",
                         "S2_BASIN_ENDPOINT",
                         "127.0.0.1:8080",
                         "S2_BATCHER_LINGER",
                         "1m30s",
                         "S2_BATCHER_MAX_RECORDS",
                         "1000",
                         "S2_BATCHER_QUEUE_RECORDS",
                         "10",
                         "S2_REQUEST_TIMEOUT",
                         "1500us",
                         "S2_CONNECT_TIMEOUT",
                         "2s",
                         NULL};
    struct s2_config cfg;
    char err[256];
    cr_assert_eq(s2_config_load(t_lookup, (void *)env, &cfg, err, sizeof err), 0, "%s", err);
    cr_assert(s2_config_enabled(&cfg));
    cr_assert_str_eq(cfg.access_token, T_TOKEN);
    cr_assert_str_eq(cfg.basin, "my-basin-01");
    cr_assert_str_eq(cfg.stream, "vm/events");
    cr_assert_str_eq(cfg.account_endpoint, "http://localhost:8080/v1");
    cr_assert_str_eq(cfg.basin_endpoint, "http://127.0.0.1:8080/v1");
    cr_assert_eq(cfg.linger_ms, 90000);
    cr_assert_eq(cfg.max_records, 1000);
    cr_assert_eq(cfg.queue_records, 10);
    cr_assert_eq(cfg.request_timeout_ms, 2); /* 1.5 ms rounds up */
    cr_assert_eq(cfg.connect_timeout_ms, 2000);
    s2_config_clear(&cfg);
}

Test(s2_config, empty_values_are_unset)
{
    const char *env[] = {"S2_ACCESS_TOKEN", "", "S2_BATCHER_LINGER", "", NULL};
    struct s2_config cfg;
    char err[256];
    cr_assert_eq(s2_config_load(t_lookup, (void *)env, &cfg, err, sizeof err), 0);
    cr_assert_null(cfg.access_token);
    cr_assert_eq(cfg.linger_ms, 100);
    s2_config_clear(&cfg);
}

struct bad_case {
    char key[32];
    char value[32];
};

ParameterizedTestParameters(s2_config, bad_value_names_variable)
{
    static struct bad_case cases[] = {
        {"S2_BATCHER_LINGER", "100"},
        {"S2_BATCHER_LINGER", "fast"},
        {"S2_BATCHER_LINGER", "-1s"},
        {"S2_BATCHER_LINGER", "9999999999h"},
        {"S2_BATCHER_MAX_RECORDS", "0"},
        {"S2_BATCHER_MAX_RECORDS", "1001"},
        {"S2_BATCHER_MAX_RECORDS", "50x"},
        {"S2_BATCHER_MAX_RECORDS", "-5"},
        {"S2_BATCHER_MAX_RECORDS", "99999999999999999999"},
        {"S2_BATCHER_QUEUE_RECORDS", "0"},
        {"S2_REQUEST_TIMEOUT", "0"},
        {"S2_CONNECT_TIMEOUT", "1y"},
        {"S2_ACCOUNT_ENDPOINT", "ftp://x"},
        {"S2_BASIN_ENDPOINT", "http://h:99999"},
        {"S2_BASIN", "Bad_Basin"},
        {"S2_BASIN", "short"},
        {"S2_STREAM", ".."},
    };
    return cr_make_param_array(struct bad_case, cases, sizeof cases / sizeof cases[0]);
}

ParameterizedTest(struct bad_case *c, s2_config, bad_value_names_variable)
{
    const char *env[] = {"S2_ACCESS_TOKEN", T_TOKEN, c->key, c->value, NULL};
    struct s2_config cfg;
    char err[256] = "";
    cr_assert_eq(s2_config_load(t_lookup, (void *)env, &cfg, err, sizeof err), -EINVAL,
                 "%s=%s accepted", c->key, c->value);
    cr_assert(strncmp(err, c->key, strlen(c->key)) == 0, "message does not name %s: %s", c->key,
              err);
    t_check_no_token(err);
    cr_assert_null(cfg.access_token);
    s2_config_clear(&cfg);
}

Test(s2_config, bad_token_not_echoed)
{
    const char *env[] = {"S2_ACCESS_TOKEN", T_TOKEN "\r\nX-Evil: 1", NULL};
    struct s2_config cfg;
    char err[256] = "";
    cr_assert_eq(s2_config_load(t_lookup, (void *)env, &cfg, err, sizeof err), -EINVAL);
    cr_assert(strncmp(err, "S2_ACCESS_TOKEN", 15) == 0, "%s", err);
    t_check_no_token(err);
    s2_config_clear(&cfg);
}
