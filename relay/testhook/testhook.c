/*
 * testhook - confinement probes for the tests; see testhook.h.
 */
#include "testhook.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

/* testhook_write - create the file the environment names, say how it went. */
static void testhook_write(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);

	if (fd < 0) {
		log_info("testhook", "op=write path=%s error=%s", path,
			 errno == EACCES ? "EACCES" : strerror(errno));
		return;
	}
	close(fd);
	log_info("testhook", "op=write path=%s result=ok", path);
}

/* testhook_exec - run the program the environment names in place of the
 * daemon; under seccomp this never returns, the process dies. */
static void testhook_exec(const char *path)
{
	char *const argv[] = { (char *)path, NULL };
	char *const envp[] = { NULL };

	log_info("testhook", "op=exec path=%s", path);
	log_batch_flush();         /* the worker's batch dies with the process */
	execve(path, argv, envp);
	log_info("testhook", "op=exec path=%s error=%s", path,
		 errno == EACCES ? "EACCES" : strerror(errno));
}

static void testhook_start(struct worker *w)
{
	if (w->id != 0)
		return;
	const char *path = getenv("RINGMAIL_TESTHOOK_WRITE");
	if (path != NULL && path[0] != '\0')
		testhook_write(path);
	path = getenv("RINGMAIL_TESTHOOK_EXEC");
	if (path != NULL && path[0] != '\0')
		testhook_exec(path);
}

const struct worker_module testhook_module = {
	.name = "testhook",
	.start = testhook_start,
};
