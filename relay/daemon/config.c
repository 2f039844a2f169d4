/*
 * config - load and check ringmaild's configuration; see config.h.
 *
 * One table lists every key: its path, kind, where it lives in struct config,
 * its range and its default written as text. Defaults go through the same
 * parser as file values, so the table is the single source of truth; the
 * loader walks the file's tree and rejects any setting the table lacks.
 */
#include "config.h"

#include <errno.h>
#include <libconfig.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "auth_file.h"
#include "bounce_class.h"
#include "cluster_plan.h"
#include "config_shaping.h"
#include "dkim_key.h"
#include "nexthop.h"
#include "http_tokens.h"
#include "tls.h"
#include "users.h"
#include "webhook_event.h"
#include "xalloc.h"

enum config_kind {
	KIND_INT,
	KIND_DURATION,      /* stored in ms */
	KIND_SIZE,          /* stored in bytes */
	KIND_BOOL,
	KIND_STRING,
	KIND_STRING_LIST,
	KIND_LOG_LEVEL,
	KIND_LISTEN_LIST,
	KIND_CIDR_LIST,
	KIND_DOMAIN_LIST,   /* lower-cased strings */
	KIND_IP_MODE,
	KIND_TLS_POLICY,    /* enum config_tls_policy */
	KIND_HEADER_LIST,   /* header field names, lower-cased */
};

struct config_key {
	const char *path;
	enum config_kind kind;
	size_t offset;
	int64_t min, max;
	const char *default_text;
	const char *help;
};

#define OFF(field) offsetof(struct config, field)
#define DOFF(field) offsetof(struct config_domain, field)
#define DAY_MS (86400LL * 1000)
#define CONFIG_DKIM_DEFAULT_HEADERS "From,Reply-To,Subject,Date,To,Cc,Message-ID,MIME-Version,Content-Type," \
	"Content-Transfer-Encoding,In-Reply-To,References,List-Id,List-Unsubscribe,List-Unsubscribe-Post,Feedback-ID"

