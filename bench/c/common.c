/* Helpers shared by benchtool's commands, and its entry point. */
#define _GNU_SOURCE
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void die(const char *what) {
    perror(what);
    exit(2);
}

int parse_addr(const char *host, const char *port, struct sockaddr_storage *out,
               socklen_t *len) {
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    if (getaddrinfo(host, port, &hints, &res) != 0 || res == NULL) return -1;
    memcpy(out, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

static void set_timeouts(int fd, int timeout_s) {
    struct timeval tv = {.tv_sec = timeout_s, .tv_usec = 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

/* A connected blocking TCP socket whose reads and writes give up after timeout_s. */
int tcp_connect_blocking(const struct sockaddr_storage *addr, socklen_t len, int timeout_s) {
    int fd = socket(addr->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    set_timeouts(fd, timeout_s);
    if (connect(fd, (const struct sockaddr *)addr, len) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int set_nonblocking(int fd) {
    int flags = fcntl(fd, F_GETFL, 0);
    return flags < 0 ? -1 : fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

void set_nodelay(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

int write_all(int fd, const void *buf, size_t len) {
    const char *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Reads exactly len bytes unless the peer ends first; the count read, or -1. */
long read_full(int fd, void *buf, size_t len) {
    char *p = buf;
    size_t got = 0;
    while (got < len) {
        ssize_t n = recv(fd, p + got, len - got, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (n == 0) break;
        got += (size_t)n;
    }
    return (long)got;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

void sort_u64(uint64_t *values, size_t n) { qsort(values, n, sizeof *values, cmp_u64); }

/* The p-th percentile (0..100, nearest rank) of sorted nanoseconds, in microseconds. */
double percentile_us(const uint64_t *sorted_ns, size_t n, double p) {
    if (n == 0) return 0.0;
    size_t rank = (size_t)(p / 100.0 * (double)n + 0.999999);
    if (rank < 1) rank = 1;
    if (rank > n) rank = n;
    return (double)sorted_ns[rank - 1] / 1000.0;
}

static void usage(void) {
    fputs("usage: benchtool serve PORT THREADS\n"
          "       benchtool bulk up|down HOST PORT BYTES STREAMS\n"
          "       benchtool rr HOST PORT COUNT SIZE\n"
          "       benchtool connrate HOST PORT CONCURRENCY SECONDS SIZE MAXCOUNT\n"
          "       benchtool udp HOST PORT SECONDS SIZE WINDOW MAXCOUNT\n"
          "Ports: serve binds TCP PORT (echo), PORT+1 (sink), PORT+2 (source), UDP PORT (echo)\n"
          "on 127.0.0.1. Every client command prints one JSON object.\n",
          stderr);
    exit(2);
}

int main(int argc, char **argv) {
    if (argc < 2) usage();
    const char *cmd = argv[1];
    if (strcmp(cmd, "serve") == 0) return cmd_serve(argc - 2, argv + 2);
    if (strcmp(cmd, "bulk") == 0) return cmd_bulk(argc - 2, argv + 2);
    if (strcmp(cmd, "rr") == 0) return cmd_rr(argc - 2, argv + 2);
    if (strcmp(cmd, "connrate") == 0) return cmd_connrate(argc - 2, argv + 2);
    if (strcmp(cmd, "udp") == 0) return cmd_udp(argc - 2, argv + 2);
    usage();
    return 2;
}
