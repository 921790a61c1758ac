/*
 * bench_redis.c - the Redis peer of the s2-local benchmark (hiredis, one
 * connection). Each mode prints one JSON line of figures on stdout.
 *
 *   bench_redis xadd HOST PORT KEY BATCH SECONDS MAX_RECORDS BODY_BYTES
 *       XADD KEY * body <BODY_BYTES>, BATCH commands pipelined per round
 *       trip (the batch of an s2-local append), until SECONDS or MAX_RECORDS
 *       -> {"records","bytes","seconds","requests"}
 *   bench_redis xrange HOST PORT KEY COUNT SECONDS
 *       read the whole stream with XRANGE ... COUNT COUNT
 *       -> {"records","bytes","seconds","requests"}
 *
 * Exit status: 0, 1 on a Redis error (with a message on stderr), 2 for bad
 * arguments.
 */
#include <hiredis/hiredis.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int mode_xadd(redisContext *c, char **argv)
{
    const char *key = argv[0];
    long batch = atol(argv[1]), max_records = atol(argv[3]), body_bytes = atol(argv[4]);
    double seconds = atof(argv[2]);
    long records = 0, requests = 0;
    int rc = 1;

    if (batch < 1 || batch > 1000 || body_bytes < 1 || body_bytes > 65536 || seconds <= 0)
        return 2;
    char *payload = malloc((size_t)body_bytes);
    if (payload == NULL)
        return 1;
    for (long i = 0; i < body_bytes; i++)
        payload[i] = (char)('a' + i % 26);
    double t0 = now_s(), t = t0;
    while (t - t0 < seconds && records + batch <= max_records) {
        for (long i = 0; i < batch; i++)
            redisAppendCommand(c, "XADD %s * body %b", key, payload, (size_t)body_bytes);
        for (long i = 0; i < batch; i++) {
            redisReply *r = NULL;
            if (redisGetReply(c, (void **)&r) != REDIS_OK || r == NULL ||
                r->type == REDIS_REPLY_ERROR) {
                fprintf(stderr, "bench_redis: XADD: %s\n",
                        r != NULL && r->str != NULL ? r->str : c->errstr);
                freeReplyObject(r);
                goto out;
            }
            freeReplyObject(r);
        }
        records += batch;
        requests++;
        t = now_s();
    }
    printf("{\"records\":%ld,\"bytes\":%ld,\"seconds\":%.6f,\"requests\":%ld}\n", records,
           records * body_bytes, t - t0, requests);
    rc = 0;
out:
    free(payload);
    return rc;
}

static int mode_xrange(redisContext *c, char **argv)
{
    const char *key = argv[0];
    long count = atol(argv[1]), records = 0, bytes = 0, requests = 0;
    double seconds = atof(argv[2]);
    char start[64] = "-";

    if (count < 1 || count > 100000 || seconds <= 0)
        return 2;
    double t0 = now_s(), t = t0;
    while (t - t0 < seconds) {
        redisReply *r = redisCommand(c, "XRANGE %s %s + COUNT %ld", key, start, count);
        requests++;
        if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
            fprintf(stderr, "bench_redis: XRANGE: %s\n",
                    r != NULL && r->str != NULL ? r->str : c->errstr);
            freeReplyObject(r);
            return 1;
        }
        size_t n = r->elements;
        for (size_t i = 0; i < n; i++) {
            redisReply *e = r->element[i];
            if (e->type != REDIS_REPLY_ARRAY || e->elements != 2)
                continue;
            redisReply *fields = e->element[1];
            if (fields->type == REDIS_REPLY_ARRAY && fields->elements == 2)
                bytes += (long)fields->element[1]->len;
            records++;
            if (i + 1 == n)
                /* Exclusive start after the last id (Redis >= 6.2). */
                snprintf(start, sizeof start, "(%s", e->element[0]->str);
        }
        freeReplyObject(r);
        t = now_s();
        if (n < (size_t)count)
            break;
    }
    printf("{\"records\":%ld,\"bytes\":%ld,\"seconds\":%.6f,\"requests\":%ld}\n", records, bytes,
           t - t0, requests);
    return 0;
}

int main(int argc, char **argv)
{
    int rc = 2;
    if (argc < 4) {
        fprintf(stderr, "usage: see the comment at the top of bench_redis.c\n");
        return 2;
    }
    struct timeval tv = {10, 0};
    redisContext *c = redisConnectWithTimeout(argv[2], atoi(argv[3]), tv);
    if (c == NULL || c->err) {
        fprintf(stderr, "bench_redis: connect: %s\n", c != NULL ? c->errstr : "out of memory");
        redisFree(c);
        return 1;
    }
    redisSetTimeout(c, tv);
    if (argc == 9 && strcmp(argv[1], "xadd") == 0)
        rc = mode_xadd(c, argv + 4);
    else if (argc == 7 && strcmp(argv[1], "xrange") == 0)
        rc = mode_xrange(c, argv + 4);
    else
        fprintf(stderr, "usage: see the comment at the top of bench_redis.c\n");
    redisFree(c);
    return rc;
}