static const struct config_key config_keys[] = {
	{ "workers", KIND_INT, OFF(workers), 0, 256, "0", "worker threads; 0 = one per online CPU" },
	{ "hostname", KIND_STRING, OFF(hostname), 0, 0, "", "name in greetings and Received headers; \"\" = the system host name" },
	{ "shutdown_timeout", KIND_DURATION, OFF(shutdown_timeout_ms), 0, DAY_MS, "10s", "how long SIGTERM lets sessions finish" },
	{ "log.file", KIND_STRING, OFF(log_file), 0, 0, "-", "log file; \"-\" = stderr" },
	{ "log.level", KIND_LOG_LEVEL, OFF(log_level), 0, 0, "info", "debug, info, warn or error" },
	{ "log.delivery_file", KIND_STRING, OFF(log_delivery_file), 0, 0, "", "JSON delivery log, one line per recipient per attempt; \"\" = delivery lines in the main log" },
	{ "metrics.listen", KIND_LISTEN_LIST, 0, 0, 1, "", "Prometheus metrics HTTP endpoint on worker 0, e.g. \"127.0.0.1:9225\"; empty = off" },
	{ "listen", KIND_LISTEN_LIST, 0, 1, CONFIG_MAX_LISTEN, "127.0.0.1:2525", "SMTP listen addresses, \"ip:port\" or \"[ipv6]:port\"" },
	{ "smtps.listen", KIND_LISTEN_LIST, 0, 0, CONFIG_MAX_LISTEN, "", "implicit-TLS SMTP listen addresses (RFC 8314, conventionally port 465); needs tls.cert_file; empty = none" },
	{ "submission.listen", KIND_LISTEN_LIST, 0, 0, CONFIG_MAX_LISTEN, "", "submission listen addresses (RFC 6409, port 587): STARTTLS offered, AUTH required before MAIL (530 5.7.0); empty = none" },
	{ "proxy_protocol.listeners", KIND_LISTEN_LIST, 0, 0, CONFIG_MAX_LISTEN, "", "listeners (addresses exactly as in listen, smtps.listen, submission.listen, pop3.listen or pop3s.listen) that expect a PROXY protocol v1 or v2 header (HAProxy's) before the client's first byte, and take the client's address from it; a connection without a valid header is closed; empty = none; needs a restart" },
	{ "proxy_protocol.timeout", KIND_DURATION, OFF(proxy_protocol_timeout_ms), 100, 300000, "5s", "the whole PROXY protocol header must arrive within this after the connection is accepted" },
	{ "proxy_protocol.max_header_size", KIND_SIZE, OFF(proxy_protocol_max_header_size), 232, 65551, "4k", "longest PROXY protocol v2 header accepted, TLVs included (v1 is at most 107 bytes)" },
	{ "listen_backlog", KIND_INT, OFF(listen_backlog), 1, 65535, "4096", "listen(2) backlog per worker socket" },
	{ "max_connections", KIND_INT, OFF(max_connections), 1, 1000000, "20000", "inbound connections per worker; beyond it new ones get 421" },
	{ "ring.entries", KIND_INT, OFF(ring_entries), 64, 32768, "4096", "submission queue entries per worker ring; halved (down to 256) when locked memory (RLIMIT_MEMLOCK) is too short, which the log says" },
	{ "ring.recv_buffer_size", KIND_SIZE, OFF(recv_buffer_size), 1024, 1 << 20, "16k", "size of each provided receive buffer" },
	{ "ring.recv_buffers", KIND_INT, OFF(recv_buffer_count), 16, 32768, "1024", "provided receive buffers per worker (power of two)" },
	{ "ring.poll_wait", KIND_BOOL, OFF(ring_poll_wait), 0, 0, "false", "debugging aid for valgrind (docs/RELIABILITY.md): a plain ring (no DEFER_TASKRUN) and the wait for completions in poll(2) on the ring fd, not inside io_uring_enter; a few more syscalls per pass; only at start" },
	{ "smtp.max_command_line", KIND_SIZE, OFF(smtp_max_command_line), 512, 65536, "512", "command line limit, CRLF included (RFC 5321: 512)" },
	{ "smtp.max_line", KIND_SIZE, OFF(smtp_max_line), 1000, 1 << 20, "1000", "text line limit in DATA, CRLF included (RFC 5321: 1000)" },
	{ "smtp.max_message_size", KIND_SIZE, OFF(smtp_max_message_size), 1024, 1LL << 31, "50M", "message size limit, advertised in SIZE" },
	{ "smtp.max_recipients", KIND_INT, OFF(smtp_max_recipients), 1, 100000, "1000", "recipients per message" },
	{ "smtp.max_errors", KIND_INT, OFF(smtp_max_errors), 1, 1000, "20", "error replies before a session is closed with 421" },
	{ "smtp.idle_timeout", KIND_DURATION, OFF(smtp_idle_timeout_ms), 1000, DAY_MS, "5m", "close a client that sends nothing this long" },
	{ "smtp.command_timeout", KIND_DURATION, OFF(smtp_command_timeout_ms), 1000, DAY_MS, "5m", "a command must complete within this" },
	{ "smtp.data_timeout", KIND_DURATION, OFF(smtp_data_timeout_ms), 1000, DAY_MS, "10m", "the whole DATA or BDAT phase must complete within this" },
	{ "smtp.max_input_backlog", KIND_SIZE, OFF(smtp_max_input_backlog), 4096, 1LL << 30, "1M", "input buffered while a session waits for its commit; then reading pauses" },
	{ "tls.cert_file", KIND_STRING, OFF(tls_cert_file), 0, 0, "", "PEM certificate chain (leaf first) for inbound STARTTLS, POP3 STLS and the implicit-TLS listeners; \"\" = none of them; re-read on SIGHUP" },
	{ "tls.key_file", KIND_STRING, OFF(tls_key_file), 0, 0, "", "PEM private key (unencrypted) matching tls.cert_file" },
	{ "tls.offload_handshakes", KIND_BOOL, OFF(tls_offload_handshakes), 0, 0, "true", "run TLS handshakes (inbound and outbound: their public-key operations cost milliseconds) on helper threads, one per CPU, so a worker's loop goes on serving its other connections meanwhile; false = on the worker, as before" },
	{ "users.file", KIND_STRING, OFF(users_file), 0, 0, "", "passwd-file of users (crypt(3) hashes, as Dovecot and mkpasswd write them) for SMTP AUTH, POP3 and local mailboxes; \"\" = no AUTH, no POP3 users, every local part is a mailbox; re-read on SIGHUP" },
	{ "smtp.add_missing_headers", KIND_BOOL, OFF(smtp_add_missing_headers), 0, 0, "true", "add Message-ID and Date to mail from relay_networks or authenticated clients that lacks them (before DKIM signing), as Postfix does for its own clients" },
	{ "smtp.auth_plaintext", KIND_BOOL, OFF(smtp_auth_plaintext), 0, 0, "false", "offer AUTH without TLS too (else only after STARTTLS; 538 before)" },
	{ "smtp.auth_max_failures", KIND_INT, OFF(smtp_auth_max_failures), 1, 10000, "5", "failed AUTH attempts a client address may make back to back" },
	{ "smtp.auth_failure_window", KIND_DURATION, OFF(smtp_auth_failure_window_ms), 1000, 30 * DAY_MS, "5m", "time after which a client address regains all its AUTH attempts" },
	{ "relay_networks", KIND_CIDR_LIST, 0, 0, 0, "127.0.0.0/8,::1/128", "client networks allowed to relay to any domain" },
	{ "local_domains", KIND_DOMAIN_LIST, 0, 0, 0, "", "domains delivered locally; accepted from anyone" },
	{ "spool.dir", KIND_STRING, OFF(spool_dir), 0, 0, "/var/spool/ringmail", "spool directory" },
	{ "control.socket", KIND_STRING, OFF(control_socket), 0, 0, "control.sock", "unix socket for ringmailctl's queue, domains, stats and reload commands, relative to spool.dir unless absolute; \"\" = none; needs a restart" },
	{ "control.mode", KIND_STRING, OFF(control_mode_text), 0, 0, "0600", "permissions of control.socket (octal): who may run ringmailctl against the daemon" },
	{ "spool.segment_size", KIND_SIZE, OFF(spool_segment_size), 1 << 20, 1LL << 34, "64M", "segment file size before rotation" },
	{ "spool.preallocate", KIND_SIZE, OFF(spool_preallocate), 0, 1LL << 34, "64M", "bytes of each new segment written as zeros ahead of use, by a helper thread, so that a batch's sync writes data and flushes the disk cache without a filesystem journal commit; capped at spool.segment_size; 0 = append to empty segments" },
	{ "spool.body_cache_size", KIND_SIZE, OFF(spool_body_cache_size), 1 << 20, 1LL << 40, "256M", "bytes of message bodies the delivery workers hold at once, shared out between them: bodies of waiting mail stay in the spool and are read back when a retry is due" },
	{ "spool.sync", KIND_BOOL, OFF(spool_sync), 0, 0, "true", "fdatasync before 250; false breaks the durability promise (benchmarks only)" },
	{ "dns.nameservers", KIND_STRING_LIST, 0, 0, 0, "", "\"ip:port\" list; empty = /etc/resolv.conf; needs a restart (each worker's resolver is made at start)" },
	{ "dns.cache_size", KIND_INT, OFF(dns_cache_size), 16, 10000000, "100000", "cached domains per worker; needs a restart (each worker's resolver is made at start)" },
	{ "dns.min_ttl", KIND_DURATION, OFF(dns_min_ttl_ms), 0, DAY_MS, "60s", "lower clamp of positive TTLs; needs a restart (each worker's resolver is made at start)" },
	{ "dns.max_ttl", KIND_DURATION, OFF(dns_max_ttl_ms), 1000, 30 * DAY_MS, "1d", "upper clamp of positive TTLs; needs a restart (each worker's resolver is made at start)" },
	{ "dns.negative_ttl", KIND_DURATION, OFF(dns_negative_ttl_ms), 0, DAY_MS, "5m", "upper clamp of negative caching (RFC 2308); needs a restart (each worker's resolver is made at start)" },
	{ "dns.max_in_flight", KIND_INT, OFF(dns_max_in_flight), 1, 100000, "64", "concurrent queries per worker; needs a restart (each worker's resolver is made at start)" },
	{ "dns.timeout", KIND_DURATION, OFF(dns_timeout_ms), 1000, 60000, "4s", "per-try query timeout; needs a restart (each worker's resolver is made at start)" },
	{ "dns.tries", KIND_INT, OFF(dns_tries), 1, 10, "3", "tries per query; needs a restart (each worker's resolver is made at start)" },
	{ "dns.ip_mode", KIND_IP_MODE, OFF(dns_ip_mode), 0, 0, "ipv4", "address families to deliver to: ipv4, ipv6 or both; needs a restart (each worker's resolver is made at start)" },
	{ "delivery.port", KIND_INT, OFF(delivery_port), 1, 65535, "25", "destination port for MX hosts; needs a restart (each worker's resolver is made at start)" },
	{ "delivery.relayhost", KIND_STRING, OFF(relayhost), 0, 0, "", "send everything to this next hop instead of MX: \"host[:port]\" (its MX, then its address), \"[host]:port\" (no MX lookup), \"ip:port\" or \"[ipv6]:port\" (no DNS); \"\" = none" },
	{ "delivery.connect_timeout", KIND_DURATION, OFF(connect_timeout_ms), 100, DAY_MS, "30s", "TCP connect deadline" },
	{ "delivery.greeting_timeout", KIND_DURATION, OFF(greeting_timeout_ms), 100, DAY_MS, "60s", "deadline for the 220 greeting" },
	{ "delivery.command_timeout", KIND_DURATION, OFF(command_timeout_ms), 100, DAY_MS, "5m", "deadline for each command reply" },
	{ "delivery.data_timeout", KIND_DURATION, OFF(data_timeout_ms), 100, DAY_MS, "10m", "deadline for the data transfer and its reply" },
	{ "delivery.idle_timeout", KIND_DURATION, OFF(connection_idle_timeout_ms), 100, DAY_MS, "5s", "close a pooled connection idle this long" },
	{ "delivery.min_backoff", KIND_DURATION, OFF(min_backoff_ms), 100, 30 * DAY_MS, "5m", "first retry delay" },
	{ "delivery.max_backoff", KIND_DURATION, OFF(max_backoff_ms), 100, 30 * DAY_MS, "4000s", "retry delay cap" },
	{ "delivery.backoff_jitter", KIND_INT, OFF(backoff_jitter_percent), 0, 100, "20", "retry delay jitter, +- percent" },
	{ "delivery.queue_lifetime", KIND_DURATION, OFF(queue_lifetime_ms), 0, 365 * DAY_MS, "5d", "bounce what is still undelivered after this" },
	{ "delivery.domain_backoff", KIND_DURATION, OFF(domain_backoff_ms), 100, DAY_MS, "60s", "how long a domain whose hosts all failed rests before a probe" },
	{ "delivery.max_connections_per_address", KIND_INT, OFF(max_connections_per_address), 1, 100000, "20", "concurrent connections to one MX address (IP and port), whatever the domains: the relay's total, each worker takes its share" },
	{ "delivery.max_connections_total", KIND_INT, OFF(max_connections_total), 1, 1000000, "300", "concurrent outbound connections of the whole relay, each worker takes its share" },
	{ "delivery.address_backoff", KIND_DURATION, OFF(address_backoff_ms), 100, DAY_MS, "5s", "an MX address whose connect or greeting failed rests this long (doubling on each failure in a row, up to delivery.domain_backoff); its window halves" },
	{ "delivery.domain_reap_interval", KIND_DURATION, OFF(domain_reap_interval_ms), 100, DAY_MS, "60s", "how often a worker forgets the destination domains it holds nothing for (no mail, connection, lookup or backoff)" },
	{ "delivery.bounce_max_original", KIND_SIZE, OFF(bounce_max_original_size), 0, 1LL << 30, "1M", "bounces carry at most this much of the original" },
	{ "delivery.delay_warning_time", KIND_DURATION, OFF(delay_warning_time_ms), 0, 365 * DAY_MS, "0", "send one \"delayed\" DSN (RFC 3464) to the sender of mail still undelivered this long after arrival, for recipients whose NOTIFY has DELAY or is unspecified; 0 = never (Postfix's delay_warning_time; 4h is its usual setting)" },
	{ "delivery.max_connections", KIND_INT, OFF(domain_default.max_connections), 1, 10000, "20", "concurrent connections per destination domain" },
	{ "delivery.max_messages_per_connection", KIND_INT, OFF(domain_default.max_messages_per_connection), 1, 1000000, "1000", "transactions on one connection before it is closed" },
	{ "delivery.max_recipients_per_transaction", KIND_INT, OFF(domain_default.max_recipients_per_transaction), 1, 100000, "100", "recipients in one MAIL transaction" },
	{ "delivery.tls", KIND_TLS_POLICY, OFF(domain_default.tls), 0, 0, "may", "outbound STARTTLS: none; may (when offered; a failed handshake is retried in clear); encrypt (TLS or defer, any certificate); verify (TLS with a certificate from delivery.tls_ca_file naming the MX host, or defer); implicit (RFC 8314, port 465: TLS from the first byte, any certificate, or defer); dane (RFC 7672: MX hosts with usable DNSSEC-secure TLSA records get TLS matching them, or defer; other hosts as may; see dane.enabled)" },
	{ "delivery.auth_file", KIND_STRING, OFF(auth_file), 0, 0, "", "SMTP AUTH credentials for next hops, one \"NEXTHOP USER:PASSWORD\" per line, NEXTHOP exactly as in delivery.relayhost or a route; must not be readable by group or others; re-read on SIGHUP; \"\" = no AUTH" },
	{ "delivery.tls_ca_file", KIND_STRING, OFF(tls_ca_file), 0, 0, "/etc/ssl/certs/ca-certificates.crt", "PEM CA bundle (file or directory) for outbound certificate checks; \"\" = none (\"verify\" then always fails)" },
	/* MTA-STS (RFC 8461) on deliveries to MX hosts: relay/delivery/mta_sts_delivery.c, docs/TLS.md */
	{ "mta_sts.enabled", KIND_BOOL, OFF(mta_sts_enabled), 0, 0, "true", "apply MTA-STS policies (RFC 8461) to deliveries to a domain's MX hosts (never to relayhost, routes or sender routes; a domain's own domains[].tls wins): look up _mta-sts.DOMAIN TXT, fetch and cache the policy, and under mode enforce deliver only to listed MX hosts over verified TLS (certificates checked against delivery.tls_ca_file), else defer with 4.7.5" },
	{ "mta_sts.fetch_timeout", KIND_DURATION, OFF(mta_sts_fetch_timeout_ms), 1000, 120000, "10s", "the whole HTTPS fetch of a policy (connect, TLS, answer) must finish within this; a failed fetch keeps the cached policy until its max_age" },
	{ "mta_sts.max_policy_size", KIND_SIZE, OFF(mta_sts_max_policy_size), 256, 65536, "64k", "largest policy body accepted (RFC 8461 3.3 allows senders 64k); larger is a failed fetch" },
	{ "mta_sts.recheck_interval", KIND_DURATION, OFF(mta_sts_recheck_interval_ms), 1000, DAY_MS, "1h", "while mail flows to a domain, look up its _mta-sts TXT record again this often: a new id means a new fetch (the cached policy applies meanwhile)" },
	{ "mta_sts.refresh_before", KIND_DURATION, OFF(mta_sts_refresh_before_ms), 0, 30 * DAY_MS, "1d", "a cached policy that expires within this (at most half its max_age) is fetched again in the background at the next TXT check (RFC 8461 5.1)" },
	{ "mta_sts.https_port", KIND_INT, OFF(mta_sts_https_port), 1, 65535, "443", "port of https://mta-sts.DOMAIN/ (RFC 8461: 443; another port only for test networks, the certificate is still checked for mta-sts.DOMAIN)" },
	/* TLS-RPT (RFC 8460): relay/tlsrpt_reporter.c, relay/delivery/tlsrpt_delivery.c, docs/TLS.md */
	{ "tls_rpt.enabled", KIND_BOOL, OFF(tls_rpt_enabled), 0, 0, "false", "count outbound TLS sessions to MX hosts per recipient domain, policy (MTA-STS, DANE, none) and UTC day, and send each domain that publishes an _smtp._tls TXT record (RFC 8460) its daily report by mail (through this relay) or HTTPS POST; off by default, as in Postfix: reports are mail to third parties in your name (set tls_rpt.sender and tls_rpt.organization_name first)" },
	{ "tls_rpt.organization_name", KIND_STRING, OFF(tls_rpt_organization_name), 0, 0, "", "the report's organization-name; \"\" = hostname" },
	{ "tls_rpt.contact_info", KIND_STRING, OFF(tls_rpt_contact_info), 0, 0, "", "the report's contact-info (an address or URL); \"\" = tls_rpt.sender" },
	{ "tls_rpt.sender", KIND_STRING, OFF(tls_rpt_sender), 0, 0, "", "envelope sender and From: of report mail; its domain is the TLS-Report-Submitter; \"\" = postmaster@hostname" },
	{ "tls_rpt.report_interval", KIND_DURATION, OFF(tls_rpt_report_interval_ms), 1000, 7 * DAY_MS, "1d", "the reporting period: sessions are counted per period (aligned to the Unix epoch, so 1d is the UTC day, RFC 8460 4.1) and a period's reports go out once it has ended; shorter only for tests" },
	{ "tls_rpt.report_delay", KIND_DURATION, OFF(tls_rpt_report_delay_ms), 0, DAY_MS, "5m", "how long after a period's end its reports go out (sessions still in flight at midnight are counted first)" },
	{ "tls_rpt.save_interval", KIND_DURATION, OFF(tls_rpt_save_interval_ms), 100, 600000, "10s", "how often the counts of the open period are written to spool.dir/tlsrpt/ (also at a clean stop): a crash loses at most this much" },
	{ "tls_rpt.http_timeout", KIND_DURATION, OFF(tls_rpt_http_timeout_ms), 1000, 600000, "30s", "an https: report's whole POST (connect, TLS, answer) must finish within this" },
	{ "tls_rpt.retry_interval", KIND_DURATION, OFF(tls_rpt_retry_interval_ms), 1000, DAY_MS, "15m", "a report that could not be sent (DNS, HTTPS, the queue) is tried again after this" },
	{ "tls_rpt.max_attempts", KIND_INT, OFF(tls_rpt_max_attempts), 1, 100, "5", "tries per domain's report before it is given up (logged as tlsrpt_report result=failed)" },
	{ "tls_rpt.max_domains", KIND_INT, OFF(tls_rpt_max_domains), 1, 10000000, "100000", "recipient domains counted per period; sessions to more are not counted (logged once)" },
	{ "tls_rpt.max_queued", KIND_INT, OFF(tls_rpt_max_queued), 16, 10000000, "100000", "session results waiting for the reporter thread; beyond it they are dropped, never waited for (ringmail_tlsrpt_dropped_total)" },
	/* DANE (RFC 7672) on deliveries to MX hosts: relay/delivery/dane_delivery.c, docs/TLS.md */
	{ "dane.enabled", KIND_BOOL, OFF(dane_enabled), 0, 0, "false", "apply DANE (RFC 7672) to deliveries to a domain's MX hosts (not relayhost or routes; a domain's own domains[].tls wins, and tls = \"dane\" turns it on for one domain): TLSA records of each MX host found secure by the validating resolver in dns.nameservers (its AD bit is trusted: it must validate DNSSEC and be on loopback) make TLS mandatory and authenticated by them, ahead of MTA-STS; off by default, as Postfix's dane level, because it needs such a resolver; the resolver's DO bit is set at start, so turning it on needs a restart" },
	{ "dane.max_tlsa_records", KIND_INT, OFF(dane_max_tlsa_records), 1, 64, "16", "TLSA records used per MX host (the first ones of the answer); the rest are ignored" },
	{ "pop3.listen", KIND_LISTEN_LIST, 0, 0, CONFIG_MAX_LISTEN, "", "POP3 listen addresses on the local worker; empty = no POP3 endpoint" },
	{ "pop3s.listen", KIND_LISTEN_LIST, 0, 0, CONFIG_MAX_LISTEN, "", "implicit-TLS POP3 listen addresses (RFC 8314, conventionally port 995) on the local worker; needs tls.cert_file; empty = none" },
	{ "pop3.allow_plaintext", KIND_BOOL, OFF(pop3_allow_plaintext), 0, 0, "false", "allow USER/PASS and AUTH PLAIN without TLS (else only after STLS or on pop3s.listen)" },
	{ "pop3.idle_timeout", KIND_DURATION, OFF(pop3_idle_timeout_ms), 1000, DAY_MS, "10m", "close a POP3 client that sends nothing this long (RFC 1939: at least 10m)" },
	{ "pop3.command_timeout", KIND_DURATION, OFF(pop3_command_timeout_ms), 1000, DAY_MS, "1m", "before login, each POP3 command must complete within this" },
	{ "mailbox.root", KIND_STRING, OFF(mailbox_root), 0, 0, "/var/mail/ringmail", "directory holding one Maildir per local user (must exist)" },
	{ "mailbox.quota", KIND_SIZE, OFF(mailbox_quota), 0, 1LL << 50, "0", "bytes per local mailbox; 0 = no quota" },
	{ "mailbox.delivery_window", KIND_INT, OFF(mailbox_delivery_window), 1, 100000, "16", "local deliveries whose outcomes are not yet in the spool, at most: a crash delivers at most these again" },
	{ "bounce.patterns_file", KIND_STRING, OFF(bounce_patterns_file), 0, 0, "", "extra bounce classification rules (the format of share/bounce-patterns.txt), tried before the built-in table; \"\" = the built-in table only; re-read on SIGHUP" },
	{ "suppression.check", KIND_STRING, OFF(suppression_check_text), 0, 0, "injection", "where recipients on the suppression list are refused: injection (550 5.7.1 at RCPT), delivery (bounced with 5.7.1 when their turn comes, also mail queued before the entry), both, or none (the list is kept and fed, not checked)" },
	{ "suppression.categories", KIND_STRING, OFF(suppression_categories_text), 0, 0, "invalid_recipient", "bounce categories whose hard bounces (a 5xx from the receiver) put the recipient on the suppression list, comma-separated; \"\" = none" },
	{ "suppression.expire", KIND_DURATION, OFF(suppression_expire_ms), 0, 3650 * DAY_MS, "0", "how long an entry made by a bounce lasts; 0 = until removed" },
	{ "shaping.file", KIND_STRING, OFF(shaping_file), 0, 0, "", "traffic shaping file: sites (domains grouped by MX host suffix) and response rules (suspend, bounce, suppress on a receiver's reply); docs/SHAPING.md; \"\" = none; re-read on SIGHUP" },
	{ "delivery.pool", KIND_STRING, OFF(delivery_pool), 0, 0, "", "egress pool (a pool of shaping.file) for every destination whose site or domain entry names none: connections bind to its sources; \"\" = the system's choice of source address" },
	{ "shaping.pool_header", KIND_STRING, OFF(shaping_pool_header), 0, 0, "", "header field that chooses the egress pool (a pool of shaping.file), like PowerMTA's X-Virtual-MTA: honoured from relay_networks and authenticated SMTP clients and HTTP injection, removed from every message; an unknown pool is refused at the end of DATA (550 5.7.0); \"\" = off" },
	{ "delivery.tls_session_cache_size", KIND_INT, OFF(tls_session_cache_size), 0, 100000, "1000", "outbound TLS sessions each delivery worker keeps for resumption (session tickets or IDs), one per MX host, port and TLS policy; the least recently used goes first; 0 = never resume" },
	{ "delivery.tls_session_lifetime", KIND_DURATION, OFF(tls_session_lifetime_ms), 1000, DAY_MS, "3600s", "an outbound TLS session is offered for resumption at most this long after its full handshake (Postfix: smtp_tls_session_cache_timeout, 3600s)" },
	{ "dkim.headers", KIND_HEADER_LIST, 0, 0, 0, CONFIG_DKIM_DEFAULT_HEADERS, "header fields a DKIM signature covers when present (From must be among them; it is also over-signed)" },
	{ "dkim.expire", KIND_DURATION, OFF(dkim_expire_ms), 0, 365 * DAY_MS, "0", "DKIM signatures expire this long after signing (x=); 0 = no x=" },
	/* The HTTP API (relay/http, docs/HTTP.md). */
	{ "http.listen", KIND_LISTEN_LIST, 0, 0, CONFIG_MAX_LISTEN, "", "HTTP API listen addresses on every SMTP worker (POST /api/inject/v1); needs http.token_file; empty = no HTTP API" },
	{ "http.token_file", KIND_STRING, OFF(http_token_file), 0, 0, "", "bearer tokens of the HTTP API, one \"name:sha256-hex:permissions\" per line (docs/HTTP.md); re-read on SIGHUP" },
	{ "http.max_header_size", KIND_SIZE, OFF(http_max_header_size), 1024, 1 << 20, "16k", "request line and header fields of one HTTP request; larger: 431" },
	{ "http.max_body_size", KIND_SIZE, OFF(http_max_body_size), 1024, 1LL << 31, "70M", "body of one HTTP request (the JSON, base64 attachments included); larger: 413" },
	{ "http.idle_timeout", KIND_DURATION, OFF(http_idle_timeout_ms), 1000, DAY_MS, "60s", "close an HTTP connection that sends nothing this long between requests" },
	{ "http.request_timeout", KIND_DURATION, OFF(http_request_timeout_ms), 1000, DAY_MS, "60s", "an HTTP request's head and body must arrive within this, and its answer be read within it" },
	{ "http.tls_listen", KIND_LISTEN_LIST, 0, 0, CONFIG_MAX_LISTEN, "", "HTTP API listen addresses served over TLS (HTTPS, TLS 1.2) with tls.cert_file and tls.key_file, on every SMTP worker; needs the certificate and http.token_file; empty = none" },
	/* least privilege */
	{ "user", KIND_STRING, OFF(user), 0, 0, "", "user to run as once listeners, spool lock and logs are open (started as root); \"\" = ringmail, and started as root without a ringmail user ringmaild refuses to run unless this is \"root\"; needs a restart" },
	{ "security.landlock", KIND_BOOL, OFF(security_landlock), 0, 0, "true", "confine file access with Landlock to the spool, mailbox root, log and control socket directories and the files reloads read (best effort: kernels before 5.19 run unconfined, the log says so); needs a restart" },
	{ "security.seccomp", KIND_BOOL, OFF(security_seccomp), 0, 0, "true", "a seccomp filter: syscalls the daemon does not use (execve, ptrace ...) kill it; needs a restart" },
	/* several relays as one: shaping state shared in Redis (relay/cluster, docs/CLUSTER.md); needs a restart */
	{ "cluster.redis", KIND_STRING, OFF(cluster_redis), 0, 0, "", "Redis server holding the shaping state every node shares, \"host:port\" or \"[ipv6]:port\" (plain TCP; no TLS with Debian 12's hiredis 0.14); \"\" = no cluster, every limit is this node's own; needs a restart" },
	{ "cluster.node_name", KIND_STRING, OFF(cluster_node_name), 0, 0, "", "this node's name in the cluster (letters, digits, '.', '_', '-'; unique per node): it names its connection leases; \"\" = hostname" },
	{ "cluster.nodes", KIND_INT, OFF(cluster_nodes), 1, 1000, "1", "how many nodes share the limits: while Redis is down or slow each node keeps rates and max_connections of shaping.file divided by this" },
	{ "cluster.username", KIND_STRING, OFF(cluster_username), 0, 0, "", "Redis ACL user for AUTH (Redis 6+); \"\" = AUTH with the password alone (requirepass)" },
	{ "cluster.password_file", KIND_STRING, OFF(cluster_password_file), 0, 0, "", "file whose first line is the Redis password (AUTH), read at start; \"\" = no AUTH" },
	{ "cluster.key_prefix", KIND_STRING, OFF(cluster_key_prefix), 0, 0, "ringmail:", "prefix of every Redis key the cluster uses (nodes of one cluster share it)" },
	{ "cluster.timeout", KIND_DURATION, OFF(cluster_timeout_ms), 10, 60000, "500ms", "connecting to Redis and each round trip must finish within this, else Redis counts as down (local limits) and the node reconnects" },
	{ "cluster.reconnect_max", KIND_DURATION, OFF(cluster_reconnect_max_ms), 100, 600000, "5s", "longest wait between attempts to reconnect to Redis (the wait starts at 100ms and doubles)" },
	{ "cluster.batch", KIND_INT, OFF(cluster_batch), 1, 100000, "10", "rate tokens a node takes from Redis in one round trip, for its workers to spend locally" },
	{ "cluster.lease_ttl", KIND_DURATION, OFF(cluster_lease_ttl_ms), 1000, 3600000, "10s", "a node's connection leases (its share of a site's max_connections) expire this long after its last renewal: a dead node's share comes free after it" },
	{ "cluster.poll_interval", KIND_DURATION, OFF(cluster_poll_interval_ms), 50, 60000, "250ms", "how often a node reads the shared suspensions and suppression changes (and writes its own): a change reaches every node within about this" },
	{ "cluster.share_suppression", KIND_BOOL, OFF(cluster_share_suppression), 0, 0, "true", "suppression list changes (bounces, response rules, ringmailctl suppression add/remove/import) go to every node through a Redis stream and each node applies the others' to its own list" },
};

