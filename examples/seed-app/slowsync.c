/* A slow disk for the seed app: with LD_PRELOAD, every fsync() and fdatasync() of the
 * process first sleeps SEED_APP_SYNC_DELAY_MS milliseconds, then syncs for real. It is the
 * Python app's counterpart of lockbench's delay VFS (sync_delay_ms), so both stacks can run
 * on the same "event laptop" disk. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <time.h>
#include <errno.h>

static long delay_ms = -1;

static void slow(void) {
    if (delay_ms < 0) {
        const char *v = getenv("SEED_APP_SYNC_DELAY_MS");
        delay_ms = v ? atol(v) : 0;
        if (delay_ms < 0) delay_ms = 0;
    }
    if (delay_ms > 0) {
        struct timespec ts = { delay_ms / 1000, (delay_ms % 1000) * 1000000L };
        int saved = errno;
        while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {}
        errno = saved;
    }
}

int fsync(int fd) {
    static int (*real)(int) = 0;
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    slow();
    return real(fd);
}

int fdatasync(int fd) {
    static int (*real)(int) = 0;
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    slow();
    return real(fd);
}
