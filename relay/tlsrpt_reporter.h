/*
 * tlsrpt_reporter - the TLS-RPT (RFC 8460) reporter thread: the one owner
 * of the counts, their files and the daily reports.
 *
 *   tlsrpt_reporter_start(cfg, workers);   after the workers start (no-op when
 *                                          tls_rpt.enabled is false)
 *   tlsrpt_reporter_reload(cfg);           SIGHUP: new keys, started or stopped
 *   tlsrpt_reporter_stop();                after the workers are joined: the
 *                                          last counts are saved
 *   tlsrpt_metrics_render(&buf);           a metrics scrape, any thread
 *
 * The workers record each TLS session's result into a lock-free queue
 * (relay/daemon/tlsrpt_queue.h, fed by relay/delivery/tlsrpt_delivery.c);
 * this thread wakes every TLSRPT_QUEUE_POLL_MS, takes the whole queue and
 * counts into the period (tls_rpt.report_interval, aligned to the epoch:
 * the UTC day by default) each result belongs to.
 *
 * Durable state: one file per period, SPOOL/tlsrpt/START-END.json (the
 * counts per domain and policy, and per domain where its report stands:
 * pending, sent, no-record, failed, with the attempts, the report id and
 * the rua found), written aside and renamed (file_replace) at most every
 * tls_rpt.save_interval while counts change, at once after each report
 * attempt, and at the stop. A restart reads them back: the counts go on,
 * and a domain whose report went out is never reported again for that
 * period. A crash loses at most save_interval of counts; a crash between a
 * report's sending and the save after it sends that one report again (at
 * least once, never lost). Settled periods are kept (so that late results
 * are not counted into a report already sent) for 7 periods, then deleted.
 *
 * Reports: once a period has ended and tls_rpt.report_delay passed, each
 * domain with counts is looked up, on this thread, at _smtp._tls.DOMAIN
 * (TXT, through a resolver of its own against dns.nameservers, driven
 * synchronously with poll(2): only domains with counts, once a day, never
 * on a worker's ring; the record that counts is the one at report time).
 * No record: nothing is sent. Otherwise the RFC 8460 JSON report is
 * gzipped and sent to every usable rua URI:
 *   mailto:  the RFC 8460 5.3 mail, DKIM-signed when dkim.sign has an
 *            entry for tls_rpt.sender's domain, committed to the spool by
 *            worker 0 like a DSN and delivered by ringmail itself;
 *   https:   POST, Content-Type application/tlsrpt+gzip, with libcurl
 *            (the host resolved by the same resolver, CURLOPT_RESOLVE; the
 *            certificate checked against delivery.tls_ca_file), 2xx = taken.
 * A URI that failed is tried again after tls_rpt.retry_interval, up to
 * tls_rpt.max_attempts attempts per domain; those that took the report
 * are not sent it again.
 *
 * This thread blocks (DNS, HTTPS, the file writes) by design; no worker
 * ever waits for it.
 */
#ifndef RINGMAIL_TLSRPT_REPORTER_H
#define RINGMAIL_TLSRPT_REPORTER_H

#include "buf.h"
#include "config.h"
#include "worker.h"

/* tlsrpt_reporter_start - the thread, if cfg enables TLS-RPT; 0, or
 * -errno (logged) when it could not start. workers: the SMTP workers
 * (report mail is committed by workers[0]). */
int tlsrpt_reporter_start(const struct config *cfg, struct worker *workers);

void tlsrpt_reporter_reload(const struct config *cfg);

void tlsrpt_reporter_stop(void);

/* tlsrpt_metrics_render - the ringmail_tlsrpt_* series. */
int tlsrpt_metrics_render(struct buf *out);

#endif
