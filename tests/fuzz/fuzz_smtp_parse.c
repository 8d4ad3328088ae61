/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * libFuzzer harness for src/smtp/smtp_parse.c.  The first byte chooses the
 * mode (low 2 bits) and a split seed (the rest); the remaining bytes are the
 * input:
 *   0  smtp_command_parse on a NUL-terminated copy capped at SMTP_LINE_MAX
 *   1  smtp_mail_parse, then the accepted path parsed again as a round trip
 *   2  smtp_rcpt_parse (the seed's low bit is the transaction's SMTPUTF8)
 *   3  the DATA stream, fed whole, byte by byte and cut at two seeded points,
 *      each compared with a restatement of the rules on the whole buffer
 * Every invariant is checked with abort(), so that it holds in release builds
 * too (replay.c runs the seed corpus in ctest).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "smtp/smtp_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

/* A reply line: "5xy 5.y.z text", no CR or LF. */
static void check_reply(const char *r)
{
	CHECK(r != NULL);
	size_t n = strlen(r);
	CHECK(n > 10 && n < 128);
	CHECK(r[0] == '5' && r[3] == ' ' && r[4] == '5' && r[5] == '.');
	CHECK(strchr(r, '\r') == NULL && strchr(r, '\n') == NULL);
}

static bool ascii(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s >= 0x80)
			return false;
	return true;
}

static void check_path(const struct smtp_path *p, bool null_ok)
{
	CHECK(memchr(p->addr, '\0', sizeof(p->addr)) != NULL);
	size_t n = strlen(p->addr);
	CHECK(n <= SMTP_PATH_MAX);
	if (n == 0) {
		CHECK(null_ok);
		CHECK(p->at == 0 && !p->utf8);
		return;
	}
	CHECK(p->at > 0 && p->at < n - 1 && p->addr[p->at] == '@');
	CHECK(p->at <= SMTP_LOCAL_MAX);
	CHECK(n - p->at - 1 <= SMTP_DOMAIN_MAX);
	CHECK(p->utf8 == !ascii(p->addr));
	for (size_t i = 0; i < n; i++)
		CHECK((unsigned char)p->addr[i] > ' ' || (p->addr[i] == ' ' && p->addr[0] == '"'));
}

static void fuzz_command(const char *in, size_t n)
{
	static char line[SMTP_LINE_MAX + 1];
	if (n > SMTP_LINE_MAX)
		n = SMTP_LINE_MAX;
	memcpy(line, in, n);
	line[n] = '\0';
	struct smtp_command cmd;
	const char *reply = NULL;
	if (smtp_command_parse(line, n, &cmd, &reply) != 0) {
		check_reply(reply);
		return;
	}
	CHECK(cmd.name != NULL && cmd.arg != NULL);
	CHECK((cmd.verb == SMTP_VERB_UNKNOWN) == (cmd.name[0] == '\0'));
	size_t len = strlen(line);
	CHECK(len > 0 && len <= n && line[len - 1] != ' ');
	CHECK(cmd.arg >= line && cmd.arg <= line + len);
	CHECK(cmd.arg == line + len || cmd.arg[0] != ' ');
	for (size_t i = 0; i < len; i++)
		CHECK((unsigned char)line[i] >= 0x20 && line[i] != 0x7f);
}