/* Keys of each entry of the "dkim.sign" list; all three are required. */
#define SOFF(field) offsetof(struct config_dkim_signer, field)
static const struct config_key config_dkim_sign_keys[] = {
	{ "domain", KIND_STRING, SOFF(domain), 0, 0, NULL, "signing domain (d=): mail whose From domain is this or below it is signed" },
	{ "selector", KIND_STRING, SOFF(selector), 0, 0, NULL, "selector (s=): the key is published at SELECTOR._domainkey.DOMAIN" },
	{ "key_file", KIND_STRING, SOFF(key_file), 0, 0, NULL, "PEM private key, RSA (1024 to 8192 bits) or Ed25519; the algorithm follows the key; re-read on SIGHUP" },
};

/* Keys of each entry of the "domains" list; absent ones inherit delivery.* */
static const struct config_key config_domain_keys[] = {
	{ "name", KIND_STRING, DOFF(name), 0, 0, NULL, "the destination domain" },
	{ "route", KIND_STRING, DOFF(route), 0, 0, NULL, "next hop to use instead of MX, written as delivery.relayhost" },
	{ "max_connections", KIND_INT, DOFF(max_connections), 1, 10000, NULL, "as delivery.max_connections" },
	{ "max_messages_per_connection", KIND_INT, DOFF(max_messages_per_connection), 1, 1000000, NULL, "as delivery.max_messages_per_connection" },
	{ "max_recipients_per_transaction", KIND_INT, DOFF(max_recipients_per_transaction), 1, 100000, NULL, "as delivery.max_recipients_per_transaction" },
	{ "tls", KIND_TLS_POLICY, DOFF(tls), 0, 0, NULL, "as delivery.tls: none, may, encrypt, verify, implicit or dane" },
};

/* Keys of each entry of "delivery.sender_routes"; sender and route are required. */
#define ROFF(field) offsetof(struct config_sender_route, field)
static const struct config_key config_sender_route_keys[] = {
	{ "sender", KIND_STRING, ROFF(sender), 0, 0, NULL, "a sender address (user@example.com), domain (example.com) or parent domain (.example.com, its subdomains)" },
	{ "route", KIND_STRING, ROFF(route), 0, 0, NULL, "the next hop for that sender's mail, written as delivery.relayhost; checked before any recipient domain's route" },
	{ "tls", KIND_TLS_POLICY, ROFF(tls), 0, 0, NULL, "TLS policy for deliveries through this route, as delivery.tls: none, may, encrypt, verify or implicit (dane acts as may: DANE applies to MX hosts only); unset = the recipient domain's; credentials in delivery.auth_file still raise none and may to encrypt; entries with the same route must agree" },
};

/* Keys of each entry of "webhooks"; url is required. "events" is a list
 * read by load_webhooks itself (its kind here is for the table). */
