/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * Writes one delivery status notification (src/msg/dsn.c) to stdout from
 * a JSON description on stdin, for tests/e2e/test_dsn.py to parse with
 * independent parsers:
 *
 *   {"kind": "failed"|"delayed"|"relayed", "reporting_mta", "from_name",
 *    "from_address", "to", "envid"?, "message_id", "original_message_id"?,
 *    "original_subject"?, "arrival_ms", "now_ms", "header_block",
 *    "body"? (RET=FULL), "rcpts": [{"recipient", "orcpt"?, "status"?,
 *    "remote_mta"?, "diagnostic"?, "last_attempt_ms"?,
 *    "will_retry_until_ms"?}]}
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/xmalloc.h"
#include "msg/dsn.h"

static const char *str(json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

int main(void)
{
	json_error_t err;
	json_t *in = json_loadf(stdin, 0, &err);
	if (in == NULL) {
		fprintf(stderr, "dsn-driver: stdin: %s\n", err.text);
		return 2;
	}
	const char *kind = str(in, "kind");
	json_t *rcpts = json_object_get(in, "rcpts");
	size_t n = json_array_size(rcpts);
	struct dsn_recipient *r = xcalloc(n ? n : 1, sizeof(*r));
	for (size_t i = 0; i < n; i++) {
		json_t *e = json_array_get(rcpts, i);
		r[i] = (struct dsn_recipient){
		    .recipient = str(e, "recipient"),
		    .orcpt = str(e, "orcpt"),
		    .status = str(e, "status"),
		    .remote_mta = str(e, "remote_mta"),
		    .diagnostic = str(e, "diagnostic"),
		    .last_attempt_ms = json_integer_value(json_object_get(e, "last_attempt_ms")),
		    .will_retry_until_ms = json_integer_value(
			json_object_get(e, "will_retry_until_ms")),
		};
	}
	const char *header = str(in, "header_block");
	const char *body = str(in, "body");
	struct dsn_report rep = {
	    .kind = strcmp(kind, "delayed") == 0   ? DSN_DELAYED
		    : strcmp(kind, "relayed") == 0 ? DSN_RELAYED
						   : DSN_FAILED,
	    .reporting_mta = str(in, "reporting_mta"),
	    .from_name = str(in, "from_name"),
	    .from_address = str(in, "from_address"),
	    .to = str(in, "to"),
	    .envid = str(in, "envid"),
	    .message_id = str(in, "message_id"),
	    .original_message_id = str(in, "original_message_id"),
	    .original_subject = str(in, "original_subject"),
	    .arrival_ms = json_integer_value(json_object_get(in, "arrival_ms")),
	    .now_ms = json_integer_value(json_object_get(in, "now_ms")),
	    .rcpts = r,
	    .nrcpts = n,
	    .header_block = header,
	    .header_len = strlen(header),
	    .body = body,
	    .body_len = body ? strlen(body) : 0,
	};
	size_t len;
	char *out = dsn_compose(&rep, &len);
	fwrite(out, 1, len, stdout);
	free(out);
	free(r);
	json_decref(in);
	return 0;
}
