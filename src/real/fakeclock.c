/* Wall clock of a real server under lockcheck: read, in milliseconds since the epoch, from the
   file named by LOCKCHECK_CLOCK_FILE at every call. No allocation: jemalloc calls the clock
   while it initialises. The monotonic clock stays real, so the server's event loop runs. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static long long fake_ms(void) {
    static const char *path;
    if (!path) path = getenv("LOCKCHECK_CLOCK_FILE");
    if (!path) return -1;
    int fd = (int)syscall(SYS_open, path, O_RDONLY);
    if (fd < 0) return -1;
    char buf[32];
    long n = syscall(SYS_read, fd, buf, sizeof buf - 1);
    syscall(SYS_close, fd);
    if (n <= 0) return -1;
    long long v = 0;
    for (long i = 0; i < n && buf[i] >= '0' && buf[i] <= '9'; i++) v = v * 10 + (buf[i] - '0');
    return v;
}

int clock_gettime(clockid_t id, struct timespec *ts) {
    long long ms = (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE) ? fake_ms() : -1;
    if (ms < 0) return (int)syscall(SYS_clock_gettime, id, ts);
    ts->tv_sec = ms / 1000;
    ts->tv_nsec = (ms % 1000) * 1000000;
    return 0;
}

int gettimeofday(struct timeval *tv, void *tz) {
    (void)tz;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    tv->tv_sec = ts.tv_sec;
    tv->tv_usec = ts.tv_nsec / 1000;
    return 0;
}

time_t time(time_t *t) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (t) *t = ts.tv_sec;
    return ts.tv_sec;
}
