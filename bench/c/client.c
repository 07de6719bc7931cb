/* benchtool's TCP load generators: bulk streams and request/response round trips. */
#define _GNU_SOURCE
#include "common.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define IO_TIMEOUT_S 60

struct stream {
    const struct sockaddr_storage *addr;
    socklen_t len;
    int up;
    uint64_t bytes;
    uint64_t moved;
    const char *error;
};

/* Up: send `bytes` to the sink, end the stream, read its count. Down: ask the source. */
static void *run_stream(void *arg) {
    struct stream *s = arg;
    char *buf = malloc(BULK_CHUNK);
    int fd = tcp_connect_blocking(s->addr, s->len, IO_TIMEOUT_S);
    if (buf == NULL || fd < 0) {
        s->error = "connect";
        free(buf);
        return NULL;
    }
    memset(buf, 'y', BULK_CHUNK);
    if (s->up) {
        uint64_t left = s->bytes, count = 0;
        while (left > 0 && s->error == NULL) {
            size_t n = left < BULK_CHUNK ? (size_t)left : BULK_CHUNK;
            if (write_all(fd, buf, n) < 0) s->error = "send";
            left -= n;
        }
        shutdown(fd, SHUT_WR);
        if (s->error == NULL && read_full(fd, &count, sizeof count) != (long)sizeof count)
            s->error = "no count from the sink";
        s->moved = count;
    } else {
        uint64_t want = s->bytes;
        if (write_all(fd, &want, sizeof want) < 0) s->error = "send";
        for (;;) {
            ssize_t n = recv(fd, buf, BULK_CHUNK, 0);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) s->error = "recv";
            if (n <= 0) break;
            s->moved += (uint64_t)n;
        }
    }
    if (s->error == NULL && s->moved != s->bytes) s->error = "short transfer";
    close(fd);
    free(buf);
    return NULL;
}

int cmd_bulk(int argc, char **argv) {
    if (argc != 5) {
        fputs("usage: benchtool bulk up|down HOST PORT BYTES STREAMS\n", stderr);
        return 2;
    }
    struct sockaddr_storage addr;
    socklen_t len;
    if (parse_addr(argv[1], argv[2], &addr, &len) < 0) die("address");
    int up = strcmp(argv[0], "up") == 0, streams = atoi(argv[4]);
    uint64_t bytes = strtoull(argv[3], NULL, 10);
    if (streams < 1 || streams > 64) die("streams");
    struct stream s[64];
    pthread_t tid[64];
    double t0 = now_s();
    for (int i = 0; i < streams; i++) {
        s[i] = (struct stream){.addr = &addr, .len = len, .up = up, .bytes = bytes};
        if (pthread_create(&tid[i], NULL, run_stream, &s[i]) != 0) die("pthread_create");
    }
    uint64_t total = 0;
    const char *error = NULL;
    for (int i = 0; i < streams; i++) {
        pthread_join(tid[i], NULL);
        total += s[i].moved;
        if (s[i].error != NULL) error = s[i].error;
    }
    double elapsed = now_s() - t0;
    printf("{\"bytes\": %llu, \"seconds\": %.6f, \"gbps\": %.4f, \"error\": %s%s%s}\n",
           (unsigned long long)total, elapsed, (double)total / elapsed / 1e9,
           error ? "\"" : "", error ? error : "null", error ? "\"" : "");
    return error ? 1 : 0;
}

int cmd_rr(int argc, char **argv) {
    if (argc != 4) {
        fputs("usage: benchtool rr HOST PORT COUNT SIZE\n", stderr);
        return 2;
    }
    struct sockaddr_storage addr;
    socklen_t len;
    if (parse_addr(argv[0], argv[1], &addr, &len) < 0) die("address");
    long count = atol(argv[2]), size = atol(argv[3]);
    if (count < 1 || size < 1 || size > 65536) die("count or size");
    int fd = tcp_connect_blocking(&addr, len, 10);
    if (fd < 0) die("connect");
    set_nodelay(fd);
    char *out = malloc((size_t)size), *in = malloc((size_t)size);
    uint64_t *lat = malloc(sizeof(uint64_t) * (size_t)count);
    if (out == NULL || in == NULL || lat == NULL) die("malloc");
    memset(out, 'r', (size_t)size);
    long done = 0, warmup = count / 20 + 10;
    double t0 = now_s();
    for (long i = -warmup; i < count; i++) {
        uint64_t start = now_ns();
        if (write_all(fd, out, (size_t)size) < 0) break;
        if (read_full(fd, in, (size_t)size) != size) break;
        if (i >= 0) lat[done++] = now_ns() - start;
    }
    double elapsed = now_s() - t0;
    close(fd);
    sort_u64(lat, (size_t)done);
    printf("{\"count\": %ld, \"seconds\": %.6f, \"p50_us\": %.2f, \"p99_us\": %.2f, "
           "\"p999_us\": %.2f, \"max_us\": %.2f}\n",
           done, elapsed, percentile_us(lat, (size_t)done, 50),
           percentile_us(lat, (size_t)done, 99), percentile_us(lat, (size_t)done, 99.9),
           percentile_us(lat, (size_t)done, 100));
    return done == count ? 0 : 1;
}
