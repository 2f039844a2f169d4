/*
 * seccomp_filter - the daemon's syscall allowlist (libseccomp). After
 * seccomp_filter_load, on the calling thread and every thread it creates
 * later:
 *   - the syscalls ringmaild, its libraries and its helper threads use run;
 *   - execve, execveat, ptrace, process_vm_*, the module, mount, kexec,
 *     bpf, perf, keyring, id-changing and reboot calls kill the process
 *     (SIGSYS, no handler can stop it);
 *   - any other syscall raises SIGSYS, whose handler writes the syscall's
 *     number to stderr and kills the process: an unknown call is either an
 *     attack or a gap in the list to report, and the log says which call.
 * io_uring operations do not pass through seccomp: see docs/OPERATIONS.md.
 * Load it on the main thread before any other thread starts, after the
 * privilege drop (setresuid and friends are among the killed calls).
 */
#ifndef RINGMAIL_SECCOMP_FILTER_H
#define RINGMAIL_SECCOMP_FILTER_H

#include <stddef.h>

/* seccomp_filter_load - build and load the filter. 0, or -1 with err
 * filled in. */
int seccomp_filter_load(char *err, size_t errlen);

#endif
