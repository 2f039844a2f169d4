/*
 * file_io - small blocking file helpers for helper threads and the main
 * thread (never a worker's loop): write a whole buffer, replace a file
 * atomically and durably.
 *
 *   struct iovec parts[] = { { header, hlen }, { body, blen } };
 *   rc = file_replace(dir, path, parts, 2, 0600);   // 0, or -errno and path as it was
 */
#ifndef RINGMAIL_FILE_IO_H
#define RINGMAIL_FILE_IO_H

#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

/* file_write_all - all len bytes of p to fd, retrying short writes and
 * EINTR; 0 or -errno (-EIO for a write that wrote nothing). */
int file_write_all(int fd, const void *p, size_t len);

/* file_sync_dir - fsync the directory dir, so that a rename or an unlink
 * in it survives a crash; 0 or -errno. */
int file_sync_dir(const char *dir);

/* file_replace - path (in directory dir) holds exactly the count parts
 * from now on, or keeps its old content: they are written to "path.tmp"
 * (mode for it), fdatasync'd, renamed over path, and dir is synced. On an
 * error the temporary file is removed and -errno returned; an error of the
 * last step (the directory's fsync) leaves the new content in place. */
int file_replace(const char *dir, const char *path, const struct iovec *parts, size_t count, mode_t mode);

#endif
