"""azure.yaml (`azd up`) is valid for azd and deploys what the infrastructure declares.

- It validates against azd's published JSON schema (azd/azure.yaml.schema.json, see azd/README.md).
- Each handler is a service azd can find: the function app carries the tag azd-service-name=<handler>
  (azd's default lookup), `language: custom` has the `dist` azd requires for it, and dist is what
  `keyturn package` writes (dist/<handler>/).
- The hooks it runs exist and are executable; the parameters file gives main.bicep's required parameters.
- azd deploys to Flex Consumption only (infra/README.md says why): the preprovision hook stops an Elastic Premium
  environment before anything is created, without calling Azure.
Each rule is proven on a broken copy.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml
from pycep import BicepParser
from referencing import Registry, Resource
from referencing.exceptions import Unretrievable
from referencing.jsonschema import DRAFT201909

INFRA = Path(__file__).resolve().parent.parent
ROOT = INFRA.parent
SCHEMA = json.loads((Path(__file__).resolve().parent / "azd" / "azure.yaml.schema.json").read_text())
HANDLERS = ["near-expiry", "expired", "new-version", "test-event", "sweep"]


def no_network(uri: str) -> Resource:
    # The schema's conditional branches for azd's AI hosts refer to extension schemas by URL. The suite has no
    # network (and must not try): they resolve to an empty schema, which only matters for those hosts.
    if uri.startswith("https://raw.githubusercontent.com/Azure/azure-dev/main/cli/azd/extensions/"):
        return Resource.from_contents({}, default_specification=DRAFT201909)
    raise Unretrievable(ref=uri)


REGISTRY = Registry(retrieve=no_network)


def schema_errors(document: dict) -> list[str]:
    validator = jsonschema.Draft201909Validator(SCHEMA, registry=REGISTRY)
    return sorted(f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(document))


def azd_problems(document: dict, root: Path) -> list[str]:
    problems = []
    services = document.get("services", {})
    if sorted(services) != sorted(HANDLERS):
        problems.append(f"services {sorted(services)} are not the handlers {HANDLERS}")
    for name, svc in services.items():
        if svc.get("host") != "function":
            problems.append(f"{name}: host {svc.get('host')!r} is not function")
        if svc.get("language") == "custom" and not svc.get("dist"):
            problems.append(f"{name}: language custom needs dist ('dist' required for custom language)")
        if svc.get("dist") != f"dist/{name}":
            problems.append(f"{name}: dist {svc.get('dist')!r} is not what keyturn package writes (dist/{name})")
    infra = document.get("infra", {})
    module = root / infra.get("path", "infra") / f"{infra.get('module', 'main')}.bicep"
    if infra.get("provider", "bicep") != "bicep" or not module.is_file():
        problems.append(f"infra does not point at the Bicep deployment ({module})")
    for hook, spec in document.get("hooks", {}).items():
        run = spec["run"]
        if run.startswith("infra/"):
            script = root / run
            if not script.is_file() or not os.access(script, os.X_OK):
                problems.append(f"hook {hook}: {run} is missing or not executable")
    if "postdeploy" not in document.get("hooks", {}) or "postdeploy.sh" not in document["hooks"]["postdeploy"]["run"]:
        problems.append("no postdeploy hook creating the Event Grid subscriptions")
    if "keyturn-cli -- package" not in document.get("hooks", {}).get("prepackage", {}).get("run", ""):
        problems.append("no prepackage hook running keyturn package")
    return problems


def test_azure_yaml_validates_against_azds_schema():
    document = yaml.safe_load((ROOT / "azure.yaml").read_text())
    assert schema_errors(document) == []


def test_azure_yaml_deploys_what_the_infrastructure_declares():
    document = yaml.safe_load((ROOT / "azure.yaml").read_text())
    assert azd_problems(document, ROOT) == []
    handler = (INFRA / "bicep" / "modules" / "handler.bicep").read_text()
    assert "'azd-service-name': handler" in handler, "the apps lack the tag azd finds services by"


def test_parameters_file_gives_every_required_parameter():
    params = BicepParser().parse(text=(INFRA / "bicep" / "main.bicep").read_text())["parameters"]
    required = {name for name, p in params.items() if "default" not in p}
    given = json.loads((INFRA / "bicep" / "main.parameters.json").read_text())["parameters"]
    assert required <= set(given), f"main.parameters.json lacks {required - set(given)}"
    assert set(given) <= set(params), f"main.parameters.json names unknown parameters {set(given) - set(params)}"
    for name, value in given.items():
        assert re.fullmatch(r"\$\{[A-Z_]+(=[^}]*)?\}", value["value"]), f"{name}: not an azd environment value"


@pytest.mark.parametrize(
    "mutation, needle",
    [
        (lambda d: d["services"]["expired"].pop("host"), "'host' is a required property"),
        (lambda d: d["hooks"].__setitem__("postdeploys", d["hooks"]["postdeploy"]), "Additional properties"),
        (lambda d: d["hooks"]["postdeploy"].__setitem__("shell", "bash"), "hooks/postdeploy: {'shell': 'bash'"),
    ],
)
def test_detects_what_azds_schema_refuses(mutation, needle):
    document = yaml.safe_load((ROOT / "azure.yaml").read_text())
    mutation(document)
    errors = schema_errors(document)
    assert any(needle in e for e in errors), errors


def test_detects_a_service_azd_could_not_deploy():
    document = yaml.safe_load((ROOT / "azure.yaml").read_text())
    document["services"]["near-expiry"].pop("dist")
    document["hooks"].pop("postdeploy")
    problems = azd_problems(document, ROOT)
    assert "near-expiry: language custom needs dist ('dist' required for custom language)" in problems
    assert "no postdeploy hook creating the Event Grid subscriptions" in problems


def run_preprovision(
    hooks: Path, tmp_path: Path, plan: str, canary_exists: bool = False, runtimes: str = ""
) -> tuple[int, str, list[str]]:
    """Runs the preprovision hook with KEYTURN_HOSTING_PLAN=plan and an `az` on PATH that records its arguments and
    answers as Azure would for a canary that exists (or not) and a region offering `runtimes` of the custom runtime
    on Flex Consumption, so the test sees how far the hook got and what it asked."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    calls = tmp_path / "az-calls"
    az = bin_dir / "az"
    az.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {calls}\n'
        'case "$1 $2" in\n'
        f'  "keyvault secret") {"echo id; exit 0" if canary_exists else "exit 1"} ;;\n'
        f'  "functionapp list-flexconsumption-runtimes") printf "%s" "{runtimes}"; exit 0 ;;\n'
        "esac\n"
        "exit 1\n"
    )
    az.chmod(0o755)
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "KEYTURN_HOSTING_PLAN": plan,
        "KEYTURN_KEY_VAULT_ID": "/subscriptions/0/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/v",
        "AZURE_LOCATION": "westeurope",
    }
    result = subprocess.run(["bash", str(hooks / "preprovision.sh")], env=env, capture_output=True, text=True, timeout=60)
    return result.returncode, result.stderr, calls.read_text().splitlines() if calls.exists() else []


