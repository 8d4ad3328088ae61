#!/usr/bin/python3
# SPDX-License-Identifier: EUPL-1.2
"""Scriptable SMTP sink for the end-to-end tests (built on aiosmtpd).

Usage::

    sink.py --host 127.0.0.2 --port N --spool DIR [--script FILE]
            [--tls-cert CERT --tls-key KEY [--implicit-tls]]
            [--auth USER:PASSWORD] [--name sink.test]

``--port 0`` lets the kernel choose; the port really bound is in the ready
file.  With ``--tls-cert``/``--tls-key`` STARTTLS is offered, or with
``--implicit-tls`` TLS is spoken from the first byte (port 465 style).
``--auth`` offers AUTH PLAIN and LOGIN (only over TLS), accepts only these
credentials and requires AUTH before MAIL.  The process runs until SIGTERM
or SIGINT.

Output, all in the spool DIR
----------------------------
``ready``
    ``{"host", "port", "pid"}`` as JSON, written once the sink listens
    (``READY <host> <port>`` is also printed on stdout).
``<n>.eml``
    The exact DATA bytes of the n-th accepted message, n counting from 1
    (dot-stuffing removed, line ends kept as sent).
``<n>.json``
    Its metadata: ``n``, ``session``, ``mail_from`` ("" for the null sender
    ``<>``), ``mail_options``, ``rcpt_tos`` (the accepted recipients),
    ``peer_ip``, ``peer_port``, ``helo`` (EHLO/HELO name), ``esmtp`` (EHLO
    rather than HELO), ``tls``, ``tls_version``, ``tls_cipher``,
    ``auth_user`` (the AUTH login, or null), ``dsn`` (``{"mail": {RET, ENVID},
    "rcpts": [{NOTIFY, ORCPT}, ...]}``, the DSN parameters given, with
    ``ehlo.dsn``), ``size`` and ``time``.  Written after the ``.eml``: a ``.json`` means both are complete.
    Only messages whose DATA reply is 2xx are recorded.
``sessions.jsonl``
    One JSON object per line, in the order things happen, each with
    ``event``, ``session`` (an integer id, from 1) and ``time``:

    - ``connect`` (``peer_ip``, ``peer_port``) / ``disconnect``
    - ``greeting`` (``reply``): only when the greeting is scripted
    - ``helo`` (``name``, ``esmtp``), ``starttls`` (``version``, ``sni``: the
      server name the client asked for or null, ``reused``: a resumed session)
    - ``auth`` (``mechanism``, ``user``, ``ok``): with ``--auth``
    - ``mail`` (``address``, ``reply``), ``rcpt`` (``address``, ``reply``)
    - ``data`` (``reply``, ``message``: n or null)

    ``reply`` is the reply sent, or null when the connection was dropped.

Script (``--script FILE``)
--------------------------
A JSON object, re-read on every command, so a test may change it while the
sink runs (replace the file atomically: write a temporary file, then rename).
A missing file means ``{}``: accept everything.  A malformed script (unknown
key, reply not starting with a 2xx-5xx code...) makes the sink answer 500
(421 on connect) and log why; ``check_script()`` checks one in advance.  All keys are
optional::

    {
      "greeting": RULE,            # on connect
      "starttls": true,            # false: never offer STARTTLS
      "ehlo": {"hide": ["SMTPUTF8"], "size": 1000,   # edit EHLO keywords
               "auth": ["LOGIN"],                 # mechanisms listed
               "dsn": true},                      # offer DSN (RFC 3461)
      "mail": RULE,                # on MAIL FROM
      "default": {"rcpt": RULE, "data": RULE},
      "recipients": {
        "user@example.test": {"rcpt": RULE, "data": RULE}
      }
    }

A recipient with an entry in ``recipients`` (matched case-insensitively)
uses that entry only; other recipients use ``default``.

RULE::

    {
      "reply": "451 4.7.1 Greylisted",   # or a list of lines, sent verbatim
                                         # as a multi-line reply, e.g.
                                         # ["550-5.1.1 No", "550 5.1.1 such user"]
      "times": 1,       # apply the rule on the first N attempts only,
                        # then accept normally (greylisting)
      "stall": 2.5,     # wait this many seconds before replying or dropping
      "drop": true      # close the connection instead of replying
    }

Without ``reply`` or ``drop`` the command is accepted normally (after any
stall).  A command is accepted when its reply is 2xx (the recipient is added
to the envelope, the message is recorded).

- ``greeting``: ``reply`` is sent instead of the 220 banner and the
  connection is then closed (e.g. ``"421 4.3.2 Busy"``); ``stall`` delays the
  banner; ``drop`` closes the connection on connect.
- ``data``: one reply covers the whole transaction.  The rule used is the
  ``data`` rule of the first accepted recipient (in RCPT order) whose entry
  has one.  Stall and drop happen after the whole message was received,
  before the final reply.

Attempts (for ``times``) are counted per phase and address: the sender for
``mail``, the recipient for ``rcpt`` and ``data`` (for ``data`` the
recipient whose rule applies), one counter for ``greeting``.  The counts
survive across sessions and are all reset whenever the script file changes.
"""

