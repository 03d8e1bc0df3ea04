"""infra/bicep and infra/terraform must deploy the same thing.

Neither Azure nor the Terraform registry is reachable here, so this test works on the declarations: it parses
every Bicep file with pycep (the parser checkov's Bicep runner uses) and every Terraform file with hcl2
(bc-python-hcl2, the python-hcl2 fork checkov uses), then compares what both declare: resource kinds, each
handler's event routing, each Event Grid subscription's event types, canary filter, batch size, retry policy and
dead-lettering, and the operations built in (alerts, delivery-failure logs, dead-letter lifecycle, workbook).
The role matrix is infra/roles.json, read by both (test_roles.py).

The mutation tests change a copy of the tree on one side and check that the comparison notices.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import hcl2
import pytest
from pycep import BicepParser

INFRA = Path(__file__).resolve().parent.parent
HANDLERS = ["near-expiry", "expired", "new-version", "test-event", "sweep"]

# ARM resource type (Bicep) -> Terraform resource type. blobServices is a block of azurerm_storage_account;
# the function apps are azapi_resource, named by the ARM type they carry.
ARM_TO_TERRAFORM = {
    "Microsoft.Storage/storageAccounts": "azurerm_storage_account",
    "Microsoft.Storage/storageAccounts/blobServices": "azurerm_storage_account",
    "Microsoft.Storage/storageAccounts/blobServices/containers": "azurerm_storage_container",
    "Microsoft.Storage/storageAccounts/managementPolicies": "azurerm_storage_management_policy",
    "Microsoft.Insights/actionGroups": "azurerm_monitor_action_group",
    "Microsoft.Insights/metricAlerts": "azurerm_monitor_metric_alert",
    "Microsoft.Insights/workbooks": "azurerm_application_insights_workbook",
    # App settings: a sites/config child in Bicep (a for over runtime values would not compile), part of the
    # site's body in Terraform (azapi reads resources back with GET; App Service lists settings only by POST).
    "Microsoft.Web/sites/config": "azapi_resource:Microsoft.Web/sites",
    "Microsoft.Web/sites/basicPublishingCredentialsPolicies": "azapi_resource:Microsoft.Web/sites/basicPublishingCredentialsPolicies",
    "Microsoft.Insights/diagnosticSettings": "azurerm_monitor_diagnostic_setting",
    "Microsoft.OperationalInsights/workspaces": "azurerm_log_analytics_workspace",
    "Microsoft.Insights/components": "azurerm_application_insights",
    "Microsoft.ManagedIdentity/userAssignedIdentities": "azurerm_user_assigned_identity",
    "Microsoft.Web/serverfarms": "azurerm_service_plan",
    "Microsoft.Web/sites": "azapi_resource:Microsoft.Web/sites",
    "Microsoft.Authorization/roleAssignments": "azurerm_role_assignment",
    "Microsoft.Authorization/roleDefinitions": "azurerm_role_definition",
    "Microsoft.EventGrid/systemTopics": "azurerm_eventgrid_system_topic",
    "Microsoft.EventGrid/systemTopics/eventSubscriptions": "azurerm_eventgrid_system_topic_event_subscription",
}
# Terraform-only: the package deployment between the apps and the subscriptions, which Bicep leaves to azd's
# deploy step and the postdeploy hook (infra/hooks).
TERRAFORM_ONLY = {"terraform_data"}


# ---------------------------------------------------------------------------------------------------------------
# Reading both sides


def unquote(key: str) -> str:
    """pycep keeps the quotes of quoted object keys ('near-expiry')."""
    return key[1:-1] if len(key) >= 2 and key[0] == key[-1] == "'" else key


def load_bicep(root: Path) -> dict[str, dict]:
    parser = BicepParser()
    return {str(p.relative_to(root)): parser.parse(text=p.read_text()) for p in sorted(root.rglob("*.bicep"))}


def load_terraform(root: Path) -> dict[str, dict]:
    out = {}
    for p in sorted(root.glob("*.tf")):
        with p.open() as f:
            out[p.name] = hcl2.load(f)
    return out


def bicep_var(files: dict[str, dict], name: str):
    return files["main.bicep"]["variables"][name]["value"]


def terraform_locals(files: dict[str, dict]) -> dict:
    merged: dict = {}
    for doc in files.values():
        for block in doc.get("locals", []):
            merged.update({k: v[0] for k, v in block.items() if not k.startswith("__")})
    return merged


def terraform_resources(files: dict[str, dict]) -> dict[tuple[str, str], dict]:
    out = {}
    for doc in files.values():
        for block in doc.get("resource", []):
            for rtype, named in block.items():
                for name, body in named.items():
                    out[(rtype, name)] = body
    return out


def attr(body: dict, key: str):
    """bc-python-hcl2 wraps every attribute value, and every nested block, in a one-element list."""
    value = body[key]
    assert isinstance(value, list) and len(value) == 1, f"{key}: unexpected shape {value!r}"
    return value[0]


def leaves(value) -> list:
    """Every scalar in a parsed structure (keys included), for tolerant checks of expressions."""
    if isinstance(value, dict):
        return [x for k, v in value.items() for x in [k, *leaves(v)]]
    if isinstance(value, list):
        return [x for v in value for x in leaves(v)]
    return [value]


def bicep_routing(files: dict[str, dict]) -> dict:
    config = {unquote(k): v for k, v in bicep_var(files, "handlerConfig").items()}
    return {h: {"event_types": sorted(c["eventTypes"]), "canary": c["canary"]} for h, c in config.items()}


def terraform_routing(files: dict[str, dict]) -> dict:
    loc = terraform_locals(files)
    return {h: {"event_types": sorted(c["event_types"]), "canary": c["canary"]} for h, c in loc["handler_config"].items()}


def routing_differences(bicep_root: Path, terraform_root: Path) -> list[str]:
    b = bicep_routing(load_bicep(bicep_root))
    t = terraform_routing(load_terraform(terraform_root))
    return [f"handler {h}: bicep {b.get(h)} != terraform {t.get(h)}" for h in sorted(set(b) | set(t)) if b.get(h) != t.get(h)]


def bicep_monitoring(files: dict[str, dict]) -> dict:
    main = files["main.bicep"]
    res = main["resources"]
    alerts = {a["metricName"]: a["threshold"] for a in bicep_var(files, "topicAlerts")}
    failure = res["functionFailureAlert"]["config"]["properties"]["criteria"]["allOf"][0]
    topic_logs = files["modules/eventgrid.bicep"]["resources"]["deliveryFailureLogs"]["config"]["properties"]["logs"]
    rule = res["deadLetterLifecycle"]["config"]["properties"]["policy"]["rules"][0]["definition"]
    workbook = json.dumps(res["dashboard"]["config"]["properties"]["serializedData"])
    return {
        "topic_metrics": sorted(alerts),
        "topic_namespace": res["topicMetricAlerts"]["config"]["config"]["properties"]["criteria"]["allOf"][0]["metricNamespace"],
        "failure_metric": (failure["metricNamespace"], failure["metricName"]),
        "topic_log_categories": sorted(l["category"] for l in topic_logs),
        "topic_log_table": files["modules/eventgrid.bicep"]["resources"]["deliveryFailureLogs"]["config"]["properties"][
            "logAnalyticsDestinationType"
        ],
        "dead_letter_days": rule["actions"]["baseBlob"]["delete"]["daysAfterModificationGreaterThan"] == "deadLetterRetentionDays",
        "workbook": "../workbook.json" in workbook and "__WORKSPACE_ID__" in workbook and "__DEAD_LETTER_CONTAINER__" in workbook,
        "action_group": "actionGroup" in res,
    }


def terraform_monitoring(files: dict[str, dict]) -> dict:
    res = terraform_resources(files)
    loc = terraform_locals(files)
    topic_alert = res[("azurerm_monitor_metric_alert", "topic")]
    failure = attr(res[("azurerm_monitor_metric_alert", "function_failures")], "criteria")
    diag = res[("azurerm_monitor_diagnostic_setting", "topic")]
    policy = attr(attr(res[("azurerm_storage_management_policy", "state")], "rule"), "actions")
    workbook = attr(res[("azurerm_application_insights_workbook", "dashboard")], "data_json")
    return {
        "topic_metrics": sorted(v["metric_name"] for v in loc["topic_alerts"].values()),
        "topic_namespace": attr(attr(topic_alert, "criteria"), "metric_namespace"),
        "failure_metric": (attr(failure, "metric_namespace"), attr(failure, "metric_name")),
        "topic_log_categories": sorted(attr(l, "category") for l in diag["enabled_log"]),
        "topic_log_table": attr(diag, "log_analytics_destination_type"),
        "dead_letter_days": attr(attr(policy, "base_blob"), "delete_after_days_since_modification_greater_than")
        == "${var.dead_letter_retention_days}",
        "workbook": "../workbook.json" in workbook and "__WORKSPACE_ID__" in workbook and "__DEAD_LETTER_CONTAINER__" in workbook,
        "action_group": ("azurerm_monitor_action_group", "alerts") in res,
    }


def monitoring_differences(bicep_root: Path, terraform_root: Path) -> list[str]:
    b = bicep_monitoring(load_bicep(bicep_root))
    t = terraform_monitoring(load_terraform(terraform_root))
    return [f"{k}: bicep {b.get(k)} != terraform {t.get(k)}" for k in sorted(set(b) | set(t)) if b.get(k) != t.get(k)]


# ---------------------------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def bicep() -> dict[str, dict]:
    return load_bicep(INFRA / "bicep")


@pytest.fixture(scope="module")
def terraform() -> dict[str, dict]:
    return load_terraform(INFRA / "terraform")


# ---------------------------------------------------------------------------------------------------------------
# Both sides parse


def test_every_bicep_file_parses_with_checkovs_parser(bicep):
    # load_bicep raises on the first file pycep cannot parse; checkov would only log and skip it.
    assert set(bicep) == {
        "main.bicep",
        "subscriptions.bicep",
        "modules/handler.bicep",
        "modules/eventgrid.bicep",
        "modules/vault-grants.bicep",
        "modules/secret-grants.bicep",
        "modules/key-grants.bicep",
        "modules/app-grants.bicep",
    }
    for name, doc in bicep.items():
        assert doc.get("resources"), f"{name} declares no resources"


def test_every_bicep_module_path_exists(bicep):
    for name, doc in bicep.items():
        for module, decl in doc.get("modules", {}).items():
            target = (INFRA / "bicep" / name).parent / decl["detail"]["path"]
            assert target.is_file(), f"{name}: module {module} points at missing {target}"


def test_every_bicep_param_and_terraform_variable_has_a_description(bicep, terraform):
    for name, doc in bicep.items():
        for param, decl in doc.get("parameters", {}).items():
            kinds = [d["type"] for d in decl["decorators"]]
            assert "description" in kinds, f"{name}: param {param} has no @description"
        for out, decl in doc.get("outputs", {}).items():
            kinds = [d["type"] for d in decl["decorators"]]
            assert "description" in kinds, f"{name}: output {out} has no @description"
    for doc in terraform.values():
        for block in doc.get("variable", []):
            for var, decl in block.items():
                assert attr(decl, "description"), f"variable {var} has no description"
        for block in doc.get("output", []):
            for out, decl in block.items():
                assert attr(decl, "description"), f"output {out} has no description"


# ---------------------------------------------------------------------------------------------------------------
# Same resources


def resource_kinds(bicep: dict[str, dict], terraform: dict[str, dict]) -> tuple[set[str], set[str]]:
    bicep_kinds = {
        decl["type"] for doc in bicep.values() for decl in doc.get("resources", {}).values() if not decl["existing"]
    }
    unmapped = bicep_kinds - set(ARM_TO_TERRAFORM)
    assert not unmapped, f"Bicep declares kinds the parity map does not know: {unmapped}"
    tf_kinds = set()
    for (rtype, _), body in terraform_resources(terraform).items():
        if rtype == "azapi_resource":
            tf_kinds.add("azapi_resource:" + attr(body, "type").split("@")[0])
        elif rtype not in TERRAFORM_ONLY:
            tf_kinds.add(rtype)
    return {ARM_TO_TERRAFORM[k] for k in bicep_kinds}, tf_kinds


def test_same_resource_kinds(bicep, terraform):
    from_bicep, from_terraform = resource_kinds(bicep, terraform)
    assert from_bicep == from_terraform


def test_same_api_version_for_the_function_apps(bicep, terraform):
    (site,) = [d for d in bicep["modules/handler.bicep"]["resources"].values() if d["type"] == "Microsoft.Web/sites"]
    app = terraform_resources(terraform)[("azapi_resource", "function_app")]
    assert attr(app, "type") == f"Microsoft.Web/sites@{site['api_version']}"


def test_same_default_handlers(bicep, terraform):
    bicep_default = bicep["main.bicep"]["parameters"]["handlers"]["default"]
    tf_default = None
    for doc in terraform.values():
        for block in doc.get("variable", []):
            if "handlers" in block:
                tf_default = attr(block["handlers"], "default")
    assert bicep_default == tf_default == HANDLERS


# ---------------------------------------------------------------------------------------------------------------
# Same routing and subscriptions


def test_same_event_routing():
    assert routing_differences(INFRA / "bicep", INFRA / "terraform") == []
    assert sorted(bicep_routing(load_bicep(INFRA / "bicep"))) == sorted(HANDLERS)


def test_subscription_delivery_settings_match(bicep, terraform):
    (sub,) = [
        d
        for d in bicep["subscriptions.bicep"]["resources"].values()
        if d["type"] == "Microsoft.EventGrid/systemTopics/eventSubscriptions"
    ]
    p = sub["config"]["config"]["properties"]
    tf = terraform_resources(terraform)[("azurerm_eventgrid_system_topic_event_subscription", "handler")]
    endpoint = attr(tf, "azure_function_endpoint")
    retry = attr(tf, "retry_policy")

    assert p["destination"]["endpointType"] == "AzureFunction" and "function_id" in endpoint
    assert p["destination"]["properties"]["maxEventsPerBatch"] == attr(endpoint, "max_events_per_batch") == 1
    assert (
        p["destination"]["properties"]["preferredBatchSizeInKilobytes"]
        == attr(endpoint, "preferred_batch_size_in_kilobytes")
        == 64
    )
    assert p["retryPolicy"]["maxDeliveryAttempts"] == attr(retry, "max_delivery_attempts") == 30
    assert p["retryPolicy"]["eventTimeToLiveInMinutes"] == attr(retry, "event_time_to_live") == 1440
    assert p["eventDeliverySchema"] == attr(tf, "event_delivery_schema") == "EventGridSchema"

    dead = p["deadLetterWithResourceIdentity"]
    assert dead["deadLetterDestination"]["endpointType"] == "StorageBlob"
    assert dead["deadLetterDestination"]["properties"]["blobContainerName"] == "deadLetterContainerName"
    assert dead["identity"]["type"] == attr(attr(tf, "dead_letter_identity"), "type") == "UserAssigned"
    destination = attr(tf, "storage_blob_dead_letter_destination")
    assert attr(destination, "storage_blob_container_name") == "${azurerm_storage_container.dead_letter.name}"
    assert attr(destination, "storage_account_id") == "${azurerm_storage_account.state.id}"
    assert {"s", "eventTypes"} <= set(leaves(p["filter"]["includedEventTypes"]))
    assert {"s", "advancedFilters"} <= set(leaves(p["filter"]["advancedFilters"]))
    assert attr(tf, "included_event_types") == "${local.handler_config[each.key].event_types}"
    # A handler without event types (the coming timer-triggered sweep) gets no subscription on either side.
    assert "eventTypes" in leaves(sub["config"]["condition"])
    assert "length(local.handler_config[h].event_types) > 0" in attr(tf, "for_each")


def subscription_parameters(bicep: dict[str, dict]) -> dict:
    return bicep["main.bicep"]["outputs"]["KEYTURN_SUBSCRIPTION_PARAMETERS"]["value"]["parameters"]


def test_subscription_parameters_match_subscriptions_bicep(bicep):
    # main.bicep hands subscriptions.bicep its parameters (through the postdeploy hook): same names, all of them.
    assert set(subscription_parameters(bicep)) == set(bicep["subscriptions.bicep"]["parameters"])


def test_subscription_function_endpoints_match(bicep, terraform):
    subs = subscription_parameters(bicep)["subscriptions"]["value"]
    assert subs["loop_type"]["detail"]["array_name"] == "handlers"
    assert subs["config"]["functionId"] == "${apps[i].outputs.appId}/functions/${h}"
    tf = terraform_resources(terraform)[("azurerm_eventgrid_system_topic_event_subscription", "handler")]
    assert attr(attr(tf, "azure_function_endpoint"), "function_id") == (
        "${azapi_resource.function_app[each.key].id}/functions/${each.key}"
    )


def test_canary_filter_matches(bicep, terraform):
    # test-event takes only the canary (StringIn subject), every other handler never sees it (StringNotIn).
    subs = subscription_parameters(bicep)["subscriptions"]["value"]["config"]
    bicep_leaves = leaves(subs["advancedFilters"])
    for needle in ("StringIn", "StringNotIn", "only", "canary", "subject", "canaryFilterValues"):
        assert needle in bicep_leaves, f"Bicep canary filter lost {needle}"
    assert bicep_var(bicep, "canaryFilterValues") == ["canarySecretName"]

    tf = terraform_resources(terraform)[("azurerm_eventgrid_system_topic_event_subscription", "handler")]
    filters = {}
    for dyn in tf["dynamic"]:
        body = dyn["advanced_filter"]
        (operator,) = [k for k in attr(body, "content") if k.startswith("string_")]
        filters[operator] = body
    assert set(filters) == {"string_in", "string_not_in"}
    assert '== "only"' in attr(filters["string_in"], "for_each")
    assert '== "exclude"' in attr(filters["string_not_in"], "for_each")
    for operator, body in filters.items():
        cond = attr(attr(body, "content"), operator)
        assert attr(cond, "key") == "subject" and attr(cond, "values") == ["${var.canary_secret_name}"]


# ---------------------------------------------------------------------------------------------------------------
# Same operations


def test_same_alerts_logs_lifecycle_and_dashboard():
    assert monitoring_differences(INFRA / "bicep", INFRA / "terraform") == []
    m = bicep_monitoring(load_bicep(INFRA / "bicep"))
    assert m["topic_metrics"] == ["DeadLetteredCount", "DeliveryAttemptFailCount", "DroppedEventCount"]
    assert m["topic_namespace"] == "Microsoft.EventGrid/systemTopics"
    assert m["failure_metric"] == ("microsoft.insights/components", "requests/failed")
    assert m["topic_log_categories"] == ["DeliveryFailures"] and m["topic_log_table"] == "Dedicated"
    assert m["dead_letter_days"] and m["workbook"] and m["action_group"]


def test_workbook_reads_the_handlers_log_lines():
    workbook = json.loads((INFRA / "workbook.json").read_text())
    assert workbook["version"] == "Notebook/1.0"
    queries = {i["name"]: i["content"]["query"] for i in workbook["items"] if i["type"] == 3}
    assert {"rotations", "failures", "dead-letters", "expiring-soon", "delivery-failures"} <= set(queries)
    # The fields docs/operations.md documents for every line ("What keyturn writes").
    for name in ("rotations", "failures", "expiring-soon"):
        for field in ("AppTraces", "parse_json(Message)", "e.outcome", "e.function"):
            assert field in queries[name], f"{name} lost {field}"
    assert "__DEAD_LETTER_CONTAINER__" in queries["dead-letters"]
    # DeliveryFailures logs land in their resource-specific table (logAnalyticsDestinationType Dedicated).
    assert "AegDeliveryFailureLogs" in queries["delivery-failures"]
    for item in workbook["items"]:
        if item["type"] == 3:
            assert item["content"]["crossComponentResources"] == ["__WORKSPACE_ID__"]


# ---------------------------------------------------------------------------------------------------------------
# The comparison can fail


@pytest.fixture()
def infra_copy(tmp_path: Path) -> Path:
    for side in ("bicep", "terraform"):
        shutil.copytree(INFRA / side, tmp_path / side)
    shutil.copy(INFRA / "roles.json", tmp_path / "roles.json")
    shutil.copy(INFRA / "workbook.json", tmp_path / "workbook.json")
    return tmp_path


def drop_line(path: Path, pattern: str) -> None:
    text = path.read_text()
    new, n = re.subn(pattern, "", text, count=1, flags=re.MULTILINE)
    assert n == 1, f"{pattern!r} not found in {path}"
    path.write_text(new)


def test_detects_an_event_type_removed_from_terraform_only(infra_copy):
    drop_line(infra_copy / "terraform" / "locals.tf", r'^ *"Microsoft.KeyVault.KeyNearExpiry",\n')
    diffs = routing_differences(infra_copy / "bicep", infra_copy / "terraform")
    assert any(d.startswith("handler near-expiry") for d in diffs), diffs


def test_detects_an_alert_missing_on_one_side(infra_copy):
    text = (infra_copy / "terraform" / "monitoring.tf").read_text()
    start = text.index('    "dropped" = {')
    end = text.index("    }\n", start) + len("    }\n")
    (infra_copy / "terraform" / "monitoring.tf").write_text(text[:start] + text[end:])
    diffs = monitoring_differences(infra_copy / "bicep", infra_copy / "terraform")
    assert any(d.startswith("topic_metrics") for d in diffs), diffs


def test_detects_a_resource_kind_on_one_side_only(infra_copy):
    drop_line(infra_copy / "bicep" / "main.bicep", r"^resource deadLetterLifecycle .*\n(.*\n)*?}\n")
    from_bicep, from_terraform = resource_kinds(load_bicep(infra_copy / "bicep"), load_terraform(infra_copy / "terraform"))
    assert from_terraform - from_bicep == {"azurerm_storage_management_policy"}


# ---------------------------------------------------------------------------------------------------------------
# Same app settings


SETTING = re.compile(r"\b(KEYTURN_[A-Z_]+|AzureWebJobsStorage__\w+|APPLICATIONINSIGHTS_[A-Z_]+|AZURE_CLIENT_ID|FUNCTIONS_[A-Z_]+|WEBSITE_[A-Z_]+)\b")


def app_setting_names(root: Path, pattern: str) -> set[str]:
    """Every app setting name written in the deployment's files (comments, descriptions and Bicep's
    outputs for azd excluded)."""
    names = set()
    for p in root.glob(pattern):
        for line in p.read_text().splitlines():
            if line.startswith("output ") or "description" in line:
                continue
            code = line.split("//")[0] if p.suffix == ".bicep" else line.split("#")[0]
            names |= set(SETTING.findall(code))
    return names


def test_same_app_settings():
    bicep = app_setting_names(INFRA / "bicep", "**/*.bicep")
    terraform = app_setting_names(INFRA / "terraform", "*.tf")
    assert bicep == terraform
    assert {"KEYTURN_VAULTS", "KEYTURN_LOCK_ACCOUNT_URL", "AzureWebJobsStorage__clientId", "AZURE_CLIENT_ID"} <= bicep


def test_detects_an_app_setting_on_one_side_only(infra_copy):
    drop_line(infra_copy / "terraform" / "locals.tf", r"^ *KEYTURN_LOG *= var.log_filter\n")
    bicep = app_setting_names(infra_copy / "bicep", "**/*.bicep")
    terraform = app_setting_names(infra_copy / "terraform", "*.tf")
    assert bicep - terraform == {"KEYTURN_LOG"}
