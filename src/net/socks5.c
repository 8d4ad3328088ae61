/* SPDX-License-Identifier: EUPL-1.2 */
/* The SOCKS5 client handshake (RFC 1928, RFC 1929); see socks5.h. */
#include "net/socks5.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

enum {
	STEP_METHOD,  /* method selection sent: VER METHOD next */
	STEP_AUTH,    /* username/password sent: VER STATUS next */
	STEP_CONNECT, /* CONNECT sent: the reply next */
	STEP_DONE,
};

#define METHOD_NONE 0x00
#define METHOD_USERPASS 0x02
#define METHOD_REFUSED 0xFF

size_t socks5_start(struct socks5 *s, uint8_t *out)
{
	s->step = STEP_METHOD;
	s->rep = -1;
	s->reply[0] = '\0';
	s->permanent = false;
	out[0] = 5;
	if (s->user != NULL) {
		out[1] = 2;
		out[2] = METHOD_NONE;
		out[3] = METHOD_USERPASS;
		return 4;
	}
	out[1] = 1;
	out[2] = METHOD_NONE;
	return 3;
}

const char *socks5_rep_text(int rep)
{
	switch (rep) {
	case 0x01:
		return "general SOCKS server failure";
	case 0x02:
		return "connection not allowed by ruleset";
	case 0x03:
		return "network unreachable";
	case 0x04:
		return "host unreachable";
	case 0x05:
		return "connection refused";
	case 0x06:
		return "TTL expired";
	case 0x07:
		return "command not supported";
	case 0x08:
		return "address type not supported";
	case 0xF0:
		return "onion service descriptor can not be found";
	case 0xF1:
		return "onion service descriptor is invalid";
	case 0xF2:
		return "onion service introduction failed";
	case 0xF3:
		return "onion service rendezvous failed";
	case 0xF4:
		return "onion service needs client authorization";
	case 0xF5:
		return "onion service client authorization is wrong";
	case 0xF6:
		return "invalid onion service address";
	case 0xF7:
		return "onion service introduction timed out";
	}
	return "unknown reply code";
}

static enum socks5_status fail(struct socks5 *s, const char *code, const char *fmt, const char *a)
{
	char what[150];
	snprintf(what, sizeof(what), fmt, a);
	snprintf(s->reply, sizeof(s->reply), "%s SOCKS5 proxy: %s", code, what);
	s->permanent = code[0] == '5';
	return SOCKS5_ERROR;
}

/* Enhanced status (RFC 3463) of a CONNECT that failed with `rep`: only a
 * malformed onion address is for good; a refusal by the proxy's rules is
 * the operator's to fix, so it waits. */
static const char *rep_code(int rep)
{
	switch (rep) {
	case 0x04:
	case 0x05:
	case 0xF0:
	case 0xF1:
	case 0xF2:
	case 0xF3:
		return "451 4.4.1";
	case 0x06:
	case 0xF7:
		return "451 4.4.2";
	case 0xF4:
	case 0xF5:
		return "451 4.7.0";
	case 0xF6:
		return "550 5.1.2";
	}
	return "451 4.4.0";
}

/* The CONNECT request for s->host (ATYP 1, 4 or 3) and s->port. */
static enum socks5_status connect_request(struct socks5 *s, uint8_t *out, size_t *outlen)
{
	uint8_t *p = out;
	*p++ = 5;
	*p++ = 1; /* CONNECT */
	*p++ = 0;
	struct in_addr a4;
	struct in6_addr a6;
	size_t n = strlen(s->host);
	if (inet_pton(AF_INET, s->host, &a4) == 1) {
		*p++ = 1;
		memcpy(p, &a4, 4);
		p += 4;
	} else if (inet_pton(AF_INET6, s->host, &a6) == 1) {
		*p++ = 4;
		memcpy(p, &a6, 16);
		p += 16;
	} else {
		if (n == 0 || n > 255)
			return fail(s, "550 5.1.2", "host name '%.60s' cannot be sent", s->host);
		*p++ = 3;
		*p++ = (uint8_t)n;
		memcpy(p, s->host, n);
		p += n;
	}
	*p++ = (uint8_t)(s->port >> 8);
	*p++ = (uint8_t)(s->port & 0xff);
	*outlen = (size_t)(p - out);
	s->step = STEP_CONNECT;
	return SOCKS5_MORE;
}

/* RFC 1929: VER 1, ULEN, UNAME, PLEN, PASSWD. */
static enum socks5_status auth_request(struct socks5 *s, uint8_t *out, size_t *outlen)
{
	size_t ul = strlen(s->user), pl = strlen(s->password ? s->password : "");
	if (ul == 0 || ul > 255 || pl > 255)
		return fail(s, "451 4.7.0", "%s", "username or password longer than 255 bytes");
	uint8_t *p = out;
	*p++ = 1;
	*p++ = (uint8_t)ul;
	memcpy(p, s->user, ul);
	p += ul;
	*p++ = (uint8_t)pl;
	memcpy(p, s->password ? s->password : "", pl);
	p += pl;
	*outlen = (size_t)(p - out);
	s->step = STEP_AUTH;
	return SOCKS5_MORE;
}

enum socks5_status socks5_input(struct socks5 *s, const uint8_t *in, size_t len, size_t *used,
				uint8_t *out, size_t *outlen)
{
	*used = 0;
	*outlen = 0;
	switch (s->step) {
	case STEP_METHOD:
		if (len < 2)
			return SOCKS5_MORE;
		*used = 2;
		if (in[0] != 5)
			return fail(s, "451 4.4.0", "%s", "not a SOCKS5 server (bad version)");
		if (in[1] == METHOD_NONE)
			return connect_request(s, out, outlen);
		if (in[1] == METHOD_USERPASS && s->user != NULL)
			return auth_request(s, out, outlen);
		return fail(s, "451 4.7.0", "%s",
			    in[1] == METHOD_REFUSED ? "none of our authentication methods accepted"
						    : "chose a method we did not offer");
	case STEP_AUTH:
		if (len < 2)
			return SOCKS5_MORE;
		*used = 2;
		if (in[1] != 0)
			return fail(s, "451 4.7.0", "%s", "username/password refused");
		return connect_request(s, out, outlen);
	case STEP_CONNECT: {
		if (len < 2)
			return SOCKS5_MORE;
		if (in[0] != 5)
			return fail(s, "451 4.4.0", "%s", "not a SOCKS5 reply (bad version)");
		if (in[1] != 0) {
			s->rep = in[1];
			*used = 2;
			char what[120];
			snprintf(what, sizeof(what), "CONNECT to %.60s failed: %s", s->host,
				 socks5_rep_text(in[1]));
			return fail(s, rep_code(in[1]), "%s", what);
		}
		if (len < 5)
			return SOCKS5_MORE;
		size_t need;
		switch (in[3]) {
		case 1:
			need = 4 + 4 + 2;
			break;
		case 4:
			need = 4 + 16 + 2;
			break;
		case 3:
			need = 4 + 1 + in[4] + 2;
			break;
		default:
			return fail(s, "451 4.4.0", "%s", "reply with an unknown address type");
		}
		if (len < need)
			return SOCKS5_MORE;
		*used = need;
		s->rep = 0;
		s->step = STEP_DONE;
		return SOCKS5_DONE;
	}
	case STEP_DONE:
		return SOCKS5_DONE;
	}
	return fail(s, "451 4.4.0", "%s", "handshake in an unknown state");
}
