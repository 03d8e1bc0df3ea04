"""infra/bicep and infra/terraform must deploy the same thing.

Neither Azure nor the Terraform registry is reachable here, so this test works on the declarations: it parses
every Bicep file with pycep (the parser checkov's Bicep runner uses) and every Terraform file with hcl2
(bc-python-hcl2, the python-hcl2 fork checkov uses), then compares what both declare: resource kinds, the role
matrix (per handler and scope), and each Event Grid subscription's event types, canary filter, batch size, retry
policy and dead-lettering. The role matrix is also checked against infra/README.md, which documents it.

The last tests mutate a copy of the tree (drop one role on one side) and check that the comparison notices.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import hcl2
import pytest
from pycep import BicepParser

INFRA = Path(__file__).resolve().parent.parent
HANDLERS = ["near-expiry", "expired", "new-version", "test-event"]

# Built-in role definition ids (learn.microsoft.com/azure/role-based-access-control/built-in-roles).
BUILT_IN_ROLES = {
    "Key Vault Reader": "21090545-7ca7-4776-b22c-e363652d74d2",
    "Key Vault Secrets User": "4633458b-17de-408a-b874-0445c86b69e6",
    "Key Vault Secrets Officer": "b86a8fe4-44ce-4948-aee5-eccb2c155cd7",
    "Key Vault Crypto Officer": "14b46e9e-c2b7-41b4-b07b-48a6ebf60603",
    "Key Vault Certificates Officer": "a4417e6f-fecd-4de8-b567-7b0420556985",
    "Storage Blob Data Owner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "Storage Blob Data Contributor": "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
    "Monitoring Metrics Publisher": "3913510d-42f4-4e42-8a64-420c390055eb",
}

# ARM resource type (Bicep) -> Terraform resource type. blobServices is a block of azurerm_storage_account;
# the function apps are azapi_resource, named by the ARM type they carry.
ARM_TO_TERRAFORM = {
    "Microsoft.Storage/storageAccounts": "azurerm_storage_account",
    "Microsoft.Storage/storageAccounts/blobServices": "azurerm_storage_account",
    "Microsoft.Storage/storageAccounts/blobServices/containers": "azurerm_storage_container",
    "Microsoft.Insights/diagnosticSettings": "azurerm_monitor_diagnostic_setting",
    "Microsoft.OperationalInsights/workspaces": "azurerm_log_analytics_workspace",
    "Microsoft.Insights/components": "azurerm_application_insights",
    "Microsoft.ManagedIdentity/userAssignedIdentities": "azurerm_user_assigned_identity",
    "Microsoft.Web/serverfarms": "azurerm_service_plan",
    "Microsoft.Web/sites": "azapi_resource:Microsoft.Web/sites",
    "Microsoft.Authorization/roleAssignments": "azurerm_role_assignment",
    "Microsoft.EventGrid/systemTopics": "azurerm_eventgrid_system_topic",
    "Microsoft.EventGrid/systemTopics/eventSubscriptions": "azurerm_eventgrid_system_topic_event_subscription",
}


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


def bicep_matrix(files: dict[str, dict]) -> dict:
    config = {unquote(k): v for k, v in bicep_var(files, "handlerConfig").items()}
    return {
        "handlers": {
            h: {
                "event_types": sorted(c["eventTypes"]),
                "canary": c["canary"],
                "vault_roles": sorted(c["vaultRoles"]),
                "mirror_roles": sorted(c["mirrorRoles"]),
            }
            for h, c in config.items()
        },
        "expired_action_roles": sorted(bicep_var(files, "expiredActionRoles")),
        "storage_roles": sorted(bicep_var(files, "storageRoles")),
        "insights_roles": sorted(bicep_var(files, "insightsRoles")),
        "notify_roles": sorted(bicep_var(files, "notifyRoles")),
        "dead_letter_roles": sorted(bicep_var(files, "deadLetterRoles")),
    }


def terraform_matrix(files: dict[str, dict]) -> dict:
    loc = terraform_locals(files)
    return {
        "handlers": {
            h: {
                "event_types": sorted(c["event_types"]),
                "canary": c["canary"],
                "vault_roles": sorted(c["vault_roles"]),
                "mirror_roles": sorted(c["mirror_roles"]),
            }
            for h, c in loc["handler_config"].items()
        },
        "expired_action_roles": sorted(loc["expired_action_roles"]),
        "storage_roles": sorted(loc["storage_roles"]),
        "insights_roles": sorted(loc["insights_roles"]),
        "notify_roles": sorted(loc["notify_roles"]),
        "dead_letter_roles": sorted(loc["dead_letter_roles"]),
    }


def role_differences(bicep_root: Path, terraform_root: Path) -> list[str]:
    """Human-readable differences between the two role matrices (empty when they agree)."""
    b = bicep_matrix(load_bicep(bicep_root))
    t = terraform_matrix(load_terraform(terraform_root))
    diffs = []
    for key in sorted(set(b) | set(t)):
        if key == "handlers":
            for h in sorted(set(b[key]) | set(t[key])):
                bh, th = b[key].get(h), t[key].get(h)
                if bh != th:
                    diffs.append(f"handler {h}: bicep {bh} != terraform {th}")
        elif b.get(key) != t.get(key):
            diffs.append(f"{key}: bicep {b.get(key)} != terraform {t.get(key)}")
    return diffs


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
        "modules/handler.bicep",
        "modules/vault-roles.bicep",
        "modules/eventgrid.bicep",
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
    for doc in terraform.values():
        for block in doc.get("variable", []):
            for var, decl in block.items():
                assert attr(decl, "description"), f"variable {var} has no description"
        for block in doc.get("output", []):
            for out, decl in block.items():
                assert attr(decl, "description"), f"output {out} has no description"


# ---------------------------------------------------------------------------------------------------------------
# Same resources


def test_same_resource_kinds(bicep, terraform):
    bicep_kinds = {
        decl["type"] for doc in bicep.values() for decl in doc.get("resources", {}).values() if not decl["existing"]
    }
    unmapped = bicep_kinds - set(ARM_TO_TERRAFORM)
    assert not unmapped, f"Bicep declares kinds the parity map does not know: {unmapped}"

    tf_kinds = set()
    for (rtype, _), body in terraform_resources(terraform).items():
        if rtype == "azapi_resource":
            tf_kinds.add("azapi_resource:" + attr(body, "type").split("@")[0])
        else:
            tf_kinds.add(rtype)
    assert {ARM_TO_TERRAFORM[k] for k in bicep_kinds} == tf_kinds


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
# Same roles


def test_same_role_matrix():
    assert role_differences(INFRA / "bicep", INFRA / "terraform") == []


def test_role_matrix_covers_every_handler(bicep):
    assert sorted(bicep_matrix(bicep)["handlers"]) == sorted(HANDLERS)


def test_least_privilege_shape(bicep):
    m = bicep_matrix(bicep)["handlers"]
    readers = {"Key Vault Reader", "Key Vault Secrets User"}
    # Only near-expiry writes to the monitored vault by default; expired writes only when its actions are on.
    assert set(m["expired"]["vault_roles"]) <= readers
    assert set(m["test-event"]["vault_roles"]) <= readers
    assert set(m["new-version"]["vault_roles"]) <= readers
    assert m["new-version"]["mirror_roles"] == ["Key Vault Secrets Officer"]
    assert all(not m[h]["mirror_roles"] for h in HANDLERS if h != "new-version")
    assert set(m["near-expiry"]["vault_roles"]) == {
        "Key Vault Secrets Officer",
        "Key Vault Crypto Officer",
        "Key Vault Certificates Officer",
    }


def test_bicep_role_ids_are_the_built_in_ones(bicep):
    ids = {unquote(k): v for k, v in bicep_var(bicep, "roleIds").items()}
    assert ids == BUILT_IN_ROLES
    m = bicep_matrix(bicep)
    used = {r for c in m["handlers"].values() for r in c["vault_roles"] + c["mirror_roles"]}
    used |= {r for k, v in m.items() if k != "handlers" for r in v}
    assert used <= set(ids), f"roles without an id: {used - set(ids)}"


def test_bicep_wires_every_role_list(bicep):
    apps = bicep["main.bicep"]["modules"]["apps"]["config"]["config"]["params"]
    assert "expiredActionRoles" in leaves(apps["vaultRoles"]) and "vaultRoles" in leaves(apps["vaultRoles"])
    assert "notifyRoles" in leaves(apps["vaultRoles"]) and "notifyRoles" in leaves(apps["notifyRoles"])
    assert "mirrorRoles" in leaves(apps["mirrorRoles"])
    assert apps["storageRoles"] == "storageRoles" and apps["insightsRoles"] == "insightsRoles"

    handler = bicep["modules/handler.bicep"]
    loops = {
        decl["config"]["loop_type"]["detail"]["array_name"]
        for decl in handler["resources"].values()
        if decl["type"] == "Microsoft.Authorization/roleAssignments"
    }
    assert loops == {"storageRoles", "insightsRoles"}
    vault_modules = {
        name: decl for name, decl in handler["modules"].items() if decl["detail"]["path"] == "vault-roles.bicep"
    }
    assert set(vault_modules) == {"vaultAccess", "notifyAccess", "mirrorAccess"}
    (dead_letter,) = [
        d
        for d in bicep["main.bicep"]["resources"].values()
        if d["type"] == "Microsoft.Authorization/roleAssignments"
    ]
    assert dead_letter["config"]["loop_type"]["detail"]["array_name"] == "deadLetterRoles"


def test_terraform_wires_every_role_list(terraform):
    res = terraform_resources(terraform)
    assignments = {name: body for (rtype, name), body in res.items() if rtype == "azurerm_role_assignment"}
    assert attr(assignments["storage"], "for_each") == "${local.storage_role_assignments}"
    assert attr(assignments["insights"], "for_each") == "${local.insights_role_assignments}"
    assert attr(assignments["vault"], "for_each") == "${local.vault_role_assignments}"
    assert "local.dead_letter_roles" in attr(assignments["dead_letter"], "for_each")

    loc = terraform_locals(terraform)
    assert "local.expired_action_roles" in loc["monitored_vault_roles"]
    assert "vault_roles" in loc["monitored_vault_roles"]
    grants = loc["vault_role_grants"]
    for needle in ("local.monitored_vault_roles", "local.notify_roles", "mirror_roles"):
        assert needle in grants, f"vault_role_grants does not use {needle}"
    assert "local.storage_roles" in loc["storage_role_assignments"]
    assert "local.insights_roles" in loc["insights_role_assignments"]


def test_readme_documents_the_role_matrix(bicep):
    readme = (INFRA / "README.md").read_text()
    rows = {}
    for line in readme.splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0] in HANDLERS:
            rows[cells[0]] = line
    m = bicep_matrix(bicep)["handlers"]
    for h in HANDLERS:
        assert h in rows, f"README role matrix has no row for {h}"
        for role in m[h]["vault_roles"] + m[h]["mirror_roles"]:
            assert role in rows[h], f"README row for {h} does not mention {role}"


# ---------------------------------------------------------------------------------------------------------------
# Same subscriptions


def test_subscription_delivery_settings_match(bicep, terraform):
    (sub,) = [
        d
        for d in bicep["modules/eventgrid.bicep"]["resources"].values()
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
    assert {"s", "eventTypes"} <= set(leaves(p["filter"]["includedEventTypes"]))
    assert {"s", "advancedFilters"} <= set(leaves(p["filter"]["advancedFilters"]))
    assert attr(tf, "included_event_types") == "${local.handler_config[each.key].event_types}"


def test_subscription_function_endpoints_match(bicep, terraform):
    subs = bicep["main.bicep"]["modules"]["eventGrid"]["config"]["params"]["subscriptions"]
    assert subs["loop_type"]["detail"]["array_name"] == "handlers"
    assert subs["config"]["functionId"] == "${apps[i].outputs.appId}/functions/${h}"
    tf = terraform_resources(terraform)[("azurerm_eventgrid_system_topic_event_subscription", "handler")]
    assert attr(attr(tf, "azure_function_endpoint"), "function_id") == (
        "${azapi_resource.function_app[each.key].id}/functions/${each.key}"
    )


def test_canary_filter_matches(bicep, terraform):
    # test-event takes only the canary (StringIn subject), every other handler never sees it (StringNotIn).
    subs = bicep["main.bicep"]["modules"]["eventGrid"]["config"]["params"]["subscriptions"]["config"]
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


def test_subscriptions_can_be_deferred_on_both_sides(bicep, terraform):
    (sub,) = [
        d
        for d in bicep["modules/eventgrid.bicep"]["resources"].values()
        if d["type"] == "Microsoft.EventGrid/systemTopics/eventSubscriptions"
    ]
    assert sub["config"]["condition"] == "createSubscriptions"
    tf = terraform_resources(terraform)[("azurerm_eventgrid_system_topic_event_subscription", "handler")]
    assert attr(tf, "for_each").startswith("${var.create_subscriptions ?")


# ---------------------------------------------------------------------------------------------------------------
# The comparison can fail


@pytest.fixture()
def infra_copy(tmp_path: Path) -> Path:
    for side in ("bicep", "terraform"):
        shutil.copytree(INFRA / side, tmp_path / side)
    return tmp_path


def drop_line(path: Path, pattern: str) -> None:
    text = path.read_text()
    new, n = re.subn(pattern, "", text, count=1, flags=re.MULTILINE)
    assert n == 1, f"{pattern!r} not found in {path}"
    path.write_text(new)


def test_detects_a_role_removed_from_terraform_only(infra_copy):
    drop_line(infra_copy / "terraform" / "locals.tf", r'^ *"Key Vault Crypto Officer",\n')
    diffs = role_differences(infra_copy / "bicep", infra_copy / "terraform")
    assert any("near-expiry" in d and "Key Vault Crypto Officer" in d for d in diffs), diffs


def test_detects_a_role_removed_from_bicep_only(infra_copy):
    drop_line(infra_copy / "bicep" / "main.bicep", r"^ *'Storage Blob Data Owner'\n")
    diffs = role_differences(infra_copy / "bicep", infra_copy / "terraform")
    assert any(d.startswith("storage_roles") for d in diffs), diffs
