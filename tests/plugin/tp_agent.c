/* tp_agent.c - starting the agent with the plugin; reading s2-local. */
#include "tp_agent.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <criterion/criterion.h>

void tp_agent_start(struct tp_agent *a, const char *const env[], int plugins_mask, int archive)
{
    char plugins[4096], dir_kv[300];
    const char *full_env[64];
    size_t n = 0;

    memset(a, 0, sizeof *a);
    snprintf(a->basin, sizeof a->basin, "telemetry-local");
    snprintf(a->stream, sizeof a->stream, "telemetry");
    int len =
        snprintf(plugins, sizeof plugins, "AGENT_PLUGINS=telemetry:%s", ts_env("TELEMETRY_PLUGIN"));
    if (plugins_mask & TP_PUBLISHER)
        len += snprintf(plugins + len, sizeof plugins - (size_t)len, ",publisher:%s",
                        ts_env("PUBLISHER_PLUGIN"));
    if (plugins_mask & TP_FIXTURE)
        snprintf(plugins + len, sizeof plugins - (size_t)len, ",fixture:%s",
                 ts_env("FIXTURE_PLUGIN"));
    full_env[n++] = plugins;
    if (archive) {
        const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
        snprintf(a->dir, sizeof a->dir, "%s/tel-e2e-XXXXXX", tmp);
        cr_assert_not_null(mkdtemp(a->dir), "mkdtemp");
        snprintf(dir_kv, sizeof dir_kv, "TELEMETRY_ARCHIVE_DIR=%s", a->dir);
        full_env[n++] = dir_kv;
    } else {
        full_env[n++] = "TELEMETRY_ARCHIVE_DIR=";
    }
    /* S2 from the test's environment must not leak in, unless the test sets it. */
    int own_s2 = 0;
    for (size_t i = 0; env != NULL && env[i] != NULL; i++)
        own_s2 |= strncmp(env[i], "S2_BASIN=", 9) == 0;
    if (!own_s2) {
        full_env[n++] = "S2_BASIN=";
        full_env[n++] = "S2_ACCESS_TOKEN=";
        full_env[n++] = "S2_STREAM=";
    }
    for (size_t i = 0; env != NULL && env[i] != NULL && n < 62; i++)
        full_env[n++] = env[i];
    full_env[n] = NULL;
    cr_assert_eq(ts_agent_start(NULL, full_env, &a->proc, &a->port), 0, "agent did not start");
    if (archive) {
        const char *needle = "embedded s2-local on 127.0.0.1:";
        cr_assert_eq(ts_proc_wait_log(a->proc, needle, 10000), 0, "no s2-local line:\n%s",
                     ts_proc_log(a->proc));
        const char *at = strstr(ts_proc_log(a->proc), needle);
        a->s2_port = atoi(at + strlen(needle));
        cr_assert_gt(a->s2_port, 0);
    }
}

void tp_agent_stop(struct tp_agent *a)
{
    int st = -1;
    if (a->proc == NULL)
        return;
    cr_assert_eq(ts_proc_signal(a->proc, SIGTERM), 0);
    cr_assert_eq(ts_proc_wait(a->proc, 15000, &st), 0, "agent did not exit");
    cr_expect_eq(st, 0, "agent exit status %d; output:\n%s", st, ts_proc_log(a->proc));
    ts_proc_free(a->proc);
    a->proc = NULL;
}

void tp_agent_cleanup(struct tp_agent *a)
{
    if (a->proc != NULL) {
        ts_proc_free(a->proc);
        a->proc = NULL;
    }
    if (a->dir[0] != '\0') {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", a->dir);
        if (system(cmd) != 0)
            cr_log_warn("could not remove %s", a->dir);
        a->dir[0] = '\0';
    }
}

const char *tp_url(const struct tp_agent *a, const char *path, char *buf, size_t len)
{
    snprintf(buf, len, "http://127.0.0.1:%d%s", a->port, path);
    return buf;
}

void tp_req(const struct tp_agent *a, const char *method, const char *path, const char *body,
            struct ts_resp *out)
{
    char url[512];
    const char *hdr[] = {"Content-Type: application/json", NULL};
    int rc =
        ts_http(method, tp_url(a, path, url, sizeof url), body, body ? strlen(body) : 0, hdr, out);
    cr_assert_eq(rc, 0, "%s %s failed", method, path);
}

void tp_archive_records(const struct tp_agent *a, char ***bodies, size_t *n)
{
    char url[256], basin_hdr[128];
    snprintf(basin_hdr, sizeof basin_hdr, "S2-Basin: %s", a->basin);
    const char *hdr[] = {basin_hdr, "Authorization: Bearer local", NULL};
    size_t count = 0, cap = 0;
    char **out = NULL;
    uint64_t next = 0;
    cr_assert_gt(a->s2_port, 0, "the archive is off");
    for (;;) {
        struct ts_resp r;
        snprintf(url, sizeof url,
                 "http://127.0.0.1:%d/v1/streams/%s/records?seq_num=%" PRIu64 "&count=1000",
                 a->s2_port, a->stream, next);
        cr_assert_eq(ts_http("GET", url, NULL, 0, hdr, &r), 0);
        if (r.status == 416) { /* at the tail */
            ts_resp_free(&r);
            break;
        }
        cr_assert_eq(r.status, 200, "s2-local read: %ld %s", r.status, r.body);
        cJSON *j = cJSON_Parse(r.body);
        cr_assert_not_null(j);
        cJSON *recs = cJSON_GetObjectItem(j, "records"), *it;
        size_t got = 0;
        cJSON_ArrayForEach(it, recs)
        {
            if (count == cap) {
                cap = cap ? cap * 2 : 256;
                out = realloc(out, cap * sizeof *out);
                cr_assert_not_null(out);
            }
            out[count++] = strdup(cJSON_GetObjectItem(it, "body")->valuestring);
            got++;
        }
        cJSON_Delete(j);
        ts_resp_free(&r);
        if (got == 0)
            break;
        next += got;
    }
    *bodies = out;
    *n = count;
}

void tp_bodies_free(char **bodies, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(bodies[i]);
    free(bodies);
}