#define WOFF(field) offsetof(struct config_webhook, field)
static const struct config_key config_webhook_keys[] = {
	{ "url", KIND_STRING, WOFF(url), 0, 0, NULL, "where delivery events are POSTed as a JSON array (http:// or https://); docs/HTTP.md" },
	{ "events", KIND_STRING_LIST, 0, 0, 0, "delivered,bounced,deferred,expired,suppressed", "the events sent: delivered, bounced, deferred, expired, suppressed" },
	{ "batch", KIND_INT, WOFF(batch), 1, 10000, "100", "events per POST, at most" },
	{ "timeout", KIND_DURATION, WOFF(timeout_ms), 100, 600000, "10s", "one POST, connect included; longer is a failure (retried)" },
	{ "retry_min", KIND_DURATION, WOFF(retry_min_ms), 10, DAY_MS, "1s", "wait after a failed POST (no answer, or not 2xx) before sending it again; doubles with each failure" },
	{ "retry_max", KIND_DURATION, WOFF(retry_max_ms), 10, DAY_MS, "5m", "the longest wait between tries" },
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

struct config_error {
	char *buf;
	size_t len;
};

/* config_fail - format an error message; always returns -EINVAL. */
static int __attribute__((format(printf, 2, 3)))
config_fail(struct config_error *e, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(e->buf, e->len, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* parse_scaled - "<digits><unit>" with unit from the table (or none). */
static int parse_scaled(const char *text, const char *const units[],
			const int64_t scale[], int64_t plain_scale, int64_t *out)
{
	char *end;

	if (*text < '0' || *text > '9')
		return -EINVAL;
	errno = 0;
	long long v = strtoll(text, &end, 10);
	if (errno != 0)
		return -EINVAL;
	int64_t mult = 0;
	if (*end == '\0') {
		mult = plain_scale;
	} else {
		for (size_t i = 0; units[i] != NULL; i++) {
			if (strcmp(end, units[i]) == 0) {
				mult = scale[i];
				break;
			}
		}
	}
	if (mult == 0 || v > INT64_MAX / mult)
		return -EINVAL;
	*out = v * mult;
	return 0;
}

static int parse_duration(const char *text, int64_t *ms)
{
	static const char *const units[] = { "ms", "s", "m", "h", "d", NULL };
	static const int64_t scale[] = { 1, 1000, 60000, 3600000, 86400000 };
	return parse_scaled(text, units, scale, 1000, ms);
}

static int parse_size(const char *text, int64_t *bytes)
{
	static const char *const units[] = { "k", "K", "m", "M", "g", "G", NULL };
	static const int64_t scale[] = { 1LL << 10, 1LL << 10, 1LL << 20, 1LL << 20, 1LL << 30, 1LL << 30 };
	return parse_scaled(text, units, scale, 1, bytes);
}

/* normalise_domain - lower case, trailing dot dropped, in place. Returns
 * false when what is left is empty or has an empty label ("a..", ".a",
 * "a..b", "."): such a name could never equal a domain as domain_equal()
 * compares them, so the setting would be silently dead. */
static bool normalise_domain(char *d)
{
	size_t n = strlen(d);
	for (size_t i = 0; i < n; i++)
		if (d[i] >= 'A' && d[i] <= 'Z')
			d[i] = (char)(d[i] - 'A' + 'a');
	if (n > 0 && d[n - 1] == '.')
		d[--n] = '\0';
	return n > 0 && d[0] != '.' && d[n - 1] != '.' && strstr(d, "..") == NULL;
}

/* normalise_header_name - lower case in place; false unless it is a
 * field name (RFC 5322 ftext: printable ASCII but the colon). */
static bool normalise_header_name(char *name)
{
	if (name[0] == '\0')
		return false;
	for (char *p = name; *p; p++) {
		if (*p < 33 || *p > 126 || *p == ':')
			return false;
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	}
	return true;
}

/* listen_list - the address array, count and role a listen-list key
 * fills: "listen" (SMTP), "smtps.listen", "submission.listen",
 * "pop3.listen", "pop3s.listen" or "metrics.listen". */
static struct config_listen *listen_list(struct config *cfg, const struct config_key *key,
					 size_t **count, enum config_listen_role *role)
{
	static const struct {
		const char *path;
		enum config_listen_role role;
		size_t array, count;
	} lists[] = {
		{ "smtps.listen", CONFIG_ROLE_SMTPS, OFF(smtps_listen), OFF(smtps_listen_count) },
		{ "submission.listen", CONFIG_ROLE_SUBMISSION, OFF(submission_listen),
		  OFF(submission_listen_count) },
		{ "pop3.listen", CONFIG_ROLE_POP3, OFF(pop3_listen), OFF(pop3_listen_count) },
		{ "pop3s.listen", CONFIG_ROLE_POP3S, OFF(pop3s_listen), OFF(pop3s_listen_count) },
		/* The role is not used: these name listeners of the other lists. */
		{ "proxy_protocol.listeners", CONFIG_ROLE_SMTP, OFF(proxy_protocol_listeners),
		  OFF(proxy_protocol_listener_count) },
		{ "http.listen", CONFIG_ROLE_HTTP, OFF(http_listen), OFF(http_listen_count) },
		{ "http.tls_listen", CONFIG_ROLE_HTTPS, OFF(http_tls_listen), OFF(http_tls_listen_count) },
		/* The role is not used: worker 0 serves metrics with its own handler. */
		{ "metrics.listen", CONFIG_ROLE_SMTP, OFF(metrics_listen), OFF(metrics_listen_count) },
	};
	for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
		if (strcmp(key->path, lists[i].path) == 0) {
			*count = (size_t *)((char *)cfg + lists[i].count);
			*role = lists[i].role;
			return (struct config_listen *)((char *)cfg + lists[i].array);
		}
	}
	*count = &cfg->listen_count;
	*role = CONFIG_ROLE_SMTP;
	return cfg->listen;
}

/* list_append_item - add one element of a list-valued key. */
static int list_append_item(struct config *cfg, const struct config_key *key,
			    const char *text, size_t index, struct config_error *e, int line)
{
	switch (key->kind) {
	case KIND_LISTEN_LIST: {
		size_t *count;
		enum config_listen_role role;
		struct config_listen *l = listen_list(cfg, key, &count, &role);
		if (*count >= CONFIG_MAX_LISTEN)
			return config_fail(e, "line %d: %s: more than %d addresses", line, key->path, CONFIG_MAX_LISTEN);
		l += *count;
		if (netaddr_parse_hostport(text, &l->addr, &l->addr_len) < 0)
			return config_fail(e, "line %d: %s: \"%s\" is not ip:port or [ipv6]:port", line, key->path, text);
		snprintf(l->text, sizeof(l->text), "%s", text);
		l->role = role;
		l->proxy_protocol = false;
		(*count)++;
		return 0;
	}
	case KIND_CIDR_LIST:
		if (netaddr_parse_cidr(text, &cfg->relay_networks[index]) < 0)
			return config_fail(e, "line %d: %s: \"%s\" is not a network (ip/prefix)", line, key->path, text);
		cfg->relay_network_count = index + 1;
		return 0;
	case KIND_DOMAIN_LIST:
		cfg->local_domains[index] = xstrdup(text);
		cfg->local_domain_count = index + 1;
		if (!normalise_domain(cfg->local_domains[index]))
			return config_fail(e, "line %d: %s: \"%s\" is not a domain name", line, key->path, text);
		return 0;
	case KIND_STRING_LIST:
		cfg->dns_nameservers[index] = xstrdup(text);
		cfg->dns_nameserver_count = index + 1;
		return 0;
	case KIND_HEADER_LIST:
		cfg->dkim_headers[index] = xstrdup(text);
		cfg->dkim_header_count = index + 1;
		if (!normalise_header_name(cfg->dkim_headers[index]))
			return config_fail(e, "line %d: %s: \"%s\" is not a header field name", line, key->path, text);
		return 0;
	default:
		log_panic("list_append_item: kind %d", key->kind);
	}
}

/* list_reset - empty a list-valued key and size it for n elements. */
static void list_reset(struct config *cfg, const struct config_key *key, size_t n)
{
	switch (key->kind) {
	case KIND_LISTEN_LIST: {
		size_t *count;
		enum config_listen_role role;
		listen_list(cfg, key, &count, &role);
		*count = 0;
		break;
	}
	case KIND_CIDR_LIST:
		free(cfg->relay_networks);
		cfg->relay_networks = xcalloc(n, sizeof(*cfg->relay_networks));
		cfg->relay_network_count = 0;
		break;
	case KIND_DOMAIN_LIST:
		for (size_t i = 0; i < cfg->local_domain_count; i++)
			free(cfg->local_domains[i]);
		free(cfg->local_domains);
		cfg->local_domains = xcalloc(n, sizeof(char *));
		cfg->local_domain_count = 0;
		break;
	case KIND_STRING_LIST:
		for (size_t i = 0; i < cfg->dns_nameserver_count; i++)
			free(cfg->dns_nameservers[i]);
		free(cfg->dns_nameservers);
		cfg->dns_nameservers = xcalloc(n, sizeof(char *));
		cfg->dns_nameserver_count = 0;
		break;
	case KIND_HEADER_LIST:
		for (size_t i = 0; i < cfg->dkim_header_count; i++)
			free(cfg->dkim_headers[i]);
		free(cfg->dkim_headers);
		cfg->dkim_headers = xcalloc(n, sizeof(char *));
		cfg->dkim_header_count = 0;
		break;
	default:
		log_panic("list_reset: kind %d", key->kind);
	}
}

static bool kind_is_list(enum config_kind kind)
{
	return kind == KIND_LISTEN_LIST || kind == KIND_CIDR_LIST ||
	       kind == KIND_DOMAIN_LIST || kind == KIND_STRING_LIST || kind == KIND_HEADER_LIST;
}

/* set_scalar_text - set a scalar key from its text form (defaults, and
 * string values in the file). */
static int set_scalar_text(void *base, const struct config_key *key, const char *text,
			   struct config_error *e, int line)
{
	void *field = (char *)base + key->offset;
	int64_t v = 0;
	int rc = 0;

	switch (key->kind) {
	case KIND_INT: {
		char *end;
		errno = 0;
		v = strtoll(text, &end, 10);
		rc = (errno != 0 || end == text || *end != '\0') ? -EINVAL : 0;
		break;
	}
	case KIND_DURATION:
		rc = parse_duration(text, &v);
		break;
	case KIND_SIZE:
		rc = parse_size(text, &v);
		break;
	case KIND_BOOL:
		if (strcmp(text, "true") == 0)
			*(bool *)field = true;
		else if (strcmp(text, "false") == 0)
			*(bool *)field = false;
		else
			return config_fail(e, "line %d: %s: expects true or false", line, key->path);
		return 0;
	case KIND_STRING:
		free(*(char **)field);
		*(char **)field = xstrdup(text);
		return 0;
	case KIND_LOG_LEVEL:
		if (log_level_parse(text, (enum log_level *)field) < 0)
			return config_fail(e, "line %d: %s: \"%s\" is not debug, info, warn or error", line, key->path, text);
		return 0;
	case KIND_IP_MODE:
		if (strcmp(text, "ipv4") != 0 && strcmp(text, "ipv6") != 0 && strcmp(text, "both") != 0)
			return config_fail(e, "line %d: %s: \"%s\" is not ipv4, ipv6 or both", line, key->path, text);
		free(*(char **)field);
		*(char **)field = xstrdup(text);
		return 0;
	case KIND_TLS_POLICY:
		for (int p = CONFIG_TLS_NONE; p <= CONFIG_TLS_DANE; p++) {
			if (strcmp(text, config_tls_policy_name((enum config_tls_policy)p)) == 0) {
				*(enum config_tls_policy *)field = (enum config_tls_policy)p;
				return 0;
			}
		}
		return config_fail(e, "line %d: %s: \"%s\" is not none, may, encrypt, verify, implicit or dane", line, key->path, text);
	default:
		log_panic("set_scalar_text: kind %d", key->kind);
	}
	if (rc < 0)
		return config_fail(e, "line %d: %s: \"%s\" is not a valid %s", line, key->path, text,
				   key->kind == KIND_DURATION ? "duration (e.g. 30s, 5m)" :
				   key->kind == KIND_SIZE ? "size (e.g. 512k, 10M)" : "integer");
	if (v < key->min || v > key->max)
		return config_fail(e, "line %d: %s: %s is out of range [%lld, %lld]", line, key->path, text,
				   (long long)key->min, (long long)key->max);
	*(int64_t *)field = v;
	return 0;
}

/* set_default - apply a key's default text. */
static void set_default(struct config *cfg, const struct config_key *key)
{
	struct config_error e = { (char[160]){ 0 }, 160 };

	if (kind_is_list(key->kind)) {
		char *copy = xstrdup(key->default_text), *save = NULL;
		size_t n = 1;
		for (const char *p = copy; *p; p++)
			n += *p == ',';
		list_reset(cfg, key, n);
		size_t i = 0;
		for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
			if (list_append_item(cfg, key, tok, i++, &e, 0) < 0)
				log_panic("bad default for %s: %s", key->path, e.buf);
		free(copy);
		return;
	}
	if (set_scalar_text(cfg, key, key->default_text, &e, 0) < 0)
		log_panic("bad default for %s: %s", key->path, e.buf);
}

/* set_from_setting - set one key from a libconfig setting of the file. */
static int set_from_setting(void *base, const struct config *cfg_for_lists,
			    const struct config_key *key, config_setting_t *s,
			    struct config_error *e)
{
	int line = config_setting_source_line(s);
	int type = config_setting_type(s);
	char num[32];

	if (kind_is_list(key->kind)) {
		struct config *cfg = (struct config *)cfg_for_lists;
		if (type != CONFIG_TYPE_ARRAY && type != CONFIG_TYPE_LIST)
			return config_fail(e, "line %d: %s: expects a list of strings, e.g. [\"a\", \"b\"]", line, key->path);
		int n = config_setting_length(s);
		list_reset(cfg, key, (size_t)n);
		for (int i = 0; i < n; i++) {
			config_setting_t *elem = config_setting_get_elem(s, (unsigned)i);
			const char *text = config_setting_get_string(elem);
			if (text == NULL)
				return config_fail(e, "line %d: %s: element %d is not a string", line, key->path, i + 1);
			int rc = list_append_item(cfg, key, text, (size_t)i, e, line);
			if (rc < 0)
				return rc;
		}
		size_t *count = NULL;
		enum config_listen_role role;
		if (key->kind == KIND_LISTEN_LIST)
			listen_list(cfg, key, &count, &role);
		if (count != NULL && *count < (size_t)key->min)
			return config_fail(e, "line %d: %s: needs at least one address", line, key->path);
		return 0;
	}
	switch (type) {
	case CONFIG_TYPE_STRING:
		if (key->kind == KIND_INT || key->kind == KIND_BOOL)
			return config_fail(e, "line %d: %s: expects %s, not a string", line, key->path,
					   key->kind == KIND_INT ? "an integer" : "true or false");
		return set_scalar_text(base, key, config_setting_get_string(s), e, line);
	case CONFIG_TYPE_INT:
	case CONFIG_TYPE_INT64:
		if (key->kind != KIND_INT && key->kind != KIND_DURATION && key->kind != KIND_SIZE)
			return config_fail(e, "line %d: %s: expects a %s, not a number", line, key->path,
					   key->kind == KIND_BOOL ? "boolean" : "string");
		snprintf(num, sizeof(num), "%lld", config_setting_get_int64(s));
		if (num[0] == '-')
			return config_fail(e, "line %d: %s: %s is out of range [%lld, %lld]", line, key->path, num,
					   (long long)key->min, (long long)key->max);
		return set_scalar_text(base, key, num, e, line);
	case CONFIG_TYPE_BOOL:
		if (key->kind != KIND_BOOL)
			return config_fail(e, "line %d: %s: does not take true or false", line, key->path);
		return set_scalar_text(base, key, config_setting_get_bool(s) ? "true" : "false", e, line);
	default:
		return config_fail(e, "line %d: %s: has the wrong type", line, key->path);
	}
}

static const struct config_key *find_key(const struct config_key *keys, size_t n, const char *path)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(keys[i].path, path) == 0)
			return &keys[i];
	return NULL;
}

