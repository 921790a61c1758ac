/*
 * services.h - the named-service registry behind agent_host_api's
 * service_register and service_lookup.
 */
#ifndef AGENT_HOST_SERVICES_H
#define AGENT_HOST_SERVICES_H

#include <stdint.h>

struct services;

/* An empty registry; *out is caller-owned (services_free). 0 or -ENOMEM. */
int services_new(struct services **out);

/* Free the registry (not the registered interfaces). NULL is a no-op. */
void services_free(struct services *s);

/* Register iface (borrowed, must stay valid until removed) under name
 * (copied, 1..64 bytes) for owner (an opaque identity). Returns 0, -EEXIST
 * when name is taken, -EINVAL, -ENOSPC (more than 64 services), -ENOMEM. */
int services_register(struct services *s, const char *name, uint32_t version, const void *iface,
                      const void *owner);

/* The interface registered under name with version >= min_version, else
 * NULL. */
const void *services_lookup(const struct services *s, const char *name, uint32_t min_version);

/* Remove every service registered by owner. */
void services_remove_owner(struct services *s, const void *owner);

#endif /* AGENT_HOST_SERVICES_H */
