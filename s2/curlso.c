/* curlso.c - libcurl opened with dlopen on first use (see curlso.h). */
#include "curlso.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The soname the build links against on Debian (libcurl4), then the GnuTLS
 * flavour (libcurl3-gnutls), which has the same ABI. S2_LIBCURL names
 * another file to load instead. */
static const char *const sonames[] = {"libcurl.so.4", "libcurl-gnutls.so.4"};

static pthread_once_t once = PTHREAD_ONCE_INIT;
static struct s2_curl table;
static int load_rc;
static char load_err[256];

/* One resolved symbol: its name and where its address goes. */
struct sym {
    const char *name;
    void **slot;
};

#define SYM(member)                                                                                \
    {                                                                                              \
        "curl_" #member, (void **)&table.member                                                    \
    }

static void load(void)
{
    const struct sym syms[] = {
        SYM(global_init),
        SYM(global_cleanup),
        SYM(version_info),
        SYM(easy_init),
        SYM(easy_setopt),
        SYM(easy_getinfo),
        SYM(easy_header),
        SYM(easy_strerror),
        SYM(easy_escape),
        SYM(easy_cleanup),
        SYM(free),
        SYM(slist_append),
        SYM(slist_free_all),
        SYM(multi_init),
        SYM(multi_setopt),
        SYM(multi_add_handle),
        SYM(multi_remove_handle),
        SYM(multi_socket_action),
        SYM(multi_info_read),
        SYM(multi_assign),
        SYM(multi_cleanup),
    };
    const char *name = getenv("S2_LIBCURL");
    void *h = NULL;

    load_rc = -ELIBACC;
    if (name != NULL && name[0] != '\0') {
        h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    } else {
        for (size_t i = 0; i < sizeof sonames / sizeof sonames[0] && h == NULL; i++)
            h = dlopen(name = sonames[i], RTLD_NOW | RTLD_LOCAL);
    }
    if (h == NULL) {
        snprintf(load_err, sizeof load_err, "cannot load libcurl: %s", dlerror());
        return;
    }
    for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
        /* POSIX guarantees a function pointer survives the trip through
         * void * (dlsym's own contract). */
        if ((*syms[i].slot = dlsym(h, syms[i].name)) == NULL) {
            snprintf(load_err, sizeof load_err, "%s has no %s", name, syms[i].name);
            goto fail;
        }
    }
    const curl_version_info_data *vi = table.version_info(CURLVERSION_NOW);
    if (vi == NULL || vi->version_num < S2_CURL_MIN_VERSION) {
        snprintf(load_err, sizeof load_err, "%s is libcurl %s; 7.84.0 or newer is needed", name,
                 vi != NULL && vi->version != NULL ? vi->version : "(unknown)");
        goto fail;
    }
    /* Kept open for the life of the process: libcurl and its TLS library
     * keep global state that outlives any one loop. */
    load_rc = 0;
    return;
fail:
    memset(&table, 0, sizeof table);
    dlclose(h);
}

int s2_curl_load(const struct s2_curl **out, char *err, size_t errlen)
{
    *out = NULL;
    (void)pthread_once(&once, load);
    if (load_rc != 0) {
        snprintf(err, errlen, "%s", load_err[0] ? load_err : "cannot load libcurl");
        return load_rc;
    }
    *out = &table;
    return 0;
}
