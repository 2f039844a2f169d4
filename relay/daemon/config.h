/*
 * config - ringmaild's configuration: one libconfig file, every key with a
 * default, so that no file at all gives a working relay on 127.0.0.1:2525.
 *
 *   struct config *cfg;
 *   char err[256];
 *   if (config_load(path_or_NULL, &cfg, err, sizeof(err)) < 0) ...
 *   ...
 *   cfg = config_free(cfg);
 *
 * Unknown keys, wrong types and out-of-range values are errors that name the
 * key and the line. Durations are written as integers (seconds) or strings
 * with a unit ("250ms", "30s", "5m", "2h", "5d") and are stored in
 * milliseconds; sizes as integers (bytes) or strings ("512k", "10M", "1G").
 * A loaded config is immutable: SIGHUP builds a new one and swaps the pointer;
 * the old one is freed once nobody holds it (config_hold, below).
 * It owns the users db read from users.file (loaded with it, so a reload
 * swaps both together and a bad users file fails the load like a bad key).
 * docs/CONFIGURATION.md documents every key; config_keys_dump() prints the
 * table it is checked against.
 */
#ifndef RINGMAIL_CONFIG_H
#define RINGMAIL_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "log.h"
#include "netaddr.h"
#include "retire.h"

#define CONFIG_MAX_LISTEN 16

struct users_db;
struct auth_file;
struct bounce_classifier;
struct shaping_rules;
struct dkim_key;
struct http_tokens;

/* One dkim.sign entry: mail whose From domain is domain or below it is
 * signed with key under selector. The key is loaded with the config. */
struct config_dkim_signer {
	char *domain;                     /* d=, lower case, no trailing dot */
	char *selector;                   /* s= */
	char *key_file;
	struct dkim_key *key;             /* owned; its algorithm is the a= */
};

/* What a listener serves: the worker picks the handler and the session
 * flags from it. SMTPS and POP3S are implicit TLS (RFC 8314): the
 * handshake comes first. SUBMISSION (RFC 6409) wants AUTH before MAIL. */
enum config_listen_role {
	CONFIG_ROLE_SMTP,                 /* listen */
	CONFIG_ROLE_SMTPS,                /* smtps.listen (465) */
	CONFIG_ROLE_SUBMISSION,           /* submission.listen (587) */
	CONFIG_ROLE_POP3,                 /* pop3.listen */
	CONFIG_ROLE_POP3S,                /* pop3s.listen (995) */
	CONFIG_ROLE_HTTP,                 /* http.listen (the HTTP API) */
	CONFIG_ROLE_HTTPS,                /* http.tls_listen (the HTTP API over TLS) */
	CONFIG_ROLE_COUNT
};

struct config_listen {
	struct sockaddr_storage addr;
	socklen_t addr_len;
	char text[64];
	enum config_listen_role role;
	bool proxy_protocol;              /* named in proxy_protocol.listeners */
};

/* Outbound STARTTLS policy (RFC 3207, RFC 7435). */
enum config_tls_policy {
	CONFIG_TLS_NONE,      /* never STARTTLS */
	CONFIG_TLS_MAY,       /* when offered; a failed handshake: retry in clear */
	CONFIG_TLS_ENCRYPT,   /* TLS or nothing; any certificate */
	CONFIG_TLS_VERIFY,    /* TLS with a certificate that verifies for the MX name */
	CONFIG_TLS_IMPLICIT,  /* RFC 8314 (port 465): the handshake first, then the greeting; any certificate */
	CONFIG_TLS_DANE,      /* RFC 7672: an MX host with usable secure TLSA records gets TLS that
			       * matches them; others "may" (Postfix's "dane"). A session's policy
			       * is DANE only for a host with usable records (dane_delivery.h). */
};

/* Per-destination-domain policy; the entry named "" holds the defaults. */
struct config_domain {
	char *name;                       /* lower case, no trailing dot */
	char *route;                      /* "host[:port]" or NULL: use MX */
	int64_t max_connections;
	int64_t max_messages_per_connection;
	int64_t max_recipients_per_transaction;
	enum config_tls_policy tls;
	bool tls_set;                     /* domains[].tls given: it wins over MTA-STS */
	int line;                         /* in the file, for errors */
};

