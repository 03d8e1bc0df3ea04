#!/usr/bin/env bash
# Checks the real SMTP server the email channel tests use (aiosmtpd, from crates/notify/python/requirements.txt)
# is importable from the test venv that scripts/test built. The tests themselves run under nextest
# (crates/notify/tests/smtp.rs) and find the interpreter through KEYTURN_PYTHON.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib/common.sh

[ -n "${KEYTURN_PYTHON:-}" ] || die "KEYTURN_PYTHON is not set: run this suite through ./scripts/test"
"$KEYTURN_PYTHON" -c "import aiosmtpd.smtp" \
  || die "aiosmtpd is not importable from $KEYTURN_PYTHON (crates/notify/python/requirements.txt)"
echo "aiosmtpd importable from $KEYTURN_PYTHON"
