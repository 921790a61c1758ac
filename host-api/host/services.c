/*
 * services.c - the named-service registry: a small bounded table.
 */
#include "services.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define SERVICES_MAX 64
#define SERVICE_NAME_MAX 64

struct service {
    char name[SERVICE_NAME_MAX + 1];
    uint32_t version;
    const void *iface;
    const void *owner;
};

struct services {
    struct service s[SERVICES_MAX];
    size_t n;
};

int services_new(struct services **out)
{
    *out = calloc(1, sizeof(**out));
    return *out ? 0 : -ENOMEM;
}

void services_free(struct services *s)
{
    free(s);
}

int services_register(struct services *s, const char *name, uint32_t version, const void *iface,
                      const void *owner)
{
    size_t len = name ? strlen(name) : 0;
    if (len == 0 || len > SERVICE_NAME_MAX || iface == NULL)
        return -EINVAL;
    for (size_t i = 0; i < s->n; i++) {
        if (strcmp(s->s[i].name, name) == 0)
            return -EEXIST;
    }
    if (s->n == SERVICES_MAX)
        return -ENOSPC;
    struct service *e = &s->s[s->n++];
    memcpy(e->name, name, len + 1);
    e->version = version;
    e->iface = iface;
    e->owner = owner;
    return 0;
}

const void *services_lookup(const struct services *s, const char *name, uint32_t min_version)
{
    for (size_t i = 0; name != NULL && i < s->n; i++) {
        if (strcmp(s->s[i].name, name) == 0)
            return s->s[i].version >= min_version ? s->s[i].iface : NULL;
    }
    return NULL;
}

void services_remove_owner(struct services *s, const void *owner)
{
    size_t k = 0;
    for (size_t i = 0; i < s->n; i++) {
        if (s->s[i].owner != owner)
            s->s[k++] = s->s[i];
    }
    s->n = k;
}