/* delivery.sender_routes: mail from sender goes to route (a next hop),
 * before any recipient domain's route (Postfix's
 * sender_dependent_relayhost_maps). */
struct config_sender_route {
	char *sender;                     /* "user@example.com", "example.com" or ".example.com"; lower case */
	char *route;                      /* next hop, as delivery.relayhost */
	enum config_tls_policy tls;       /* for deliveries through route, when tls_set */
	bool tls_set;                     /* tls given: else the recipient domain's */
	int line;
};
/* webhooks: one receiver of delivery events (relay/http/webhook.h). */
struct config_webhook {
	char *url;                        /* http:// or https:// */
	unsigned events;                  /* bit per enum webhook_event */
	int64_t batch;                    /* events per POST, at most */
	int64_t timeout_ms;               /* one POST, connect included */
	int64_t retry_min_ms;             /* first wait after a failed POST */
	int64_t retry_max_ms;             /* the doubling stops here */
	int line;
};

/* Where suppressed recipients are refused (suppression.check). */
#define CONFIG_SUPPRESS_INJECTION 1u      /* 550 5.7.1 at RCPT */
#define CONFIG_SUPPRESS_DELIVERY 2u       /* bounced 5.7.1 when their turn comes */

struct config {
	/* process */
	int64_t workers;                  /* 0 = one per online CPU */
	char *hostname;                   /* "" = gethostname() */
	int64_t shutdown_timeout_ms;
	char *log_file;                   /* "-" = stderr */
	enum log_level log_level;
	char *log_delivery_file;          /* "" = delivery lines in the main log */

	/* listeners */
	struct config_listen listen[CONFIG_MAX_LISTEN];
	size_t listen_count;
	struct config_listen smtps_listen[CONFIG_MAX_LISTEN];
	size_t smtps_listen_count;        /* 0 = no implicit-TLS SMTP */
	struct config_listen submission_listen[CONFIG_MAX_LISTEN];
	size_t submission_listen_count;   /* 0 = no submission listener */
	int64_t listen_backlog;

	/* PROXY protocol (HAProxy's v1 and v2) before the client's bytes on
	 * the listeners named here; config_load marks them (proxy_protocol). */
	struct config_listen proxy_protocol_listeners[CONFIG_MAX_LISTEN];
	size_t proxy_protocol_listener_count;
	int64_t proxy_protocol_timeout_ms;
	int64_t proxy_protocol_max_header_size;

	/* ring */
	int64_t ring_entries;
	int64_t recv_buffer_size;
	int64_t recv_buffer_count;
	bool ring_poll_wait;              /* wait in poll(2), for valgrind */
	int64_t max_connections;          /* inbound, per worker */

	/* smtp server */
	int64_t smtp_max_command_line;
	int64_t smtp_max_line;
	int64_t smtp_max_message_size;
	int64_t smtp_max_recipients;
	int64_t smtp_max_errors;
	int64_t smtp_idle_timeout_ms;
	int64_t smtp_command_timeout_ms;
	int64_t smtp_data_timeout_ms;
	int64_t smtp_max_input_backlog;   /* bytes buffered while a session waits */

	/* tls (inbound STARTTLS) */
	char *tls_cert_file;              /* PEM chain, leaf first; "" = no STARTTLS */
	char *tls_key_file;               /* PEM private key, unencrypted */
	bool tls_offload_handshakes;      /* handshakes on helper threads (conn.c) */

	/* AUTH (inbound) */
	char *users_file;                 /* passwd-file; "" = no AUTH */
	struct users_db *users;           /* loaded from users_file, or NULL */
	bool smtp_auth_plaintext;         /* offer AUTH without TLS too */
	bool smtp_add_missing_headers;    /* Message-ID, Date for trusted clients' mail */
	int64_t smtp_auth_max_failures;   /* per client address, back to back */
	int64_t smtp_auth_failure_window_ms;  /* to regain all of them */

