#!/usr/bin/env bash
# Prepares the Python SDK suite: a venv (.venv) with the pinned official Azure SDK for Python.
# The scenario itself runs under nextest (crates/local/tests/keyvault_python.rs), which finds the
# interpreter through KEYTURN_PYTHON; scripts/test exports it.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib/common.sh

ensure_venv crates/local/python/requirements.txt
.venv/bin/python -c "import azure.identity, azure.keyvault.secrets, azure.keyvault.keys, azure.keyvault.certificates" \
  || die "the Azure SDK for Python is not importable from .venv"
