/* benchtool serve PORT THREADS: the bench backend on 127.0.0.1.
 *
 * TCP PORT echoes what it reads until the peer's end of stream, then closes.
 * TCP PORT+1 is a sink: it reads to end of stream, answers the byte count (8 bytes,
 * little endian) and closes. TCP PORT+2 is a source: it reads a count (8 bytes, little
 * endian), sends that many bytes and closes. UDP PORT echoes every datagram.
 *
 * Each of THREADS threads runs its own level-triggered epoll loop over its own listening
 * sockets (SO_REUSEPORT spreads connections and UDP flows over them). The process runs
 * until a signal ends it; "ready" on stdout says every socket is bound.
 */
#define _GNU_SOURCE
#include "common.h"

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

enum kind { L_ECHO, L_SINK, L_SOURCE, L_UDP, C_ECHO, C_SINK, C_SOURCE };

struct conn {
    enum kind kind;
    int fd;
    uint64_t count;      /* sink: bytes read; source: bytes still to send */
    unsigned char hdr[8];
    int hdr_got;         /* source: header bytes read so far */
    char *pending;       /* echo: bytes the peer did not take yet */
    size_t pending_len, pending_off;
};

struct worker {
    int ep;
    struct conn listeners[4];
    char *buf;
};

static char source_data[BULK_CHUNK];

static int open_socket(int type, int port) {
    int fd = socket(AF_INET, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) die("bind");
    if (type == SOCK_STREAM && listen(fd, 4096) < 0) die("listen");
    return fd;
}

static void watch(int ep, int op, struct conn *c, uint32_t events) {
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(ep, op, c->fd, &ev) < 0 && op != EPOLL_CTL_DEL) die("epoll_ctl");
}

static void drop(struct conn *c) {
    close(c->fd);  /* also leaves the epoll set */
    free(c->pending);
    free(c);
}

static void accept_all(struct worker *w, struct conn *l) {
    for (;;) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return;  /* EAGAIN, or out of descriptors: retried on the next event */
        struct conn *c = calloc(1, sizeof *c);
        if (c == NULL) {
            close(fd);
            return;
        }
        c->fd = fd;
        c->kind = l->kind == L_ECHO ? C_ECHO : l->kind == L_SINK ? C_SINK : C_SOURCE;
        watch(w->ep, EPOLL_CTL_ADD, c, EPOLLIN);
    }
}

static void echo_flush(struct worker *w, struct conn *c) {
    while (c->pending_off < c->pending_len) {
        ssize_t n = send(c->fd, c->pending + c->pending_off, c->pending_len - c->pending_off,
                         MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN) return;
            drop(c);
            return;
        }
        c->pending_off += (size_t)n;
    }
    free(c->pending);
    c->pending = NULL;
    c->pending_len = c->pending_off = 0;
    watch(w->ep, EPOLL_CTL_MOD, c, EPOLLIN);
}

static void echo_read(struct worker *w, struct conn *c) {
    ssize_t n = recv(c->fd, w->buf, BULK_CHUNK, 0);
    if (n < 0 && errno == EAGAIN) return;
    if (n <= 0) {
        drop(c);
        return;
    }
    ssize_t sent = send(c->fd, w->buf, (size_t)n, MSG_NOSIGNAL);
    if (sent < 0 && errno != EAGAIN) {
        drop(c);
        return;
    }
    if (sent < 0) sent = 0;
    if (sent == n) return;
    c->pending_len = (size_t)(n - sent);
    c->pending = malloc(c->pending_len);
    if (c->pending == NULL) die("malloc");
    memcpy(c->pending, w->buf + sent, c->pending_len);
    watch(w->ep, EPOLL_CTL_MOD, c, EPOLLOUT);
}

static void sink_read(struct worker *w, struct conn *c) {
    for (int i = 0; i < 16; i++) {
        ssize_t n = recv(c->fd, w->buf, BULK_CHUNK, 0);
        if (n < 0 && errno == EAGAIN) return;
        if (n < 0) {
            drop(c);
            return;
        }
        if (n == 0) {
            uint64_t total = c->count;  /* little endian on every host this runs on */
            (void)send(c->fd, &total, sizeof total, MSG_NOSIGNAL);
            drop(c);
            return;
        }
        c->count += (uint64_t)n;
    }
}