	/* relay policy */
	struct netaddr_cidr *relay_networks;
	size_t relay_network_count;
	char **local_domains;
	size_t local_domain_count;

	/* spool */
	char *spool_dir;
	char *control_socket;             /* see config_control_path */
	char *control_mode_text;
	int control_mode;                 /* control_mode_text, checked */
	int64_t spool_segment_size;
	int64_t spool_preallocate;
	int64_t spool_body_cache_size;    /* bodies held by delivery workers, all of them */
	bool spool_sync;                  /* false only for benchmarks: no fdatasync */

	/* dns */
	char **dns_nameservers;
	size_t dns_nameserver_count;
	int64_t dns_cache_size;
	int64_t dns_min_ttl_ms;
	int64_t dns_max_ttl_ms;
	int64_t dns_negative_ttl_ms;
	int64_t dns_max_in_flight;
	int64_t dns_timeout_ms;
	int64_t dns_tries;
	char *dns_ip_mode;                /* "ipv4", "ipv6", "both" */

	/* delivery */
	int64_t delivery_port;
	char *relayhost;                  /* "" = none */
	int64_t connect_timeout_ms;
	int64_t greeting_timeout_ms;
	int64_t command_timeout_ms;
	int64_t data_timeout_ms;
	int64_t connection_idle_timeout_ms;
	int64_t min_backoff_ms;
	int64_t max_backoff_ms;
	int64_t backoff_jitter_percent;
	int64_t queue_lifetime_ms;
	int64_t domain_backoff_ms;
	int64_t max_connections_per_address;  /* outbound, whole relay (split among workers) */
	int64_t max_connections_total;        /* outbound, whole relay (split among workers) */
	int64_t address_backoff_ms;           /* an MX address after a failed connect or greeting */
	int64_t domain_reap_interval_ms;
	int64_t bounce_max_original_size;
	int64_t delay_warning_time_ms;    /* NOTIFY=DELAY notice after this in the queue; 0 = never */
	char *tls_ca_file;                /* CA bundle/directory for "verify"; "" = none */
	bool mta_sts_enabled;             /* apply MTA-STS policies (mta_sts_delivery.c) */
	int64_t mta_sts_fetch_timeout_ms;
	int64_t mta_sts_max_policy_size;
	int64_t mta_sts_recheck_interval_ms;  /* TXT lookup again while mail flows */
	int64_t mta_sts_refresh_before_ms;    /* refetch a policy this close to expiry */
	int64_t mta_sts_https_port;       /* 443 but in test networks */
	bool tls_rpt_enabled;             /* TLS-RPT counting and reports (tlsrpt_reporter.c) */
	char *tls_rpt_organization_name;  /* "" = hostname */
	char *tls_rpt_contact_info;       /* "" = the sender */
	char *tls_rpt_sender;             /* "" = postmaster@hostname */
	int64_t tls_rpt_report_interval_ms;
	int64_t tls_rpt_report_delay_ms;
	int64_t tls_rpt_save_interval_ms;
	int64_t tls_rpt_http_timeout_ms;
	int64_t tls_rpt_retry_interval_ms;
	int64_t tls_rpt_max_attempts;
	int64_t tls_rpt_max_domains;
	int64_t tls_rpt_max_queued;
	bool dane_enabled;                /* DANE for domains without their own tls (dane_delivery.c) */
	int64_t dane_max_tlsa_records;    /* records used per MX host */
	char *auth_file;                  /* next hops' SMTP AUTH credentials; "" = none */
	struct auth_file *auth;           /* auth_file, loaded; NULL = none (owned) */

	struct config_sender_route *sender_routes;   /* in the file's order */
	size_t sender_route_count;

	struct config_domain domain_default;
	struct config_domain *domains;    /* in the file's order */
	size_t domain_count;
	struct config_domain **domain_index;   /* the same, sorted by name */

	/* local mailboxes and POP3 (the local worker) */
	struct config_listen pop3_listen[CONFIG_MAX_LISTEN];
	size_t pop3_listen_count;         /* 0 = no POP3 endpoint */
	struct config_listen pop3s_listen[CONFIG_MAX_LISTEN];
	size_t pop3s_listen_count;        /* 0 = no implicit-TLS POP3 */

