/* wgsig flooder: sends a prepared list of unauthenticated datagrams to a wgsigd as fast as it
 * can (or at --rate a second) from several loopback sources, and counts what comes back.
 *
 * The datagrams are built by bench/flood.py (every length, bit-flipped and exact replays of
 * real requests) and read from a file of records LEN (2, big-endian) DATA (LEN).  sendmmsg()
 * sends 64 at a time; after each round every socket is drained without blocking and every
 * datagram received is counted: anything but 0 is an answer to the flood.  Only loopback
 * destinations and sources are used.
 *
 * Output: "sent N received M seconds S" on stdout.
 *
 * Build: gcc -O2 -o flooder flooder.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define MAX_SOCKETS 64
#define MAX_DATAGRAMS 65536

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: flooder PORT SECONDS RATE(0=max) FILE SOCKETS SOURCE_PREFIX (e.g. 127.0.2.)\n");
        return 2;
    }
    int port = atoi(argv[1]), nsocks = atoi(argv[5]);
    double seconds = atof(argv[2]), rate = atof(argv[3]);
    const char *prefix = argv[6];
    if (nsocks < 1 || nsocks > MAX_SOCKETS || strncmp(prefix, "127.", 4) != 0) {
        fprintf(stderr, "flooder: 1-%d sockets, loopback sources only\n", MAX_SOCKETS);
        return 2;
    }
    FILE *f = fopen(argv[4], "rb");
    if (!f) {
        perror("flooder: datagram file");
        return 2;
    }
    static struct iovec iov[MAX_DATAGRAMS];
    size_t count = 0;
    unsigned char head[2];
    while (count < MAX_DATAGRAMS && fread(head, 1, 2, f) == 2) {
        size_t len = (size_t)head[0] << 8 | head[1];
        void *data = malloc(len ? len : 1);
        if (!data || fread(data, 1, len, f) != len) {
            fprintf(stderr, "flooder: truncated datagram file\n");
            return 2;
        }
        iov[count].iov_base = data;
        iov[count].iov_len = len;
        count++;
    }
    fclose(f);
    if (count == 0) {
        fprintf(stderr, "flooder: no datagrams\n");
        return 2;
    }
    int socks[MAX_SOCKETS];
    struct sockaddr_in server = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &server.sin_addr);
    for (int i = 0; i < nsocks; i++) {
        char ip[32];
        snprintf(ip, sizeof ip, "%s%d", prefix, i + 1);
        struct sockaddr_in src = {.sin_family = AF_INET};
        if (inet_pton(AF_INET, ip, &src.sin_addr) != 1) {
            fprintf(stderr, "flooder: bad source %s\n", ip);
            return 2;
        }
        socks[i] = socket(AF_INET, SOCK_DGRAM, 0);
        if (socks[i] < 0 || bind(socks[i], (struct sockaddr *)&src, sizeof src) < 0 ||
            connect(socks[i], (struct sockaddr *)&server, sizeof server) < 0) {
            perror("flooder: socket");
            return 2;
        }
    }
    struct mmsghdr msgs[BATCH];
    unsigned long long sent = 0, received = 0;
    size_t next = 0;
    char buf[4096];
    double start = now(), elapsed;
    while ((elapsed = now() - start) < seconds) {
        if (rate > 0 && sent >= elapsed * rate) {
            struct timespec pause = {0, 200000};
            nanosleep(&pause, NULL);
            continue;
        }
        for (int s = 0; s < nsocks; s++) {
            memset(msgs, 0, sizeof msgs);
            for (int i = 0; i < BATCH; i++) {
                msgs[i].msg_hdr.msg_iov = &iov[next];
                msgs[i].msg_hdr.msg_iovlen = 1;
                next = (next + 1) % count;
            }
            int n = sendmmsg(socks[s], msgs, BATCH, 0);
            if (n > 0)
                sent += (unsigned)n;  /* refused or ENOBUFS: the flood goes on */
            while (recv(socks[s], buf, sizeof buf, MSG_DONTWAIT) >= 0)
                received++;
        }
    }
    elapsed = now() - start;
    for (int s = 0; s < nsocks; s++)
        while (recv(socks[s], buf, sizeof buf, MSG_DONTWAIT) >= 0)
            received++;
    printf("sent %llu received %llu seconds %.3f\n", sent, received, elapsed);
    return 0;
}
