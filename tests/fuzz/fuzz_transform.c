/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * Fuzz harness for the downgrade and folding transform (src/msg/transform.c).
 * The input is a header block, then the body from its first empty line.
 * Checks: the output does not depend on how the body is split; folding
 * alone gives what a one-octet-at-a-time reference gives, and no line
 * longer than 998 octets; with the downgrade, a body that was all 7-bit
 * stays so.  Any
 * disagreement aborts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/xmalloc.h"
#include "msg/header.h"
#include "msg/transform.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			abort();                                                                   \
	} while (0)

struct buf {
	char *p;
	size_t len, cap;
};

static void collect(void *arg, const char *d, size_t n)
{
	struct buf *b = arg;
	b->p = xreallocarray_grow(b->p, &b->cap, b->len + n + 1, 1);
	memcpy(b->p + b->len, d, n);
	b->len += n;
}

static struct buf run(unsigned flags, const char *h, size_t hlen, const char *body, size_t blen,
		      size_t step, struct buf *header)
{
	struct buf out = {0};
	char *nh;
	size_t nhlen;
	struct transform *t = transform_new(flags, h, hlen, &nh, &nhlen, collect, &out);
	for (size_t i = 0; i < blen; i += step)
		transform_feed(t, body + i, i + step <= blen ? step : blen - i);
	transform_end(t);
	transform_free(t);
	header->p = nh;
	header->len = nhlen;
	return out;
}

/* Folding as RFC 5322 2.1.1 and Postfix put it, one octet at a time: before
 * an octet that would make a line longer than 998 (CR and LF excepted),
 * CRLF SP. */
static struct buf fold_reference(const char *p, size_t n)
{
	struct buf b = {0};
	size_t col = 0;
	for (size_t i = 0; i < n; i++) {
		if (col >= TRANSFORM_LINE_MAX && p[i] != '\r' && p[i] != '\n') {
			collect(&b, "\r\n ", 3);
			col = 1;
		}
		collect(&b, p + i, 1);
		col = p[i] == '\n' ? 0 : col + 1;
	}
	return b;
}

static size_t longest_line(const char *p, size_t n)
{
	size_t best = 0, cur = 0;
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '\n') {
			best = cur > best ? cur : best;
			cur = 0;
		} else if (p[i] != '\r') {
			cur++;
		}
	}
	return cur > best ? cur : best;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	unsigned flags = (data[0] & 3u) ? (data[0] & 3u) : TRANSFORM_FOLD;
	const char *in = (const char *)data + 1;
	size_t n = size - 1;
	size_t scan = 0, hlen = 0;
	header_block_end(in, n, true, &scan, &hlen);
	const char *body = in + hlen;
	size_t blen = n - hlen;
	if (blen == 0 || (body[0] != '\r' && body[0] != '\n'))
		return 0; /* the store always keeps the empty line first */

	struct buf h1, h2;
	struct buf whole = run(flags, in, hlen, body, blen, blen, &h1);
	struct buf bytes = run(flags, in, hlen, body, blen, 1 + (size % 7), &h2);
	CHECK(whole.len == bytes.len && memcmp(whole.p, bytes.p, whole.len) == 0);
	CHECK(h1.len == h2.len && memcmp(h1.p, h2.p, h1.len) == 0);
	if (flags & TRANSFORM_FOLD) {
		/* A bare CR at the limit may leave one octet more (see fold_write). */
		CHECK(longest_line(whole.p ? whole.p : "", whole.len) <= TRANSFORM_LINE_MAX + 1);
		if (!(flags & TRANSFORM_DOWNGRADE)) {
			struct buf want = fold_reference(body, blen);
			CHECK(want.len == whole.len && memcmp(want.p, whole.p, want.len) == 0);
			free(want.p);
		}
	}
	if (flags & TRANSFORM_DOWNGRADE) {
		bool input_8bit = false;
		for (size_t i = 0; i < blen; i++)
			input_8bit = input_8bit || (unsigned char)body[i] >= 0x80;
		bool output_8bit = false;
		for (size_t i = 0; i < whole.len; i++)
			output_8bit = output_8bit || (unsigned char)whole.p[i] >= 0x80;
		CHECK(input_8bit || !output_8bit);
	}
	free(whole.p);
	free(bytes.p);
	free(h1.p);
	free(h2.p);
	return 0;
}
