/*
 * ringmaild - the ringmail relay daemon.
 *
 * The main thread loads the config, starts the workers and then only
 * handles signals: SIGTERM/SIGINT stop (sessions finish up to
 * shutdown_timeout, exit 0), SIGHUP reloads the config (a bad one is
 * logged and the old one kept), SIGUSR1 reopens the log files (main and
 * delivery log). READY=1 goes to systemd once every worker listens.
 * Between signals (and at least once a second) it frees the configs
 * nobody holds any more (config_release, config_retired_free): however
 * many reloads, only the configs in use stay allocated.
 *
 * Before any of that it makes sure it is alone: the spool directory is
 * locked (a second daemon on it exits 1 naming the holder's PID) and each
 * listen address is probed (one that another process listens on: exit 1).
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "commit.h"
#include "config.h"
#include "control.h"
#include "delivery.h"
#include "delivery_log.h"
#include "http_server.h"
#include "instance.h"
#include "landlock.h"
#include "listen_pool.h"
#include "log.h"
#include "metrics.h"
#include "mta_sts_fetch.h"
#include "pop3_server.h"
#include "privilege.h"
#include "sdnotify.h"
#include "suppress.h"
#include "webhook.h"
#include "tlsrpt_reporter.h"
#include "seccomp_filter.h"
#include "shaping_state.h"
#include "cluster.h"
#include "cluster_state.h"
#include "server_tls.h"
#include "smtp_server.h"
#include "worker.h"
#include "xalloc.h"
#ifdef RINGMAIL_TEST_HOOKS
#include "testhook.h"
#endif

/* The daemon's modules, in the order their hooks run each pass: delivery
 * before commit, so that outcomes appended by delivery's hook go into the
 * same pass's batch. Exits run in reverse order: control's before
 * delivery's (a query's cursor lives in delivery's lists), server_tls's
 * last (every TLS session is gone by then); no exit calls into another
 * module, so commit's going before delivery's is harmless. */
static const struct worker_module *const modules[] = {
	&server_tls_module,
	&smtp_server_module,
	&pop3_server_module,
	&suppress_module,
	&http_server_module,
	&delivery_module,
	&commit_module,
	&control_module,
	&metrics_module,
#ifdef RINGMAIL_TEST_HOOKS
	&testhook_module,      /* ringmaild-testhooks only, never installed */
#endif
	NULL,
};

/* Which protocol answers on each kind of listener. */
static const struct worker_plan plan = {
	.modules = modules,
	.handlers = {
		[CONFIG_ROLE_SMTP] = &smtp_server_handler,
		[CONFIG_ROLE_SMTPS] = &smtps_server_handler,
		[CONFIG_ROLE_SUBMISSION] = &submission_server_handler,
		[CONFIG_ROLE_POP3] = &pop3_server_handler,
		[CONFIG_ROLE_POP3S] = &pop3s_server_handler,
		[CONFIG_ROLE_HTTP] = &http_server_handler,
		[CONFIG_ROLE_HTTPS] = &https_server_handler,
	},
};

/* How long the main thread sleeps in sigtimedwait before it looks for
 * retired configs to free even without a signal. */
#define MAIN_RETIRE_INTERVAL_S 1