	/* metrics endpoint (worker 0) */
	struct config_listen metrics_listen[CONFIG_MAX_LISTEN];   /* only [0] is used */
	size_t metrics_listen_count;      /* 0 = no metrics endpoint */
	bool pop3_allow_plaintext;        /* USER/PASS without TLS */
	int64_t pop3_idle_timeout_ms;
	int64_t pop3_command_timeout_ms;
	char *mailbox_root;
	int64_t mailbox_quota;            /* bytes per mailbox; 0 = none */
	int64_t mailbox_delivery_window;  /* local deliveries not yet journaled, at most */

	/* DKIM signing at reception (relay/smtpd/smtp_dkim.c) */
	struct config_dkim_signer *dkim_signers;
	size_t dkim_signer_count;         /* 0 = nothing is signed */
	char **dkim_headers;              /* h= candidates, lower case, "from" among them */
	size_t dkim_header_count;
	int64_t dkim_expire_ms;           /* x= = t= + this; 0 = no x= */

	/* bounce classification and suppression (relay/mail/bounce_class.h) */
	char *bounce_patterns_file;       /* extra rules, tried first; "" = none */
	struct bounce_classifier *bounce_classifier;   /* those, then the built-in table; owned */
	char *suppression_check_text;     /* "injection", "delivery", "both", "none" */
	unsigned suppression_check;       /* CONFIG_SUPPRESS_* bits, from the text */
	char *suppression_categories_text;   /* comma-separated bounce categories */
	unsigned suppression_categories;  /* bit per enum bounce_category */
	int64_t suppression_expire_ms;    /* of an automatic entry; 0 = never */

	/* traffic shaping (relay/daemon/config_shaping.h, docs/SHAPING.md) */
	char *shaping_file;               /* "" = no sites, no response rules */
	struct shaping_rules *shaping;    /* loaded from it, or NULL; owned */
	char *delivery_pool;              /* delivery.pool: a pool of the shaping file; "" = none */
	char *shaping_pool_header;        /* shaping.pool_header: the field that chooses the pool; "" = off */
	int tls_session_cache_size;       /* delivery.tls_session_cache_size: per worker; 0 = off */
	int64_t tls_session_lifetime_ms;  /* delivery.tls_session_lifetime */
	/* HTTP API on the SMTP workers (relay/http) */
	struct config_listen http_listen[CONFIG_MAX_LISTEN];
	size_t http_listen_count;         /* 0 = no HTTP API */
	struct config_listen http_tls_listen[CONFIG_MAX_LISTEN];  /* implicit TLS */
	size_t http_tls_listen_count;
	char *http_token_file;            /* hashed bearer tokens (http_tokens.h) */
	struct http_tokens *http_tokens;  /* loaded from http_token_file, or NULL */
	int64_t http_max_header_size;
	int64_t http_max_body_size;
	int64_t http_idle_timeout_ms;     /* between requests on a kept-alive connection */
	int64_t http_request_timeout_ms;  /* a request's head and body must arrive within */
	/* least privilege (relay/daemon/privilege.c, landlock.c, seccomp_filter.c) */
	char *user;                       /* run-as user; "" = ringmail when root */
	bool security_landlock;           /* confine file access (best effort) */
	bool security_seccomp;            /* syscall allowlist */
	/* delivery event webhooks (relay/http/webhook.c, docs/HTTP.md) */
	struct config_webhook *webhooks;
	size_t webhook_count;

	/* cluster: shaping state shared in Redis (relay/cluster, docs/CLUSTER.md) */
	char *cluster_redis;              /* "host:port"; "" = no cluster */
	char *cluster_node_name;          /* this node's name ("" in the file: hostname) */
	int64_t cluster_nodes;              /* nodes sharing the limits (fallback share) */
	char *cluster_username;           /* AUTH user; "" = password only */
	char *cluster_password_file;
	char *cluster_password;           /* its first line, or NULL; owned */
	char *cluster_key_prefix;
	int64_t cluster_timeout_ms;
	int64_t cluster_reconnect_max_ms;
	int64_t cluster_batch;
	int64_t cluster_lease_ttl_ms;
	int64_t cluster_poll_interval_ms;
	bool cluster_share_suppression;   /* changes through a Redis stream */

