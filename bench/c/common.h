/* benchtool: the loopback backend and load generators of lbsim's benchmark suite. */
#ifndef BENCHTOOL_COMMON_H
#define BENCHTOOL_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define BULK_CHUNK (256 * 1024)

/* time */
double now_s(void);
uint64_t now_ns(void);

/* sockets */
int parse_addr(const char *host, const char *port, struct sockaddr_storage *out,
               socklen_t *len);
int tcp_connect_blocking(const struct sockaddr_storage *addr, socklen_t len, int timeout_s);
int set_nonblocking(int fd);
void set_nodelay(int fd);
int write_all(int fd, const void *buf, size_t len);
long read_full(int fd, void *buf, size_t len);

/* numbers */
void sort_u64(uint64_t *values, size_t n);
double percentile_us(const uint64_t *sorted_ns, size_t n, double p);
void die(const char *what);

/* commands */
int cmd_serve(int argc, char **argv);
int cmd_bulk(int argc, char **argv);
int cmd_rr(int argc, char **argv);
int cmd_connrate(int argc, char **argv);
int cmd_udp(int argc, char **argv);

#endif
