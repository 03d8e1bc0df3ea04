"""A real SMTP server (aiosmtpd) for keyturn's email channel tests.

Started by crates/notify/tests/smtp.rs with the interpreter in KEYTURN_PYTHON. It binds 127.0.0.1:0 itself
(no port race), prints {"port": N} as its first stdout line, then one JSON line per message received:
{"mail_from", "rcpt_tos", "data", "tls", "auth_user"}. It exits when its stdin closes, so it never outlives
the test that started it.

Modes: plain (no TLS), starttls (STARTTLS offered and required), smtps (TLS from the first byte).
With --user/--password, AUTH is required and only that login is accepted.
"""

import argparse
import asyncio
import json
import ssl
import sys

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


def parse_args():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=["plain", "starttls", "smtps"], required=True)
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--user")
    parser.add_argument("--password")
    return parser.parse_args()


def emit(record):
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


class Handler:
    def __init__(self, mode):
        self.mode = mode

    async def handle_DATA(self, server, session, envelope):
        implicit_tls = server.transport.get_extra_info("ssl_object") is not None
        emit({
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "data": envelope.content.decode("utf-8", errors="replace"),
            "tls": session.ssl is not None or implicit_tls,
            "auth_user": session.auth_data if session.authenticated else None,
        })
        return "250 Message accepted for delivery"


def authenticator_for(user, password):
    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == user
            and auth_data.password.decode() == password
        )
        # handled=False: aiosmtpd then answers a failure with 535 itself (with True it would answer nothing).
        return AuthResult(success=ok, handled=False, auth_data=user if ok else None)

    return authenticate


async def main():
    args = parse_args()
    tls_context = None
    if args.mode != "plain":
        tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls_context.load_cert_chain(args.cert, args.key)
    auth = {}
    if args.user is not None:
        auth = {
            "authenticator": authenticator_for(args.user, args.password),
            "auth_required": True,
            # With implicit TLS aiosmtpd does not see a STARTTLS upgrade; the connection is encrypted anyway.
            "auth_require_tls": args.mode == "starttls",
        }
    handler = Handler(args.mode)
    loop = asyncio.get_running_loop()

    def factory():
        return SMTP(
            handler,
            hostname="keyturn-test-smtp",
            tls_context=tls_context if args.mode == "starttls" else None,
            require_starttls=args.mode == "starttls",
            **auth,
        )

    server = await loop.create_server(
        factory, host="127.0.0.1", port=0, ssl=tls_context if args.mode == "smtps" else None
    )
    emit({"port": server.sockets[0].getsockname()[1]})

    # Serve until the test closes our stdin (or dies, which closes it too).
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
