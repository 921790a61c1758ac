/*
 * test_config.c - the host's configuration module and request-id rule,
 * in-process: env-file syntax, overlay precedence, typed values.
 */
#include "config.h"
#include "router.h"

#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static struct config *load(const char *text, int expect_rc, char *err, size_t errlen)
{
    struct config *c;
    cr_assert(eq(int, config_new(&c), 0));
    cr_assert(eq(int, config_load_text(c, text, strlen(text), "test.env", err, errlen), expect_rc),
              "load: %s", err);
    return c;
}

Test(config, env_file_syntax)
{
    char err[256] = "";
    struct config *c = load("# a comment\n"
                            "\n"
                            "PLAIN=value one   # trailing comment\n"
                            "  export EXPORTED=yes\n"
                            "DQ=\"a \\\"quoted\\\" # not a comment\\n\"\n"
                            "SQ='raw $HOME \\n'\n"
                            "EMPTY=\n"
                            "HASH=a#b\n"
                            "CRLF=x\r\n"
                            "PLAIN=second wins\n",
                            0, err, sizeof(err));
    cr_expect(eq(str, (char *)config_get(c, "PLAIN"), "second wins"));
    cr_expect(eq(str, (char *)config_get(c, "EXPORTED"), "yes"));
    cr_expect(eq(str, (char *)config_get(c, "DQ"), "a \"quoted\" # not a comment\n"));
    cr_expect(eq(str, (char *)config_get(c, "SQ"), "raw $HOME \\n"));
    cr_expect(eq(str, (char *)config_get(c, "EMPTY"), ""));
    cr_expect(eq(str, (char *)config_get(c, "HASH"), "a#b"));
    cr_expect(eq(str, (char *)config_get(c, "CRLF"), "x"));
    config_free(c);
}

Test(config, env_file_errors_name_the_line)
{
    char err[256] = "";
    config_free(load("A=1\nnot an assignment\n", -EINVAL, err, sizeof(err)));
    cr_expect(eq(str, err, "test.env:2: expected KEY=VALUE"));
    config_free(load("A=1\n\nB=\"open\n", -EINVAL, err, sizeof(err)));
    cr_expect(eq(str, err, "test.env:3: unterminated double quote"));
    config_free(load("1BAD=x\n", -EINVAL, err, sizeof(err)));
    cr_expect(eq(str, err, "test.env:1: expected KEY=VALUE"));
    config_free(load("Q='a' b\n", -EINVAL, err, sizeof(err)));
    cr_expect(eq(str, err, "test.env:1: unexpected text after the quoted value"));
}

Test(config, missing_file)
{
    struct config *c;
    char err[256] = "";
    cr_assert(eq(int, config_new(&c), 0));
    cr_expect(eq(int, config_load_file(c, "/nonexistent/x.env", err, sizeof(err)), -ENOENT));
    cr_expect(eq(str, err, "/nonexistent/x.env: No such file or directory"));
    config_free(c);
}

Test(config, file_overlays_environment)
{
    char err[256] = "";
    setenv("TCFG_BOTH", "from-env", 1);
    setenv("TCFG_ENV_ONLY", "env-only", 1);
    unsetenv("TCFG_UNSET");
    struct config *c = load("TCFG_BOTH=from-file\n", 0, err, sizeof(err));
    cr_expect(eq(str, (char *)config_get(c, "TCFG_BOTH"), "from-file"));
    cr_expect(eq(str, (char *)config_get(c, "TCFG_ENV_ONLY"), "env-only"));
    cr_expect(eq(ptr, (void *)config_get(c, "TCFG_UNSET"), NULL));
    config_free(c);
}

