"""Verify a keyturn webhook request (docs/notifications.md, "Verifying a webhook").

Copy `verify` into your receiver. Run as a script for a quick check:
    python3 verify_webhook.py SECRET 'HEADER VALUE' body.json [NOW_UNIX_SECONDS]
exits 0 when the request is genuine and fresh, 1 otherwise. keyturn's tests run this file.
"""

import hashlib
import hmac
import sys
import time

TOLERANCE_SECONDS = 300  # reject anything signed more than 5 minutes from now: a replay


def verify(secret: bytes, header: str, body: bytes, now: float | None = None) -> bool:
    """header: the X-Keyturn-Signature value; body: the raw request body, byte for byte."""
    now = time.time() if now is None else now
    pairs = [part.strip().split("=", 1) for part in header.split(",")]
    if any(len(pair) != 2 for pair in pairs):
        return False
    timestamps = [value for key, value in pairs if key == "t"]
    signatures = [value for key, value in pairs if key == "v1"]
    if len(timestamps) != 1 or not signatures or not timestamps[0].lstrip("-").isdigit():
        return False
    t = int(timestamps[0])
    if abs(now - t) > TOLERANCE_SECONDS:
        return False
    expected = hmac.new(secret, f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, signature) for signature in signatures)


if __name__ == "__main__":
    secret, header, body_file = sys.argv[1], sys.argv[2], sys.argv[3]
    now = float(sys.argv[4]) if len(sys.argv) > 4 else None
    with open(body_file, "rb") as f:
        body = f.read()
    genuine = verify(secret.encode(), header, body, now)
    print("valid" if genuine else "INVALID")
    sys.exit(0 if genuine else 1)
