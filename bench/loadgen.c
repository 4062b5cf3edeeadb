/* wgsig load generator: keeps a wgsigd saturated with valid requests and counts answers.
 *
 * Every request is a new peer (a fresh peer ID), so each one changes its group's table.
 * Requests are built before the run (HMAC-SHA256 and ChaCha20 from libcrypto), with labels
 * taken at build time: the protocol's 30 s window leaves room for runs of a few seconds.
 * Many connected UDP sockets each keep up to WINDOW requests in flight (closed loop), so the
 * server's queue never empties and never overflows.  An answer is complete when N_OTHER + 1
 * datagrams have arrived on its socket.  Only loopback addresses are accepted.
 *
 * Output: one JSON object on stdout with the figures of the measured phase.
 *
 * Build: gcc -O2 -o loadgen loadgen.c -lcrypto
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define REQ_SIZE 82
#define REQ_SIGNED 50
#define ENC_HEADER 16
#define RESP_SIZE 540
#define MAX_DGRAM 2048
#define BATCH 64
#define MAX_SOCKETS 1024

struct sock_state {
    int fd;
    int outstanding;   /* requests sent, answer not complete */
    int partial;       /* datagrams of the current answer received */
    double last_rx;    /* time of the last datagram (or of the last send when idle) */
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static void chacha20(const uint8_t key[32], const uint8_t nonce[12], uint32_t counter, const uint8_t *in,
                     uint8_t *out, int len) {
    uint8_t iv[16];
    iv[0] = counter & 0xff; iv[1] = (counter >> 8) & 0xff; iv[2] = (counter >> 16) & 0xff; iv[3] = counter >> 24;
    memcpy(iv + 4, nonce, 12);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int outl = 0;
    EVP_EncryptInit_ex(ctx, EVP_chacha20(), NULL, key, iv);
    EVP_EncryptUpdate(ctx, out, &outl, in, len);
    EVP_CIPHER_CTX_free(ctx);
}

static void put32(uint8_t *p, uint32_t v) { p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v; }

