/*
 * The commit path.  Postfix forgets a message the moment we answer DISCARD,
 * so a queue file must be complete and on stable storage first:
 *   1. create "temp-msm-<id>-<rand>" exclusively (MailScanner only takes
 *      names of word characters, so it never sees a temp file);
 *   2. write every record as it arrives;
 *   3. fsync the file: its data and size are on disk;
 *   4. rename it to its queue id without replacing anything
 *      (renameat2 RENAME_NOREPLACE, or link+unlink where that is missing);
 *   5. fsync the directory: the new name is on disk.
 * Only then may capture say DISCARD.  Any failure before 5 removes what we
 * wrote and capture answers TEMPFAIL, so Postfix keeps its copy.
 *
 * Who runs which step (spooler.c, commit.c): 1 and 2 the event loop; 3,
 * 4, 5 and the answer the commit pool, in rounds that one worker thread
 * runs at a time.  A round does step 5 for the files renamed in the round
 * before it, then steps 3 and 4 for the files handed over since.  The
 * order per file stays 3, 4, 5, answer, because each step starts only
 * after the one before it returned for that file:
 *   - a file is renamed only after its own fsync returned 0;
 *   - it joins the queue for step 5 only after its rename returned, and
 *     a round takes the whole queue before it calls the directory fsync:
 *     so one directory fsync covers every file in its batch (group
 *     commit), and a file renamed in this round waits for the next one's;
 *   - COMMITTED is sent for a batch only after its directory fsync
 *     returned 0.
 * A failed step (EIO, ENOSPC) hands the job back with its errno; the event
 * loop removes the temp file or the new name and capture answers 451.
 * COMMITTED that cannot be sent (capture closed the session: its commit
 * timeout ran out, or it died, and it answered TEMPFAIL) has the event
 * loop remove the finished file again (withdraw in spooler.c), so either
 * the complete file stays and DISCARD was said, or no file stays and the
 * client retries.
 * A spooler killed mid-commit leaves temp files (removed at start) or,
 * after step 4, complete files whose senders got 4xx: a duplicate,
 * never a loss.
 *
 * Step 1 stays on the event loop although a create can cost 0.7 ms on
 * ext4 without a journal (it passes over every inode freed in the last
 * minute): handing it to the commit threads was measured slower, 0.91
 * of this build's throughput in both orders (make bench, 4 KB, 20
 * sessions, 3 rounds each), because the two thread switches it adds to
 * every message cost more CPU than the loop's wait where the cores are
 * busy anyway.
 *
 * fsync, not fdatasync: a new file's size and block map are metadata
 * "needed to retrieve the data", so on ext4 its fdatasync commits the same
 * journal transaction as fsync (only timestamps could wait, and they are
 * in it anyway); paired runs of tests/bench/fsyncbench found no gain
 * (fdatasync/fsync 1.02 median, 0.58 to 1.36, 8 pairs).  No
 * sync_file_range to start write-back while the body still arrives: 0.94
 * (0.71 to 1.15) in the same pairs, mixed in make bench at 100 KB, and it
 * would run, and may block, on the event loop.  A commit round does write
 * its files out and wait for that (sync_file_range) just before their
 * fsyncs, so that their blocks are in the journal commit the first fsync
 * starts; the fsync of each file still follows.  An error in that wait
 * fails the file like a failed fsync: the kernel reports a write-back
 * error once per descriptor, there, and the fsync after it returns 0.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "log.h"
#include "queueid.h"
#include "spool.h"

#define PUBLISH_TRIES	16

int
spool_open_dir(struct spool_dir *d)
{
	int fd;

	if (d->fd != -1)
		return 0;
	fd = open(d->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd == -1)
		return -1;
	d->fd = fd;
	return 0;
}

int
spool_clean_temp(struct spool_dir *d)
{
	DIR		*dir;
	struct dirent	*de;
	int		 fd, removed = 0;

	if ((fd = dup(d->fd)) == -1)
		return -1;
	if ((dir = fdopendir(fd)) == NULL) {
		close(fd);
		return -1;
	}
	while ((de = readdir(dir)) != NULL) {
		if (strncmp(de->d_name, SPOOL_TEMP_PREFIX,
		    strlen(SPOOL_TEMP_PREFIX)) != 0)
			continue;
		if (unlinkat(d->fd, de->d_name, 0) == 0) {
			log_info("removed leftover temp file %s/%s", d->path,
			    de->d_name);
			removed++;
		} else
			log_warn("cannot remove leftover %s/%s", d->path,
			    de->d_name);
	}
	closedir(dir);
	return removed;
}

int
spool_create(struct spool_dir *d, struct spool_file *f, const char *queue_id,
    char *reason, size_t rlen)
{
	memset(f, 0, sizeof(*f));
	f->fd = -1;
	if (spool_open_dir(d) == -1) {
		snprintf(reason, rlen, "cannot open %s: %s", d->path,
		    strerror(errno));
		return -1;
	}
	snprintf(f->queue_id, sizeof(f->queue_id), "%s", queue_id);
	snprintf(f->temp_name, sizeof(f->temp_name), SPOOL_TEMP_PREFIX "%s-%08x",
	    queue_id, randombytes_random());
	f->fd = openat(d->fd, f->temp_name, (d->scan ? O_RDWR : O_WRONLY) |
	    O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, d->mode);
	if (f->fd == -1) {
		snprintf(reason, rlen, "cannot create %s/%s: %s", d->path,
		    f->temp_name, strerror(errno));
		return -1;
	}
	if (d->audit != SPOOL_AUDIT_OFF)
		f->tap = spool_tap_new();	/* audit.c */
	return 0;
}

