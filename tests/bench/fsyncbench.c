/*
 * What the commit path costs on this file system, without msmilter around
 * it: T threads each write N new files of SIZE bytes in DIR as the spooler
 * does (create, write, sync, rename), and one directory fsync covers each
 * group of renamed files.  Modes: fsync, fdatasync, and sfr (start
 * write-back with sync_file_range after every 64 KB written, then fsync).
 * Not part of msmilter; `make bench` does not run it.
 *   fsyncbench DIR THREADS FILES SIZE fsync|fdatasync|sfr
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int		 dirfd_, nfiles, mode;
static size_t		 size;
static pthread_mutex_t	 lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t	 cv = PTHREAD_COND_INITIALIZER;
static unsigned long	 renamed, synced;	/* generations */
static int		 syncing;
static unsigned long	 dirsyncs;
static double		 t_sync_total;

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Group commit: one fsync of the directory covers every rename before it. */
static void
dir_sync(void)
{
	unsigned long mine;

	pthread_mutex_lock(&lock);
	mine = ++renamed;
	while (synced < mine) {
		if (!syncing) {
			unsigned long upto = renamed;

			syncing = 1;
			pthread_mutex_unlock(&lock);
			if (fsync(dirfd_) == -1)
				perror("fsync dir");
			pthread_mutex_lock(&lock);
			syncing = 0;
			synced = upto;
			dirsyncs++;
			pthread_cond_broadcast(&cv);
		} else
			pthread_cond_wait(&cv, &lock);
	}
	pthread_mutex_unlock(&lock);
}

static void *
worker(void *arg)
{
	long	 id = (long)arg;
	char	*buf = malloc(65536), tmp[64], name[64];
	double	 ts = 0;

	memset(buf, 'x', 65536);
	for (int i = 0; i < nfiles; i++) {
		size_t	 left = size;
		off_t	 off = 0;
		int	 fd;
		double	 t0;

		snprintf(tmp, sizeof(tmp), "temp-%ld-%d", id, i);
		snprintf(name, sizeof(name), "F%ldx%d", id, i);
		fd = openat(dirfd_, tmp, O_WRONLY | O_CREAT | O_EXCL, 0600);
		if (fd == -1) {
			perror("openat");
			exit(1);
		}
		while (left > 0) {
			size_t n = left < 65536 ? left : 65536;

			if (write(fd, buf, n) != (ssize_t)n) {
				perror("write");
				exit(1);
			}
			if (mode == 2)
				sync_file_range(fd, off, (off_t)n,
				    SYNC_FILE_RANGE_WRITE);
			off += (off_t)n;
			left -= n;
		}
		t0 = now();
		if ((mode == 1 ? fdatasync(fd) : fsync(fd)) == -1) {
			perror("fsync");
			exit(1);
		}
		ts += now() - t0;
		if (renameat2(dirfd_, tmp, dirfd_, name, RENAME_NOREPLACE) == -1) {
			perror("rename");
			exit(1);
		}
		dir_sync();
		close(fd);
	}
	pthread_mutex_lock(&lock);
	t_sync_total += ts;
	pthread_mutex_unlock(&lock);
	free(buf);
	return NULL;
}

int
main(int argc, char *argv[])
{
	pthread_t	 t[256];
	int		 nthreads;
	double		 t0, el;

	if (argc != 6) {
		fprintf(stderr, "usage: fsyncbench DIR THREADS FILES SIZE "
		    "fsync|fdatasync|sfr\n");
		return 2;
	}
	if ((dirfd_ = open(argv[1], O_RDONLY | O_DIRECTORY)) == -1) {
		perror(argv[1]);
		return 1;
	}
	nthreads = atoi(argv[2]);
	nfiles = atoi(argv[3]);
	size = (size_t)atol(argv[4]);
	mode = strcmp(argv[5], "fdatasync") == 0 ? 1 :
	    strcmp(argv[5], "sfr") == 0 ? 2 : 0;
	if (nthreads < 1 || nthreads > 256)
		return 2;
	t0 = now();
	for (long i = 0; i < nthreads; i++)
		pthread_create(&t[i], NULL, worker, (void *)i);
	for (int i = 0; i < nthreads; i++)
		pthread_join(t[i], NULL);
	el = now() - t0;
	printf("%s threads=%d files=%d size=%zu: %.0f files/s, mean file "
	    "sync %.2f ms, %lu dir fsyncs (%.1f files each)\n", argv[5],
	    nthreads, nthreads * nfiles, size, nthreads * nfiles / el,
	    1000 * t_sync_total / (nthreads * nfiles), dirsyncs,
	    (double)nthreads * nfiles / (double)(dirsyncs ? dirsyncs : 1));
	return 0;
}