static void usage(void) {
    fprintf(stderr,
            "usage: loadgen --port PORT --secret-hex HEX [--groups N] [--group-base ID] [--encrypt]\n"
            "               [--duration S] [--warmup S] [--sockets N] [--window N] [--max-rate R]\n"
            "               [--clflg N] [--host 127.0.0.1] [--sleep (wait in epoll instead of polling)]\n");
    exit(2);
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1", *secret_hex = NULL;
    int port = 0, groups = 1, encrypt = 0, nsock = 32, window = 4, clflg = 0, busy_poll = 1;
    uint32_t group_base = 0;
    double duration = 5.0, warmup = 1.0, max_rate = 250000.0;
    static struct option opts[] = {
        {"host", 1, 0, 'h'}, {"port", 1, 0, 'p'}, {"secret-hex", 1, 0, 's'}, {"groups", 1, 0, 'g'},
        {"group-base", 1, 0, 'b'}, {"encrypt", 0, 0, 'e'}, {"duration", 1, 0, 'd'}, {"warmup", 1, 0, 'w'},
        {"sockets", 1, 0, 'n'}, {"window", 1, 0, 'W'}, {"max-rate", 1, 0, 'r'}, {"clflg", 1, 0, 'c'},
        {"sleep", 0, 0, 'S'},
        {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'h': host = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 's': secret_hex = optarg; break;
        case 'g': groups = atoi(optarg); break;
        case 'b': group_base = (uint32_t)strtoul(optarg, NULL, 10); break;
        case 'e': encrypt = 1; break;
        case 'd': duration = atof(optarg); break;
        case 'w': warmup = atof(optarg); break;
        case 'n': nsock = atoi(optarg); break;
        case 'W': window = atoi(optarg); break;
        case 'r': max_rate = atof(optarg); break;
        case 'c': clflg = atoi(optarg); break;
        case 'S': busy_poll = 0; break;
        default: usage();
        }
    }
    if (!port || !secret_hex || strlen(secret_hex) != 64 || groups < 1 || nsock < 1 || nsock > MAX_SOCKETS ||
        window < 1)
        usage();
    uint8_t secret[32], key[32];
    for (int i = 0; i < 32; i++) {
        int hi = hexval(secret_hex[2 * i]), lo = hexval(secret_hex[2 * i + 1]);
        if (hi < 0 || lo < 0) usage();
        secret[i] = (uint8_t)(hi << 4 | lo);
    }
    SHA256(secret, 32, key);

    struct sockaddr_in server = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (inet_pton(AF_INET, host, &server.sin_addr) != 1 || (ntohl(server.sin_addr.s_addr) >> 24) != 127) {
        fprintf(stderr, "loadgen: %s is not a loopback IPv4 address\n", host);
        return 2;
    }

    /* Pre-build every request of the run: new peer IDs, labels of now, HMACs, encryption. */
    size_t count = (size_t)(max_rate * (duration + warmup)) + (size_t)nsock * window;
    int req_size = encrypt ? ENC_HEADER + REQ_SIZE : REQ_SIZE;
    uint8_t *reqs = malloc(count * req_size);
    if (!reqs) { perror("malloc"); return 1; }
    uint8_t run_id[16];
    RAND_bytes(run_id, sizeof run_id);
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    uint64_t tai = (1ULL << 62) | (uint64_t)wall.tv_sec;
    uint64_t rng = 0x9E3779B97F4A7C15ULL ^ (uint64_t)wall.tv_nsec;
    double t_build = now_s();
    for (size_t i = 0; i < count; i++) {
        uint8_t clear[REQ_SIZE];
        memcpy(clear, run_id, 16);
        memset(clear + 16, 0, 8);
        for (int b = 0; b < 8; b++) clear[24 + b] = (uint8_t)(i >> (56 - 8 * b));
        for (int b = 0; b < 8; b++) clear[32 + b] = (uint8_t)(tai >> (56 - 8 * b));
        put32(clear + 40, (uint32_t)(i % 1000000000u));
        clear[44] = 0; clear[45] = (uint8_t)clflg;
        rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
        uint32_t group = group_base + (uint32_t)(groups == 1 ? 0 : rng % (uint64_t)groups);
        put32(clear + 46, group);
        unsigned int maclen = 32;
        HMAC(EVP_sha256(), secret, 32, clear, REQ_SIGNED, clear + REQ_SIGNED, &maclen);
        uint8_t *out = reqs + i * req_size;
        if (encrypt) {
            uint8_t nonce[12];
            RAND_bytes(nonce, 12);
            uint32_t n8 = (uint32_t)nonce[8] << 24 | nonce[9] << 16 | nonce[10] << 8 | nonce[11];
            put32(out, group ^ n8);
            memcpy(out + 4, nonce, 12);
            chacha20(key, nonce, 1, clear, out + ENC_HEADER, REQ_SIZE);
        } else {
            memcpy(out, clear, REQ_SIZE);
        }
    }
    t_build = now_s() - t_build;

    int ep = epoll_create1(0);
    struct sock_state *socks = calloc(nsock, sizeof *socks);
    for (int i = 0; i < nsock; i++) {
        int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
        int size = 4 << 20;
        if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) < 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
        if (connect(fd, (struct sockaddr *)&server, sizeof server) < 0) { perror("connect"); return 1; }
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
        socks[i].fd = fd;
    }

    static uint8_t rxbuf[BATCH][MAX_DGRAM];
    struct mmsghdr rxmsg[BATCH], txmsg[BATCH];
    struct iovec rxiov[BATCH], txiov[BATCH];
    memset(rxmsg, 0, sizeof rxmsg);
    memset(txmsg, 0, sizeof txmsg);
    for (int i = 0; i < BATCH; i++) {
        rxiov[i].iov_base = rxbuf[i]; rxiov[i].iov_len = MAX_DGRAM;
        rxmsg[i].msg_hdr.msg_iov = &rxiov[i]; rxmsg[i].msg_hdr.msg_iovlen = 1;
        txmsg[i].msg_hdr.msg_iov = &txiov[i]; txmsg[i].msg_hdr.msg_iovlen = 1;
    }

    size_t next = 0;
    uint64_t sent = 0, datagrams = 0, answers = 0, lost = 0, bad_size = 0;
    double start = now_s(), measure_from = start + warmup, end = measure_from + duration;
    int measuring = 0, exhausted = 0, verified = -1;
    double last_any = 0, longest_gap = 0, t_measure = measure_from;
    uint64_t sent0 = 0;
    const double timeout = 0.25; /* a socket with no answer for this long has lost its requests */
    struct epoll_event evs[MAX_SOCKETS];
    double last_timeout_scan = start;

    for (;;) {
        double t = now_s();
        if (!measuring && t >= measure_from) {
            measuring = 1; t_measure = t; datagrams = answers = lost = 0; sent0 = sent;
            last_any = t; longest_gap = 0;
            fputs("MEASURE\n", stderr); /* the runner samples the server's CPU time now */
            fflush(stderr);
        }
        if (t >= end) break;
        for (int s = 0; s < nsock && !exhausted; s++) {
            int want = window - socks[s].outstanding;
            if (want <= 0) continue;
            if (want > BATCH) want = BATCH;
            if (next + want > count) { exhausted = 1; break; }
            for (int k = 0; k < want; k++) {
                txiov[k].iov_base = reqs + (next + k) * req_size;
                txiov[k].iov_len = req_size;
            }
            int n = sendmmsg(socks[s].fd, txmsg, want, 0);
            if (n > 0) {
                if (socks[s].outstanding == 0) socks[s].last_rx = t;
                next += n; sent += n; socks[s].outstanding += n;
            }
        }
        if (exhausted) { end = t; break; }
        /* Busy-poll (timeout 0): a sleeping load generator would make each answer's sendto pay for
         * waking it up on the other CPU (an inter-processor interrupt, costly in a VM). */
        int nev = epoll_wait(ep, evs, nsock, busy_poll ? 0 : 1);
        for (int e = 0; e < nev; e++) {
            struct sock_state *ss = &socks[evs[e].data.u32];
            for (;;) {
                int n = recvmmsg(ss->fd, rxmsg, BATCH, MSG_DONTWAIT, NULL);
                if (n <= 0) break;
                double tr = now_s();
                if (measuring) {
                    if (tr - last_any > longest_gap) longest_gap = tr - last_any;
                    last_any = tr;
                }
                ss->last_rx = tr;
                for (int k = 0; k < n; k++) {
                    uint8_t *d = rxbuf[k];
                    unsigned len = rxmsg[k].msg_len;
                    int n_other;
                    if (!encrypt && len == RESP_SIZE) {
                        n_other = d[502] << 8 | d[503];
                        if (verified < 0) {
                            uint8_t tag[32]; unsigned int tl = 32;
                            HMAC(EVP_sha256(), secret, 32, d, 508, tag, &tl);
                            verified = memcmp(tag, d + 508, 32) == 0;
                        }
                    } else if (encrypt && len >= ENC_HEADER + RESP_SIZE) {
                        if (verified < 0) {
                            uint8_t clear[RESP_SIZE], tag[32]; unsigned int tl = 32;
                            chacha20(key, d + 4, 1, d + ENC_HEADER, clear, RESP_SIZE);
                            HMAC(EVP_sha256(), secret, 32, clear, 508, tag, &tl);
                            verified = memcmp(tag, clear + 508, 32) == 0;
                        }
                        /* N_OTHER is in keystream block 7 (bytes 448..511): decrypt that block only. */
                        uint8_t block[64];
                        chacha20(key, d + 4, 1 + 7, d + ENC_HEADER + 448, block, 64);
                        n_other = block[502 - 448] << 8 | block[503 - 448];
                    } else {
                        bad_size++;
                        continue;
                    }
                    datagrams += measuring;
                    if (++ss->partial >= n_other + 1) {
                        ss->partial = 0;
                        if (ss->outstanding > 0) ss->outstanding--;
                        answers += measuring;
                    }
                }
            }
        }
        if (t - last_timeout_scan > 0.05) {
            last_timeout_scan = t;
            for (int s = 0; s < nsock; s++) {
                if (socks[s].outstanding > 0 && t - socks[s].last_rx > timeout) {
                    lost += measuring ? (uint64_t)socks[s].outstanding : 0;
                    socks[s].outstanding = 0;
                    socks[s].partial = 0;
                }
            }
        }
    }
    double elapsed = end - t_measure;
    if (!measuring || elapsed <= 0) {
        fprintf(stderr, "loadgen: ran out of prebuilt requests before measuring (raise --max-rate)\n");
        return 1;
    }
    if (end - last_any > longest_gap) longest_gap = end - last_any;
    printf("{\"sent\": %llu, \"answers\": %llu, \"datagrams\": %llu, \"lost\": %llu, \"bad_size\": %llu, "
           "\"seconds\": %.4f, \"answers_per_s\": %.1f, \"datagrams_per_s\": %.1f, \"longest_gap_ms\": %.3f, "
           "\"verified\": %s, \"exhausted\": %s, \"build_s\": %.3f}\n",
           (unsigned long long)(sent - sent0), (unsigned long long)answers, (unsigned long long)datagrams,
           (unsigned long long)lost, (unsigned long long)bad_size, elapsed, answers / elapsed,
           datagrams / elapsed, longest_gap * 1000, verified == 1 ? "true" : "false",
           exhausted ? "true" : "false", t_build);
    return 0;
}