import argparse
import asyncio
import json
import logging
import os
import re
import signal
import ssl
import sys
import time
from collections import Counter
from pathlib import Path

from aiosmtpd.smtp import SMTP, AuthResult

log = logging.getLogger("sink")


# The server name each handshake asked for (SNI), by SSL object, until its
# starttls event records it.
SNI_SEEN = {}


def remember_sni(ssl_object, server_name, context):
    SNI_SEEN[id(ssl_object)] = server_name


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def sender(address: str) -> str:
    """aiosmtpd gives the null sender as "<>"; the spool records it as ""."""
    return "" if address == "<>" else address


SCRIPT_KEYS = {"greeting", "starttls", "ehlo", "mail", "default", "recipients"}
EHLO_KEYS = {"hide", "size", "auth", "dsn"}
ENTRY_KEYS = {"rcpt", "data"}
RULE_KEYS = {"reply", "times", "stall", "drop"}
REPLY_LINE = re.compile(r"[2-5][0-9][0-9]([ -]|$)")


def check_script(script: dict) -> dict:
    """Return ``script`` if it is well formed, else raise ValueError
    (catches typos that would otherwise silently script nothing)."""
    def fail(where, value):
        raise ValueError(f"sink script: bad {where}: {value!r}")

    def check_rule(where, rule):
        if not isinstance(rule, dict) or not set(rule) <= RULE_KEYS:
            fail(where, rule)
        reply = rule.get("reply", [])
        lines = [reply] if isinstance(reply, str) else reply
        if not isinstance(lines, list) or not all(
                isinstance(line, str) and REPLY_LINE.match(line)
                for line in lines):
            fail(f"{where} reply", reply)
        for key in ("times", "stall"):
            value = rule.get(key, 0)
            if not isinstance(value, (int, float)) or value < 0:
                fail(f"{where} {key}", value)

    if not isinstance(script, dict) or not set(script) <= SCRIPT_KEYS:
        fail("script", script)
    if not isinstance(script.get("starttls", True), bool):
        fail("starttls", script["starttls"])
    ehlo = script.get("ehlo", {})
    if (not isinstance(ehlo, dict) or not set(ehlo) <= EHLO_KEYS
            or not isinstance(ehlo.get("hide", []), list)
            or not isinstance(ehlo.get("size", 0), int)
            or not isinstance(ehlo.get("auth", []), list)
            or not isinstance(ehlo.get("dsn", False), bool)):
        fail("ehlo", ehlo)
    for key in ("greeting", "mail"):
        if key in script:
            check_rule(key, script[key])
    entries = {"default": script.get("default", {})}
    entries.update((f"recipients[{address!r}]", e)
                   for address, e in script.get("recipients", {}).items())
    for where, e in entries.items():
        if not isinstance(e, dict) or not set(e) <= ENTRY_KEYS:
            fail(where, e)
        for phase, rule in e.items():
            check_rule(f"{where}.{phase}", rule)
    return script