def test_azd_stops_an_elastic_premium_environment_before_provisioning(tmp_path):
    status, stderr, calls = run_preprovision(INFRA / "hooks", tmp_path, "ElasticPremium")
    assert status != 0
    assert "azd deploys keyturn to Flex Consumption only, and KEYTURN_HOSTING_PLAN is ElasticPremium" in stderr, stderr
    assert calls == [], calls


def test_azd_goes_on_to_its_checks_on_flex_consumption(tmp_path):
    # The control: on Flex Consumption the hook reaches its Azure checks (here the canary, which the fake az
    # cannot find).
    status, stderr, calls = run_preprovision(INFRA / "hooks", tmp_path, "FlexConsumption")
    assert status != 0 and "the canary secret keyturn-canary does not exist in v" in stderr, stderr
    assert calls and calls[0].startswith("keyvault secret show --vault-name v --name keyturn-canary"), calls


def test_detects_azd_left_to_fail_at_deploy_on_premium(tmp_path):
    hooks = tmp_path / "hooks"
    shutil.copytree(INFRA / "hooks", hooks)
    text = (hooks / "preprovision.sh").read_text()
    guard = text[text.index('[ "$plan" = FlexConsumption ]') : text.index("\n\n", text.index('[ "$plan" = FlexConsumption ]'))]
    (hooks / "preprovision.sh").write_text(text.replace(guard, ""))
    status, stderr, calls = run_preprovision(hooks, tmp_path, "ElasticPremium")
    assert "Flex Consumption only" not in stderr and calls, (stderr, calls)


def test_azd_stops_where_flex_consumption_offers_no_custom_runtime(tmp_path):
    # The preflight infra/README.md describes, as the hook runs it: no custom runtime in the region, no provisioning.
    status, stderr, calls = run_preprovision(INFRA / "hooks", tmp_path, "FlexConsumption", canary_exists=True)
    assert status != 0 and "Flex Consumption offers no custom runtime in westeurope" in stderr, stderr
    assert "functionapp list-flexconsumption-runtimes --location westeurope --runtime custom --query [].version -o tsv" in calls, calls
    status, stderr, _ = run_preprovision(INFRA / "hooks", tmp_path, "FlexConsumption", canary_exists=True, runtimes="1.0")
    assert status == 0 and "custom runtime 1.0 on Flex Consumption in westeurope" in stderr, stderr
    # Offered, but not in the version the deployment asks for: the apps would all fail to deploy.
    status, stderr, _ = run_preprovision(INFRA / "hooks", tmp_path, "FlexConsumption", canary_exists=True, runtimes="2.0")
    assert status != 0 and "offers the custom runtime in version 2.0 but not 1.0" in stderr, stderr


def runtime_versions(root: Path) -> dict[str, str]:
    """The custom runtime version each side asks Flex Consumption for, and the one the preflight checks."""
    hook = re.search(r"^custom_runtime_version=(\S+)$", (root / "hooks" / "preprovision.sh").read_text(), re.M)
    bicep = re.search(r"name: 'custom'\s+version: '([^']+)'", (root / "bicep" / "modules" / "handler.bicep").read_text())
    tf = re.search(r'name\s*=\s*"custom"\s+version\s*=\s*"([^"]+)"', (root / "terraform" / "handlers.tf").read_text())
    return {k: m.group(1) if m else "" for k, m in {"hook": hook, "bicep": bicep, "terraform": tf}.items()}


def test_the_preflight_checks_the_runtime_version_the_deployments_ask_for():
    versions = runtime_versions(INFRA)
    assert versions["hook"] and len(set(versions.values())) == 1, versions


def test_detects_a_runtime_version_the_preflight_does_not_check(tmp_path):
    for part in ("bicep", "terraform", "hooks"):
        shutil.copytree(INFRA / part, tmp_path / part)
    handler = tmp_path / "bicep" / "modules" / "handler.bicep"
    handler.write_text(re.sub(r"(name: 'custom'\s+version: )'1.0'", r"\1'2.0'", handler.read_text()))
    versions = runtime_versions(tmp_path)
    assert versions["bicep"] == "2.0" and len(set(versions.values())) == 2, versions