/* is_group_prefix - is "prefix." the start of some key? */
static bool is_group_prefix(const char *prefix)
{
	size_t n = strlen(prefix);
	for (size_t i = 0; i < COUNT(config_keys); i++)
		if (strncmp(config_keys[i].path, prefix, n) == 0 && config_keys[i].path[n] == '.')
			return true;
	return false;
}

/* config_check_next_hop - a relayhost or route must parse (nexthop.h):
 * "10.0.0.5:25" or "[relay]:587" are fine, "relay:99999" is not, and the
 * error names the key and line instead of every message failing later. */
static int config_check_next_hop(const char *text, const char *key, int line, struct config_error *e)
{
	struct nexthop hop;
	char why[160];

	if (nexthop_parse(text, &hop, why, sizeof(why)) < 0)
		return config_fail(e, "line %d: %s: %s (want \"host[:port]\", \"[host]:port\", \"ip:port\" or \"[ipv6]:port\")",
				   line, key, why);
	return 0;
}

static int domain_cmp(const void *a, const void *b)
{
	return strcmp((*(const struct config_domain *const *)a)->name,
		      (*(const struct config_domain *const *)b)->name);
}

/* load_domains - the "domains" list: one group per destination domain. */
static int load_domains(struct config *cfg, config_setting_t *list, struct config_error *e)
{
	int line = config_setting_source_line(list);

	if (config_setting_type(list) != CONFIG_TYPE_LIST)
		return config_fail(e, "line %d: domains: expects a list of groups: ( { name = \"example.com\"; ... } )", line);
	int n = config_setting_length(list);
	cfg->domains = xcalloc((size_t)n, sizeof(*cfg->domains));
	for (int i = 0; i < n; i++) {
		config_setting_t *group = config_setting_get_elem(list, (unsigned)i);
		struct config_domain *d = &cfg->domains[i];
		int gline = config_setting_source_line(group);

		*d = cfg->domain_default;
		d->name = NULL;
		d->route = NULL;
		cfg->domain_count = (size_t)i + 1;
		if (config_setting_type(group) != CONFIG_TYPE_GROUP)
			return config_fail(e, "line %d: domains: element %d is not a group", gline, i + 1);
		for (int j = 0; j < config_setting_length(group); j++) {
			config_setting_t *s = config_setting_get_elem(group, (unsigned)j);
			const struct config_key *key = find_key(config_domain_keys, COUNT(config_domain_keys),
								config_setting_name(s));
			if (key == NULL)
				return config_fail(e, "line %d: domains: unknown key \"%s\"",
						   config_setting_source_line(s), config_setting_name(s));
			int rc = set_from_setting(d, cfg, key, s, e);
			if (rc < 0)
				return rc;
		}
		if (d->name == NULL || d->name[0] == '\0')
			return config_fail(e, "line %d: domains: entry %d has no name", gline, i + 1);
		/* ".example.com" names the subdomains of example.com (a parent
		 * domain route, as in transport(5)). */
		if (!normalise_domain(d->name + (d->name[0] == '.')) ||
		    (d->name[0] == '.' && d->name[1] == '\0'))
			return config_fail(e, "line %d: domains: entry %d: \"%s\" is not a domain name",
					   gline, i + 1, d->name);
		d->line = gline;
		d->tls_set = config_setting_get_member(group, "tls") != NULL;
		if (d->route != NULL) {
			config_setting_t *rs = config_setting_get_member(group, "route");
			int rc = config_check_next_hop(d->route, "domains[].route",
						       rs != NULL ? (int)config_setting_source_line(rs) : gline, e);
			if (rc < 0)
				return rc;
		}
	}
	/* An index sorted by name: config_domain_policy is a binary search
	 * (relays with thousands of entries look one up for every message). */
	cfg->domain_index = xcalloc(cfg->domain_count, sizeof(*cfg->domain_index));
	for (size_t i = 0; i < cfg->domain_count; i++)
		cfg->domain_index[i] = &cfg->domains[i];
	qsort(cfg->domain_index, cfg->domain_count, sizeof(*cfg->domain_index), domain_cmp);
	for (size_t i = 1; i < cfg->domain_count; i++) {
		const struct config_domain *a = cfg->domain_index[i - 1], *b = cfg->domain_index[i];
		if (strcmp(a->name, b->name) == 0)
			return config_fail(e, "line %d: domains: \"%s\" appears twice",
					   a->line > b->line ? a->line : b->line, b->name);
	}
	return 0;
}

/* plausible_selector - a selector is a sub-domain (RFC 6376 3.1):
 * letters, digits, hyphens, dots between non-empty labels. */
static bool plausible_selector(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 63 || s[0] == '.' || s[n - 1] == '.' || strstr(s, "..") != NULL)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '.'))
			return false;
	return true;
}

/* load_dkim_signer - the settings of one dkim.sign entry, then its key. */
static int load_dkim_signer(struct config *cfg, config_setting_t *group, int i, struct config_error *e)
{
	struct config_dkim_signer *d = &cfg->dkim_signers[i];
	int gline = config_setting_source_line(group);
	char why[512];

	if (config_setting_type(group) != CONFIG_TYPE_GROUP)
		return config_fail(e, "line %d: dkim.sign: element %d is not a group", gline, i + 1);
	for (int j = 0; j < config_setting_length(group); j++) {
		config_setting_t *s = config_setting_get_elem(group, (unsigned)j);
		const struct config_key *key = find_key(config_dkim_sign_keys, COUNT(config_dkim_sign_keys),
							config_setting_name(s));
		if (key == NULL)
			return config_fail(e, "line %d: dkim.sign: unknown key \"%s\"",
					   config_setting_source_line(s), config_setting_name(s));
		int rc = set_from_setting(d, cfg, key, s, e);
		if (rc < 0)
			return rc;
	}
	for (size_t k = 0; k < COUNT(config_dkim_sign_keys); k++)
		if (*(char **)((char *)d + config_dkim_sign_keys[k].offset) == NULL)
			return config_fail(e, "line %d: dkim.sign: entry %d has no %s", gline, i + 1,
					   config_dkim_sign_keys[k].path);
	if (!normalise_domain(d->domain))
		return config_fail(e, "line %d: dkim.sign: entry %d: \"%s\" is not a domain name",
				   gline, i + 1, d->domain);
	if (!plausible_selector(d->selector))
		return config_fail(e, "line %d: dkim.sign: entry %d: \"%s\" is not a selector",
				   gline, i + 1, d->selector);
	for (int k = 0; k < i; k++)
		if (strcmp(cfg->dkim_signers[k].domain, d->domain) == 0 &&
		    strcmp(cfg->dkim_signers[k].selector, d->selector) == 0)
			return config_fail(e, "line %d: dkim.sign: %s with selector %s appears twice",
					   gline, d->domain, d->selector);
	if (dkim_key_load(d->key_file, &d->key, why, sizeof(why)) < 0)
		return config_fail(e, "line %d: dkim.sign: key_file of %s/%s: %s", gline, d->domain,
				   d->selector, why);
	return 0;
}

