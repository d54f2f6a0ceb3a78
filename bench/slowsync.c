/*
 * slowsync.c - an LD_PRELOAD shim that makes this machine's disk look slow
 * to flush, for benchmarks only (scripts/bench-repos BENCH_SLOWSYNC_MS).
 *
 * Every call that waits for the disk - fsync, fdatasync, msync with
 * MS_SYNC, and a write to a file opened O_DSYNC or O_SYNC (LMDB's meta
 * page) - first sleeps SLOWSYNC_MS milliseconds (default 8, what a
 * consumer disk or a busy VM volume takes), then does the real call.
 * SLOWSYNC_SERIAL=1 lets one such call sleep at a time, process-wide: a
 * disk that cannot overlap flushes at all (the worst case; ext4 joins
 * concurrent fsyncs into one journal commit, which the default models).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t serial_lock = PTHREAD_MUTEX_INITIALIZER;

static void
slow(void)
{
	static long ms = -1;
	static int serial;
	if (ms < 0) {
		const char *s = getenv("SLOWSYNC_MS");
		const char *z = getenv("SLOWSYNC_SERIAL");
		serial = z && *z == '1';
		ms = s ? strtol(s, NULL, 10) : 8;
		if (ms < 0 || ms > 10000)
			ms = 8;
	}
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	if (serial)
		pthread_mutex_lock(&serial_lock);
	while (nanosleep(&ts, &ts) != 0)
		;
	if (serial)
		pthread_mutex_unlock(&serial_lock);
}

static int
is_sync_fd(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	return fl >= 0 && (fl & (O_DSYNC | O_SYNC));
}

/* real: the libc function this one stands for. */
#define REAL(fn) \
	static __typeof__(&fn) real; \
	if (!real) \
		real = (__typeof__(&fn))dlsym(RTLD_NEXT, #fn)

int
fsync(int fd)
{
	REAL(fsync);
	slow();
	return real(fd);
}

int
fdatasync(int fd)
{
	REAL(fdatasync);
	slow();
	return real(fd);
}

int
msync(void *addr, size_t len, int flags)
{
	REAL(msync);
	if (flags & MS_SYNC)
		slow();
	return real(addr, len, flags);
}

ssize_t
pwrite(int fd, const void *buf, size_t n, off_t off)
{
	REAL(pwrite);
	if (is_sync_fd(fd))
		slow();
	return real(fd, buf, n, off);
}

ssize_t
pwrite64(int fd, const void *buf, size_t n, off_t off)
{
	REAL(pwrite64);
	if (is_sync_fd(fd))
		slow();
	return real(fd, buf, n, off);
}

ssize_t
pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
	REAL(pwritev);
	if (is_sync_fd(fd))
		slow();
	return real(fd, iov, cnt, off);
}
