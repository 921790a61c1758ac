/*
 * test_build.c - plugins as shipped: a plugin built OUT OF TREE against the
 * installed header and pkg-config file loads into the agent and serves a
 * route; built plugins export nothing but the entry symbol.
 */
#include "support.h"

#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <criterion/new/assert.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Run a shell command; fail the test with its output unless it exits 0.
 * Returns its output (caller frees). */
static char *sh(const char *cmd, int timeout_ms)
{
    const char *argv[] = {"/bin/sh", "-c", cmd, NULL};
    struct ts_proc *p;
    int st = -1;
    cr_assert(eq(int, ts_proc_start(argv, NULL, &p), 0));
    int rc = ts_proc_wait(p, timeout_ms, &st);
    char *out = strdup(ts_proc_log(p));
    ts_proc_free(p);
    cr_assert(eq(int, rc, 0), "timed out: %s\n%s", cmd, out);
    cr_assert(eq(int, st, 0), "'%s' exited %d:\n%s", cmd, st, out);
    return out;
}

/* The defined dynamic symbols of a shared object that are neither the
 * entry nor linker bookkeeping; "" when there are none. */
static char *extra_exports(const char *so)
{
    char cmd[8192];
    snprintf(cmd, sizeof(cmd),
             "nm -D --defined-only '%.4000s' | awk '{print $NF}' | "
             "grep -v -x -e agent_plugin_entry_v1 -e _init -e _fini -e _edata -e _end "
             "-e __bss_start || true",
             so);
    return sh(cmd, 20000);
}

static char *entry_exports(const char *so)
{
    char cmd[8192];
    snprintf(cmd, sizeof(cmd),
             "nm -D --defined-only '%.4000s' | awk '{print $NF}' | "
             "grep -c -x agent_plugin_entry_v1 || true",
             so);
    return sh(cmd, 20000);
}

Test(build, plugins_export_only_the_entry_symbol, .timeout = 60)
{
    /* Every plugin the build makes, except the one built without the entry. */
    char *list = strdup(ts_env("EXPORT_CHECK_PLUGINS"));
    int checked = 0;
    cr_assert(ne(ptr, list, NULL));
    for (char *save = NULL, *so = strtok_r(list, ":", &save); so != NULL;
         so = strtok_r(NULL, ":", &save)) {
        if (strstr(so, "fixture_no_entry") != NULL)
            continue;
        cr_assert(eq(int, access(so, R_OK), 0), "%s missing", so);
        char *extra = extra_exports(so);
        char *entry = entry_exports(so);
        cr_expect(eq(str, extra, ""), "%s exports more: %s", so, extra);
        cr_expect(eq(str, entry, "1\n"), "%s lacks the entry", so);
        free(extra);
        free(entry);
        checked++;
    }
    free(list);
    cr_expect(ge(int, checked, 3), "fixture plugins at least");
    /* The check can fail: a shared object without the entry shows up. */
    char so[4096];
    snprintf(so, sizeof(so), "%s/fixture_no_entry.so", ts_env("FIXTURE_PLUGIN_DIR"));
    char *extra = extra_exports(so);
    cr_expect(eq(str, extra, "agent_plugin_entry_v0\n"));
    free(extra);
}

Test(build, out_of_tree_plugin_loads_and_serves, .timeout = 300)
{
    char dir[] = "/tmp/agent-oot-XXXXXX";
    char cmd[16384];
    cr_assert(ne(ptr, mkdtemp(dir), NULL));

    /* Install the development files only (header, .pc, version script). */
    snprintf(cmd, sizeof(cmd),
             "meson install -C '%s' --no-rebuild --quiet --tags devel --destdir '%s/root'",
             ts_env("BUILD_ROOT"), dir);
    free(sh(cmd, 120000));

    /* Build against them as a third party would: pkg-config, no source tree. */
    snprintf(cmd, sizeof(cmd),
             "set -e; pc=$(dirname \"$(find '%s/root' -name agent-plugin.pc | head -n1)\"); "
             "export PKG_CONFIG_PATH=\"$pc\" PKG_CONFIG_SYSROOT_DIR='%s/root'; "
             /* pkgconf prefixes variables with the sysroot, pkg-config does not */
             "inc=$(pkg-config --variable=includedir agent-plugin); "
             "[ -d \"$inc\" ] || inc=\"$PKG_CONFIG_SYSROOT_DIR$inc\"; "
             "test -f \"$inc/agent/plugin.h\"; "
             "map=$(pkg-config --variable=version_script agent-plugin); "
             "[ -f \"$map\" ] || map=\"$PKG_CONFIG_SYSROOT_DIR$map\"; "
             "cp '%s/plugins/oot/hello.c' '%s/hello.c'; "
             "${CC:-cc} -std=c11 -Wall -Wextra -Werror -shared -fPIC -fvisibility=hidden "
             "$(pkg-config --cflags agent-plugin) '%s/hello.c' -o '%s/hello.so' "
             "-Wl,--version-script=\"$map\" $(pkg-config --libs libevent)",
             dir, dir, ts_env("FIXTURES_DIR"), dir, dir, dir);
    free(sh(cmd, 120000));

    char so[4096], kv[4200];
    snprintf(so, sizeof(so), "%s/hello.so", dir);
    char *extra = extra_exports(so);
    cr_expect(eq(str, extra, ""), "out-of-tree plugin exports more: %s", extra);
    free(extra);

    snprintf(kv, sizeof(kv), "AGENT_PLUGINS=oot:%s", so);
    const char *env[] = {kv, NULL};
    struct ts_proc *p;
    int port, st = -1;
    cr_assert(eq(int, ts_agent_start(NULL, env, &p, &port), 0));
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/oot/hello", port);
    struct ts_resp r;
    cr_assert(eq(int, ts_http("GET", url, NULL, 0, NULL, &r), 0));
    cr_expect(eq(long, r.status, 200));
    cr_expect(eq(str, r.body, "{\"hello\":\"out of tree\"}"));
    ts_resp_free(&r);
    cr_assert(eq(int, ts_proc_signal(p, SIGTERM), 0));
    cr_assert(eq(int, ts_proc_wait(p, 20000, &st), 0));
    cr_expect(eq(int, st, 0), "%s", ts_proc_log(p));
    ts_proc_free(p);

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    free(sh(cmd, 20000));
}
