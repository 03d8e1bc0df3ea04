#!/usr/bin/env bash
# Verify a keyturn webhook request with openssl (docs/notifications.md, "Verifying a webhook"); for debugging
# by hand: the string comparison below is not constant-time, so receivers should use verify_webhook.py's way.
#   verify_webhook.sh SECRET 'HEADER VALUE' body.json
# exits 0 when the request is genuine and fresh, 1 otherwise. keyturn's tests run this file.
set -euo pipefail
secret=$1 header=$2 body_file=$3

t=$(printf '%s' "$header" | tr ',' '\n' | sed -n 's/^ *t=//p')
signatures=$(printf '%s' "$header" | tr ',' '\n' | sed -n 's/^ *v1=//p')
[ -n "$t" ] && [ -n "$signatures" ] || { echo "INVALID: malformed header"; exit 1; }

now=$(date +%s)
age=$(( now > t ? now - t : t - now ))
[ "$age" -le 300 ] || { echo "INVALID: signed ${age}s from now (more than 300s: a replay?)"; exit 1; }

# HMAC-SHA256 over "<t>." followed by the raw body.
expected=$( { printf '%s.' "$t"; cat "$body_file"; } | openssl dgst -sha256 -hmac "$secret" | sed 's/^.*= //')
for signature in $signatures; do
  if [ "$signature" = "$expected" ]; then echo valid; exit 0; fi
done
echo "INVALID: no v1 signature matches"
exit 1
