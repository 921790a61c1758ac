/*
 * plugins.c - dlopen, the ABI gate, init/shutdown/destroy order.
 */
#include "plugins.h"

#include "log.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define PLUGINS_MAX 32

/* The descriptor as of ABI 1.0: struct_size must cover it. */
#define PLUGIN_V1_0_SIZE sizeof(struct agent_plugin)

struct plugin {
    char *name;
    void *dl;
    const struct agent_plugin *desc;
    void *state;
    struct agent_host_api api; /* the plugin's own copy; it keeps a pointer */
    struct plugins *set;
    int shutting_down;
    int done;
    int destroyed;
};

struct plugins {
    struct plugin *p[PLUGINS_MAX];
    size_t n;
    plugins_done_fn done_fn;
    void *done_arg;
    int in_shutdown_call; /* done() called from inside shutdown() */
};

int plugins_new(struct plugins **out)
{
    *out = calloc(1, sizeof(**out));
    return *out ? 0 : -ENOMEM;
}

size_t plugins_count(const struct plugins *ps)
{
    return ps->n;
}

const char *plugins_name(const struct plugins *ps, size_t i)
{
    return i < ps->n ? ps->p[i]->name : NULL;
}

/* Check the descriptor before running plugin code. */
static int gate(const struct agent_plugin *d, char *err, size_t errlen)
{
    if (d == NULL) {
        snprintf(err, errlen, "ABI mismatch: the entry returned no descriptor");
        return -EPROTO;
    }
    if (d->abi_major != AGENT_ABI_MAJOR || d->abi_minor > AGENT_ABI_MINOR) {
        snprintf(err, errlen, "ABI mismatch: plugin built for ABI %u.%u, host has ABI %u.%u",
                 (unsigned)d->abi_major, (unsigned)d->abi_minor, (unsigned)AGENT_ABI_MAJOR,
                 (unsigned)AGENT_ABI_MINOR);
        return -EPROTO;
    }
    if (d->struct_size < PLUGIN_V1_0_SIZE) {
        snprintf(err, errlen, "ABI mismatch: descriptor is %u bytes, ABI %u.0 needs %zu",
                 (unsigned)d->struct_size, (unsigned)AGENT_ABI_MAJOR, PLUGIN_V1_0_SIZE);
        return -EPROTO;
    }
    if (d->init == NULL || d->shutdown == NULL || d->destroy == NULL) {
        snprintf(err, errlen, "ABI mismatch: descriptor lacks init, shutdown or destroy");
        return -EPROTO;
    }
    return 0;
}