static void fuzz_mail(const char *in, size_t n)
{
	static char arg[SMTP_LINE_MAX + 1];
	if (n > SMTP_LINE_MAX)
		n = SMTP_LINE_MAX;
	memcpy(arg, in, n);
	arg[n] = '\0';
	struct smtp_mail m;
	const char *reply = NULL;
	if (smtp_mail_parse(arg, &m, &reply) != 0) {
		check_reply(reply);
		return;
	}
	CHECK(reply == NULL);
	check_path(&m.path, true);
	CHECK(m.size >= -1);
	CHECK(!m.path.utf8 || m.smtputf8);
	CHECK(strlen(m.envid) <= SMTP_ENVID_MAX && smtp_xtext_valid(m.envid, strlen(m.envid)));
	/* The stored path, given back, is accepted and unchanged. */
	static char again[SMTP_PATH_MAX + 32];
	snprintf(again, sizeof(again), "FROM:<%s>%s", m.path.addr, m.smtputf8 ? " SMTPUTF8" : "");
	struct smtp_mail m2;
	CHECK(smtp_mail_parse(again, &m2, &reply) == 0);
	CHECK(strcmp(m2.path.addr, m.path.addr) == 0 && m2.path.at == m.path.at);
	CHECK(m2.path.utf8 == m.path.utf8);
	/* ...and as a recipient too, unless it is the null path. */
	if (m.path.addr[0] != '\0') {
		snprintf(again, sizeof(again), "TO:<%s>", m.path.addr);
		struct smtp_path r;
		struct smtp_rcpt_dsn dsn;
		CHECK(smtp_rcpt_parse(again, m.smtputf8, &r, &dsn, &reply) == 0);
		CHECK(dsn.notify == 0 && dsn.orcpt[0] == '\0');
		CHECK(strcmp(r.addr, m.path.addr) == 0 && r.at == m.path.at);
	}
}

static void fuzz_rcpt(const char *in, size_t n, bool smtputf8)
{
	static char arg[SMTP_LINE_MAX + 1];
	if (n > SMTP_LINE_MAX)
		n = SMTP_LINE_MAX;
	memcpy(arg, in, n);
	arg[n] = '\0';
	struct smtp_path r;
	struct smtp_rcpt_dsn dsn;
	const char *reply = NULL;
	if (smtp_rcpt_parse(arg, smtputf8, &r, &dsn, &reply) != 0) {
		check_reply(reply);
		return;
	}
	CHECK(reply == NULL);
	check_path(&r, false);
	CHECK(!r.utf8 || smtputf8);
	/* NOTIFY: NEVER alone or some of the others; ORCPT: addr-type;xtext */
	CHECK(dsn.notify == SMTP_NOTIFY_NEVER || (dsn.notify & SMTP_NOTIFY_NEVER) == 0);
	size_t olen = strlen(dsn.orcpt);
	CHECK(olen <= SMTP_ORCPT_MAX);
	const char *semi = strchr(dsn.orcpt, ';');
	CHECK(olen == 0 || (semi != NULL && semi > dsn.orcpt && semi[1] != '\0'));
	if (olen > 0 && strncasecmp(dsn.orcpt, "utf-8;", 6) != 0)
		CHECK(smtp_xtext_valid(semi + 1, olen - (size_t)(semi + 1 - dsn.orcpt)));
}

struct result {
	char *out;
	size_t outlen, consumed;
	enum smtp_data_status status;
	bool bad;
};

/* Feeds in[0..n) in pieces cut at cuts[] (increasing), each piece and its
 * output buffer allocated at their exact size. */
static void feed(const char *in, size_t n, const size_t *cuts, size_t ncuts, struct result *r)
{
	struct smtp_data d;
	smtp_data_init(&d);
	r->outlen = r->consumed = 0;
	r->status = SMTP_DATA_MORE;
	size_t start = 0;
	for (size_t k = 0; k <= ncuts; k++) {
		size_t stop = k < ncuts ? cuts[k] : n;
		CHECK(stop >= start && stop <= n);
		size_t len = stop - start;
		char *piece = malloc(len ? len : 1), *out = malloc(len ? len : 1);
		CHECK(piece != NULL && out != NULL);
		memcpy(piece, in + start, len);
		size_t outlen = SIZE_MAX, consumed = SIZE_MAX;
		r->status = smtp_data_feed(&d, piece, len, out, &outlen, &consumed);
		CHECK(r->status == SMTP_DATA_MORE || r->status == SMTP_DATA_END);
		CHECK(consumed <= len && outlen <= consumed);
		CHECK(r->status == SMTP_DATA_END || consumed == len);
		memcpy(r->out + r->outlen, out, outlen);
		r->outlen += outlen;
		r->consumed += consumed;
		free(piece);
		free(out);
		if (r->status == SMTP_DATA_END)
			break;
		start = stop;
	}
	r->bad = d.bad_newline;
	CHECK(r->outlen <= r->consumed && r->consumed <= n);
	/* once ended, nothing more is read */
	if (r->status == SMTP_DATA_END) {
		char out[4];
		size_t outlen, consumed;
		CHECK(smtp_data_feed(&d, ".\r\n", 3, out, &outlen, &consumed) == SMTP_DATA_END);
		CHECK(outlen == 0 && consumed == 0);
	}
}

