/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * The PROXY protocol header (HAProxy's proxy-protocol.txt), versions 1
 * (text) and 2 (binary), as a load balancer puts it before the client's
 * first byte.  A pure parser: bytes in, the client's address out.
 */
#ifndef ZMTA_PROXY_H
#define ZMTA_PROXY_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>

/* The longest header taken: v1's 107 bytes, or v2's 16 plus this much. */
#define PROXY_V2_MAX_PAYLOAD 1024
#define PROXY_HEADER_MAX (16 + PROXY_V2_MAX_PAYLOAD)

enum proxy_status {
	PROXY_NEED_MORE, /* a valid beginning: read more */
	PROXY_DONE,      /* a whole header: see proxy_header */
	PROXY_INVALID,   /* not a PROXY header, or a broken one */
};

struct proxy_header {
	int version; /* 1 or 2 */
	/* LOCAL (v2) or UNKNOWN (v1): the proxy's own connection (a health
	 * check); the socket's address stands. */
	bool local;
	char client[INET6_ADDRSTRLEN];
	int client_port;
	size_t length; /* bytes of the header */
};

/* Parses the start of a connection's bytes; on PROXY_INVALID *why says
 * what is wrong. */
enum proxy_status proxy_parse(const unsigned char *buf, size_t len, struct proxy_header *out,
			      const char **why);

#endif