int plugins_load(struct plugins *ps, const char *name, const char *path,
                 const struct agent_host_api *api, char *err, size_t errlen)
{
    struct plugin *p = NULL;
    struct stat st;
    char msg[512] = "";
    char dlpath[4096];
    int rc;

    if (ps->n == PLUGINS_MAX) {
        snprintf(err, errlen, "more than %d plugins", PLUGINS_MAX);
        return -ENOSPC;
    }
    if (stat(path, &st) != 0) {
        rc = -errno;
        snprintf(err, errlen, "%s", errno == ENOENT ? "file missing" : strerror(errno));
        return rc;
    }
    /* Without a '/', dlopen would search the library path instead. */
    snprintf(dlpath, sizeof(dlpath), "%s%s", strchr(path, '/') ? "" : "./", path);
    p = calloc(1, sizeof(*p));
    if (p == NULL || (p->name = strdup(name)) == NULL) {
        rc = -ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    p->dl = dlopen(dlpath, RTLD_NOW | RTLD_LOCAL);
    if (p->dl == NULL) {
        const char *e = dlerror();
        rc = -ELIBBAD;
        snprintf(err, errlen, "dlopen failed: %s", e ? e : "unknown error");
        goto fail;
    }
    agent_plugin_entry_fn entry;
    *(void **)&entry = dlsym(p->dl, AGENT_PLUGIN_ENTRY_NAME);
    if (entry == NULL) {
        rc = -ENOSYS;
        snprintf(err, errlen, "entry symbol %s missing", AGENT_PLUGIN_ENTRY_NAME);
        goto fail;
    }
    p->desc = entry();
    rc = gate(p->desc, err, errlen);
    if (rc != 0)
        goto fail;
    p->api = *api;
    p->set = ps;
    rc = p->desc->init(&p->api, &p->state, msg, sizeof(msg));
    if (rc != 0) {
        msg[sizeof(msg) - 1] = '\0';
        if (rc > 0)
            rc = -rc;
        snprintf(err, errlen, "init failed (%s): %s", strerror(-rc),
                 msg[0] ? msg : "no message given");
        /* Its code ran: keep it mapped (see plugins.h). */
        p->dl = NULL;
        goto fail;
    }
    ps->p[ps->n++] = p;
    hlog(AGENT_LOG_INFO, "plugin %s loaded from %s (%s %s)", name, path,
         p->desc->name ? p->desc->name : "?", p->desc->version ? p->desc->version : "?");
    return 0;
fail:
    if (p != NULL) {
        if (p->dl != NULL)
            dlclose(p->dl);
        free(p->name);
        free(p);
    }
    return rc;
}

static int all_done(const struct plugins *ps)
{
    for (size_t i = 0; i < ps->n; i++) {
        if (!ps->p[i]->done)
            return 0;
    }
    return 1;
}

static void maybe_finish(struct plugins *ps)
{
    if (ps->done_fn != NULL && !ps->in_shutdown_call && all_done(ps)) {
        plugins_done_fn fn = ps->done_fn;
        ps->done_fn = NULL;
        fn(ps->done_arg);
    }
}

static void on_done(void *token)
{
    struct plugin *p = token;
    if (p->done || !p->shutting_down || p->destroyed) {
        hlog(AGENT_LOG_WARN, "plugin %s called done() more than once or out of turn; ignored",
             p->name);
        return;
    }
    p->done = 1;
    hlog(AGENT_LOG_DEBUG, "plugin %s finished its shutdown", p->name);
    maybe_finish(p->set);
}

void plugins_shutdown(struct plugins *ps, uint64_t deadline_ms, plugins_done_fn done_fn, void *arg)
{
    ps->done_fn = done_fn;
    ps->done_arg = arg;
    ps->in_shutdown_call = 1;
    for (size_t i = ps->n; i-- > 0;) {
        struct plugin *p = ps->p[i];
        if (p->shutting_down)
            continue;
        p->shutting_down = 1;
        uint64_t now = p->api.now_ms(p->api.host);
        p->desc->shutdown(p->state, deadline_ms > now ? deadline_ms - now : 0, on_done, p);
    }
    ps->in_shutdown_call = 0;
    maybe_finish(ps);
}

size_t plugins_pending(const struct plugins *ps, char *buf, size_t len)
{
    size_t count = 0, used = 0;
    if (len > 0)
        buf[0] = '\0';
    for (size_t i = 0; i < ps->n; i++) {
        if (ps->p[i]->done)
            continue;
        count++;
        int w = snprintf(buf + used, len > used ? len - used : 0, "%s%s", used ? ", " : "",
                         ps->p[i]->name);
        if (w > 0 && used + (size_t)w < len)
            used += (size_t)w;
    }
    return count;
}

void plugins_destroy(struct plugins *ps, plugins_owner_fn before, void *arg)
{
    ps->done_fn = NULL;
    for (size_t i = ps->n; i-- > 0;) {
        struct plugin *p = ps->p[i];
        if (p->destroyed)
            continue;
        if (before != NULL)
            before(p->api.host, arg);
        hlog(AGENT_LOG_DEBUG, "destroying plugin %s", p->name);
        p->destroyed = 1;
        p->desc->destroy(p->state);
    }
}

void plugins_free(struct plugins *ps)
{
    if (ps == NULL)
        return;
    plugins_destroy(ps, NULL, NULL);
    for (size_t i = 0; i < ps->n; i++) {
        free(ps->p[i]->name);
        free(ps->p[i]);
    }
    free(ps);
}
