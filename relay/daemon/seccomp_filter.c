/*
 * seccomp_filter - the syscall allowlist; see seccomp_filter.h.
 */
#include "seccomp_filter.h"

#include <errno.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

/* What the daemon, glibc, jemalloc, liburing, mbedTLS, udns, libsodium,
 * libconfig and the sanitizers' runtimes call once running. Names that an
 * architecture lacks are skipped. */
static const char *const allowed[] = {
	/* io_uring: the workers' rings and the main thread's */
	"io_uring_setup", "io_uring_enter", "io_uring_register",
	/* memory */
	"brk", "mmap", "munmap", "mremap", "mprotect", "madvise", "mlock", "munlock",
	"membarrier", "mincore",
	/* threads and time */
	"clone", "clone3", "exit", "exit_group", "futex", "futex_waitv", "set_robust_list",
	"get_robust_list", "rseq", "set_tid_address", "gettid", "getpid", "getppid", "tgkill",
	"sched_yield", "sched_getaffinity", "sched_setaffinity", "nanosleep", "clock_nanosleep",
	"clock_gettime", "clock_getres", "gettimeofday", "time", "getrandom", "uname", "sysinfo",
	"getrusage", "prlimit64", "getrlimit", "setrlimit", "prctl", "arch_prctl",
	"getuid", "geteuid", "getgid", "getegid", "getresuid", "getresgid", "getgroups",
	/* signals */
	"rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigtimedwait", "rt_sigsuspend",
	"sigaltstack", "kill", "tkill", "restart_syscall", "pause",
	/* files */
	"read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev",
	"preadv2", "pwritev2", "open", "openat", "openat2", "close", "close_range", "creat",
	"stat", "fstat", "lstat", "newfstatat", "statx", "statfs", "fstatfs", "lseek",
	"fsync", "fdatasync", "sync_file_range", "fallocate", "ftruncate", "truncate", "flock",
	"fcntl", "ioctl", "dup", "dup2", "dup3", "pipe", "pipe2", "getdents64", "getdents",
	"rename", "renameat", "renameat2", "link", "linkat", "unlink", "unlinkat", "mkdir",
	"mkdirat", "rmdir", "access", "faccessat", "faccessat2", "readlink", "readlinkat",
	"getcwd", "chdir", "fchdir", "umask", "fchmod", "chmod", "fchmodat", "utimensat",
	"fadvise64", "readahead", "sendfile", "splice", "copy_file_range", "memfd_create",
	/* polling */
	"poll", "ppoll", "select", "pselect6", "epoll_create1", "epoll_ctl", "epoll_wait",
	"epoll_pwait", "epoll_pwait2", "eventfd", "eventfd2", "timerfd_create",
	"timerfd_settime", "timerfd_gettime",
	/* sockets */
	"socket", "socketpair", "bind", "listen", "accept", "accept4", "connect",
	"getsockname", "getpeername", "setsockopt", "getsockopt", "sendto", "recvfrom",
	"sendmsg", "recvmsg", "sendmmsg", "recvmmsg", "shutdown",
};

#ifdef RINGMAIL_SANITIZE
/* LeakSanitizer stops the world at exit from a cloned tracer process that
 * ptraces every thread and is waited for: the sanitizer build (tests
 * only, never installed) allows that much. */
static const char *const sanitizer_allowed[] = { "ptrace", "wait4", "waitid", "process_vm_readv" };
#endif

/* Calls no part of ringmaild makes that an attacker wants first: these
 * kill the process outright, even with the SIGSYS handler replaced. */
static const char *const killed[] = {
	"execve", "execveat",
#ifndef RINGMAIL_SANITIZE
	"ptrace", "process_vm_readv",
#endif
	"process_vm_writev",
	"init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
	"mount", "umount2", "pivot_root", "chroot", "unshare", "setns", "bpf",
	"perf_event_open", "add_key", "request_key", "keyctl", "userfaultfd", "reboot",
	"swapon", "swapoff", "setuid", "setgid", "setreuid", "setregid", "setresuid",
	"setresgid", "setgroups", "setfsuid", "setfsgid", "capset", "fork", "vfork",
	"personality", "iopl", "ioperm", "open_by_handle_at", "name_to_handle_at",
	"fsopen", "fsmount", "fsconfig", "move_mount", "open_tree", "mount_setattr",
	"landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self",
	"seccomp", "process_madvise", "pidfd_getfd", "kcmp",
};

/* sigsys - an unlisted syscall: say which, then die of SIGSYS. Only
 * async-signal-safe calls. */
static void sigsys(int sig, siginfo_t *info, void *context)
{
	char text[96];
	int nr = info->si_syscall;
	int len = 0;
	char digits[16];
	int n = 0;

	(void)context;
	memcpy(text, "ringmaild: seccomp: syscall ", 28);
	len = 28;
	do {
		digits[n++] = (char)('0' + nr % 10);
		nr /= 10;
	} while (nr > 0 && n < (int)sizeof(digits));
	while (n > 0)
		text[len++] = digits[--n];
	memcpy(text + len, " is not allowed\n", 16);
	len += 16;
	ssize_t ignored = write(2, text, (size_t)len);
	(void)ignored;
	signal(sig, SIG_DFL);
	raise(sig);
	_exit(128 + sig);
}

/* rules_add - one rule per name that this architecture knows. */
static int rules_add(scmp_filter_ctx ctx, uint32_t action, const char *const *names, size_t count,
		     const char **failed)
{
	for (size_t i = 0; i < count; i++) {
		int nr = seccomp_syscall_resolve_name(names[i]);
		if (nr == __NR_SCMP_ERROR)
			continue;
		int rc = seccomp_rule_add(ctx, action, nr, 0);
		if (rc < 0 && rc != -EEXIST) {
			*failed = names[i];
			return rc;
		}
	}
	return 0;
}

int seccomp_filter_load(char *err, size_t errlen)
{
	struct sigaction sa = { .sa_sigaction = sigsys, .sa_flags = SA_SIGINFO };
	const char *failed = "";

	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGSYS, &sa, NULL) < 0) {
		snprintf(err, errlen, "seccomp: SIGSYS handler: %s", strerror(errno));
		return -1;
	}
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_TRAP);
	if (ctx == NULL) {
		snprintf(err, errlen, "seccomp: init failed");
		return -1;
	}
	int rc = rules_add(ctx, SCMP_ACT_ALLOW, allowed, sizeof(allowed) / sizeof(allowed[0]), &failed);
#ifdef RINGMAIL_SANITIZE
	if (rc == 0)
		rc = rules_add(ctx, SCMP_ACT_ALLOW, sanitizer_allowed,
			       sizeof(sanitizer_allowed) / sizeof(sanitizer_allowed[0]), &failed);
#endif
	if (rc == 0)
		rc = rules_add(ctx, SCMP_ACT_KILL_PROCESS, killed, sizeof(killed) / sizeof(killed[0]), &failed);
	if (rc == 0)
		rc = seccomp_load(ctx);
	seccomp_release(ctx);
	if (rc < 0) {
		snprintf(err, errlen, "seccomp: %s%s%s", failed, failed[0] ? ": " : "", strerror(-rc));
		return -1;
	}
	log_info("seccomp", "result=enforced allowed=%zu killed=%zu",
		 sizeof(allowed) / sizeof(allowed[0]), sizeof(killed) / sizeof(killed[0]));
	return 0;
}