def entry(script: dict, address: str) -> dict:
    """The script entry for a recipient: its own, else the default."""
    recipients = {k.lower(): v for k, v in script.get("recipients", {}).items()}
    return recipients.get(address.lower(), script.get("default", {}))


class SinkHandler:
    """aiosmtpd handler shared by all connections: applies the script,
    records messages and session events."""

    def __init__(self, spool: Path, script_path: Path | None):
        self.spool = spool
        self.script_path = script_path
        self.script_text = None
        self.attempts = Counter()
        self.sessions = 0
        self.messages = 0

    def script(self) -> dict:
        text = ""
        if self.script_path:
            try:
                text = self.script_path.read_text()
            except FileNotFoundError:
                pass
        if text != self.script_text:
            self.script_text = text
            self.attempts.clear()
        return check_script(json.loads(text)) if text.strip() else {}

    def event(self, server: "SinkSMTP", event: str, **fields) -> None:
        record = {"event": event, "session": server.sink_session,
                  "time": time.time(), **fields}
        with open(self.spool / "sessions.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        log.info("session %s: %s %s", server.sink_session, event,
                 json.dumps(fields))

    async def apply(self, server: "SinkSMTP", phase: str, key: str,
                    rule: dict | None, **fields) -> str | None:
        """Apply a script rule for one command.

        Returns the scripted reply, or None to accept normally.  When the
        rule drops the connection, logs the event and never returns (the
        connection's task is cancelled)."""
        if not rule:
            return None
        if "times" in rule:
            self.attempts[phase, key] += 1
            if self.attempts[phase, key] > rule["times"]:
                return None
        if rule.get("stall"):
            await asyncio.sleep(rule["stall"])
        if rule.get("drop"):
            self.event(server, phase, reply=None, **fields)
            await server.drop()
        reply = rule.get("reply")
        return "\r\n".join(reply) if isinstance(reply, list) else reply

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        self.event(server, "helo", name=hostname, esmtp=True)
        # "ehlo": {"hide": ["SMTPUTF8", ...], "size": N, "auth": [...]}
        # edits the keywords.
        ehlo = self.script().get("ehlo", {})
        hidden = {k.upper() for k in ehlo.get("hide", [])}
        kept = []
        for line in responses:
            keyword = line[4:].split(" ")[0].upper()
            if keyword in hidden:
                continue
            if keyword == "SIZE" and "size" in ehlo:
                line = f"{line[:4]}SIZE {ehlo['size']}"
            if keyword == "AUTH" and "auth" in ehlo:
                line = f"{line[:4]}AUTH {' '.join(ehlo['auth'])}"
            kept.append(line)
        if ehlo.get("dsn"):
            kept.append("250-DSN")
        # The last line of a multi-line reply must use "250 ".
        if kept:
            kept = [("250-" + line[4:]) for line in kept[:-1]] + ["250 " + kept[-1][4:]]
        return kept

    async def handle_HELO(self, server, session, envelope, hostname):
        session.host_name = hostname
        self.event(server, "helo", name=hostname, esmtp=False)
        return f"250 {server.hostname}"

    def handle_STARTTLS(self, server, session, envelope):
        # Called (synchronously) once the TLS handshake is complete.
        obj = session.ssl["ssl_object"]
        self.event(server, "starttls", version=obj.version(),
                   sni=SNI_SEEN.pop(id(obj), None), reused=obj.session_reused)
        return True

    async def handle_MAIL(self, server, session, envelope, address,
                          mail_options):
        fields = {"address": sender(address)}
        reply = await self.apply(server, "mail", address.lower(),
                                 self.script().get("mail"), **fields)
        reply = reply or "250 2.1.0 Ok"
        if reply.startswith("2"):
            envelope.mail_from = address
            envelope.mail_options.extend(mail_options)
        self.event(server, "mail", **fields, reply=reply)
        return reply

    async def handle_RCPT(self, server, session, envelope, address,
                          rcpt_options):
        rule = entry(self.script(), address).get("rcpt")
        reply = await self.apply(server, "rcpt", address.lower(), rule,
                                 address=address)
        reply = reply or "250 2.1.5 Ok"
        if reply.startswith("2"):
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(rcpt_options)
        self.event(server, "rcpt", address=address, reply=reply)
        return reply

    async def handle_DATA(self, server, session, envelope):
        script = self.script()
        rcpt, rule = "", None
        for rcpt in envelope.rcpt_tos:
            rule = entry(script, rcpt).get("data")
            if rule:
                break
        reply = await self.apply(server, "data", rcpt.lower(), rule,
                                 message=None)
        n = None
        if reply is None or reply.startswith("2"):
            n = self.record(server, session, envelope)
            reply = reply or f"250 2.0.0 Ok: queued as {n}"
        self.event(server, "data", reply=reply, message=n)
        return reply

    def record(self, server, session, envelope) -> int:
        self.messages += 1
        n = self.messages
        tls = session.ssl
        if tls is None and server.transport.get_extra_info("ssl_object") is not None:
            tls = {"ssl_object": server.transport.get_extra_info("ssl_object"),
                   "cipher": server.transport.get_extra_info("cipher")}
        meta = {
            "n": n,
            "session": server.sink_session,
            "mail_from": sender(envelope.mail_from),
            "mail_options": envelope.mail_options,
            "rcpt_tos": envelope.rcpt_tos,
            "peer_ip": server.sink_peer[0],
            "peer_port": server.sink_peer[1],
            "helo": session.host_name,
            "esmtp": session.extended_smtp,
            "tls": tls is not None,
            "tls_version": tls["ssl_object"].version() if tls else None,
            "tls_cipher": tls["cipher"][0] if tls else None,
            "auth_user": server.sink_auth_user,
            "dsn": {"mail": server.sink_mail_dsn, "rcpts": server.sink_rcpt_dsn},
            "size": len(envelope.original_content),
            "time": time.time(),
        }
        (self.spool / f"{n}.eml").write_bytes(envelope.original_content)
        write_atomic(self.spool / f"{n}.json",
                     json.dumps(meta, indent=1).encode())
        return n


