/*
 * plugins.h - loading plugins (dlopen, the ABI gate, init) and running
 * their shutdown and destroy phases in order.
 *
 * A plugin is loaded with dlopen(RTLD_NOW | RTLD_LOCAL). Its descriptor is
 * checked before any of its code other than the entry runs. A plugin whose
 * code ran is never dlclose()d (its libraries may have registered atexit
 * handlers or threads); one refused before that is closed again.
 */
#ifndef AGENT_HOST_PLUGINS_H
#define AGENT_HOST_PLUGINS_H

#include <agent/plugin.h>

#include <stddef.h>
#include <stdint.h>

struct plugins;

/* Called with the owner token (api->host of the plugin's table) of each
 * plugin, right before its destroy(). */
typedef void (*plugins_owner_fn)(const void *owner, void *arg);
/* Called once when every plugin has called done(). */
typedef void (*plugins_done_fn)(void *arg);

/* An empty set; *out is caller-owned (plugins_free). 0 or -ENOMEM. */
int plugins_new(struct plugins **out);

/* Load the plugin file path under name (copied) and init() it with a copy
 * of api (whose host field identifies this plugin to the caller). Returns
 * 0, or -errno with one line in err giving the reason:
 *   -ENOENT  "file missing"
 *   -ELIBBAD "dlopen failed: <dlerror>"
 *   -ENOSYS  "entry symbol agent_plugin_entry_v1 missing"
 *   -EPROTO  "ABI mismatch: plugin built for ABI X.Y, host has ABI A.B"
 *            (or an incomplete descriptor)
 *   other    "init failed (<errno text>): <the plugin's message>"
 * After an init failure the caller must drop what the plugin registered. */
int plugins_load(struct plugins *ps, const char *name, const char *path,
                 const struct agent_host_api *api, char *err, size_t errlen);

/* Number of loaded plugins and the name of the i-th (load order). */
size_t plugins_count(const struct plugins *ps);
const char *plugins_name(const struct plugins *ps, size_t i);

/* Begin every plugin's shutdown, in reverse load order, with deadline_ms
 * (an absolute time of the host's monotonic clock). done_fn(arg) runs once,
 * when all of them called done() - maybe before this returns. */
void plugins_shutdown(struct plugins *ps, uint64_t deadline_ms, plugins_done_fn done_fn, void *arg);

/* Write the names of plugins that did not call done() yet, comma
 * separated, into buf. Returns how many there are. */
size_t plugins_pending(const struct plugins *ps, char *buf, size_t len);

/* Destroy every plugin in reverse load order, calling before(owner, arg)
 * right before each destroy(). Idempotent. */
void plugins_destroy(struct plugins *ps, plugins_owner_fn before, void *arg);

/* Destroy what is left (as plugins_destroy without a callback) and free. */
void plugins_free(struct plugins *ps);

#endif /* AGENT_HOST_PLUGINS_H */
