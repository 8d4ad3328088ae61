/* SPDX-License-Identifier: EUPL-1.2 */
/* Metrics for GET /metrics; see metrics.h. */
#include "api/metrics.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/stats.h"
#include "core/xmalloc.h"

struct out {
	char *buf;
	size_t len, cap;
};

static void emit(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void emit(struct out *o, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *s = xvasprintf(fmt, ap);
	va_end(ap);
	size_t n = strlen(s);
	o->buf = xreallocarray_grow(o->buf, &o->cap, o->len + n + 1, 1);
	memcpy(o->buf + o->len, s, n + 1);
	o->len += n;
	free(s);
}

/* Label values are names from the configuration; quote what needs it. */
static void emit_label_value(struct out *o, const char *v)
{
	emit(o, "\"");
	for (; *v; v++) {
		if (*v == '"' || *v == '\\')
			emit(o, "\\%c", *v);
		else if (*v == '\n')
			emit(o, "\\n");
		else
			emit(o, "%c", *v);
	}
	emit(o, "\"");
}

static void emit_counter(struct out *o, const char *name, const char *help, const char *type,
			 enum stats_counter c, const char *label)
{
	emit(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
	size_t pos = 0;
	const char *key;
	int64_t v;
	while (stats_next(c, &pos, &key, &v)) {
		emit(o, "%s{%s=", name, label);
		emit_label_value(o, key);
		emit(o, "} %lld\n", (long long)v);
	}
}

static void emit_histogram(struct out *o, const char *name, const char *help,
			   const struct stats_histogram_data *h)
{
	emit(o, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
	for (size_t i = 0; i < STATS_NBUCKETS; i++)
		emit(o, "%s_bucket{le=\"%g\"} %llu\n", name, stats_buckets[i],
		     (unsigned long long)h->counts[i]);
	emit(o, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name,
	     (unsigned long long)h->count, name, h->sum, name, (unsigned long long)h->count);
}

static int64_t counter_sum(enum stats_counter c)
{
	size_t pos = 0;
	const char *key;
	int64_t v, sum = 0;
	while (stats_next(c, &pos, &key, &v))
		sum += v;
	return sum;
}

/*
 * The delivery outcomes, one series per zone and result: ours
 * (zonemta_delivery_attempts_total{zone, result}) or, `zonemta`, under
 * ZoneMTA's name and labels (zonemta_delivery_status{status, zone}, where
 * a bounce is "rejected").
 */
static void emit_deliveries(struct out *o, bool zonemta)
{
	const char *name = zonemta ? "zonemta_delivery_status" : "zonemta_delivery_attempts_total";
	emit(o, "# HELP %s Delivery outcomes per zone%s.\n# TYPE %s counter\n", name,
	     zonemta ? " (ZoneMTA's name: delivered, deferred, rejected)" : "", name);
	size_t pos = 0;
	const char *key;
	int64_t v;
	while (stats_next(STATS_DELIVERIES, &pos, &key, &v)) {
		const char *tab = strchr(key, '\t'), *result = tab + 1;
		if (zonemta && strcmp(result, "suppressed") == 0)
			continue; /* not one of ZoneMTA's three */
		char *zone = xstrndup(key, (size_t)(tab - key));
		if (zonemta)
			result = strcmp(result, "bounced") == 0 ? "rejected" : result;
		emit(o, "%s{%s=", name, zonemta ? "status" : "result");
		emit_label_value(o, result);
		emit(o, ",zone=");
		emit_label_value(o, zone);
		emit(o, "} %lld\n", (long long)v);
		free(zone);
	}
}

/* ZoneMTA's metric names, so that its dashboards work unchanged. */
static void emit_zonemta_aliases(struct out *o)
{
	emit_deliveries(o, true);
	emit(o,
	     "# HELP zonemta_message_push Messages taken into the queue, or refused (ZoneMTA's "
	     "name).\n"
	     "# TYPE zonemta_message_push counter\n"
	     "zonemta_message_push{result=\"success\"} %lld\n"
	     "zonemta_message_push{result=\"fail\"} %lld\n"
	     "# HELP zonemta_message_drop Messages not accepted for delivery (ZoneMTA's name).\n"
	     "# TYPE zonemta_message_drop counter\n"
	     "zonemta_message_drop %lld\n",
	     (long long)counter_sum(STATS_MESSAGES_ACCEPTED),
	     (long long)counter_sum(STATS_MESSAGES_REJECTED),
	     (long long)counter_sum(STATS_MESSAGES_REJECTED));
	emit(o,
	     "# HELP zonemta_connection_pool_size Open delivery connections (ZoneMTA's name).\n"
	     "# TYPE zonemta_connection_pool_size gauge\n"
	     "zonemta_connection_pool_size %lld\n",
	     (long long)counter_sum(STATS_CONNECTIONS));
}

/* Per endpoint, every configured one (zero until it has had events). */
static void emit_webhooks(struct out *o, const struct config *cfg)
{
	static const struct {
		const char *name, *help, *type;
		enum stats_counter c;
	} families[] = {
	    {"zonemta_webhook_pending_events", "Events stored for the endpoint, not yet taken.",
	     "gauge", STATS_WEBHOOK_PENDING},
	    {"zonemta_webhook_sent_events_total", "Events the endpoint took (2xx).", "counter",
	     STATS_WEBHOOK_SENT},
	    {"zonemta_webhook_failures_total", "POSTs to the endpoint that failed.", "counter",
	     STATS_WEBHOOK_FAILURES},
	    {"zonemta_webhook_dropped_events_total", "Events dropped past webhooks.maxBacklog.",
	     "counter", STATS_WEBHOOK_DROPPED},
	};
	int64_t now = clock_wall_ms();
	for (size_t f = 0; f <= sizeof(families) / sizeof(families[0]); f++) {
		bool oldest = f == sizeof(families) / sizeof(families[0]);
		if (oldest)
			emit(o, "# HELP zonemta_webhook_oldest_event_seconds Age of the endpoint's "
				"oldest pending event (0: none).\n"
				"# TYPE zonemta_webhook_oldest_event_seconds gauge\n");
		else
			emit(o, "# HELP %s %s\n# TYPE %s %s\n", families[f].name, families[f].help,
			     families[f].name, families[f].type);
		for (size_t i = 0; i < cfg->n_webhooks; i++) {
			const char *ep = cfg->webhooks[i].name;
			emit(o, "%s{endpoint=",
			     oldest ? "zonemta_webhook_oldest_event_seconds" : families[f].name);
			emit_label_value(o, ep);
			if (oldest) {
				int64_t t = stats_get(STATS_WEBHOOK_OLDEST, ep);
				emit(o, "} %.3f\n",
				     t > 0 && now > t ? (double)(now - t) / 1000 : 0.0);
			} else {
				emit(o, "} %lld\n", (long long)stats_get(families[f].c, ep));
			}
		}
	}
}

char *metrics_render(const struct config *cfg, const struct queue *q)
{
	struct out o = {0};
	emit_counter(&o, "zonemta_messages_accepted_total", "Messages accepted (queued).",
		     "counter", STATS_MESSAGES_ACCEPTED, "interface");
	emit_counter(&o, "zonemta_messages_rejected_total", "Messages refused or failed at intake.",
		     "counter", STATS_MESSAGES_REJECTED, "interface");

	emit_deliveries(&o, false);

	emit(&o, "# HELP zonemta_queue_size Deliveries waiting, per zone and state.\n"
		 "# TYPE zonemta_queue_size gauge\n");
	for (size_t i = 0; i < cfg->n_zones; i++) {
		const struct strmap *domains;
		const struct queue_counts *c = queue_zone_counts(q, cfg->zones[i].name, &domains);
		for (int state = 0; state < 2; state++) {
			emit(&o, "zonemta_queue_size{zone=");
			emit_label_value(&o, cfg->zones[i].name);
			/* type: ZoneMTA's label for the same */
			emit(&o, ",state=\"%s\",type=\"%s\"} %llu\n", state ? "deferred" : "queued",
			     state ? "deferred" : "queued",
			     (unsigned long long)(c ? (state ? c->deferred : c->queued) : 0));
		}
	}
	emit(&o, "# HELP zonemta_queue_held Deliveries of zonemta_queue_size an operator holds "
		 "(held) or a pause keeps back (paused: due, not tried).\n"
		 "# TYPE zonemta_queue_held gauge\n");
	for (size_t i = 0; i < cfg->n_zones; i++)
		for (int held = 0; held < 2; held++) {
			emit(&o, "zonemta_queue_held{zone=");
			emit_label_value(&o, cfg->zones[i].name);
			emit(&o, ",state=\"%s\"} %lld\n", held ? "held" : "paused",
			     (long long)stats_get(held ? STATS_HELD : STATS_PAUSED,
						  cfg->zones[i].name));
		}
	emit(&o, "# HELP zonemta_outbound_connections Open delivery connections per zone.\n"
		 "# TYPE zonemta_outbound_connections gauge\n");
	for (size_t i = 0; i < cfg->n_zones; i++) {
		emit(&o, "zonemta_outbound_connections{zone=");
		emit_label_value(&o, cfg->zones[i].name);
		emit(&o, "} %lld\n", (long long)stats_get(STATS_CONNECTIONS, cfg->zones[i].name));
	}
	emit(&o, "# HELP zonemta_connection_reuses Messages sent on a connection used before "
		 "(ZoneMTA's name).\n"
		 "# TYPE zonemta_connection_reuses counter\n");
	for (size_t i = 0; i < cfg->n_zones; i++) {
		emit(&o, "zonemta_connection_reuses{zone=");
		emit_label_value(&o, cfg->zones[i].name);
		emit(&o, "} %lld\n",
		     (long long)stats_get(STATS_CONNECTION_REUSES, cfg->zones[i].name));
	}
	emit_zonemta_aliases(&o);

	struct queue_memory_stats ms;
	queue_memory_stats(q, &ms);
	emit(&o,
	     "# HELP zonemta_queue_memory_bytes Just-queued messages kept in memory for their "
	     "first delivery.\n"
	     "# TYPE zonemta_queue_memory_bytes gauge\n"
	     "zonemta_queue_memory_bytes %zu\n"
	     "# HELP zonemta_queue_memory_messages Messages kept in memory for their first "
	     "delivery.\n"
	     "# TYPE zonemta_queue_memory_messages gauge\n"
	     "zonemta_queue_memory_messages %zu\n",
	     ms.hot_bytes, ms.hot_messages);
	emit(&o,
	     "# HELP zonemta_delivery_loads_total Messages read for delivery, by where from.\n"
	     "# TYPE zonemta_delivery_loads_total counter\n"
	     "zonemta_delivery_loads_total{source=\"memory\"} %llu\n"
	     "zonemta_delivery_loads_total{source=\"store\"} %llu\n",
	     (unsigned long long)ms.loads_hot, (unsigned long long)ms.loads_store);
	emit(&o,
	     "# HELP zonemta_store_broken 1 when the queue store is out of service (it takes "
	     "no mail until restart; /health says why).\n"
	     "# TYPE zonemta_store_broken gauge\n"
	     "zonemta_store_broken %d\n"
	     "# HELP zonemta_store_space_low 1 while new mail is refused for lack of disk "
	     "space.\n"
	     "# TYPE zonemta_store_space_low gauge\n"
	     "zonemta_store_space_low %d\n",
	     queue_broken(q) != NULL, queue_space_low(q));
	emit_counter(&o, "zonemta_dsn_queued_total", "DSN mail queued, by kind.", "counter",
		     STATS_DSN_QUEUED, "kind");
	emit(&o,
	     "# HELP zonemta_bounce_generation Bounce mail generated (ZoneMTA's name: failure "
	     "notices).\n"
	     "# TYPE zonemta_bounce_generation counter\n"
	     "zonemta_bounce_generation %lld\n",
	     (long long)stats_get(STATS_DSN_QUEUED, "failed"));
	emit_webhooks(&o, cfg);
	emit_counter(&o, "zonemta_rspamd_checks_total",
		     "Rspamd checks by result: Rspamd's action, error (no usable answer) or "
		     "skipped (too large).",
		     "counter", STATS_RSPAMD_CHECKS, "result");
	emit_counter(&o, "zonemta_plugin_calls_total", "Hook calls of each Lua plugin.", "counter",
		     STATS_PLUGIN_CALLS, "plugin");
	emit_counter(&o, "zonemta_plugin_errors_total",
		     "Hook calls of each Lua plugin that failed (error, limit, timeout).",
		     "counter", STATS_PLUGIN_ERRORS, "plugin");
	emit(&o, "# HELP zonemta_plugin_run_seconds_total Time each Lua plugin's code ran on the "
		 "event loop.\n# TYPE zonemta_plugin_run_seconds_total counter\n");
	size_t pos = 0;
	const char *name;
	int64_t us;
	while (stats_next(STATS_PLUGIN_MICROS, &pos, &name, &us)) {
		emit(&o, "zonemta_plugin_run_seconds_total{plugin=");
		emit_label_value(&o, name);
		emit(&o, "} %.6f\n", (double)us / 1e6);
	}
	emit_histogram(&o, "zonemta_store_commit_seconds",
		       "Time from a message's commit request to its durable write.",
		       stats_histogram(STATS_COMMIT_SECONDS));
	emit_histogram(&o, "zonemta_dns_lookup_seconds", "Time to resolve a destination domain.",
		       stats_histogram(STATS_DNS_SECONDS));
	emit_histogram(&o, "zonemta_message_load_seconds",
		       "Time a delivery waits for its message (metadata and first chunk).",
		       stats_histogram(STATS_LOAD_SECONDS));
	return o.buf;
}
