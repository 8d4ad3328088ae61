/* Metrics for GET /metrics; see metrics.h. */
#include "api/metrics.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/hmap.h"
#include "core/xmalloc.h"

/* Histogram buckets in seconds (upper bounds). */
static const double buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
				 0.1,    0.25,  0.5,    1,     2.5,  5,     10};
#define NBUCKETS (sizeof(buckets) / sizeof(buckets[0]))

struct histogram {
	uint64_t counts[NBUCKETS];
	uint64_t count;
	double sum;
};

static struct strmap *accepted, *rejected, *attempts, *connections;
static struct histogram commit_hist, dns_hist;

/* Adds to the counter `key` of map *m (created on first use). */
static void bump(struct strmap **m, const char *key, int64_t delta)
{
	if (*m == NULL)
		*m = strmap_new();
	int64_t *v = strmap_get(*m, key);
	if (v == NULL) {
		v = xcalloc(1, sizeof(*v));
		strmap_put(*m, key, v);
	}
	*v += delta;
}

void metrics_message_accepted(const char *interface)
{
	bump(&accepted, interface, 1);
}

void metrics_message_rejected(const char *interface)
{
	bump(&rejected, interface, 1);
}

void metrics_delivery(const char *zone, const char *result)
{
	char key[256];
	snprintf(key, sizeof(key), "%s\t%s", zone, result);
	bump(&attempts, key, 1);
}

void metrics_connection(const char *zone, int delta)
{
	bump(&connections, zone, delta);
}

static void observe(struct histogram *h, double seconds)
{
	for (size_t i = 0; i < NBUCKETS; i++)
		if (seconds <= buckets[i])
			h->counts[i]++;
	h->count++;
	h->sum += seconds;
}

void metrics_observe_commit(double seconds)
{
	observe(&commit_hist, seconds);
}

void metrics_observe_dns(double seconds)
{
	observe(&dns_hist, seconds);
}

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

static void emit_counter_map(struct out *o, const char *name, const char *help,
			     const char *type, struct strmap *m, const char *label)
{
	emit(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
	size_t pos = 0;
	const char *key;
	void *v;
	while (m != NULL && strmap_next(m, &pos, &key, &v)) {
		emit(o, "%s{%s=", name, label);
		emit_label_value(o, key);
		emit(o, "} %lld\n", (long long)*(int64_t *)v);
	}
}

static void emit_histogram(struct out *o, const char *name, const char *help,
			   const struct histogram *h)
{
	emit(o, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
	for (size_t i = 0; i < NBUCKETS; i++)
		emit(o, "%s_bucket{le=\"%g\"} %llu\n", name, buckets[i],
		     (unsigned long long)h->counts[i]);
	emit(o, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name,
	     (unsigned long long)h->count, name, h->sum, name, (unsigned long long)h->count);
}

char *metrics_render(const struct config *cfg, const struct queue *q)
{
	struct out o = {0};
	emit_counter_map(&o, "zonemta_messages_accepted_total", "Messages accepted (queued).",
			 "counter", accepted, "interface");
	emit_counter_map(&o, "zonemta_messages_rejected_total",
			 "Messages refused or failed at intake.", "counter", rejected, "interface");

	emit(&o, "# HELP zonemta_delivery_attempts_total Delivery outcomes per zone.\n"
		 "# TYPE zonemta_delivery_attempts_total counter\n");
	size_t pos = 0;
	const char *key;
	void *v;
	while (attempts != NULL && strmap_next(attempts, &pos, &key, &v)) {
		const char *tab = strchr(key, '\t');
		char *zone = xstrndup(key, (size_t)(tab - key));
		emit(&o, "zonemta_delivery_attempts_total{zone=");
		emit_label_value(&o, zone);
		emit(&o, ",result=");
		emit_label_value(&o, tab + 1);
		emit(&o, "} %lld\n", (long long)*(int64_t *)v);
		free(zone);
	}

	emit(&o, "# HELP zonemta_queue_size Deliveries waiting, per zone and state.\n"
		 "# TYPE zonemta_queue_size gauge\n");
	for (size_t i = 0; i < cfg->n_zones; i++) {
		const struct strmap *domains;
		const struct queue_counts *c = queue_zone_counts(q, cfg->zones[i].name, &domains);
		for (int state = 0; state < 2; state++) {
			emit(&o, "zonemta_queue_size{zone=");
			emit_label_value(&o, cfg->zones[i].name);
			emit(&o, ",state=\"%s\"} %llu\n", state ? "deferred" : "queued",
			     (unsigned long long)(c ? (state ? c->deferred : c->queued) : 0));
		}
	}
	emit(&o, "# HELP zonemta_outbound_connections Open delivery connections per zone.\n"
		 "# TYPE zonemta_outbound_connections gauge\n");
	for (size_t i = 0; i < cfg->n_zones; i++) {
		int64_t *n = connections ? strmap_get(connections, cfg->zones[i].name) : NULL;
		emit(&o, "zonemta_outbound_connections{zone=");
		emit_label_value(&o, cfg->zones[i].name);
		emit(&o, "} %lld\n", (long long)(n ? *n : 0));
	}
	struct queue_memory_stats ms;
	queue_memory_stats(q, &ms);
	emit(&o, "# HELP zonemta_queue_memory_bytes Just-queued messages kept in memory for their "
		 "first delivery.\n"
		 "# TYPE zonemta_queue_memory_bytes gauge\n"
		 "zonemta_queue_memory_bytes %zu\n"
		 "# HELP zonemta_queue_memory_messages Messages kept in memory for their first "
		 "delivery.\n"
		 "# TYPE zonemta_queue_memory_messages gauge\n"
		 "zonemta_queue_memory_messages %zu\n",
	     ms.hot_bytes, ms.hot_messages);
	emit(&o, "# HELP zonemta_delivery_loads_total Messages read for delivery, by where from.\n"
		 "# TYPE zonemta_delivery_loads_total counter\n"
		 "zonemta_delivery_loads_total{source=\"memory\"} %llu\n"
		 "zonemta_delivery_loads_total{source=\"store\"} %llu\n",
	     (unsigned long long)ms.loads_hot, (unsigned long long)ms.loads_store);
	emit_histogram(&o, "zonemta_store_commit_seconds",
		       "Time from a message's commit request to its durable write.", &commit_hist);
	emit_histogram(&o, "zonemta_dns_lookup_seconds", "Time to resolve a destination domain.",
		       &dns_hist);
	return o.buf;
}
