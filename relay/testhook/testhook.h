/*
 * testhook - a worker module built only into ringmaild-testhooks (never
 * into ringmaild, never installed) for the least-privilege tests: with the
 * daemon confined and running, worker 0 tries what a compromised worker
 * would, as the environment asks:
 *
 *   RINGMAIL_TESTHOOK_WRITE=/path   create /path; the log line
 *       "event=testhook op=write path=/path result=ok|error=..." says how
 *       it went (EACCES under Landlock outside the allowed directories)
 *   RINGMAIL_TESTHOOK_EXEC=/path    execve /path (seccomp kills the
 *       process with SIGSYS; if it returns, "op=exec error=...")
 */
#ifndef RINGMAIL_TESTHOOK_H
#define RINGMAIL_TESTHOOK_H

#include "worker.h"

extern const struct worker_module testhook_module;

#endif
