/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * What the two halves of the composer share: compose.c (fields, addresses,
 * headers, the envelope, output) and compose_body.c (contents and the MIME
 * tree MailComposer builds).  Not for other modules.
 */
#ifndef ZMTA_COMPOSE_INTERNAL_H
#define ZMTA_COMPOSE_INTERNAL_H

#include <gmime/gmime.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "msg/compose.h"

/* The state of one compose_message() call. */
struct compose {
	struct compose_error *err;
	const json_t *msg; /* as given (the fields are a copy with header stand-ins) */
	GMimeParserOptions *popts;
	unsigned warnings;    /* parser warnings since the last reset */
	char warn_item[100];  /* the text the first of them was about */
	size_t content_bytes; /* body and attachment input, to size the output */
	bool priority_set;
	const char *text_cte; /* mail.encoding for text parts: base64 or quoted-printable */
	char text_encoding;   /* textEncoding: 'Q' or 'B' for text that needs encoding */
};

/* A field name for compose_error.field, cut to fit. */
void compose_fieldf(char *dst, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Fills the error (field and message); returns -1. */
int compose_fail(struct compose *c, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A member that is present and not null, or NULL. */
json_t *compose_member(const json_t *o, const char *key);
/* A string for a header: no NUL inside; -1 (with the error) otherwise. */
int compose_header_string(struct compose *c, const json_t *v, const char *field, const char **out);
bool compose_has_line_break(const char *s);
/* A message id (or cid) as <id>; the length without brackets, or -1. */
int compose_make_id(struct compose *c, const char *s, const char *end, const char *field,
		    char **out);
bool compose_header_name_ok(const char *name);
/* One custom header (a string, number, boolean or {value, prepared}) on `m`. */
int compose_add_custom_header(struct compose *c, GMimeObject *m, const char *name, const json_t *v,
			      const char *field);

/* compose_body.c: the body MailComposer builds from the message's fields. */
GMimeObject *compose_make_body(struct compose *c, const json_t *msg);

#endif
