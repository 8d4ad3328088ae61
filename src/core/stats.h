/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * The statistics registry: counters and histograms that any module updates
 * (without knowing who reads them) and the HTTP API renders for /metrics.
 * Loop thread only.
 */
#ifndef ZMTA_STATS_H
#define ZMTA_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum stats_counter {
	STATS_MESSAGES_ACCEPTED, /* label: interface */
	STATS_MESSAGES_REJECTED, /* label: interface */
	STATS_DELIVERIES,        /* label: zone TAB result (delivered, deferred, bounced) */
	STATS_CONNECTIONS,       /* label: zone; a gauge (+1 open, -1 closed) */
	STATS_CONNECTION_REUSES, /* label: zone; a transaction on a connection used before */
	/* webhooks, label: endpoint name */
	STATS_WEBHOOK_PENDING,  /* a gauge: events stored, not yet taken */
	STATS_WEBHOOK_OLDEST,   /* a gauge: wall-clock ms of the oldest pending event, 0: none */
	STATS_WEBHOOK_SENT,     /* events the endpoint took (2xx) */
	STATS_WEBHOOK_FAILURES, /* POSTs that failed (no answer, or not 2xx) */
	STATS_WEBHOOK_DROPPED,  /* events dropped past webhooks.maxBacklog */
	STATS_DSN_QUEUED,       /* label: kind (failed, delayed, relayed); DSN mail queued */
	/* Lua plugins, label: plugin name */
	STATS_PLUGIN_CALLS,  /* hook calls */
	STATS_PLUGIN_ERRORS, /* calls that failed (error, budget, memory, timeout) */
	STATS_PLUGIN_MICROS, /* time its Lua code ran on the loop */
	/* Rspamd checks, label: Rspamd's action, "error" or "skipped" */
	STATS_RSPAMD_CHECKS,
	/* gauges, label: zone */
	STATS_HELD,   /* deliveries an operator holds */
	STATS_PAUSED, /* due deliveries a pause keeps back */
	STATS_NCOUNTERS,
};

enum stats_histogram {
	STATS_COMMIT_SECONDS, /* commit request to durable write */
	STATS_DNS_SECONDS,    /* a destination lookup */
	STATS_LOAD_SECONDS,   /* a delivery's message load: request to answer */
	STATS_NHISTOGRAMS,
};

/* Histogram buckets in seconds (upper bounds). */
#define STATS_NBUCKETS 14
extern const double stats_buckets[STATS_NBUCKETS];

struct stats_histogram_data {
	uint64_t counts[STATS_NBUCKETS]; /* cumulative: observations <= bucket */
	uint64_t count;
	double sum;
};

void stats_message_accepted(const char *interface);
void stats_message_rejected(const char *interface);
/* result: "delivered", "deferred" or "bounced" */
void stats_delivery(const char *zone, const char *result);
/* An outbound connection of `zone` opened (+1) or closed (-1). */
void stats_connection(const char *zone, int delta);
/* A delivery connection of `zone` carries another message. */
void stats_connection_reuse(const char *zone);
void stats_observe(enum stats_histogram h, double seconds);
/* Any counter by label: adds delta, or sets a gauge. */
void stats_add(enum stats_counter c, const char *label, int64_t delta);
void stats_set(enum stats_counter c, const char *label, int64_t value);

/* Reading.  Iterates a counter's labels: start *pos at 0. */
bool stats_next(enum stats_counter c, size_t *pos, const char **label, int64_t *value);
/* One label's value (0 when never counted). */
int64_t stats_get(enum stats_counter c, const char *label);
const struct stats_histogram_data *stats_histogram(enum stats_histogram h);

#endif
