/*
 * s2/curlso.h - libcurl, loaded at run time by the first S2 HTTP loop.
 *
 * Internal to s2/ (loop.c and client.c). libcurl is opened with dlopen by
 * its soname instead of being linked: only a client of a remote S2 needs
 * it, and linking it maps libcurl and its dependency tree (TLS, Kerberos,
 * LDAP, SSH, RTMP...; about 5 MiB resident) into every process that links
 * the s2 library, among them every agent that archives to its embedded
 * s2-local in process. Once loaded it stays loaded for the life of the
 * process, as a linked library would.
 *
 * Each member has the type of the libcurl function of the same name (its
 * prototype in <curl/curl.h>), so every call is checked against libcurl's
 * own declarations, except the variadic setopt/getinfo, as with curl's
 * functions called without its type-checking macros.
 */
#ifndef S2_CURLSO_H
#define S2_CURLSO_H
#include <stddef.h>

#include <curl/curl.h>

/* The oldest libcurl accepted (curl_global_init ref-counted and
 * thread-safe, curl_easy_header): 7.84.0. */
#define S2_CURL_MIN_VERSION 0x075400

struct s2_curl {
    __typeof__(curl_global_init) *global_init;
    __typeof__(curl_global_cleanup) *global_cleanup;
    __typeof__(curl_version_info) *version_info;
    __typeof__(curl_easy_init) *easy_init;
    __typeof__(curl_easy_setopt) *easy_setopt;
    __typeof__(curl_easy_getinfo) *easy_getinfo;
    __typeof__(curl_easy_header) *easy_header;
    __typeof__(curl_easy_strerror) *easy_strerror;
    __typeof__(curl_easy_escape) *easy_escape;
    __typeof__(curl_easy_cleanup) *easy_cleanup;
    __typeof__(curl_free) *free;
    __typeof__(curl_slist_append) *slist_append;
    __typeof__(curl_slist_free_all) *slist_free_all;
    __typeof__(curl_multi_init) *multi_init;
    __typeof__(curl_multi_setopt) *multi_setopt;
    __typeof__(curl_multi_add_handle) *multi_add_handle;
    __typeof__(curl_multi_remove_handle) *multi_remove_handle;
    __typeof__(curl_multi_socket_action) *multi_socket_action;
    __typeof__(curl_multi_info_read) *multi_info_read;
    __typeof__(curl_multi_assign) *multi_assign;
    __typeof__(curl_multi_cleanup) *multi_cleanup;
};

/* Load libcurl (once per process; thread-safe) and resolve every function
 * above. On success *out is the table (borrowed; valid for the life of the
 * process). -ELIBACC when libcurl cannot be loaded, lacks a function or is
 * older than S2_CURL_MIN_VERSION; then why (dlerror's text or the version
 * found) is written to err (errlen > 0). */
int s2_curl_load(const struct s2_curl **out, char *err, size_t errlen);

#endif /* S2_CURLSO_H */