int
spool_write(struct spool_file *f, const void *p, size_t len, char *reason,
    size_t rlen)
{
	const char	*cp = p;
	size_t		 total = len;

	while (len > 0) {
		ssize_t n = write(f->fd, cp, len);

		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			snprintf(reason, rlen, "write %s: %s", f->temp_name,
			    n == 0 ? "no progress" : strerror(errno));
			return -1;
		}
		cp += n;
		len -= (size_t)n;
		f->size += (uint64_t)n;
	}
	spool_tap_update(f->tap, p, total);	/* the bytes as written */
	return 0;
}

/* Step 4: never replace an existing file, whatever the file system. */
static int
rename_noreplace(int dirfd, const char *from, const char *to)
{
	if (renameat2(dirfd, from, dirfd, to, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -1;
	if (linkat(dirfd, from, dirfd, to, 0) == -1)
		return -1;
	/* The file is in place; a stale temp name is cleaned at start. */
	if (unlinkat(dirfd, from, 0) == -1)
		log_warn("unlink %s after link", from);
	return 0;
}

int
spool_sync_file(struct spool_file *f, char *reason, size_t rlen)
{
	if (fsync(f->fd) == -1) {
		snprintf(reason, rlen, "fsync %s: %s", f->temp_name,
		    strerror(errno));
		return -1;
	}
	return 0;
}

int
spool_rename(struct spool_dir *d, struct spool_file *f, char *reason,
    size_t rlen)
{
	for (int i = 0; i < PUBLISH_TRIES; i++) {
		if (rename_noreplace(d->fd, f->temp_name, f->queue_id) == 0) {
			f->renamed = 1;
			return 0;
		}
		if (errno != EEXIST)
			break;
		log_notice("%s already in %s, taking a fresh queue id",
		    f->queue_id, d->path);
		if (queueid_new(d->queue_type, f->queue_id,
		    sizeof(f->queue_id)) == -1)
			break;
	}
	snprintf(reason, rlen, "rename %s to %s: %s", f->temp_name, f->queue_id,
	    strerror(errno));
	return -1;
}

int
spool_publish(struct spool_dir *d, struct spool_file *f, char *reason,
    size_t rlen)
{
	if (spool_sync_file(f, reason, rlen) == -1)
		return -1;
	return spool_rename(d, f, reason, rlen);
}

int
spool_sync_dir(struct spool_dir *d, char *reason, size_t rlen)
{
	if (fsync(d->fd) == -1) {
		snprintf(reason, rlen, "fsync %s: %s", d->path, strerror(errno));
		return -1;
	}
	return 0;
}

void
spool_discard(struct spool_dir *d, struct spool_file *f)
{
	const char *name = f->renamed ? f->queue_id : f->temp_name;

	if (f->fd != -1) {
		close(f->fd);
		f->fd = -1;
	}
	if (name[0] != '\0' && d->fd != -1 && unlinkat(d->fd, name, 0) == -1 &&
	    errno != ENOENT)
		log_warn("cannot remove %s/%s", d->path, name);
	f->temp_name[0] = '\0';
	f->renamed = 0;
	spool_tap_free(f->tap);
	f->tap = NULL;
}

void
spool_done(struct spool_file *f)
{
	if (f->fd != -1)
		close(f->fd);
	f->fd = -1;
	f->temp_name[0] = '\0';
	f->renamed = 0;
	spool_tap_free(f->tap);
	f->tap = NULL;
}
