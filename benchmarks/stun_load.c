/*
 * stun_load: a loopback STUN Binding load generator for benchmarks/stun_server.py.
 *
 * Closed loop: each of --sockets UDP sockets (one source port each, so
 * SO_REUSEPORT servers spread them over their workers) keeps --window
 * requests in flight; every valid answer releases one more request. Batched
 * with recvmmsg/sendmmsg so that the client costs little next to the server.
 * A request unanswered for --loss-ms is counted lost and replaced.
 *
 * Requests are RFC 5389 Binding requests with no attributes and a distinct
 * transaction ID each (run id, socket index, sequence number). An answer is
 * valid when it is a Binding success response of the announced length with
 * the magic cookie, the transaction ID of a request still in flight on that
 * socket, and an XOR-MAPPED-ADDRESS naming the socket's own port. An answer
 * to a request already counted lost is "late"; anything else is "invalid".
 *
 * --reflect PORT turns it into a minimal responder (header + XOR-MAPPED-ADDRESS,
 * no checks), used to show the client's own ceiling on this machine.
 *
 * Output: one JSON line on stdout. Loopback only: the target must be 127.x.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define RING 4096
#define MAX_SOCKETS 1024
#define MAX_WINDOW 1024

struct flow {
    int fd;
    uint16_t port; /* local port, network order */
    uint32_t next_seq;
    uint32_t in_flight;
    double last_progress;
    uint32_t pending[RING]; /* seq + 1 of each request in flight, by seq % RING */
};

static volatile sig_atomic_t stop;

static void on_signal(int signum) {
    (void)signum;
    stop = 1;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static void die(const char *what) {
    perror(what);
    exit(2);
}

static int parse_endpoint(const char *text, struct sockaddr_in *out) {
    char host[64];
    const char *colon = strrchr(text, ':');
    if (colon == NULL || (size_t)(colon - text) >= sizeof host) return -1;
    memcpy(host, text, colon - text);
    host[colon - text] = 0;
    memset(out, 0, sizeof *out);
    out->sin_family = AF_INET;
    out->sin_port = htons((uint16_t)atoi(colon + 1));
    if (inet_pton(AF_INET, host, &out->sin_addr) != 1) return -1;
    /* Loopback only (127.0.0.0/8). */
    if ((ntohl(out->sin_addr.s_addr) >> 24) != 127) return -1;
    return 0;
}

static int reflect(int port) {
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0) die("reflect bind");
    static unsigned char in[BATCH][1500], out[BATCH][32];
    static struct sockaddr_in names[BATCH];
    static struct iovec iin[BATCH], iout[BATCH];
    static struct mmsghdr rmsg[BATCH], smsg[BATCH];
    for (int i = 0; i < BATCH; i++) {
        iin[i] = (struct iovec){in[i], sizeof in[i]};
        iout[i] = (struct iovec){out[i], 32};
        rmsg[i].msg_hdr = (struct msghdr){.msg_name = &names[i], .msg_iov = &iin[i], .msg_iovlen = 1};
        smsg[i].msg_hdr = (struct msghdr){.msg_name = &names[i], .msg_namelen = sizeof names[i],
                                          .msg_iov = &iout[i], .msg_iovlen = 1};
    }
    printf("ready\n");
    fflush(stdout);
    while (!stop) {
        for (int i = 0; i < BATCH; i++) rmsg[i].msg_hdr.msg_namelen = sizeof names[i];
        int n = recvmmsg(fd, rmsg, BATCH, MSG_WAITFORONE, NULL);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("recvmmsg");
        }
        int m = 0;
        for (int i = 0; i < n; i++) {
            if (rmsg[i].msg_len < 20) continue;
            unsigned char *o = out[m];
            o[0] = 0x01, o[1] = 0x01, o[2] = 0, o[3] = 12;
            memcpy(o + 4, in[i] + 4, 16);
            o[20] = 0, o[21] = 0x20, o[22] = 0, o[23] = 8, o[24] = 0, o[25] = 1;
            uint16_t xport = names[i].sin_port ^ htons(0x2112);
            uint32_t xaddr = names[i].sin_addr.s_addr ^ htonl(0x2112A442);
            memcpy(o + 26, &xport, 2);
            memcpy(o + 28, &xaddr, 4);
            smsg[m].msg_hdr.msg_name = &names[i];
            m++;
        }
        if (m > 0 && sendmmsg(fd, smsg, m, 0) < 0 && errno != EINTR) die("sendmmsg");
    }
    return 0;
}

