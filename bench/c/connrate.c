/* benchtool connrate: connect, send SIZE bytes, read them echoed, close; CONCURRENCY such
 * connections in flight at once, from one epoll loop, for SECONDS or MAXCOUNT connections.
 * Latency is from socket() to the last echoed byte. */
#define _GNU_SOURCE
#include "common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#define DRAIN_S 5.0

struct slot {
    int fd;
    int state;  /* 0 free, 1 connecting, 2 awaiting the echo */
    long got;
    uint64_t started;
};

struct run {
    const struct sockaddr_storage *addr;
    socklen_t len;
    long size, max, started, done, errors;
    int ep;
    uint64_t *lat;
    char *out, *in;
};

static void finish(struct run *r, struct slot *s, int ok) {
    close(s->fd);
    s->fd = -1;
    s->state = 0;
    if (ok) r->lat[r->done++] = now_ns() - s->started;
    else r->errors++;
}

static void start(struct run *r, struct slot *s) {
    s->started = now_ns();
    s->got = 0;
    r->started++;
    s->fd = socket(r->addr->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd < 0) {
        r->errors++;
        return;
    }
    set_nodelay(s->fd);
    int rc = connect(s->fd, (const struct sockaddr *)r->addr, r->len);
    if (rc < 0 && errno != EINPROGRESS) {
        finish(r, s, 0);
        return;
    }
    s->state = 1;
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = s};
    if (epoll_ctl(r->ep, EPOLL_CTL_ADD, s->fd, &ev) < 0) die("epoll_ctl");
}

static void advance(struct run *r, struct slot *s) {
    if (s->state == 1) {
        int err = 0;
        socklen_t elen = sizeof err;
        getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &elen);
        if (err != 0 || send(s->fd, r->out, (size_t)r->size, MSG_NOSIGNAL) != r->size) {
            finish(r, s, 0);
            return;
        }
        s->state = 2;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = s};
        if (epoll_ctl(r->ep, EPOLL_CTL_MOD, s->fd, &ev) < 0) die("epoll_ctl");
        return;
    }
    ssize_t n = recv(s->fd, r->in, (size_t)(r->size - s->got), 0);
    if (n < 0 && errno == EAGAIN) return;
    if (n <= 0) {
        finish(r, s, 0);
        return;
    }
    s->got += n;
    if (s->got == r->size) finish(r, s, 1);
}

int cmd_connrate(int argc, char **argv) {
    if (argc != 6) {
        fputs("usage: benchtool connrate HOST PORT CONCURRENCY SECONDS SIZE MAXCOUNT\n", stderr);
        return 2;
    }
    struct sockaddr_storage addr;
    struct run r = {.addr = &addr};
    if (parse_addr(argv[0], argv[1], &addr, &r.len) < 0) die("address");
    int conc = atoi(argv[2]);
    double seconds = atof(argv[3]);
    r.size = atol(argv[4]);
    r.max = atol(argv[5]);
    if (conc < 1 || conc > 4096 || r.size < 1 || r.size > 65536 || r.max < 1) die("arguments");
    r.ep = epoll_create1(EPOLL_CLOEXEC);
    r.lat = malloc(sizeof(uint64_t) * (size_t)r.max);
    r.out = malloc((size_t)r.size);
    r.in = malloc((size_t)r.size);
    struct slot *slots = calloc((size_t)conc, sizeof *slots);
    if (r.ep < 0 || !r.lat || !r.out || !r.in || !slots) die("setup");
    memset(r.out, 'c', (size_t)r.size);
    struct epoll_event events[256];
    double t0 = now_s(), stop = t0 + seconds, last = t0;
    int active = 1;
    while (active) {
        double t = now_s();
        int opening = t < stop && r.started < r.max;
        active = 0;
        for (int i = 0; i < conc; i++) {
            if (slots[i].state == 0 && opening) start(&r, &slots[i]);
            active |= slots[i].state != 0;
        }
        if (!active || t > stop + DRAIN_S) break;
        int n = epoll_wait(r.ep, events, 256, 100);
        for (int i = 0; i < n; i++) advance(&r, events[i].data.ptr);
        last = now_s();
    }
    long stuck = 0;
    for (int i = 0; i < conc; i++)
        if (slots[i].state != 0) {
            finish(&r, &slots[i], 0);
            stuck++;
        }
    double elapsed = last - t0;
    sort_u64(r.lat, (size_t)r.done);
    printf("{\"count\": %ld, \"errors\": %ld, \"stuck\": %ld, \"seconds\": %.6f, "
           "\"rate\": %.1f, \"p50_us\": %.2f, \"p99_us\": %.2f}\n",
           r.done, r.errors, stuck, elapsed, (double)r.done / elapsed,
           percentile_us(r.lat, (size_t)r.done, 50), percentile_us(r.lat, (size_t)r.done, 99));
    return 0;
}
