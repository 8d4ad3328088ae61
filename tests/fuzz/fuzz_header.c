/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * Fuzz harness for the header block module (src/msg/header.c): the block end
 * found on the whole input and on growing prefixes agree; the block parses
 * into fields that serialize back to exactly its bytes; find, remove and
 * insert keep the list consistent; a parsed date formats and parses back to
 * the same time.  Any disagreement aborts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/xmalloc.h"
#include "msg/header.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			abort();                                                                   \
	} while (0)

/* Feeds the input in steps of `step` bytes with one *scan. */
static bool feed(const char *buf, size_t len, bool final, size_t step, size_t *end)
{
	size_t scan = 0, n = 0;
	for (;;) {
		n = len - n > step ? n + step : len;
		if (header_block_end(buf, n, final && n == len, &scan, end))
			return true;
		if (n == len)
			return false;
	}
}

static void check_serialize(const struct header_list *list, const char *want, size_t len)
{
	size_t n = header_list_raw_size(list);
	CHECK(n == len);
	char *buf = xmalloc(n + 1);
	header_list_serialize(list, buf);
	CHECK(memcmp(buf, want, n) == 0);
	free(buf);
}

static void check_list(const struct header_list *list)
{
	for (size_t i = 0; i < list->count; i++) {
		const struct header *h = &list->items[i];
		CHECK(h->raw != NULL && h->key != NULL && h->value != NULL && h->raw_len > 0);
		for (const char *k = h->key; *k; k++)
			CHECK(!(*k >= 'A' && *k <= 'Z') && *k != ':');
		size_t v = strlen(h->value);
		CHECK(v <= h->raw_len);
		if (v > 0)
			CHECK(h->value[0] != ' ' && h->value[0] != '\t');
		/* A NUL byte in the field ends the C string early. */
		if (v > 0 && memchr(h->raw, '\0', h->raw_len) == NULL)
			CHECK(h->value[v - 1] != ' ' && h->value[v - 1] != '\t');
		CHECK(strchr(h->value, '\n') == NULL);
	}
}

static void check_block(const char *buf, size_t len, bool final)
{
	static const size_t steps[] = {1, 3, 16, 256};
	size_t end = SIZE_MAX;
	bool found = feed(buf, len, final, SIZE_MAX, &end);
	CHECK(!final || found);
	CHECK(!found || end <= len);
	/* Byte by byte only on small inputs, to keep executions quick. */
	for (size_t i = len <= 4096 ? 0 : 1; i < sizeof(steps) / sizeof(steps[0]); i++) {
		size_t e = SIZE_MAX;
		bool f = feed(buf, len, final, steps[i], &e);
		CHECK(f == found);
		CHECK(!f || e == end);
	}
	if (!found)
		return;

	/* The line after the block is not a field (nor a continuation). */
	if (end < len) {
		unsigned char c = (unsigned char)buf[end];
		CHECK(end == 0 || buf[end - 1] == '\n');
		CHECK(!(end > 0 && (c == ' ' || c == '\t')));
	}

	struct header_list list = {0};
	header_list_parse(&list, buf, end);
	check_list(&list);
	check_serialize(&list, buf, end);
	/* A block from header_block_end starts with a field name. */
	for (size_t i = 0; i < list.count; i++)
		CHECK(list.items[i].key[0] != '\0');

	if (list.count > 0) {
		const char *key = list.items[list.count / 2].key;
		char *k = xstrdup(key);
		size_t same = 0;
		for (size_t i = 0; i < list.count; i++)
			same += strcmp(list.items[i].key, k) == 0;
		int first = header_list_find(&list, k);
		CHECK(first >= 0 && (size_t)first <= list.count / 2);
		size_t before = list.count, size = header_list_raw_size(&list);
		CHECK(header_list_remove(&list, k) == same);
		CHECK(list.count == before - same);
		CHECK(header_list_find(&list, k) == -1);
		CHECK(header_list_raw_size(&list) < size);
		free(k);
	}
	size_t size = header_list_raw_size(&list);
	header_list_insert(&list, 0, "X-Top", "1");
	CHECK(strcmp(list.items[0].key, "x-top") == 0 && strcmp(list.items[0].value, "1") == 0);
	size_t mid = (list.count + 1) / 2; /* after the top one */
	header_list_insert(&list, mid, "X-Middle", "a\r\n\tb");
	CHECK(strcmp(list.items[mid].key, "x-middle") == 0);
	CHECK(strcmp(list.items[mid].value, "a\tb") == 0);
	header_list_insert(&list, list.count, "X-Bottom", "");
	const struct header *last = &list.items[list.count - 1];
	CHECK(strcmp(last->key, "x-bottom") == 0 && last->value[0] == '\0');
	size_t total = header_list_raw_size(&list);
	CHECK(total == size + 10 + 17 + 12);
	char *out = xmalloc(total);
	header_list_serialize(&list, out);
	CHECK(memcmp(out, "X-Top: 1\r\n", 10) == 0);
	CHECK(memcmp(out + total - 12, "X-Bottom: \r\n", 12) == 0);
	free(out);
	check_list(&list);
	header_list_clear(&list);
	CHECK(list.count == 0 && list.items == NULL);
}

static void check_date(const uint8_t *data, size_t size)
{
	char *text = xmalloc(size + 1);
	memcpy(text, data, size);
	text[size] = '\0';
	time_t t, back;
	if (header_date_parse(text, &t) == 0) {
		char buf[64];
		header_date_format(t, buf, sizeof(buf));
		CHECK(header_date_parse(buf, &back) == 0);
		CHECK(back == t);
	}
	free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* A copy of exactly `size` bytes, not NUL-terminated: an overread shows. */
	char *buf = xmalloc(size);
	memcpy(buf, data, size);
	check_block(buf, size, false);
	check_block(buf, size, true);
	free(buf);
	check_date(data, size);
	return 0;
}