static void build_request(unsigned char *buf, uint32_t run_id, uint32_t index, uint32_t seq) {
    static const unsigned char header[8] = {0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42};
    memcpy(buf, header, 8);
    memcpy(buf + 8, &run_id, 4);
    memcpy(buf + 12, &index, 4);
    memcpy(buf + 16, &seq, 4);
}

/* The XOR-MAPPED-ADDRESS port (network order, XOR-ed) of a response, or -1. */
static int xor_mapped_port(const unsigned char *msg, size_t len) {
    size_t off = 20;
    while (off + 4 <= len) {
        unsigned type = (unsigned)msg[off] << 8 | msg[off + 1];
        unsigned alen = (unsigned)msg[off + 2] << 8 | msg[off + 3];
        if (off + 4 + alen > len) return -1;
        if (type == 0x0020 && alen >= 4) {
            uint16_t xport;
            memcpy(&xport, msg + off + 6, 2);
            return xport ^ htons(0x2112);
        }
        off += 4 + ((alen + 3) & ~3u);
    }
    return -1;
}

int main(int argc, char **argv) {
    const char *server_text = NULL;
    int sockets = 64, window = 16, reflect_port = 0;
    double duration = 3.0, warmup = 0.5, loss_ms = 200.0;
    for (int i = 1; i < argc; i++) {
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (value == NULL) break;
        if (!strcmp(argv[i], "--server")) server_text = value;
        else if (!strcmp(argv[i], "--sockets")) sockets = atoi(value);
        else if (!strcmp(argv[i], "--window")) window = atoi(value);
        else if (!strcmp(argv[i], "--duration")) duration = atof(value);
        else if (!strcmp(argv[i], "--warmup")) warmup = atof(value);
        else if (!strcmp(argv[i], "--loss-ms")) loss_ms = atof(value);
        else if (!strcmp(argv[i], "--reflect")) reflect_port = atoi(value);
        else {
            fprintf(stderr, "stun_load: unknown option %s\n", argv[i]);
            return 64;
        }
        i++;
    }
    /* No SA_RESTART: a blocked recvmmsg returns EINTR and the loop sees `stop`. */
    struct sigaction action = {.sa_handler = on_signal};
    sigaction(SIGINT, &action, NULL);
    sigaction(SIGTERM, &action, NULL);
    if (reflect_port) return reflect(reflect_port);

    struct sockaddr_in server;
    if (server_text == NULL || parse_endpoint(server_text, &server) < 0) {
        fprintf(stderr, "stun_load: --server 127.x.y.z:PORT is required (loopback only)\n");
        return 64;
    }
    if (sockets < 1 || sockets > MAX_SOCKETS || window < 1 || window > MAX_WINDOW) {
        fprintf(stderr, "stun_load: --sockets 1..%d, --window 1..%d\n", MAX_SOCKETS, MAX_WINDOW);
        return 64;
    }

    struct flow *flows = calloc((size_t)sockets, sizeof *flows);
    int ep = epoll_create1(0);
    if (flows == NULL || ep < 0) die("setup");
    for (int i = 0; i < sockets; i++) {
        int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
        struct sockaddr_in local = {.sin_family = AF_INET};
        local.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof local;
        if (fd < 0 || bind(fd, (struct sockaddr *)&local, sizeof local) < 0 ||
            connect(fd, (struct sockaddr *)&server, sizeof server) < 0 ||
            getsockname(fd, (struct sockaddr *)&local, &len) < 0)
            die("socket");
        flows[i].fd = fd;
        flows[i].port = local.sin_port;
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");
    }

    uint32_t run_id;
    {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        run_id = (uint32_t)(ts.tv_nsec ^ getpid() * 2654435761u);
    }
    static unsigned char in[BATCH][1500], out[BATCH][20];
    static struct iovec iin[BATCH], iout[BATCH];
    static struct mmsghdr rmsg[BATCH], smsg[BATCH];
    for (int i = 0; i < BATCH; i++) {
        iin[i] = (struct iovec){in[i], sizeof in[i]};
        iout[i] = (struct iovec){out[i], 20};
        rmsg[i].msg_hdr = (struct msghdr){.msg_iov = &iin[i], .msg_iovlen = 1};
        smsg[i].msg_hdr = (struct msghdr){.msg_iov = &iout[i], .msg_iovlen = 1};
    }

    unsigned long long sent = 0, valid = 0, invalid = 0, late = 0, lost = 0;
    int counting = 0;
    double start = now_s(), begin = start + warmup, end = begin + duration;
    double cpu_begin = 0, next_sweep = start;
    struct epoll_event events[MAX_SOCKETS];

    /* Send up to `want` new requests on flow f; returns how many went out. */
#define REFILL(f, index)                                                         \
    do {                                                                         \
        uint32_t want = (uint32_t)window - (f)->in_flight;                       \
        while (want > 0) {                                                       \
            int k = want > BATCH ? BATCH : (int)want;                            \
            for (int j = 0; j < k; j++) {                                        \
                uint32_t seq = (f)->next_seq + (uint32_t)j;                      \
                build_request(out[j], run_id, (index), seq);                     \
            }                                                                    \
            int s = sendmmsg((f)->fd, smsg, (unsigned)k, 0);                     \
            if (s <= 0) break; /* EAGAIN or refused: the loss sweep retries */   \
            for (int j = 0; j < s; j++) {                                        \
                uint32_t seq = (f)->next_seq + (uint32_t)j;                      \
                (f)->pending[seq % RING] = seq + 1;                              \
            }                                                                    \
            (f)->next_seq += (uint32_t)s;                                        \
            (f)->in_flight += (uint32_t)s;                                       \
            if (counting) sent += (unsigned long long)s;                         \
            want -= (uint32_t)s;                                                 \
            if (s < k) break;                                                    \
        }                                                                        \
    } while (0)

    for (int i = 0; i < sockets; i++) {
        flows[i].last_progress = start;
        REFILL(&flows[i], (uint32_t)i);
    }
    while (!stop) {
        double t = now_s();
        if (!counting && t >= begin) {
            counting = 1;
            cpu_begin = cpu_s();
        }
        if (t >= end) break;
        if (t >= next_sweep) {
            /* Requests unanswered for loss_ms are lost: replace them. */
            for (int i = 0; i < sockets; i++) {
                struct flow *f = &flows[i];
                if (f->in_flight > 0 && t - f->last_progress > loss_ms / 1000.0) {
                    if (counting) lost += f->in_flight;
                    f->in_flight = 0;
                    f->last_progress = t;
                    memset(f->pending, 0, sizeof f->pending);
                }
                if (f->in_flight < (uint32_t)window) REFILL(f, (uint32_t)i);
            }
            next_sweep = t + 0.02;
        }
        int ready = epoll_wait(ep, events, sockets, 10);
        if (ready < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int e = 0; e < ready; e++) {
            uint32_t index = events[e].data.u32;
            struct flow *f = &flows[index];
            int n = recvmmsg(f->fd, rmsg, BATCH, MSG_DONTWAIT, NULL);
            if (n <= 0) continue;
            int progress = 0;
            for (int i = 0; i < n; i++) {
                const unsigned char *m = in[i];
                size_t len = rmsg[i].msg_len;
                uint32_t rid, idx, seq;
                if (len < 20 || m[0] != 0x01 || m[1] != 0x01 ||
                    ((size_t)(m[2] << 8 | m[3])) + 20 != len || m[4] != 0x21 || m[5] != 0x12 ||
                    m[6] != 0xA4 || m[7] != 0x42) {
                    invalid += counting;
                    continue;
                }
                memcpy(&rid, m + 8, 4);
                memcpy(&idx, m + 12, 4);
                memcpy(&seq, m + 16, 4);
                if (rid != run_id || idx != index || xor_mapped_port(m, len) != f->port) {
                    invalid += counting;
                    continue;
                }
                if (f->pending[seq % RING] != seq + 1) {
                    late += counting;
                    continue;
                }
                f->pending[seq % RING] = 0;
                f->in_flight--;
                progress++;
            }
            if (progress) {
                f->last_progress = t;
                if (counting) valid += (unsigned long long)progress;
                REFILL(f, index);
            }
        }
    }
    double elapsed = now_s() - begin;
    double cpu = cpu_s() - cpu_begin;
    if (!counting) elapsed = 0;
    printf("{\"sent\": %llu, \"valid\": %llu, \"invalid\": %llu, \"late\": %llu, "
           "\"lost\": %llu, \"seconds\": %.4f, \"cpu_seconds\": %.4f}\n",
           sent, valid, invalid, late, lost, elapsed, cpu);
    return 0;
}
