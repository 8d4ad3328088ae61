/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * The client side of a SOCKS5 handshake (RFC 1928) with optional
 * username/password authentication (RFC 1929): bytes in, bytes out, no
 * I/O.  The destination is handed to the proxy as given, a host name
 * (ATYP 3: the proxy resolves it, as a .onion name needs) or an IP
 * literal (ATYP 1 or 4).  Replies are mapped to SMTP reply texts saying
 * whether trying later can help: RFC 1928's codes and Tor's extended ones
 * (0xF0-0xF7, Tor's socks-extensions.txt).
 */
#ifndef ZMTA_SOCKS5_H
#define ZMTA_SOCKS5_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The longest message a client sends: the auth request (3 + 2 * 255). */
#define SOCKS5_OUT_MAX 515

enum socks5_status {
	SOCKS5_MORE,  /* send `out` (if any), then feed more input */
	SOCKS5_DONE,  /* the tunnel is up: what follows is the destination's */
	SOCKS5_ERROR, /* see reply / permanent */
};

struct socks5 {
	int step;
	const char *user, *password; /* NULL: no authentication offered */
	const char *host;            /* destination host name or IP literal */
	uint16_t port;
	/* on SOCKS5_ERROR: an SMTP reply ("451 4.4.1 ...") and whether it is
	 * for good (the address can never be reached this way) */
	char reply[200];
	bool permanent;
	int rep; /* the proxy's REP code, or -1 when the failure was before */
};

/*
 * Starts the handshake: `s` set up by the caller (user, password, host,
 * port), the method selection written to out (SOCKS5_OUT_MAX bytes).
 * Returns its length.  The strings must outlive the handshake.
 */
size_t socks5_start(struct socks5 *s, uint8_t *out);

/*
 * Feeds what the proxy sent.  `*used` says how many bytes of `in` were
 * taken (the rest, after SOCKS5_DONE, is the destination's); `*outlen` the
 * bytes written to `out` (SOCKS5_OUT_MAX) to send next.
 */
enum socks5_status socks5_input(struct socks5 *s, const uint8_t *in, size_t len, size_t *used,
				uint8_t *out, size_t *outlen);

/* What a REP code means ("connection refused by the destination"). */
const char *socks5_rep_text(int rep);

#endif