static int64_t clock_ms(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* shaping_state_persist - on the main thread, about once a second: the
 * suspensions and lowerings to spool.dir/shaping.state when they changed
 * since the last save (a failed save is tried again next time). */
static void shaping_state_persist(const char *path, uint64_t *saved)
{
	uint64_t now = shaping_state_generation();

	if (now == *saved)
		return;
	int rc = shaping_state_save(path, clock_ms(CLOCK_MONOTONIC), clock_ms(CLOCK_REALTIME));
	if (rc < 0) {
		log_error("shaping_state_save", "path=%s error=\"%s\"", path, strerror(-rc));
		return;
	}
	*saved = now;
}

static void usage(FILE *out)
{
	fprintf(out,
		"usage: ringmaild [-c FILE] [--check-config FILE] [--config-keys] [--help] [--version]\n"
		"\n"
		"  -c, --config FILE      run with this configuration file (default: built-in defaults,\n"
		"                         listening on 127.0.0.1:2525)\n"
		"  --check-config FILE    validate FILE, print the first error, exit 0 if valid\n"
		"  --config-keys          list every configuration key with its default\n"
		"  -h, --help             this text\n"
		"  -V, --version          print the version\n");
}

static unsigned worker_count(const struct config *cfg)
{
	if (cfg->workers > 0)
		return (unsigned)cfg->workers;
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (unsigned)n : 1;
}

/* logs_open - (re)open the main log and the delivery log (SIGHUP, SIGUSR1);
 * a file that cannot be opened is logged and the old one kept. */
static void logs_open(const struct config *cfg)
{
	int rc = log_open(cfg->log_file, cfg->log_level);
	if (rc < 0)
		log_error("log_open", "file=%s error=\"%s\"", cfg->log_file, strerror(-rc));
	rc = delivery_log_open(cfg->log_delivery_file);
	if (rc < 0)
		log_error("log_open", "file=%s error=\"%s\"", cfg->log_delivery_file, strerror(-rc));
}

/* reload - SIGHUP: parse the file again; keep the old config on error.
 * *current is the main thread's reference: the new config replaces it and
 * the old one is released here (each worker holds its own until it picks
 * up the new one; sessions hold theirs until they end), so it is freed
 * once the last holder lets go (see config_hold). */
static void reload(struct worker *workers, unsigned count, const char *path,
		   const struct config **current)
{
	char err[512];
	struct config *cfg;

	if (config_load(path, &cfg, err, sizeof(err)) < 0) {
		log_error("reload", "result=rejected error=\"%s\"", err);
		control_reload_done(workers, false, err);
		return;
	}
	const struct config *old = *current;
	if (cfg->listen_count != old->listen_count || worker_count(cfg) != count ||
	    cfg->pop3_listen_count != old->pop3_listen_count ||
	    cfg->metrics_listen_count != old->metrics_listen_count ||
	    cfg->http_listen_count != old->http_listen_count ||
	    cfg->ring_poll_wait != old->ring_poll_wait ||
	    strcmp(cfg->spool_dir, old->spool_dir) != 0 ||
	    strcmp(cfg->control_socket, old->control_socket) != 0)
		log_warn("reload", "note=\"listen, pop3.listen, metrics.listen, http.listen, workers, ring.poll_wait, spool.dir and control.socket take effect only after a restart\"");
	*current = cfg;
	logs_open(cfg);
	worker_reload_all(workers, count, cfg);
	webhook_reload(cfg);
	tlsrpt_reporter_reload(cfg);
	config_release(old);
	config_retired_free();
	log_info("reload", "result=ok serial=%lu configs_live=%zu", cfg->serial, config_live_count());
	control_reload_done(workers, true, "reloaded");
}

/* raise_fd_limit - a relay holds thousands of sockets: take the hard limit. */
static void raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* claim_instance - lock the spool and probe the listen addresses before
 * anything is written to the spool or the log: a second daemon on the same
 * spool or address would deliver the same messages twice or silently share
 * the port (SO_REUSEPORT admits any process of the same user). Returns the
 * lock fd to keep open, or -1 after printing why. */
static int claim_instance(const struct config *cfg)
{
	long holder;
	int fd = instance_lock_spool(cfg->spool_dir, &holder);

	if (fd == -EWOULDBLOCK) {
		if (holder > 0)
			fprintf(stderr, "ringmaild: spool.dir %s is in use by another ringmaild (pid %ld)\n",
				cfg->spool_dir, holder);
		else
			fprintf(stderr, "ringmaild: spool.dir %s is in use by another ringmaild (pid unknown)\n",
				cfg->spool_dir);
		return -1;
	}
	if (fd < 0) {
		fprintf(stderr, "ringmaild: spool.dir %s: cannot lock %s: %s\n", cfg->spool_dir,
			INSTANCE_LOCK_FILE, strerror(-fd));
		return -1;
	}
	struct instance_listen_busy busy;
	int rc = instance_probe_listeners(cfg, &busy);
	if (rc == -EADDRINUSE) {
		fprintf(stderr, "ringmaild: %s %s is in use by another process\n", busy.key,
			busy.addr->text);
	} else if (rc < 0) {
		fprintf(stderr, "ringmaild: %s %s: %s\n", busy.key, busy.addr->text, strerror(-rc));
	}
	if (rc < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* confine - as root: open the listeners, give the spool, the mailbox root
 * and the log files to the run-as user and become that user; then, root
 * or not, Landlock and seccomp. Runs before any thread exists, so every
 * worker and helper thread inherits all of it. 0, or -1 after printing why
 * (see docs/OPERATIONS.md, "Privileges"). */
static int confine(const struct config *cfg)
{
	struct privilege_user user;
	const struct config_listen *failed = NULL;
	char err[512];

	if (privilege_resolve(cfg->user, &user, err, sizeof(err)) < 0) {
		fprintf(stderr, "ringmaild: %s\n", err);
		return -1;
	}
	/* libcurl (MTA-STS fetches) and its TLS library set up their global
	 * state, and read their configuration files, once, before any
	 * thread, Landlock or seccomp. */
	if (mta_sts_fetch_global_init() < 0) {
		fprintf(stderr, "ringmaild: curl_global_init failed\n");
		return -1;
	}
	int rc = listen_pool_open(cfg, worker_count(cfg), &failed);
	if (rc < 0) {
		fprintf(stderr, "ringmaild: listen %s: %s\n", failed ? failed->text : "?", strerror(-rc));
		return -1;
	}
	const char *trees[] = { cfg->spool_dir, cfg->mailbox_root };
	for (size_t i = 0; i < 2; i++) {
		rc = privilege_chown_tree(trees[i], &user);
		if (rc > 0)
			log_warn("privilege", "dir=%s skipped=%d note=\"files with several links are left to their owner\"", trees[i], rc);
		else if (rc < 0)
			log_warn("privilege", "dir=%s error=\"chown: %s\"", trees[i], strerror(-rc));
	}
	privilege_chown_path(cfg->log_file, &user);
	privilege_chown_path(cfg->log_delivery_file, &user);
	if (privilege_drop(&user, err, sizeof(err)) < 0) {
		fprintf(stderr, "ringmaild: %s\n", err);
		return -1;
	}
	if (user.change)
		log_info("privilege", "user=%s uid=%ld gid=%ld", user.name, (long)user.uid, (long)user.gid);
	if (cfg->security_landlock && landlock_confine(cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "ringmaild: %s\n", err);
		return -1;
	}
	if (cfg->security_seccomp && seccomp_filter_load(err, sizeof(err)) < 0) {
		fprintf(stderr, "ringmaild: %s\n", err);
		return -1;
	}
	if (privilege_check_readable(cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "ringmaild: %s\n", err);
		return -1;
	}
	return 0;
}

/* serve - start the workers and handle signals until told to stop. */
static int serve(struct config *cfg)
{
	const struct config *current = cfg;   /* the main thread's reference */
	char *path = cfg->source_path != NULL ? xstrdup(cfg->source_path) : NULL;
	unsigned count = worker_count(cfg);
	sigset_t set;
	int sig;

	/* Workers inherit this mask: only the main thread takes signals. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	/* Past a file size limit (ulimit -f, LimitFSIZE=) a write fails with
	 * EFBIG, which the spool answers (452, an empty spare), instead of
	 * SIGXFSZ killing the daemon. */
	signal(SIGXFSZ, SIG_IGN);

	raise_fd_limit();
	char err[512];
	if (suppress_open(cfg->spool_dir, err, sizeof(err)) < 0) {
		log_error("suppression_load", "error=\"%s\"", err);
		config_free(cfg);
		free(path);
		return 1;
	}
	/* Suspensions and lowerings from before a restart, before any worker
	 * may connect. */
	char *state_path = xmalloc(strlen(cfg->spool_dir) + sizeof("/shaping.state"));
	sprintf(state_path, "%s/shaping.state", cfg->spool_dir);
	size_t restored;
	int src = shaping_state_restore(state_path, clock_ms(CLOCK_MONOTONIC), clock_ms(CLOCK_REALTIME), &restored, err,
					sizeof(err));
	if (src < 0 && src != -ENOENT)
		log_error("shaping_state_load", "error=\"%s\" note=\"started without them\"",
			  src == -EINVAL ? err : strerror(-src));
	else if (src == 0)
		log_info("shaping_state_load", "path=%s restored=%zu", state_path, restored);
	uint64_t state_saved = shaping_state_generation();
	if (cfg->cluster_redis[0] != '\0')
		cluster_state_configure((unsigned)cfg->cluster_nodes);   /* fallback shares until Redis answers */
	struct worker *workers = xcalloc(count + 1, sizeof(*workers));   /* + the local worker */
	int rc = worker_start_all(workers, count, cfg, &plan);
	if (rc < 0) {
		worker_stop_all(workers, count);
		worker_join_all(workers, count);
		free(workers);
		config_free(cfg);
		free(path);
		free(state_path);
		return 1;
	}
	if (webhook_start(cfg) < 0)
		log_error("webhook_start", "note=\"no webhooks until a reload or restart\"");
	if (cluster_start(cfg, workers, count) < 0)
		log_error("cluster_start", "note=\"no cluster: every limit is this node's own\"");
	if (tlsrpt_reporter_start(cfg, workers) < 0)
		log_error("tlsrpt_start", "note=\"no TLS-RPT until a restart\"");
	log_info("ready", "version=%s workers=%u listen=%s", RINGMAIL_VERSION, count, cfg->listen[0].text);
	rc = sdnotify_send("READY=1");
	if (rc < 0)
		log_warn("sd_notify", "error=\"%s\"", strerror(-rc));
	cfg = NULL;                            /* may be freed after a reload: use current */
	const struct timespec retire_interval = { .tv_sec = MAIN_RETIRE_INTERVAL_S };
	for (;;) {
		sig = sigtimedwait(&set, NULL, &retire_interval);
		config_retired_free();
		shaping_state_persist(state_path, &state_saved);
		if (sig < 0)
			continue;                      /* EAGAIN (the interval) or EINTR */
		if (sig == SIGTERM || sig == SIGINT)
			break;
		if (sig == SIGHUP && path != NULL)
			reload(workers, count, path, &current);
		else if (sig == SIGUSR1)
			logs_open(current);
	}
	log_info("stopping", "signal=%s", sig == SIGTERM ? "TERM" : "INT");
	sdnotify_send("STOPPING=1");
	cluster_stop();                        /* gives its leases back */
	worker_stop_all(workers, count);
	int status = worker_join_all(workers, count);
	shaping_state_persist(state_path, &state_saved);
	free(state_path);
	webhook_stop();
	tlsrpt_reporter_stop();       /* after the workers: their last results are saved */
	free(workers);
	/* The workers released theirs when joined: ours is the last. */
	current = config_release(current);
	config_retired_free();
	free(path);
	log_info("exit", "status=%d configs_live=%zu", status, config_live_count());
	return status;
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check-config", required_argument, NULL, 'C' },
		{ "config-keys", no_argument, NULL, 'K' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = NULL;
	bool check_only = false;
	char err[512];
	struct config *cfg;
	int opt;

	metrics_process_started();
	while ((opt = getopt_long(argc, argv, "c:hV", options, NULL)) != -1) {
		switch (opt) {
		case 'c':
			path = optarg;
			break;
		case 'C':
			path = optarg;
			check_only = true;
			break;
		case 'K':
			config_keys_dump(stdout);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("ringmaild %s\n", RINGMAIL_VERSION);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		usage(stderr);
		return 2;
	}
	if (config_load(path, &cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "ringmaild: %s\n", err);
		return 1;
	}
	if (check_only) {
		printf("%s: ok\n", path);
		config_free(cfg);
		return 0;
	}
	int lock_fd = claim_instance(cfg);
	if (lock_fd < 0) {
		config_free(cfg);
		return 1;
	}
	int rc = log_open(cfg->log_file, cfg->log_level);
	if (rc < 0) {
		fprintf(stderr, "ringmaild: log.file %s: %s\n", cfg->log_file, strerror(-rc));
		config_free(cfg);
		return 1;
	}
	rc = delivery_log_open(cfg->log_delivery_file);
	if (rc < 0) {
		fprintf(stderr, "ringmaild: log.delivery_file %s: %s\n", cfg->log_delivery_file, strerror(-rc));
		config_free(cfg);
		return 1;
	}
	/* libcurl's global state before any thread and before seccomp. */
	if (webhook_global_init() < 0) {
		fprintf(stderr, "ringmaild: libcurl could not be initialised\n");
		config_free(cfg);
		return 1;
	}
	if (confine(cfg) < 0) {
		listen_pool_close_all();
		config_free(cfg);
		return 1;
	}
	int status = serve(cfg);
	listen_pool_close_all();
	close(lock_fd);    /* releases the spool lock; exit would too */
	return status;
}
