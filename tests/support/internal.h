/*
 * internal.h - what the support library's files share, and nothing more.
 */
#ifndef TS_INTERNAL_H
#define TS_INTERNAL_H

#include "support.h"

#include <stddef.h>

/* libcurl CURLOPT_HEADERFUNCTION collecting the final response's header
 * lines into the ts_resp that userdata points at. */
size_t ts__on_header(char *ptr, size_t size, size_t nmemb, void *userdata);

/* curl_global_init, once per process. */
void ts__curl_init(void);

#endif /* TS_INTERNAL_H */
