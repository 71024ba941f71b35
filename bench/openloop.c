/*
 * openloop: an open-loop HTTP/1.1 load generator for `make bench` (bench/shadow_rate.py).
 *
 * Why: wrk runs a closed loop (each connection waits for its answer before the next
 * request), so a slow answer delays the requests that would have found the stall, and the
 * Python generator this replaced had more jitter of its own than the effect it measured.
 * Here requests are due at fixed times drawn in advance (Poisson arrivals from a fixed
 * seed, so two runs see the same pattern); each is sent at its due time on an idle
 * keep-alive connection (or as soon as one frees up) and its latency is counted from the
 * due time, so every stall shows in full (no coordinated omission).
 *
 * usage: openloop HOST PORT PATH BODY_FILE RATE SECONDS CONNECTIONS WARMUP_SECONDS OUT [SEED]
 * OUT gets one line per measured request: latency in microseconds and the HTTP status
 * (0 when the connection failed). Exit status 0 when every request was answered.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define BUF 65536

typedef struct {
    int fd;
    int busy;
    long request; /* index of the request in flight */
    size_t have;
    char buf[BUF];
} conn_t;

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void die(const char *what) {
    perror(what);
    exit(2);
}

/* xorshift64*: a fixed sequence from the seed, the same in every run. */
static uint64_t rng_state;
static double uniform01(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    uint64_t x = rng_state * 2685821657736338717ULL;
    return ((double)(x >> 11) + 0.5) / 9007199254740992.0;
}

static int connect_to(const char *host, int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) die("socket");
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
        fprintf(stderr, "openloop: %s is not an IPv4 address\n", host);
        exit(2);
    }
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) die("connect");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

/* Length of a complete response at the start of buf, or 0 when more is needed. */
static size_t complete(const char *buf, size_t have, int *status) {
    const char *end = memmem(buf, have, "\r\n\r\n", 4);
    if (end == NULL) return 0;
    size_t head = (size_t)(end - buf) + 4;
    if (have < 12) return 0;
    *status = atoi(buf + 9);
    size_t length = 0;
    for (const char *line = strstr(buf, "\r\n"); line && line < end; line = strstr(line + 2, "\r\n")) {
        if (strncasecmp(line + 2, "content-length:", 15) == 0) {
            length = (size_t)strtoul(line + 17, NULL, 10);
            break;
        }
    }
    return have >= head + length ? head + length : 0;
}

int main(int argc, char **argv) {
    if (argc < 10) {
        fprintf(stderr,
                "usage: openloop HOST PORT PATH BODY_FILE RATE SECONDS CONNECTIONS WARMUP OUT [SEED]\n");
        return 2;
    }
    const char *host = argv[1];
    int port = atoi(argv[2]);
    const char *path = argv[3];
    double rate = atof(argv[5]), seconds = atof(argv[6]), warmup = atof(argv[8]);
    int nconn = atoi(argv[7]);
    rng_state = argc > 10 ? strtoull(argv[10], NULL, 10) : 88172645463325252ULL;
    if (rate <= 0 || seconds <= 0 || nconn <= 0 || warmup < 0) {
        fprintf(stderr, "openloop: RATE, SECONDS and CONNECTIONS must be positive\n");
        return 2;
    }

    FILE *bf = fopen(argv[4], "rb");
    if (!bf) die(argv[4]);
    static char body[BUF];
    size_t body_len = fread(body, 1, sizeof body, bf);
    fclose(bf);
    static char request[BUF + 1024];
    int head_len = snprintf(request, 1024,
                            "POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                            "Content-Length: %zu\r\n\r\n",
                            path, host, port, body_len);
    memcpy(request + head_len, body, body_len);
    size_t request_len = (size_t)head_len + body_len;

    /* Due times, drawn in advance: exponential gaps with the given mean rate. */
    long total = (long)((warmup + seconds) * rate);
    long first_measured = (long)(warmup * rate);
    int64_t *due = malloc(sizeof(int64_t) * (size_t)total);
    int64_t *latency = malloc(sizeof(int64_t) * (size_t)total);
    int *status = calloc((size_t)total, sizeof(int));
    if (!due || !latency || !status) die("malloc");

    int ep = epoll_create1(0);
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    if (ep < 0 || tfd < 0) die("epoll/timerfd");
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = UINT64_MAX};
    epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev);

    conn_t *conns = calloc((size_t)nconn, sizeof(conn_t));
    if (!conns) die("calloc");
    for (int i = 0; i < nconn; i++) {
        conns[i].fd = connect_to(host, port);
        ev.events = EPOLLIN;
        ev.data.u64 = (uint64_t)i;
        epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &ev);
    }

    int64_t t = now_ns() + 100000000LL; /* start in 100 ms */
    for (long i = 0; i < total; i++) {
        t += (int64_t)(-log(uniform01()) / rate * 1e9);
        due[i] = t;
    }

    long next_send = 0, done = 0, failed = 0;
    int *idle = malloc(sizeof(int) * (size_t)nconn);
    int nidle = nconn;
    for (int i = 0; i < nconn; i++) idle[i] = nconn - 1 - i;
    struct epoll_event events[64];

    while (done < total) {
        int64_t now = now_ns();
        if (now > due[total - 1] + 10000000000LL) {
            fprintf(stderr, "openloop: %ld requests unanswered 10 s after the last was due\n",
                    total - done);
            return 2;
        }
        while (next_send < total && due[next_send] <= now && nidle > 0) {
            conn_t *c = &conns[idle[--nidle]];
            c->busy = 1;
            c->request = next_send;
            c->have = 0;
            ssize_t n = write(c->fd, request, request_len);
            if (n != (ssize_t)request_len) {
                fprintf(stderr, "openloop: short write on a connection\n");
                return 2;
            }
            next_send++;
        }
        if (next_send < total && nidle > 0) {
            struct itimerspec its = {0};
            its.it_value.tv_sec = due[next_send] / 1000000000LL;
            its.it_value.tv_nsec = due[next_send] % 1000000000LL;
            timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
        }
        int n = epoll_wait(ep, events, 64, 1000);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        for (int e = 0; e < n; e++) {
            if (events[e].data.u64 == UINT64_MAX) {
                uint64_t expirations;
                (void)!read(tfd, &expirations, sizeof expirations);
                continue;
            }
            conn_t *c = &conns[events[e].data.u64];
            ssize_t got = read(c->fd, c->buf + c->have, BUF - 1 - c->have);
            if (got <= 0) {
                if (got < 0 && errno == EAGAIN) continue;
                fprintf(stderr, "openloop: a connection closed\n");
                return 2;
            }
            c->have += (size_t)got;
            c->buf[c->have] = '\0';
            int code = 0;
            size_t used = complete(c->buf, c->have, &code);
            if (used == 0 || !c->busy) continue;
            int64_t end = now_ns();
            latency[c->request] = end - due[c->request];
            status[c->request] = code;
            if (code != 200) failed++;
            done++;
            c->busy = 0;
            c->have = 0;
            idle[nidle++] = (int)(c - conns);
        }
    }

    FILE *out = fopen(argv[9], "w");
    if (!out) die(argv[9]);
    for (long i = first_measured; i < total; i++)
        fprintf(out, "%lld %d\n", (long long)(latency[i] / 1000), status[i]);
    fclose(out);
    return failed ? 1 : 0;
}