static void source_write(struct worker *w, struct conn *c) {
    (void)w;
    for (int i = 0; i < 16 && c->count > 0; i++) {
        size_t want = c->count < BULK_CHUNK ? (size_t)c->count : BULK_CHUNK;
        ssize_t n = send(c->fd, source_data, want, MSG_NOSIGNAL);
        if (n < 0 && errno == EAGAIN) return;
        if (n < 0) {
            drop(c);
            return;
        }
        c->count -= (uint64_t)n;
    }
    if (c->count == 0) drop(c);
}

static void source_read(struct worker *w, struct conn *c) {
    ssize_t n = recv(c->fd, c->hdr + c->hdr_got, sizeof c->hdr - (size_t)c->hdr_got, 0);
    if (n < 0 && errno == EAGAIN) return;
    if (n <= 0) {
        drop(c);
        return;
    }
    c->hdr_got += (int)n;
    if (c->hdr_got < (int)sizeof c->hdr) return;
    memcpy(&c->count, c->hdr, sizeof c->count);
    watch(w->ep, EPOLL_CTL_MOD, c, EPOLLOUT);
}

static void udp_echo(struct worker *w, struct conn *l) {
    for (int i = 0; i < 64; i++) {
        struct sockaddr_storage peer;
        socklen_t len = sizeof peer;
        ssize_t n = recvfrom(l->fd, w->buf, 65536, 0, (struct sockaddr *)&peer, &len);
        if (n < 0) return;
        (void)sendto(l->fd, w->buf, (size_t)n, 0, (struct sockaddr *)&peer, len);
    }
}

static void dispatch(struct worker *w, struct conn *c, uint32_t events) {
    switch (c->kind) {
    case L_ECHO: case L_SINK: case L_SOURCE: accept_all(w, c); break;
    case L_UDP: udp_echo(w, c); break;
    case C_ECHO:
        if (c->pending != NULL) echo_flush(w, c);
        else echo_read(w, c);
        break;
    case C_SINK: sink_read(w, c); break;
    case C_SOURCE:
        if (c->hdr_got < (int)sizeof c->hdr && (events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
            source_read(w, c);
        else
            source_write(w, c);
        break;
    }
}

static void *run_worker(void *arg) {
    struct worker *w = arg;
    struct epoll_event events[256];
    for (;;) {
        int n = epoll_wait(w->ep, events, 256, -1);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) die("epoll_wait");
        for (int i = 0; i < n; i++) dispatch(w, events[i].data.ptr, events[i].events);
    }
    return NULL;
}

static void setup_worker(struct worker *w, int port) {
    w->ep = epoll_create1(EPOLL_CLOEXEC);
    if (w->ep < 0) die("epoll_create1");
    w->buf = malloc(BULK_CHUNK);
    if (w->buf == NULL) die("malloc");
    enum kind kinds[4] = {L_ECHO, L_SINK, L_SOURCE, L_UDP};
    int ports[4] = {port, port + 1, port + 2, port};
    for (int i = 0; i < 4; i++) {
        w->listeners[i].kind = kinds[i];
        w->listeners[i].fd = open_socket(kinds[i] == L_UDP ? SOCK_DGRAM : SOCK_STREAM, ports[i]);
        watch(w->ep, EPOLL_CTL_ADD, &w->listeners[i], EPOLLIN);
    }
}

int cmd_serve(int argc, char **argv) {
    if (argc != 2) {
        fputs("usage: benchtool serve PORT THREADS\n", stderr);
        return 2;
    }
    int port = atoi(argv[0]), threads = atoi(argv[1]);
    if (port <= 0 || port > 65533 || threads < 1 || threads > 16) {
        fputs("serve: bad PORT or THREADS\n", stderr);
        return 2;
    }
    memset(source_data, 'x', sizeof source_data);
    struct worker *workers = calloc((size_t)threads, sizeof *workers);
    if (workers == NULL) die("calloc");
    for (int i = 0; i < threads; i++) setup_worker(&workers[i], port);
    printf("ready\n");
    fflush(stdout);
    pthread_t tid;
    for (int i = 1; i < threads; i++)
        if (pthread_create(&tid, NULL, run_worker, &workers[i]) != 0) die("pthread_create");
    run_worker(&workers[0]);
    return 0;
}
