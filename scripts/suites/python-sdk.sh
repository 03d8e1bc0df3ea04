#!/usr/bin/env bash
# Checks the Azure SDK for Python is importable from the test venv that scripts/test built (.venv/tests, from
# crates/local/python/requirements.txt). The scenario itself runs under nextest
# (crates/local/tests/keyvault_python.rs), which finds the interpreter through KEYTURN_PYTHON.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib/common.sh

[ -n "${KEYTURN_PYTHON:-}" ] || die "KEYTURN_PYTHON is not set: run this suite through ./scripts/test"
"$KEYTURN_PYTHON" -c "import azure.identity, azure.keyvault.secrets, azure.keyvault.keys, azure.keyvault.certificates" \
  || die "the Azure SDK for Python is not importable from $KEYTURN_PYTHON"
echo "Azure SDK for Python importable from $KEYTURN_PYTHON"
