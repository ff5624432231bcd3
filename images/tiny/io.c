/* stratus-io: a small block I/O load generator for the tiny guest (busybox has dd, which
 * only reads and writes in order). Direct I/O (O_DIRECT) on a block device or file:
 *
 *   stratus-io DEVICE MODE BLOCK_BYTES SECONDS [SPAN_MIB]
 *     MODE: randread | randwrite | read | write
 *
 * Runs for SECONDS (sequential modes wrap around at the end of the span); SECONDS 0 makes
 * one sequential pass over the span and stops (to lay data out before measuring). Prints:
 *
 *   stratus-io mode=randread bs=4096 ops=12345 secs=5.00 iops=2469.0 mbps=10.11
 *
 * Random offsets are block-aligned within the first SPAN_MIB MiB (default: the whole
 * device). Built statically by scripts/build-tiny-image. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* xorshift64*: fast, good enough to spread offsets. */
static uint64_t rnd(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: %s DEVICE randread|randwrite|read|write BLOCK_BYTES SECONDS [SPAN_MIB]\n", argv[0]);
        return 2;
    }
    const char *dev = argv[1], *mode = argv[2];
    long bs = atol(argv[3]);
    double secs = atof(argv[4]);
    int writing = strstr(mode, "write") != NULL;
    int random = strncmp(mode, "rand", 4) == 0;
    if (bs < 512 || bs % 512 != 0 || secs < 0) {
        fprintf(stderr, "stratus-io: BLOCK_BYTES must be a multiple of 512, SECONDS >= 0\n");
        return 2;
    }
    int fd = open(dev, (writing ? O_RDWR : O_RDONLY) | O_DIRECT);
    if (fd < 0) {
        fprintf(stderr, "stratus-io: %s: %s\n", dev, strerror(errno));
        return 1;
    }
    uint64_t size = 0;
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISBLK(st.st_mode)) {
        ioctl(fd, BLKGETSIZE64, &size);
    } else {
        size = (uint64_t)st.st_size;
    }
    if (argc > 5) {
        uint64_t span = (uint64_t)atol(argv[5]) << 20;
        if (span > 0 && span < size) size = span;
    }
    uint64_t blocks = size / (uint64_t)bs;
    if (blocks == 0) {
        fprintf(stderr, "stratus-io: %s is smaller than one block\n", dev);
        return 1;
    }
    void *buf;
    if (posix_memalign(&buf, 4096, (size_t)bs) != 0) return 1;
    memset(buf, 0x5a, (size_t)bs);
    uint64_t seed = (uint64_t)getpid() * 0x9E3779B97F4A7C15ULL | 1, ops = 0, next = 0;
    int once = secs == 0;
    if (once) random = 0;
    double start = now(), end = once ? 1e300 : start + secs, t = start;
    while (t < end && !(once && next >= blocks)) {
        /* 64 operations between clock reads keep timing cheap. */
        for (int i = 0; i < 64 && !(once && next >= blocks); i++) {
            uint64_t b = random ? rnd(&seed) % blocks : next++ % blocks;
            off_t off = (off_t)(b * (uint64_t)bs);
            ssize_t n = writing ? pwrite(fd, buf, (size_t)bs, off) : pread(fd, buf, (size_t)bs, off);
            if (n != bs) {
                fprintf(stderr, "stratus-io: %s at %lld: %s\n", writing ? "write" : "read",
                        (long long)off, n < 0 ? strerror(errno) : "short");
                return 1;
            }
            ops++;
        }
        t = now();
    }
    if (writing) fdatasync(fd);
    double took = now() - start;
    printf("stratus-io mode=%s bs=%ld ops=%llu secs=%.2f iops=%.1f mbps=%.2f\n", mode, bs,
           (unsigned long long)ops, took, ops / took, ops * (double)bs / took / 1e6);
    return 0;
}