class SinkSMTP(SMTP):
    """One connection: adds session events, the scripted greeting and the
    STARTTLS switch to aiosmtpd's SMTP protocol."""

    def __init__(self, handler: SinkHandler, **kwargs):
        super().__init__(handler, **kwargs)
        self.sink_session = None
        self.sink_peer = None
        self.sink_closed = False
        self.sink_auth_user = None
        self.sink_mail_dsn, self.sink_rcpt_dsn = {}, []

    DSN_PARAMS = ("RET", "ENVID", "NOTIFY", "ORCPT")

    def strip_dsn(self, arg):
        """DSN parameters are taken (and kept) here only when the script
        offers DSN; aiosmtpd itself knows none of them (555)."""
        if not arg or not self.event_handler.script().get("ehlo", {}).get("dsn"):
            return arg, {}
        kept, dsn = [], {}
        for token in arg.split(" "):
            key, _, value = token.partition("=")
            if key.upper() in self.DSN_PARAMS:
                dsn[key.upper()] = value
            else:
                kept.append(token)
        return " ".join(kept), dsn

    async def smtp_MAIL(self, arg):
        arg, self.sink_mail_dsn = self.strip_dsn(arg)
        self.sink_rcpt_dsn = []
        await super().smtp_MAIL(arg)

    async def smtp_RCPT(self, arg):
        arg, dsn = self.strip_dsn(arg)
        self.sink_rcpt_dsn.append(dsn)
        await super().smtp_RCPT(arg)

    def connection_made(self, transport):
        super().connection_made(transport)
        # Called again after STARTTLS; only the first call is a new session.
        if self.sink_session is None:
            handler = self.event_handler
            handler.sessions += 1
            self.sink_session = handler.sessions
            self.sink_peer = self.session.peer[:2]
            handler.event(self, "connect", peer_ip=self.sink_peer[0],
                          peer_port=self.sink_peer[1])

    def connection_lost(self, error):
        if not self.sink_closed:
            self.sink_closed = True
            self.event_handler.event(self, "disconnect")
        super().connection_lost(error)

    async def _handle_client(self):
        handler = self.event_handler
        try:
            script = handler.script()
        except ValueError as error:  # including JSON syntax errors
            log.error("%s", error)
            await self.push("421 4.3.0 Sink script error")
            self.transport.close()
            return
        if script.get("starttls", True) is False:
            self.tls_context = None
        reply = await handler.apply(self, "greeting", "",
                                    script.get("greeting"))
        if reply is not None:
            handler.event(self, "greeting", reply=reply)
            await self.push(reply)
            self.transport.close()
            return
        await super()._handle_client()

    async def drop(self):
        """Close the connection without a reply and wait for the
        cancellation that connection_lost() then delivers."""
        self.transport.abort()
        await self.loop.create_future()


