#!/usr/bin/env bash
# Checks the Azure SDK for Python is importable from the test venv that scripts/test built (.venv/tests, from
# crates/local/python/requirements.txt, the newest releases) and says which API version each client sends by
# default. The scenario itself runs under nextest (crates/local/tests/keyvault_python.rs, which finds the
# interpreter through KEYTURN_PYTHON): once with those defaults (no api_version pin), then pinned to every
# version the SDKs offer.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib/common.sh

[ -n "${KEYTURN_PYTHON:-}" ] || die "KEYTURN_PYTHON is not set: run this suite through ./scripts/test"
"$KEYTURN_PYTHON" - <<'PY' || die "the Azure SDK for Python is not importable from $KEYTURN_PYTHON"
import importlib
import importlib.metadata

import azure.identity  # noqa: F401

for package in ("secrets", "keys", "certificates"):
    base = importlib.import_module(f"azure.keyvault.{package}._shared.client_base")
    version = importlib.metadata.version(f"azure-keyvault-{package}")
    print(f"azure-keyvault-{package} {version}: default api-version {base.DEFAULT_VERSION.value}")
PY
echo "Azure SDK for Python importable from $KEYTURN_PYTHON"
