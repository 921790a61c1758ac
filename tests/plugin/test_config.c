/* test_config.c - TELEMETRY_* variables: defaults, bounds, messages. */
#include <errno.h>
#include <string.h>

#include <criterion/criterion.h>

#include "config.h"
#include "envelope.h"

struct kv {
    const char *key, *value;
};

static const char *lookup(const char *key, void *arg)
{
    for (const struct kv *kv = arg; kv->key != NULL; kv++)
        if (strcmp(kv->key, key) == 0)
            return kv->value;
    return NULL;
}

Test(config, defaults)
{
    struct kv none[] = {{NULL, NULL}};
    struct tel_config c;
    char err[256] = "";
    cr_assert_eq(tel_config_load(lookup, none, &c, err, sizeof err), 0, "%s", err);
    cr_assert_eq(c.enabled, 1);
    cr_assert_eq(c.ring_capacity, 1024);
    cr_assert_eq(c.boot_session, 0);
    cr_assert_eq(c.max_body, 2u * 1024 * 1024);
    cr_assert_null(c.archive_dir);
    cr_assert_eq(c.keepalive_ms, 15000);
    cr_assert_eq(c.sse_max_pending, 256 * 1024);
    cr_assert_eq(s2_config_enabled(&c.s2), 0);
    tel_config_clear(&c);
}

Test(config, values)
{
    struct kv kv[] = {{"TELEMETRY_ENABLED", "false"},
                      {"TELEMETRY_RING_CAPACITY", "8"},
                      {"TELEMETRY_CATEGORIES", " page , control"},
                      {"TELEMETRY_MAX_BODY", "4096"},
                      {"TELEMETRY_ARCHIVE_DIR", "/tmp/x"},
                      {"TELEMETRY_SSE_KEEPALIVE", "250ms"},
                      {"TELEMETRY_SSE_MAX_PENDING", "65536"},
                      {NULL, NULL}};
    struct tel_config c;
    char err[256] = "";
    cr_assert_eq(tel_config_load(lookup, kv, &c, err, sizeof err), 0, "%s", err);
    cr_assert_eq(c.enabled, 0);
    cr_assert_eq(c.ring_capacity, 8);
    cr_assert_eq(c.boot_session, 1);
    cr_assert_eq(c.boot_mask, TELEMETRY_CAT_PAGE | TELEMETRY_CAT_CONTROL);
    cr_assert_eq(c.max_body, 4096);
    cr_assert_str_eq(c.archive_dir, "/tmp/x");
    cr_assert_eq(c.keepalive_ms, 250);
    cr_assert_eq(c.sse_max_pending, 65536);
    tel_config_clear(&c);
}

Test(config, categories_values)
{
    uint32_t m;
    cr_assert_eq(tel_config_categories("default", &m), 0);
    cr_assert_eq(m, TEL_CATS_DEFAULT);
    cr_assert_eq(tel_config_categories("all", &m), 0);
    cr_assert_eq(m, TEL_CATS_USER);
    cr_assert_eq(tel_config_categories("captcha", &m), 0);
    cr_assert_eq(m, TELEMETRY_CAT_CAPTCHA);
    static const char *bad[] = {"monitor", "page,", ",page", "page,,system", "Page", "none", " "};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq(tel_config_categories(bad[i], &m), -EINVAL, "<%s>", bad[i]);
}

Test(config, invalid_values_name_the_variable)
{
    static const struct kv cases[] = {
        {"TELEMETRY_RING_CAPACITY", "0"},    {"TELEMETRY_RING_CAPACITY", "1048577"},
        {"TELEMETRY_RING_CAPACITY", "12k"},  {"TELEMETRY_RING_CAPACITY", "-3"},
        {"TELEMETRY_CATEGORIES", "monitor"}, {"TELEMETRY_CATEGORIES", "bogus"},
        {"TELEMETRY_MAX_BODY", "10"},        {"TELEMETRY_MAX_BODY", "2MiB"},
        {"TELEMETRY_ENABLED", "maybe"},      {"TELEMETRY_SSE_KEEPALIVE", "1ms"},
        {"TELEMETRY_SSE_KEEPALIVE", "15"},   {"TELEMETRY_SSE_MAX_PENDING", "100"},
        {"S2_BATCHER_MAX_RECORDS", "5000"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct kv kv[] = {cases[i], {NULL, NULL}};
        struct tel_config c;
        char err[512] = "";
        cr_assert_eq(tel_config_load(lookup, kv, &c, err, sizeof err), -EINVAL, "%s=%s accepted",
                     cases[i].key, cases[i].value);
        cr_assert_not_null(strstr(err, cases[i].key), "message <%s> does not name %s", err,
                           cases[i].key);
        tel_config_clear(&c);
    }
}