/* load_dkim_sign - the "dkim.sign" list: one group per signing key. */
static int load_dkim_sign(struct config *cfg, config_setting_t *list, struct config_error *e)
{
	int line = config_setting_source_line(list);

	if (config_setting_type(list) != CONFIG_TYPE_LIST)
		return config_fail(e, "line %d: dkim.sign: expects a list of groups: ( { domain = \"example.com\"; selector = \"s1\"; key_file = \"...\"; } )", line);
	int n = config_setting_length(list);
	cfg->dkim_signers = xcalloc((size_t)n, sizeof(*cfg->dkim_signers));
	for (int i = 0; i < n; i++) {
		cfg->dkim_signer_count = (size_t)i + 1;
		int rc = load_dkim_signer(cfg, config_setting_get_elem(list, (unsigned)i), i, e);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* load_sender_routes - the "delivery.sender_routes" list. */
static int load_sender_routes(struct config *cfg, config_setting_t *list, struct config_error *e)
{
	int line = config_setting_source_line(list);

	if (config_setting_type(list) != CONFIG_TYPE_LIST)
		return config_fail(e, "line %d: delivery.sender_routes: expects a list of groups: ( { sender = \"example.com\"; route = \"[smtp.example.net]:587\"; } )", line);
	int n = config_setting_length(list);
	cfg->sender_routes = xcalloc((size_t)n, sizeof(*cfg->sender_routes));
	for (int i = 0; i < n; i++) {
		config_setting_t *group = config_setting_get_elem(list, (unsigned)i);
		struct config_sender_route *r = &cfg->sender_routes[i];
		int gline = config_setting_source_line(group);

		cfg->sender_route_count = (size_t)i + 1;
		r->line = gline;
		if (config_setting_type(group) != CONFIG_TYPE_GROUP)
			return config_fail(e, "line %d: delivery.sender_routes: element %d is not a group", gline, i + 1);
		for (int j = 0; j < config_setting_length(group); j++) {
			config_setting_t *s = config_setting_get_elem(group, (unsigned)j);
			const struct config_key *key = find_key(config_sender_route_keys,
								COUNT(config_sender_route_keys), config_setting_name(s));
			if (key == NULL)
				return config_fail(e, "line %d: delivery.sender_routes: unknown key \"%s\"",
						   config_setting_source_line(s), config_setting_name(s));
			int rc = set_from_setting(r, cfg, key, s, e);
			if (rc < 0)
				return rc;
		}
		if (r->sender == NULL || r->route == NULL)
			return config_fail(e, "line %d: delivery.sender_routes: entry %d needs sender and route", gline, i + 1);
		char *domain = strrchr(r->sender, '@');
		char *name = domain != NULL ? domain + 1 : r->sender + (r->sender[0] == '.');
		if ((domain != NULL && (domain == r->sender || r->sender[0] == '.')) || !normalise_domain(name) ||
		    (r->sender[0] == '.' && r->sender[1] == '\0'))
			return config_fail(e, "line %d: delivery.sender_routes: entry %d: \"%s\" is not an address or domain",
					   gline, i + 1, r->sender);
		for (char *c = r->sender; *c; c++)
			if (*c >= 'A' && *c <= 'Z')
				*c = (char)(*c - 'A' + 'a');
		int rc = config_check_next_hop(r->route, "delivery.sender_routes[].route", gline, e);
		if (rc < 0)
			return rc;
		r->tls_set = config_setting_get_member(group, "tls") != NULL;
		for (int k = 0; k < i; k++) {
			const struct config_sender_route *o = &cfg->sender_routes[k];
			if (strcmp(o->sender, r->sender) == 0)
				return config_fail(e, "line %d: delivery.sender_routes: \"%s\" appears twice", gline, r->sender);
			/* Mail through one next hop queues and connects as one:
			 * one TLS policy for it. */
			if (strcmp(o->route, r->route) == 0 && (o->tls_set != r->tls_set || o->tls != r->tls))
				return config_fail(e, "line %d: delivery.sender_routes: entry %d: route \"%s\" has tls %s, "
						   "but the entry at line %d gives it tls %s: entries with the same route must agree",
						   gline, i + 1, r->route, r->tls_set ? config_tls_policy_name(r->tls) : "unset",
						   o->line, o->tls_set ? config_tls_policy_name(o->tls) : "unset");
		}
	}
	return 0;
}

/* load_webhook_events - a webhooks entry's "events": names of events. */
static int load_webhook_events(struct config_webhook *w, config_setting_t *s, struct config_error *e)
{
	int line = config_setting_source_line(s);

	if (config_setting_type(s) != CONFIG_TYPE_ARRAY && config_setting_type(s) != CONFIG_TYPE_LIST)
		return config_fail(e, "line %d: webhooks: events expects a list of strings, e.g. [\"delivered\", \"bounced\"]", line);
	w->events = 0;
	for (int i = 0; i < config_setting_length(s); i++) {
		const char *name = config_setting_get_string_elem(s, i);
		if (name == NULL || webhook_events_parse(name, &w->events) < 0)
			return config_fail(e, "line %d: webhooks: events: \"%s\" is not delivered, bounced, deferred, expired or suppressed",
					   line, name != NULL ? name : "(not a string)");
	}
	if (w->events == 0)
		return config_fail(e, "line %d: webhooks: events is empty (leave it out for every event)", line);
	return 0;
}

/* load_webhook - one "webhooks" entry: defaults, then its settings. */
static int load_webhook(struct config *cfg, config_setting_t *group, int i, struct config_error *e)
{
	struct config_webhook *w = &cfg->webhooks[i];
	int gline = config_setting_source_line(group);

	w->line = gline;
	w->events = WEBHOOK_EVENTS_ALL;
	for (size_t k = 0; k < COUNT(config_webhook_keys); k++)
		if (config_webhook_keys[k].default_text != NULL && config_webhook_keys[k].kind != KIND_STRING_LIST &&
		    set_scalar_text(w, &config_webhook_keys[k], config_webhook_keys[k].default_text, e, gline) < 0)
			log_panic("bad default for webhooks[].%s", config_webhook_keys[k].path);
	if (config_setting_type(group) != CONFIG_TYPE_GROUP)
		return config_fail(e, "line %d: webhooks: element %d is not a group", gline, i + 1);
	for (int j = 0; j < config_setting_length(group); j++) {
		config_setting_t *s = config_setting_get_elem(group, (unsigned)j);
		const struct config_key *key = find_key(config_webhook_keys, COUNT(config_webhook_keys),
							config_setting_name(s));
		if (key == NULL)
			return config_fail(e, "line %d: webhooks: unknown key \"%s\"",
					   config_setting_source_line(s), config_setting_name(s));
		int rc = key->kind == KIND_STRING_LIST ? load_webhook_events(w, s, e) : set_from_setting(w, cfg, key, s, e);
		if (rc < 0)
			return rc;
	}
	if (w->url == NULL || (strncmp(w->url, "http://", 7) != 0 && strncmp(w->url, "https://", 8) != 0) ||
	    strlen(w->url) < 10 || strpbrk(w->url, " \t\r\n") != NULL)
		return config_fail(e, "line %d: webhooks: entry %d needs a url, \"http://...\" or \"https://...\"",
				   gline, i + 1);
	if (w->retry_min_ms > w->retry_max_ms)
		return config_fail(e, "line %d: webhooks: entry %d: retry_min is larger than retry_max", gline, i + 1);
	for (int k = 0; k < i; k++)
		if (strcmp(cfg->webhooks[k].url, w->url) == 0)
			return config_fail(e, "line %d: webhooks: %s appears twice (one cursor per url)", gline, w->url);
	return 0;
}

/* load_webhooks - the "webhooks" list: one group per receiver. */
static int load_webhooks(struct config *cfg, config_setting_t *list, struct config_error *e)
{
	int line = config_setting_source_line(list);

	if (config_setting_type(list) != CONFIG_TYPE_LIST)
		return config_fail(e, "line %d: webhooks: expects a list of groups: ( { url = \"http://127.0.0.1:8080/events\"; } )", line);
	int n = config_setting_length(list);
	cfg->webhooks = xcalloc((size_t)n, sizeof(*cfg->webhooks));
	for (int i = 0; i < n; i++) {
		cfg->webhook_count = (size_t)i + 1;
		int rc = load_webhook(cfg, config_setting_get_elem(list, (unsigned)i), i, e);
		if (rc < 0)
			return rc;
	}
	if (n > 0 && cfg->log_delivery_file[0] == '\0')
		return config_fail(e, "line %d: webhooks need log.delivery_file (the events are read from it)", line);
	return 0;
}

/* load_group - check and apply every setting of a group of the file. */
static int load_group(struct config *cfg, config_setting_t *group, const char *prefix,
		      struct config_error *e)
{
	for (int i = 0; i < config_setting_length(group); i++) {
		config_setting_t *s = config_setting_get_elem(group, (unsigned)i);
		char path[128];
		int rc;

		snprintf(path, sizeof(path), "%s%s%s", prefix, prefix[0] ? "." : "", config_setting_name(s));
		const struct config_key *key = find_key(config_keys, COUNT(config_keys), path);
		if (key != NULL) {
			rc = set_from_setting(cfg, cfg, key, s, e);
		} else if (strcmp(path, "domains") == 0 || strcmp(path, "dkim.sign") == 0 ||
			   strcmp(path, "delivery.sender_routes") == 0 || strcmp(path, "webhooks") == 0) {
			rc = 0;   /* lists of groups, loaded after the rest */
		} else if (config_setting_type(s) == CONFIG_TYPE_GROUP && is_group_prefix(path)) {
			rc = load_group(cfg, s, path, e);
		} else {
			rc = config_fail(e, "line %d: unknown key \"%s\"", config_setting_source_line(s), path);
		}
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* key_line - the line where the file sets path, or 0 (a default): lets the
 * checks below name a line like every other error. file may be NULL. */
static int key_line(config_t *file, const char *path)
{
	config_setting_t *s = file != NULL ? config_lookup(file, path) : NULL;

	return s != NULL ? config_setting_source_line(s) : 0;
}

/* pair_line - the line of whichever of two related keys the file sets. */
static int pair_line(config_t *file, const char *a, const char *b)
{
	int line = key_line(file, a);

	return line != 0 ? line : key_line(file, b);
}

/* config_check_listeners - a worker holds at most CONFIG_MAX_LISTEN
 * sockets, and implicit-TLS listeners need a certificate. */
static int config_check_listeners(const struct config *cfg, config_t *file, struct config_error *e)
{
	if (cfg->listen_count + cfg->smtps_listen_count + cfg->submission_listen_count > CONFIG_MAX_LISTEN)
		return config_fail(e, "line %d: listen, smtps.listen and submission.listen: more than %d addresses together",
				   pair_line(file, "smtps.listen", "submission.listen"), CONFIG_MAX_LISTEN);
	if (cfg->listen_count + cfg->smtps_listen_count + cfg->submission_listen_count +
	    cfg->http_listen_count + cfg->http_tls_listen_count > CONFIG_MAX_LISTEN)
		return config_fail(e, "line %d: http.listen and http.tls_listen: more than %d addresses together with listen, "
				   "smtps.listen and submission.listen",
				   pair_line(file, "http.listen", "http.tls_listen"), CONFIG_MAX_LISTEN);
	if (cfg->pop3_listen_count + cfg->pop3s_listen_count > CONFIG_MAX_LISTEN)
		return config_fail(e, "line %d: pop3.listen and pop3s.listen: more than %d addresses together",
				   pair_line(file, "pop3.listen", "pop3s.listen"), CONFIG_MAX_LISTEN);
	if (cfg->tls_cert_file[0] != '\0')
		return 0;
	if (cfg->smtps_listen_count > 0)
		return config_fail(e, "line %d: smtps.listen needs tls.cert_file and tls.key_file",
				   key_line(file, "smtps.listen"));
	if (cfg->pop3s_listen_count > 0)
		return config_fail(e, "line %d: pop3s.listen needs tls.cert_file and tls.key_file",
				   key_line(file, "pop3s.listen"));
	if (cfg->http_tls_listen_count > 0)
		return config_fail(e, "line %d: http.tls_listen needs tls.cert_file and tls.key_file",
				   key_line(file, "http.tls_listen"));
	return 0;
}

/* listen_same - do two listeners name the same address and port? */
static bool listen_same(const struct config_listen *a, const struct config_listen *b)
{
	return a->addr_len == b->addr_len && memcmp(&a->addr, &b->addr, a->addr_len) == 0;
}

/* config_mark_proxy_protocol - flag every listener that
 * proxy_protocol.listeners names; each entry must name one. */
static int config_mark_proxy_protocol(struct config *cfg, config_t *file, struct config_error *e)
{
	struct config_listen *lists[] = { cfg->listen, cfg->smtps_listen, cfg->submission_listen,
					  cfg->pop3_listen, cfg->pop3s_listen };
	const size_t counts[] = { cfg->listen_count, cfg->smtps_listen_count, cfg->submission_listen_count,
				  cfg->pop3_listen_count, cfg->pop3s_listen_count };

	for (size_t p = 0; p < cfg->proxy_protocol_listener_count; p++) {
		const struct config_listen *want = &cfg->proxy_protocol_listeners[p];
		bool found = false;
		for (size_t k = 0; k < COUNT(lists); k++) {
			for (size_t i = 0; i < counts[k]; i++) {
				if (listen_same(&lists[k][i], want)) {
					lists[k][i].proxy_protocol = true;
					found = true;
				}
			}
		}
		if (!found)
			return config_fail(e, "line %d: proxy_protocol.listeners: \"%s\" is not in listen, smtps.listen, "
					   "submission.listen, pop3.listen or pop3s.listen",
					   key_line(file, "proxy_protocol.listeners"), want->text);
	}
	return 0;
}

/* config_load_bounce_patterns - the classifier: bounce.patterns_file's
 * rules, then the built-in table. */
static int config_load_bounce_patterns(struct config *cfg, config_t *file, struct config_error *e)
{
	cfg->bounce_classifier = bounce_classifier_new();
	if (cfg->bounce_patterns_file[0] != '\0') {
		FILE *f = fopen(cfg->bounce_patterns_file, "r");
		if (f == NULL)
			return config_fail(e, "line %d: bounce.patterns_file: %s: %s",
					   key_line(file, "bounce.patterns_file"), cfg->bounce_patterns_file,
					   strerror(errno));
		char *text = NULL;
		size_t len = 0, cap = 0, n;
		do {
			if (len + 4096 > cap)
				text = xrealloc(text, cap = cap * 2 + 8192);
			n = fread(text + len, 1, cap - len, f);
			len += n;
		} while (n > 0 && len < (16u << 20));
		fclose(f);
		char why[512];
		int rc = bounce_classifier_load(cfg->bounce_classifier, text, len, cfg->bounce_patterns_file,
						why, sizeof(why));
		free(text);
		if (rc < 0)
			return config_fail(e, "line %d: bounce.patterns_file: %s",
					   key_line(file, "bounce.patterns_file"), why);
	}
	char why[512];
	if (bounce_classifier_load(cfg->bounce_classifier, bounce_patterns_builtin,
				   bounce_patterns_builtin_len, "built-in bounce-patterns.txt", why, sizeof(why)) < 0)
		return config_fail(e, "%s", why);
	return 0;
}

/* config_check_suppression - suppression.check and .categories as bits. */
static int config_check_suppression(struct config *cfg, config_t *file, struct config_error *e)
{
	static const struct { const char *name; unsigned bits; } checks[] = {
		{ "injection", CONFIG_SUPPRESS_INJECTION }, { "delivery", CONFIG_SUPPRESS_DELIVERY },
		{ "both", CONFIG_SUPPRESS_INJECTION | CONFIG_SUPPRESS_DELIVERY }, { "none", 0 },
	};
	size_t i;

	for (i = 0; i < COUNT(checks) && strcmp(cfg->suppression_check_text, checks[i].name) != 0; i++)
		;
	if (i == COUNT(checks))
		return config_fail(e, "line %d: suppression.check: \"%s\" is not injection, delivery, both or none",
				   key_line(file, "suppression.check"), cfg->suppression_check_text);
	cfg->suppression_check = checks[i].bits;
	cfg->suppression_categories = 0;
	char copy[512], *save = NULL;
	snprintf(copy, sizeof(copy), "%s", cfg->suppression_categories_text);
	for (char *w = strtok_r(copy, ", ", &save); w != NULL; w = strtok_r(NULL, ", ", &save)) {
		int k = bounce_category_parse(w);
		if (k < 0)
			return config_fail(e, "line %d: suppression.categories: \"%s\" is not a bounce category (invalid_recipient, mailbox_full, policy, authentication, rate_limit, dns, tls, connection, message_too_large, other)",
					   key_line(file, "suppression.categories"), w);
		cfg->suppression_categories |= 1u << k;
	}
	return 0;
}

/* config_check_cluster - cluster.*: the Redis address, a node name that
 * can be a key's part, and the password read now (the file may be out of
 * reach once privileges are dropped). */
static int config_check_cluster(struct config *cfg, config_t *file, struct config_error *e)
{
	char host[256];
	int port;

	if (cfg->cluster_redis[0] == '\0')
		return 0;
	if (cluster_address_parse(cfg->cluster_redis, host, sizeof(host), &port) < 0)
		return config_fail(e, "line %d: cluster.redis: \"%s\" is not host:port (port 1 to 65535)",
				   key_line(file, "cluster.redis"), cfg->cluster_redis);
	if (cfg->cluster_node_name[0] == '\0') {
		char name[256] = "localhost";
		gethostname(name, sizeof(name) - 1);
		free(cfg->cluster_node_name);
		cfg->cluster_node_name = xstrdup(name);
	}
	if (!cluster_name_valid(cfg->cluster_node_name))
		return config_fail(e, "line %d: cluster.node_name: \"%s\" must be 1 to 63 letters, digits, '.', '_' or '-'",
				   key_line(file, "cluster.node_name"), cfg->cluster_node_name);
	if (strlen(cfg->cluster_key_prefix) > 64 || strpbrk(cfg->cluster_key_prefix, " \t\r\n") != NULL)
		return config_fail(e, "line %d: cluster.key_prefix: at most 64 characters, no white space",
				   key_line(file, "cluster.key_prefix"));
	if (cfg->cluster_password_file[0] != '\0') {
		char why[256];
		if (cluster_password_read(cfg->cluster_password_file, &cfg->cluster_password, why, sizeof(why)) < 0)
			return config_fail(e, "line %d: cluster.password_file: %s", key_line(file, "cluster.password_file"), why);
	}
	return 0;
}

/* config_check_http - the HTTP API needs its tokens: load them with the
 * config, so a reload re-reads the file and a bad one keeps the old. */
static int config_check_http(struct config *cfg, config_t *file, struct config_error *e)
{
	if (cfg->http_listen_count > 0 && cfg->http_token_file[0] == '\0')
		return config_fail(e, "line %d: http.listen needs http.token_file (every request carries a bearer token)",
				   key_line(file, "http.listen"));
	if (cfg->http_tls_listen_count > 0 && cfg->http_token_file[0] == '\0')
		return config_fail(e, "line %d: http.tls_listen needs http.token_file (every request carries a bearer token)",
				   key_line(file, "http.tls_listen"));
	if (cfg->http_token_file[0] == '\0')
		return 0;
	char why[512];
	if (http_tokens_load(cfg->http_token_file, &cfg->http_tokens, why, sizeof(why)) < 0)
		return config_fail(e, "line %d: http.token_file: %s", key_line(file, "http.token_file"), why);
	return 0;
}

/* config_uses_verify - does any destination policy say "verify"? */
static bool config_uses_verify(const struct config *cfg)
{
	if (cfg->domain_default.tls == CONFIG_TLS_VERIFY)
		return true;
	for (size_t i = 0; i < cfg->domain_count; i++)
		if (cfg->domains[i].tls == CONFIG_TLS_VERIFY)
			return true;
	return false;
}

/* config_check - relations between keys that no single key can check. */
static int config_check(struct config *cfg, config_t *file, struct config_error *e)
{
	if (cfg->dns_min_ttl_ms > cfg->dns_max_ttl_ms)
		return config_fail(e, "line %d: dns.min_ttl is larger than dns.max_ttl",
				   pair_line(file, "dns.min_ttl", "dns.max_ttl"));
	if (cfg->min_backoff_ms > cfg->max_backoff_ms)
		return config_fail(e, "line %d: delivery.min_backoff is larger than delivery.max_backoff",
				   pair_line(file, "delivery.min_backoff", "delivery.max_backoff"));
	if ((cfg->recv_buffer_count & (cfg->recv_buffer_count - 1)) != 0)
		return config_fail(e, "line %d: ring.recv_buffers: %lld is not a power of two",
				   key_line(file, "ring.recv_buffers"), (long long)cfg->recv_buffer_count);
	if (cfg->smtp_max_input_backlog < cfg->recv_buffer_size)
		return config_fail(e, "line %d: smtp.max_input_backlog is smaller than ring.recv_buffer_size",
				   pair_line(file, "smtp.max_input_backlog", "ring.recv_buffer_size"));
	if ((cfg->tls_cert_file[0] == '\0') != (cfg->tls_key_file[0] == '\0'))
		return config_fail(e, "line %d: tls.cert_file and tls.key_file go together",
				   pair_line(file, "tls.cert_file", "tls.key_file"));
	if (cfg->tls_cert_file[0] != '\0') {
		/* Load them once here, so a bad pair stops the start or the
		 * reload instead of every handshake. */
		char why[256];
		struct tls_config *tc = tls_config_new_server(cfg->tls_cert_file, cfg->tls_key_file,
							      NULL, why, sizeof(why));
		if (tc == NULL)
			return config_fail(e, "line %d: tls.cert_file/tls.key_file: %s",
					   pair_line(file, "tls.cert_file", "tls.key_file"), why);
		tls_config_free(tc);
	}
	int rc = config_check_listeners(cfg, file, e);
	if (rc < 0)
		return rc;
	rc = config_mark_proxy_protocol(cfg, file, e);
	if (rc < 0)
		return rc;
	if (cfg->relayhost[0] != '\0' &&
	    (rc = config_check_next_hop(cfg->relayhost, "delivery.relayhost",
					key_line(file, "delivery.relayhost"), e)) < 0)
		return rc;
	if (cfg->tls_ca_file[0] != '\0' && config_uses_verify(cfg)) {
		/* Like the server pair: a bad bundle fails the start, not
		 * every delivery under "verify". */
		char why[256];
		struct tls_config *tc = tls_config_new_client(cfg->tls_ca_file, why, sizeof(why));
		if (tc == NULL)
			return config_fail(e, "line %d: delivery.tls_ca_file: %s",
					   key_line(file, "delivery.tls_ca_file"), why);
		tls_config_free(tc);
	}
	if (cfg->auth_file[0] != '\0') {
		char why[512];
		if (auth_file_load(cfg->auth_file, &cfg->auth, why, sizeof(why)) < 0)
			return config_fail(e, "line %d: delivery.auth_file: %s", key_line(file, "delivery.auth_file"), why);
	}
	if (cfg->users_file[0] != '\0') {
		char why[512];
		if (users_load(cfg->users_file, &cfg->users, why, sizeof(why)) < 0)
			return config_fail(e, "line %d: users.file: %s", key_line(file, "users.file"), why);
	}
	if (config_load_bounce_patterns(cfg, file, e) < 0)
		return -EINVAL;
	if (config_check_suppression(cfg, file, e) < 0)
		return -EINVAL;
	if (cfg->shaping_file[0] != '\0') {
		char why[512];
		if (config_shaping_load(cfg->shaping_file, &cfg->shaping, why, sizeof(why)) < 0)
			return config_fail(e, "line %d: shaping.file: %s", key_line(file, "shaping.file"), why);
	}
	if (cfg->delivery_pool[0] != '\0' && shaping_pool_find(cfg->shaping, cfg->delivery_pool) < 0)
		return config_fail(e, "line %d: delivery.pool: no pool named \"%s\" in shaping.file", key_line(file, "delivery.pool"),
				   cfg->delivery_pool);
	for (const char *c = cfg->shaping_pool_header; *c; c++)
		if ((unsigned char)*c <= ' ' || (unsigned char)*c >= 127 || *c == ':' || c - cfg->shaping_pool_header > 76)
			return config_fail(e, "line %d: shaping.pool_header: \"%s\" is not a header field name (e.g. X-Virtual-MTA)",
					   key_line(file, "shaping.pool_header"), cfg->shaping_pool_header);
	int http_rc = config_check_http(cfg, file, e);
	if (http_rc < 0)
		return http_rc;
	if (config_check_cluster(cfg, file, e) < 0)
		return -EINVAL;
	bool signs_from = false;
	for (size_t i = 0; i < cfg->dkim_header_count; i++)
		signs_from |= strcmp(cfg->dkim_headers[i], "from") == 0;
	if (!signs_from)
		return config_fail(e, "line %d: dkim.headers: must include From (RFC 6376 5.4)",
				   key_line(file, "dkim.headers"));
	char *end;
	long mode = strtol(cfg->control_mode_text, &end, 8);
	if (cfg->control_mode_text[0] == '\0' || *end != '\0' || mode < 0 || mode > 0777)
		return config_fail(e, "line %d: control.mode: \"%s\" is not an octal mode (0000 to 0777)",
				   key_line(file, "control.mode"), cfg->control_mode_text);
	cfg->control_mode = (int)mode;
	if (cfg->tls_rpt_sender[0] != '\0') {
		const char *at = strchr(cfg->tls_rpt_sender, '@');
		if (at == NULL || at == cfg->tls_rpt_sender || at[1] == '\0' || strchr(at + 1, '@') != NULL ||
		    strpbrk(cfg->tls_rpt_sender, " \t<>\"\\,;") != NULL)
			return config_fail(e, "line %d: tls_rpt.sender: \"%s\" is not a plain address (local@domain)",
					   key_line(file, "tls_rpt.sender"), cfg->tls_rpt_sender);
	}
	if (cfg->hostname[0] == '\0') {
		char host[256] = "localhost";
		gethostname(host, sizeof(host) - 1);
		free(cfg->hostname);
		cfg->hostname = xstrdup(host);
	}
	return 0;
}

/* Configs loaded and not yet freed; the serial of the last one loaded. */
static atomic_size_t configs_live;
static atomic_ulong config_serial_last;

/* Configs whose last reference is gone, waiting for the main thread. */
static struct retire_list configs_retired = RETIRE_LIST_INIT;

/* config_destroy_retired - the retire list's destroy: free the config. */
static void config_destroy_retired(struct retire_node *n)
{
	config_free(container_of(n, struct config, retire));
}

/* config_alloc - a zeroed config on its own cache lines (its reference
 * count is written by every thread) with one reference; config_load
 * gives it a serial once it is good. */
static struct config *config_alloc(void)
{
	struct config *cfg = aligned_alloc(_Alignof(struct config), sizeof(*cfg));

	if (cfg == NULL)
		log_fatal("out of memory");
	memset(cfg, 0, sizeof(*cfg));
	retire_init(&cfg->retire, config_destroy_retired);
	atomic_fetch_add(&configs_live, 1);
	return cfg;
}

const struct config *config_hold(const struct config *cfg)
{
	/* The count is bookkeeping, not a setting: holding a const config
	 * changes nothing a reader of the settings sees. */
	if (cfg != NULL)
		retire_hold(&((struct config *)cfg)->retire);
	return cfg;
}

const struct config *config_release(const struct config *cfg)
{
	if (cfg != NULL)
		retire_release(&configs_retired, &((struct config *)cfg)->retire);
	return NULL;
}

size_t config_retired_free(void)
{
	return retire_drain(&configs_retired);
}

size_t config_live_count(void)
{
	return atomic_load(&configs_live);
}

int config_load(const char *path, struct config **out, char *err, size_t errlen)
{
	struct config_error e = { err, errlen };
	struct config *cfg = config_alloc();
	config_t file;
	int rc = 0;

	for (size_t i = 0; i < COUNT(config_keys); i++)
		set_default(cfg, &config_keys[i]);
	*out = NULL;
	if (path != NULL) {
		cfg->source_path = xstrdup(path);
		config_init(&file);
		if (config_read_file(&file, path) != CONFIG_TRUE) {
			if (config_error_type(&file) == CONFIG_ERR_FILE_IO)
				rc = config_fail(&e, "%s: cannot read the file", path);
			else
				rc = config_fail(&e, "%s: line %d: %s", path, config_error_line(&file),
						 config_error_text(&file));
		} else {
			rc = load_group(cfg, config_root_setting(&file), "", &e);
			config_setting_t *domains = config_lookup(&file, "domains");
			if (rc == 0 && domains != NULL)
				rc = load_domains(cfg, domains, &e);
			config_setting_t *sender_routes = config_lookup(&file, "delivery.sender_routes");
			if (rc == 0 && sender_routes != NULL)
				rc = load_sender_routes(cfg, sender_routes, &e);
			config_setting_t *dkim_sign = config_lookup(&file, "dkim.sign");
			if (rc == 0 && dkim_sign != NULL)
				rc = load_dkim_sign(cfg, dkim_sign, &e);
			config_setting_t *webhooks = config_lookup(&file, "webhooks");
			if (rc == 0 && webhooks != NULL)
				rc = load_webhooks(cfg, webhooks, &e);
			if (rc == 0)
				rc = config_check(cfg, &file, &e);
		}
		config_destroy(&file);
	} else {
		rc = config_check(cfg, NULL, &e);
	}
	if (rc < 0) {
		config_free(cfg);
		return rc;
	}
	cfg->serial = atomic_fetch_add(&config_serial_last, 1) + 1;
	*out = cfg;
	return 0;
}

struct config *config_free(struct config *cfg)
{
	if (cfg == NULL)
		return NULL;
	for (size_t i = 0; i < COUNT(config_keys); i++) {
		const struct config_key *key = &config_keys[i];
		if (key->kind == KIND_STRING || key->kind == KIND_IP_MODE)
			free(*(char **)((char *)cfg + key->offset));
	}
	users_free(cfg->users);
	auth_file_free(cfg->auth);
	bounce_classifier_free(cfg->bounce_classifier);
	shaping_rules_free(cfg->shaping);
	if (cfg->cluster_password != NULL)
		explicit_bzero(cfg->cluster_password, strlen(cfg->cluster_password));
	free(cfg->cluster_password);
	http_tokens_free(cfg->http_tokens);
	for (size_t i = 0; i < cfg->local_domain_count; i++)
		free(cfg->local_domains[i]);
	for (size_t i = 0; i < cfg->dns_nameserver_count; i++)
		free(cfg->dns_nameservers[i]);
	for (size_t i = 0; i < cfg->domain_count; i++) {
		free(cfg->domains[i].name);
		free(cfg->domains[i].route);
	}
	for (size_t i = 0; i < cfg->sender_route_count; i++) {
		free(cfg->sender_routes[i].sender);
		free(cfg->sender_routes[i].route);
	}
	free(cfg->sender_routes);
	for (size_t i = 0; i < cfg->dkim_signer_count; i++) {
		free(cfg->dkim_signers[i].domain);
		free(cfg->dkim_signers[i].selector);
		free(cfg->dkim_signers[i].key_file);
		dkim_key_free(cfg->dkim_signers[i].key);
	}
	free(cfg->dkim_signers);
	for (size_t i = 0; i < cfg->webhook_count; i++)
		free(cfg->webhooks[i].url);
	free(cfg->webhooks);
	for (size_t i = 0; i < cfg->dkim_header_count; i++)
		free(cfg->dkim_headers[i]);
	free(cfg->dkim_headers);
	free(cfg->local_domains);
	free(cfg->dns_nameservers);
	free(cfg->relay_networks);
	free(cfg->domains);
	free(cfg->domain_index);
	free(cfg->source_path);
	free(cfg);
	atomic_fetch_sub(&configs_live, 1);
	return NULL;
}

/* domain_equal - does a normalised name (lower case, no trailing dot) name
 * the domain as a peer wrote it (any case, maybe a trailing dot)? */
static bool domain_equal(const char *name, const char *domain)
{
	size_t n = strlen(domain);

	if (n > 0 && domain[n - 1] == '.')
		n--;
	return strlen(name) == n && strncasecmp(name, domain, n) == 0;
}

/* domain_order - a normalised name against a domain as a peer wrote it
 * (any case, maybe a trailing dot), in strcmp's order of lower-case names. */
static int domain_order(const char *name, const char *domain)
{
	size_t n = strlen(domain);

	if (n > 0 && domain[n - 1] == '.')
		n--;
	for (size_t i = 0; i < n; i++) {
		unsigned char a = (unsigned char)name[i], b = (unsigned char)domain[i];
		if (b >= 'A' && b <= 'Z')
			b = (unsigned char)(b - 'A' + 'a');
		if (a != b)
			return a < b ? -1 : 1;     /* a == '\0' sorts first too */
	}
	return name[n] == '\0' ? 0 : 1;
}

/* domain_index_find - the entry named exactly name (as a peer wrote it),
 * or NULL. */
static const struct config_domain *domain_index_find(const struct config *cfg, const char *name)
{
	size_t lo = 0, hi = cfg->domain_count;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = domain_order(cfg->domain_index[mid]->name, name);
		if (c == 0)
			return cfg->domain_index[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* config_domain_policy - the domain's own entry, else the nearest parent
 * entry (".example.com" covers a.example.com and b.a.example.com, not
 * example.com itself), else the defaults; as the resolver picks routes. */
const struct config_domain *config_domain_policy(const struct config *cfg, const char *domain)
{
	const struct config_domain *d = domain_index_find(cfg, domain);

	for (const char *p = strchr(domain, '.'); d == NULL && p != NULL && p[1] != '\0'; p = strchr(p + 1, '.'))
		d = domain_index_find(cfg, p);
	return d != NULL ? d : &cfg->domain_default;
}

const char *config_sender_next_hop(const struct config *cfg, const char *sender)
{
	const char *at = sender != NULL ? strrchr(sender, '@') : NULL;
	const char *best = NULL;
	size_t best_len = 0;

	if (at == NULL || cfg->sender_route_count == 0)
		return NULL;
	/* Most specific wins: the address, the domain, then the longest
	 * parent; a few entries, so a scan. */
	for (size_t i = 0; i < cfg->sender_route_count; i++) {
		const struct config_sender_route *r = &cfg->sender_routes[i];
		size_t n = strlen(r->sender), rank;
		if (strchr(r->sender, '@') != NULL) {
			if (strcasecmp(r->sender, sender) != 0)
				continue;
			rank = SIZE_MAX;
		} else if (r->sender[0] == '.') {
			size_t dl = strlen(at + 1);
			if (dl <= n || strcasecmp(at + 1 + dl - n, r->sender) != 0)
				continue;
			rank = n;
		} else {
			if (strcasecmp(at + 1, r->sender) != 0)
				continue;
			rank = SIZE_MAX - 1;
		}
		if (best == NULL || rank > best_len) {
			best = r->route;
			best_len = rank;
		}
	}
	return best;
}

bool config_sender_route_tls(const struct config *cfg, const char *hop, enum config_tls_policy *out)
{
	for (size_t i = 0; hop != NULL && i < cfg->sender_route_count; i++) {
		const struct config_sender_route *r = &cfg->sender_routes[i];
		if (r->tls_set && strcmp(r->route, hop) == 0) {
			*out = r->tls;
			return true;
		}
	}
	return false;
}

bool config_is_local_domain(const struct config *cfg, const char *domain)
{
	for (size_t i = 0; i < cfg->local_domain_count; i++)
		if (domain_equal(cfg->local_domains[i], domain))
			return true;
	return false;
}

bool config_is_relay_client(const struct config *cfg, const struct sockaddr *peer)
{
	for (size_t i = 0; i < cfg->relay_network_count; i++)
		if (netaddr_cidr_match(&cfg->relay_networks[i], peer))
			return true;
	return false;
}

bool config_dane_wanted(const struct config *cfg)
{
	if (cfg->dane_enabled || cfg->domain_default.tls == CONFIG_TLS_DANE)
		return true;
	for (size_t i = 0; i < cfg->domain_count; i++)
		if (cfg->domains[i].tls == CONFIG_TLS_DANE)
			return true;
	return false;
}

const char *config_tls_policy_name(enum config_tls_policy policy)
{
	static const char *const names[] = { "none", "may", "encrypt", "verify", "implicit", "dane" };

	return (unsigned)policy < COUNT(names) ? names[policy] : "?";
}

void config_keys_dump(FILE *out)
{
	static const char *const kind_names[] = {
		"integer", "duration", "size", "boolean", "string", "list of strings",
		"log level", "list of ip:port", "list of networks", "list of domains", "ipv4|ipv6|both",
		"tls policy", "list of header names",
	};

	for (size_t i = 0; i < COUNT(config_keys); i++)
		fprintf(out, "%-42s %-18s default %-22s %s\n", config_keys[i].path,
			kind_names[config_keys[i].kind],
			config_keys[i].default_text[0] ? config_keys[i].default_text : "\"\"",
			config_keys[i].help);
	for (size_t i = 0; i < COUNT(config_domain_keys); i++)
		fprintf(out, "domains[].%-32s %-18s %s\n", config_domain_keys[i].path,
			kind_names[config_domain_keys[i].kind], config_domain_keys[i].help);
	for (size_t i = 0; i < COUNT(config_sender_route_keys); i++)
		fprintf(out, "delivery.sender_routes[].%-17s %-18s %s\n", config_sender_route_keys[i].path,
			kind_names[config_sender_route_keys[i].kind], config_sender_route_keys[i].help);
	for (size_t i = 0; i < COUNT(config_dkim_sign_keys); i++)
		fprintf(out, "dkim.sign[].%-30s %-18s %s\n", config_dkim_sign_keys[i].path,
			kind_names[config_dkim_sign_keys[i].kind], config_dkim_sign_keys[i].help);
	for (size_t i = 0; i < COUNT(config_webhook_keys); i++)
		fprintf(out, "webhooks[].%-31s %-18s default %-22s %s\n", config_webhook_keys[i].path,
			kind_names[config_webhook_keys[i].kind],
			config_webhook_keys[i].default_text != NULL ? config_webhook_keys[i].default_text : "(required)",
			config_webhook_keys[i].help);
}

int config_control_path(const struct config *cfg, char *out, size_t size)
{
	int n;

	if (cfg->control_socket[0] == '\0')
		return -ENOENT;
	if (cfg->control_socket[0] == '/')
		n = snprintf(out, size, "%s", cfg->control_socket);
	else
		n = snprintf(out, size, "%s/%s", cfg->spool_dir, cfg->control_socket);
	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}