Test(config, booleans)
{
    const char *on[] = {"on", "ON", "true", "True", "1", "yes"};
    const char *off[] = {"off", "false", "FALSE", "0", "no"};
    const char *bad[] = {"", "maybe", "2", "enabled", "o n"};
    int v;
    for (size_t i = 0; i < sizeof(on) / sizeof(on[0]); i++) {
        v = -1;
        cr_expect(eq(int, config_parse_bool(on[i], &v), 0), "%s", on[i]);
        cr_expect(eq(int, v, 1), "%s", on[i]);
    }
    for (size_t i = 0; i < sizeof(off) / sizeof(off[0]); i++) {
        v = -1;
        cr_expect(eq(int, config_parse_bool(off[i], &v), 0), "%s", off[i]);
        cr_expect(eq(int, v, 0), "%s", off[i]);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_expect(eq(int, config_parse_bool(bad[i], &v), -EINVAL), "%s", bad[i]);
}

Test(config, bool_error_names_the_variable)
{
    char err[256] = "";
    int v = 7;
    struct config *c = load("X_ENABLED=maybe\nY_ENABLED=\n", 0, err, sizeof(err));
    cr_expect(eq(int, config_get_bool(c, "X_ENABLED", 1, &v, err, sizeof(err)), -EINVAL));
    cr_expect(eq(str, err, "X_ENABLED: 'maybe' is not on/off/true/false/1/0"));
    cr_expect(eq(int, config_get_bool(c, "Y_ENABLED", 1, &v, err, sizeof(err)), 0));
    cr_expect(eq(int, v, 1), "empty means the default");
    config_free(c);
}

Test(config, durations)
{
    static const struct {
        const char *s;
        uint64_t ms;
    } ok[] = {{"10s", 10000},   {"250ms", 250},        {"1m30s", 90000}, {"1.5s", 1500},
              {"2h", 7200000},  {"1500", 1500},        {"0", 0},         {"1500000us", 1500},
              {"3000000ns", 3}, {"1h1m1s1ms", 3661001}};
    const char *bad[] = {"", "s", "10x", "-1s", "1s-", "abc", "1.s5"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        uint64_t v = 12345;
        cr_expect(eq(int, config_parse_duration_ms(ok[i].s, &v), 0), "%s", ok[i].s);
        cr_expect(eq(u64, v, ok[i].ms), "%s", ok[i].s);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t v;
        cr_expect(eq(int, config_parse_duration_ms(bad[i], &v), -EINVAL), "%s", bad[i]);
    }
}

Test(config, sizes)
{
    static const struct {
        const char *s;
        uint64_t v;
    } ok[] = {{"4096", 4096},       {"64KiB", 65536}, {"4MiB", 4194304}, {"4M", 4194304},
              {"1GiB", 1073741824}, {"10 KB", 10240}, {"7B", 7}};
    const char *bad[] = {"", "MiB", "4TiB", "-1", "4 MiB x"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        uint64_t v = 1;
        cr_expect(eq(int, config_parse_size(ok[i].s, &v), 0), "%s", ok[i].s);
        cr_expect(eq(u64, v, ok[i].v), "%s", ok[i].s);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t v;
        cr_expect(eq(int, config_parse_size(bad[i], &v), -EINVAL), "%s", bad[i]);
    }
    uint64_t v;
    cr_expect(eq(int, config_parse_size("99999999999999999999", &v), -ERANGE));
}

Test(config, ports)
{
    char err[256] = "";
    int port = -1;
    struct config *c = load("P1=8080\nP2=70000\nP3=80a\n", 0, err, sizeof(err));
    cr_expect(eq(int, config_get_port(c, "P1", 1, &port, err, sizeof(err)), 0));
    cr_expect(eq(int, port, 8080));
    cr_expect(eq(int, config_get_port(c, "P2", 1, &port, err, sizeof(err)), -EINVAL));
    cr_expect(eq(str, err, "P2: '70000' is not a port (0-65535)"));
    cr_expect(eq(int, config_get_port(c, "P3", 1, &port, err, sizeof(err)), -EINVAL));
    cr_expect(eq(int, config_get_port(c, "TCFG_NO_SUCH_PORT", 10001, &port, err, sizeof(err)), 0));
    cr_expect(eq(int, port, 10001));
    config_free(c);
}

Test(router, request_id_rule)
{
    char long_id[200];
    memset(long_id, 'a', sizeof(long_id) - 1);
    long_id[sizeof(long_id) - 1] = '\0';
    cr_expect(eq(int, router_request_id_valid("abc-123"), 1));
    cr_expect(eq(int, router_request_id_valid("host/AbC012xyz9-000001"), 1));
    cr_expect(eq(int, router_request_id_valid("a.b_c:d+e=f@g"), 1));
    cr_expect(eq(int, router_request_id_valid(""), 0));
    cr_expect(eq(int, router_request_id_valid(NULL), 0));
    cr_expect(eq(int, router_request_id_valid("has space"), 0));
    cr_expect(eq(int, router_request_id_valid("quote\""), 0));
    cr_expect(eq(int, router_request_id_valid("nl\n"), 0));
    cr_expect(eq(int, router_request_id_valid(long_id), 0));
    long_id[128] = '\0';
    cr_expect(eq(int, router_request_id_valid(long_id), 1), "128 bytes is the limit");
}