/* The DATA rules restated on the whole buffer (same as in the unit tests). */
static void reference(const char *in, size_t n, struct result *r)
{
#define LINE_START(i) ((i) == 0 || ((i) >= 2 && in[(i)-2] == '\r' && in[(i)-1] == '\n'))
	size_t end = n;
	r->status = SMTP_DATA_MORE;
	r->consumed = n;
	for (size_t i = 0; i + 3 <= n; i++) {
		if (LINE_START(i) && memcmp(in + i, ".\r\n", 3) == 0) {
			end = i;
			r->status = SMTP_DATA_END;
			r->consumed = i + 3;
			break;
		}
	}
	r->outlen = 0;
	r->bad = false;
	for (size_t i = 0; i < end; i++) {
		char c = in[i];
		if (c == '.' && LINE_START(i))
			continue;
		if (c == '\n' && (i == 0 || in[i - 1] != '\r')) {
			r->bad = true;
			continue;
		}
		if (c == '\r') {
			bool after_dot = i >= 1 && in[i - 1] == '.' && LINE_START(i - 1);
			if (!r->bad && !after_dot)
				r->out[r->outlen++] = c;
			if (i + 1 < n && in[i + 1] != '\n')
				r->bad = true;
			continue;
		}
		if (!r->bad)
			r->out[r->outlen++] = c;
	}
#undef LINE_START
}

static void same(const struct result *a, const struct result *b)
{
	CHECK(a->status == b->status);
	CHECK(a->bad == b->bad);
	CHECK(a->consumed == b->consumed);
	CHECK(a->outlen == b->outlen);
	CHECK(memcmp(a->out, b->out, a->outlen) == 0);
}

static void fuzz_data(const char *in, size_t n, unsigned seed)
{
	struct result want, got;
	want.out = malloc(n + 1);
	got.out = malloc(n + 1);
	CHECK(want.out != NULL && got.out != NULL);
	reference(in, n, &want);
	CHECK(want.outlen <= n);

	feed(in, n, NULL, 0, &got);
	same(&want, &got);

	/* two cuts chosen by the seed (possibly equal: an empty middle piece) */
	size_t cuts[2] = {n ? seed % (n + 1) : 0, n ? (seed * 31 + 7) % (n + 1) : 0};
	if (cuts[0] > cuts[1]) {
		size_t t = cuts[0];
		cuts[0] = cuts[1];
		cuts[1] = t;
	}
	feed(in, n, cuts, 2, &got);
	same(&want, &got);

	/* byte by byte (bounded, to keep executions fast) */
	if (n <= 4096) {
		size_t *each = malloc((n ? n : 1) * sizeof(*each));
		CHECK(each != NULL);
		for (size_t i = 0; i + 1 < n; i++)
			each[i] = i + 1;
		feed(in, n, each, n ? n - 1 : 0, &got);
		same(&want, &got);
		free(each);
	}
	free(want.out);
	free(got.out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	unsigned mode = data[0] & 3, seed = data[0] >> 2;
	const char *in = (const char *)data + 1;
	size_t n = size - 1;
	switch (mode) {
	case 0:
		fuzz_command(in, n);
		break;
	case 1:
		fuzz_mail(in, n);
		break;
	case 2:
		fuzz_rcpt(in, n, seed & 1);
		break;
	default:
		fuzz_data(in, n, seed);
		break;
	}
	return 0;
}