	char *source_path;                /* the file it came from, or NULL */

	/* lifetime (config_hold): not settings. serial names this load (1, 2,
	 * 3 ... per good load in this process, never reused), so a cache keyed on "which
	 * config" compares serials, never pointers a later load may reuse.
	 * The count sits on its own cache line: sessions hold and release it
	 * while every worker reads the settings above. */
	unsigned long serial;
	_Alignas(64) struct retire_node retire;   /* last: the struct pads it to 64 */
};

/* config_load - parse path (NULL: defaults only) into a new config.
 * Returns 0, or -EINVAL with a message naming the key and line in err. */
int config_load(const char *path, struct config **out, char *err, size_t errlen);

/* config_free - free a config now, whoever may still hold it; accepts
 * NULL, returns NULL. For a config no other thread has seen (tools,
 * tests, a failed load); the daemon's configs go through config_release. */
struct config *config_free(struct config *cfg);

/* A loaded config starts with one reference, the loader's. Whoever keeps
 * a pointer to a config (or to anything in it) beyond the current loop
 * pass holds a reference for as long: each worker for its current config,
 * each connection for the config it opened under, each job handed to a
 * helper thread (AUTH, DKIM). The last release hands the config to the
 * main thread, which frees it in config_retired_free (freeing is slow
 * work no worker should do). Lock free: one atomic add per hold or
 * release. Nobody may touch a config after releasing it. */

/* config_hold - one more reference to cfg (NULL: nothing); returns cfg.
 * The caller must hold one already (or know that someone holding one
 * waits for it). */
const struct config *config_hold(const struct config *cfg);

/* config_release - drop a reference (NULL: nothing); returns NULL. */
const struct config *config_release(const struct config *cfg);

/* config_retired_free - free every config whose last reference is gone;
 * how many. The main thread calls it, one thread at a time. */
size_t config_retired_free(void);

/* config_live_count - configs loaded and not yet freed in this process
 * (the current one, those still held, those retired but not yet freed). */
size_t config_live_count(void);

/* config_domain_policy - the policy for a destination domain: its own
 * entry, or the defaults. Never NULL. */
const struct config_domain *config_domain_policy(const struct config *cfg, const char *domain);

/* config_sender_next_hop - the next hop of delivery.sender_routes for a
 * sender address: its own entry, else its domain's, else the nearest
 * parent's (".example.com"); NULL when none applies (or sender is ""). */
const char *config_sender_next_hop(const struct config *cfg, const char *sender);
/* config_sender_route_tls - the tls of the sender routes whose route is
 * hop (every such entry says the same, or the config is refused); false
 * when none gives one (the recipient domain's applies). */
bool config_sender_route_tls(const struct config *cfg, const char *hop, enum config_tls_policy *out);

/* config_is_local_domain - is mail for this domain delivered locally? */
bool config_is_local_domain(const struct config *cfg, const char *domain);

/* config_is_relay_client - may this peer relay to any domain? */
bool config_is_relay_client(const struct config *cfg, const struct sockaddr *peer);

/* config_dane_wanted - may any delivery use DANE (dane.enabled, or a
 * tls policy "dane")? The resolver then sets DO in its queries. */
bool config_dane_wanted(const struct config *cfg);

/* config_tls_policy_name - "none", "may", "encrypt", "verify", "implicit" or "dane". */
const char *config_tls_policy_name(enum config_tls_policy policy);

/* config_keys_dump - print every key with its type and default. */
void config_keys_dump(FILE *out);

/* config_control_path - the control socket's path (control.socket under
 * spool.dir unless absolute) into out: 0, -ENOENT when there is none, or
 * -ENAMETOOLONG. */
int config_control_path(const struct config *cfg, char *out, size_t size);

#endif