async def serve(args) -> None:
    loop = asyncio.get_running_loop()
    spool = Path(args.spool)
    spool.mkdir(parents=True, exist_ok=True)
    tls_context = None
    if args.tls_cert:
        tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls_context.sni_callback = remember_sni
        if args.tls_v1:
            # An old server: TLS 1.0 only, with the ciphers it allows.
            tls_context.minimum_version = ssl.TLSVersion.TLSv1
            tls_context.maximum_version = ssl.TLSVersion.TLSv1
            tls_context.set_ciphers("DEFAULT:@SECLEVEL=0")
        elif args.tls_broken:
            # Offers STARTTLS, then fails every handshake: TLS 1.0 only, at
            # a security level that allows none of its ciphers.
            tls_context.minimum_version = ssl.TLSVersion.TLSv1
            tls_context.maximum_version = ssl.TLSVersion.TLSv1
        tls_context.load_cert_chain(args.tls_cert, args.tls_key)
    handler = SinkHandler(spool, Path(args.script) if args.script else None)
    auth = {}
    if args.auth:
        want_user, want_password = args.auth.split(":", 1)

        def authenticator(server, session, envelope, mechanism, auth_data):
            user = auth_data.login.decode(errors="replace")
            ok = (user == want_user
                  and auth_data.password.decode(errors="replace") == want_password)
            handler.event(server, "auth", mechanism=mechanism, user=user, ok=ok)
            if ok:
                server.sink_auth_user = user
            return AuthResult(success=ok, handled=False)

        # Over implicit TLS the connection is encrypted already: aiosmtpd
        # knows only STARTTLS, so it is told not to ask for it.
        auth = {"authenticator": authenticator, "auth_required": True,
                "auth_require_tls": not args.implicit_tls}
    server = await loop.create_server(
        lambda: SinkSMTP(handler, hostname=args.name,
                         tls_context=None if args.implicit_tls else tls_context,
                         enable_SMTPUTF8=True, loop=loop, **auth),
        host=args.host, port=args.port,
        ssl=tls_context if args.implicit_tls else None)
    port = server.sockets[0].getsockname()[1]
    write_atomic(spool / "ready", json.dumps(
        {"host": args.host, "port": port, "pid": os.getpid()}).encode())
    print(f"READY {args.host} {port}", flush=True)

    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping")
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="Scriptable SMTP sink.")
    parser.add_argument("--host", default="127.0.0.2")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--spool", required=True)
    parser.add_argument("--script")
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    parser.add_argument("--tls-broken", action="store_true",
                        help="offer STARTTLS but fail every handshake")
    parser.add_argument("--tls-v1", action="store_true",
                        help="offer STARTTLS with TLS 1.0 only")
    parser.add_argument("--implicit-tls", action="store_true",
                        help="TLS from the first byte instead of STARTTLS")
    parser.add_argument("--auth", metavar="USER:PASSWORD",
                        help="require AUTH with these credentials")
    parser.add_argument("--name", default="sink.test",
                        help="host name in the banner and EHLO reply")
    args = parser.parse_args()
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    if args.implicit_tls and not args.tls_cert:
        parser.error("--implicit-tls needs --tls-cert and --tls-key")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s: %(message)s")
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
