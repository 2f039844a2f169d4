/*
 * server_tls - the worker's server-side TLS configuration; see server_tls.h.
 */
#include "server_tls.h"

#include <pthread.h>

#include "log.h"
#include "tls.h"

/* The resumption state every worker's tls_config shares: a root config
 * never used for sessions, rebuilt (sharing the old one's state) once per
 * reloaded config. Guarded by tls_root_lock; kept until exit. */
static pthread_mutex_t tls_root_lock = PTHREAD_MUTEX_INITIALIZER;
static struct tls_config *tls_root;
static unsigned long tls_root_serial;   /* config serial it was made for */

/* server_tls_refresh - make w->server_tls match the worker's current config. */
static void server_tls_refresh(struct worker *w)
{
	const struct config *cfg = w->cfg;
	char err[256];

	/* Serials, not pointers: a freed config's address may come back
	 * with the next load. */
	if (w->server_tls_serial == cfg->serial)
		return;
	w->server_tls_serial = cfg->serial;
	if (cfg->tls_cert_file[0] == '\0') {
		w->server_tls = tls_config_free(w->server_tls);
		return;
	}
	pthread_mutex_lock(&tls_root_lock);
	if (tls_root_serial != cfg->serial) {
		struct tls_config *root = tls_config_new_server(cfg->tls_cert_file, cfg->tls_key_file,
								tls_root, err, sizeof(err));
		if (root != NULL) {
			tls_config_free(tls_root);
			tls_root = root;
			tls_root_serial = cfg->serial;
		}
	}
	struct tls_config *mine = tls_config_new_server(cfg->tls_cert_file, cfg->tls_key_file,
							tls_root, err, sizeof(err));
	pthread_mutex_unlock(&tls_root_lock);
	if (mine == NULL) {
		/* The files changed after config_load checked them: keep
		 * the certificate we have (if any). */
		log_error("tls_config", "worker=%u cert=%s error=\"%s\"", w->id, cfg->tls_cert_file, err);
		return;
	}
	tls_config_free(w->server_tls);
	w->server_tls = mine;
	log_debug("tls_config", "worker=%u cert=%s", w->id, cfg->tls_cert_file);
}

struct tls_config *server_tls_config(struct worker *w)
{
	server_tls_refresh(w);
	return w->server_tls;
}

/* server_tls_init - load the certificate at start, so that a key that no
 * longer loads is said at once, not at the first client's handshake. */
static int server_tls_init(struct worker *w)
{
	server_tls_refresh(w);
	return 0;
}

static void server_tls_exit(struct worker *w)
{
	w->server_tls = tls_config_free(w->server_tls);
	w->server_tls_serial = 0;
}

const struct worker_module server_tls_module = {
	.name = "server_tls",
	.init = server_tls_init,
	.exit = server_tls_exit,
};
