/* benchtool udp: datagrams of SIZE bytes to an echo, WINDOW of them in flight, for SECONDS
 * or MAXCOUNT replies. A window with no reply for 50 ms counts as lost and is sent anew. */
#define _GNU_SOURCE
#include "common.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LOSS_MS 50

struct probe {
    uint64_t seq;
    uint64_t sent_ns;
};

static int send_one(int fd, char *buf, long size, uint64_t seq) {
    struct probe p = {.seq = seq, .sent_ns = now_ns()};
    memcpy(buf, &p, sizeof p);
    return send(fd, buf, (size_t)size, 0) == size ? 0 : -1;
}

int cmd_udp(int argc, char **argv) {
    if (argc != 6) {
        fputs("usage: benchtool udp HOST PORT SECONDS SIZE WINDOW MAXCOUNT\n", stderr);
        return 2;
    }
    struct sockaddr_storage addr;
    socklen_t len;
    if (parse_addr(argv[0], argv[1], &addr, &len) < 0) die("address");
    double seconds = atof(argv[2]);
    long size = atol(argv[3]), window = atol(argv[4]), max = atol(argv[5]);
    if (size < (long)sizeof(struct probe) || size > 65000 || window < 1 || max < 1)
        die("arguments");
    int fd = socket(addr.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, len) < 0) die("udp socket");
    char *out = calloc(1, (size_t)size), *in = malloc(65536);
    uint64_t *lat = malloc(sizeof(uint64_t) * (size_t)max);
    if (!out || !in || !lat) die("malloc");
    uint64_t next = 0, floor = 0;
    long done = 0, lost = 0, send_errors = 0;
    double t0 = now_s(), stop = t0 + seconds;
    for (long i = 0; i < window; i++) send_errors += send_one(fd, out, size, next++) < 0;
    while (now_s() < stop && done < max) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, LOSS_MS) == 0) {
            lost += (long)(next - floor);
            floor = next;
            for (long i = 0; i < window; i++) send_errors += send_one(fd, out, size, next++) < 0;
            continue;
        }
        for (;;) {
            ssize_t n = recv(fd, in, 65536, 0);
            if (n < 0) break;  /* EAGAIN, or an ICMP error: the window timer recovers */
            struct probe p;
            if (n < (ssize_t)sizeof p) continue;
            memcpy(&p, in, sizeof p);
            if (p.seq < floor || done >= max) continue;
            lat[done++] = now_ns() - p.sent_ns;
            if (now_s() < stop) send_errors += send_one(fd, out, size, next++) < 0;
        }
    }
    double elapsed = now_s() - t0;
    close(fd);
    sort_u64(lat, (size_t)done);
    printf("{\"count\": %ld, \"lost\": %ld, \"send_errors\": %ld, \"seconds\": %.6f, "
           "\"rate\": %.1f, \"p50_us\": %.2f, \"p99_us\": %.2f}\n",
           done, lost, send_errors, elapsed, (double)done / elapsed,
           percentile_us(lat, (size_t)done, 50), percentile_us(lat, (size_t)done, 99));
    return 0;
}
