/* SPDX-License-Identifier: EUPL-1.2 */
/* The PROXY protocol header; see proxy.h. */
#include "net/proxy.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#define V1_MAX 107 /* "PROXY TCP6 " + two full IPv6 addresses + ports + CRLF */

static const unsigned char v2_signature[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
					       0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

/* A decimal port, 0 to 65535, without a leading zero; -1 if not. */
static int port_parse(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 5 || strspn(s, "0123456789") != n || (n > 1 && s[0] == '0'))
		return -1;
	int v = 0;
	for (size_t i = 0; i < n; i++)
		v = v * 10 + (s[i] - '0');
	return v <= 65535 ? v : -1;
}

/* "PROXY TCP4 192.0.2.1 198.51.100.1 56324 25\r\n" */
static enum proxy_status parse_v1(const unsigned char *buf, size_t len, struct proxy_header *out,
				  const char **why)
{
	const unsigned char *lf = memchr(buf, '\n', len < V1_MAX ? len : V1_MAX);
	if (lf == NULL) {
		if (len < V1_MAX)
			return PROXY_NEED_MORE;
		*why = "v1 header longer than 107 bytes";
		return PROXY_INVALID;
	}
	size_t n = (size_t)(lf - buf);
	if (n == 0 || buf[n - 1] != '\r') {
		*why = "v1 header not ended by CRLF";
		return PROXY_INVALID;
	}
	char line[V1_MAX + 1];
	memcpy(line, buf, n - 1);
	line[n - 1] = '\0';
	if (memchr(line, '\0', n - 1) != NULL) {
		*why = "NUL in a v1 header";
		return PROXY_INVALID;
	}
	out->version = 1;
	out->length = n + 1;
	if (strncmp(line, "PROXY UNKNOWN", 13) == 0 && (line[13] == '\0' || line[13] == ' ')) {
		out->local = true;
		return PROXY_DONE;
	}
	/* Exactly six fields, single spaces. */
	char *field[6];
	size_t count = 0;
	char *p = line;
	while (count < 6) {
		field[count++] = p;
		char *sp = strchr(p, ' ');
		if (sp == NULL)
			break;
		*sp = '\0';
		p = sp + 1;
	}
	if (count != 6 || strchr(field[5], ' ') != NULL || strcmp(field[0], "PROXY") != 0) {
		*why = "v1 header is not PROXY <proto> <src> <dst> <sport> <dport>";
		return PROXY_INVALID;
	}
	int family = strcmp(field[1], "TCP4") == 0   ? AF_INET
		     : strcmp(field[1], "TCP6") == 0 ? AF_INET6
						     : 0;
	unsigned char addr[16];
	if (family == 0) {
		*why = "v1 protocol is not TCP4, TCP6 or UNKNOWN";
		return PROXY_INVALID;
	}
	if (inet_pton(family, field[2], addr) != 1 || inet_pton(family, field[3], addr) != 1) {
		*why = "v1 address does not match its protocol";
		return PROXY_INVALID;
	}
	int sport = port_parse(field[4]), dport = port_parse(field[5]);
	if (sport < 0 || dport < 0) {
		*why = "v1 port is not a number from 0 to 65535";
		return PROXY_INVALID;
	}
	snprintf(out->client, sizeof(out->client), "%s", field[2]);
	out->client_port = sport;
	return PROXY_DONE;
}

static enum proxy_status parse_v2(const unsigned char *buf, size_t len, struct proxy_header *out,
				  const char **why)
{
	if (len < 16)
		return PROXY_NEED_MORE;
	unsigned version = buf[12] >> 4, command = buf[12] & 0x0f;
	unsigned family = buf[13];
	size_t payload = ((size_t)buf[14] << 8) | buf[15];
	if (version != 2) {
		*why = "v2 header with a version other than 2";
		return PROXY_INVALID;
	}
	if (command > 1) {
		*why = "v2 command is neither LOCAL nor PROXY";
		return PROXY_INVALID;
	}
	if (payload > PROXY_V2_MAX_PAYLOAD) {
		*why = "v2 header longer than we take";
		return PROXY_INVALID;
	}
	if (len < 16 + payload)
		return PROXY_NEED_MORE;
	out->version = 2;
	out->length = 16 + payload;
	const unsigned char *a = buf + 16;
	if (command == 0 || family == 0x00) {
		/* LOCAL, or PROXY with UNSPEC: the socket's address stands. */
		out->local = true;
		return PROXY_DONE;
	}
	if (family == 0x11) { /* TCP over IPv4 */
		if (payload < 12) {
			*why = "v2 TCP4 header too short for its addresses";
			return PROXY_INVALID;
		}
		inet_ntop(AF_INET, a, out->client, sizeof(out->client));
		out->client_port = (a[8] << 8) | a[9];
		return PROXY_DONE;
	}
	if (family == 0x21) { /* TCP over IPv6 */
		if (payload < 36) {
			*why = "v2 TCP6 header too short for its addresses";
			return PROXY_INVALID;
		}
		inet_ntop(AF_INET6, a, out->client, sizeof(out->client));
		out->client_port = (a[32] << 8) | a[33];
		return PROXY_DONE;
	}
	*why = "v2 header for a transport other than TCP";
	return PROXY_INVALID;
}

enum proxy_status proxy_parse(const unsigned char *buf, size_t len, struct proxy_header *out,
			      const char **why)
{
	memset(out, 0, sizeof(*out));
	*why = "";
	static const char v1_start[] = "PROXY ";
	size_t n = len < 6 ? len : 6;
	if (memcmp(buf, v1_start, n) == 0)
		return len < 6 ? PROXY_NEED_MORE : parse_v1(buf, len, out, why);
	n = len < 12 ? len : 12;
	if (memcmp(buf, v2_signature, n) == 0)
		return len < 12 ? PROXY_NEED_MORE : parse_v2(buf, len, out, why);
	*why = "no PROXY header";
	return PROXY_INVALID;
}
