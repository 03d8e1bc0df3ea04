"""infra/roles.json is the role matrix, and the only place it is written.

- Its format is the one the local stack reads (roleDefinitions, customRoles, handlers with {role, scope, when?},
  everyHandler).
- Its role ids are the platform's built-in ones; its custom role (keyturn key operator) holds only the list and
  regenerate actions of the Azure key family, as the resource providers publish them.
- Its grants are least privilege in the ways issue 15 names (checked on the file, so a change that widens a grant
  fails here before it reaches Azure or the emulator).
- Bicep and Terraform read it (loadJsonContent, jsondecode(file())) and wire every scope it uses; neither writes
  a role id or a handler's role name of its own.
- infra/README.md shows it as a table, row for row.
Each check is proven on a copy with the rule broken.
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

# Built-in role definition ids as the platform publishes them: MicrosoftDocs/azure-docs
# articles/role-based-access-control/built-in-roles.md (and built-in-roles/security.md, storage.md,
# monitor.md), cross-checked with ../shared/reference/azure-rbac-identity-and-tools.md for Key Vault and with
# public templates that assign them. Each was looked up on its own: the roles.json first written had Storage Table
# Data Contributor as ...0319b160ff3c, an id that exists nowhere; the role is ...0319b160aaa3.
BUILT_IN_ROLES = {
    "Key Vault Administrator": "00482a5a-887f-4fb3-b363-3b7fe8e74483",
    "Key Vault Reader": "21090545-7ca7-4776-b22c-e363652d74d2",
    "Key Vault Secrets Officer": "b86a8fe4-44ce-4948-aee5-eccb2c155cd7",
    "Key Vault Secrets User": "4633458b-17de-408a-b874-0445c86b69e6",
    "Key Vault Crypto Officer": "14b46e9e-c2b7-41b4-b07b-48a6ebf60603",
    "Key Vault Crypto User": "12338af0-0e69-4776-bea7-57ae8d297424",
    "Key Vault Crypto Service Encryption User": "e147488a-f6f5-4113-8e2d-b22465e65bf6",
    "Key Vault Certificates Officer": "a4417e6f-fecd-4de8-b567-7b0420556985",
    "Key Vault Certificate User": "db79e9a7-68ee-4b58-9aeb-b90e7c24fcba",
    "Storage Blob Data Owner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "Storage Blob Data Contributor": "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
    "Storage Blob Data Reader": "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1",
    "Storage Queue Data Contributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    "Storage Table Data Contributor": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
    "Storage Account Key Operator Service Role": "81a9662b-bebf-436f-a333-f67b29880f12",
    "Monitoring Metrics Publisher": "3913510d-42f4-4e42-8a64-420c390055eb",
    # built-in-roles/web-and-mobile.md and containers.md; each also in public templates that assign it.
    "Website Contributor": "de139f84-1756-47ae-9be6-808fbbe84772",
    "Container Apps Contributor": "358470bc-b998-42bd-ab17-a7e34c199c0f",
}

SCOPES = {
    "vault",
    "canarySecret",
    "mirrorVaults",
    "notificationSecret",
    "hostStorage",
    "lockContainer",
    "sweepStateContainer",
    "deadLetterContainer",
    "azureKeyResources",
    "consumerWebApps",
    "consumerContainerApps",
    "insights",
}
FLAGS = {"expiredActionsEnabled", "sweepRepairEnabled"}

# Roles that may read a secret's value (secrets/getSecret/action), per the reference's dataActions table.
READS_SECRET_VALUES = {
    "Key Vault Administrator",
    "Key Vault Secrets Officer",
    "Key Vault Secrets User",
    "Key Vault Certificate User",
}
VAULT_WRITERS = {
    "Key Vault Administrator",
    "Key Vault Secrets Officer",
    "Key Vault Crypto Officer",
    "Key Vault Certificates Officer",
    "Key Vault Crypto User",
}


# The Azure key family's operations, as the resource providers publish them ("Azure permissions for ..." in
# MicrosoftDocs/azure-docs articles/role-based-access-control/permissions/*.md, and each provider's operations
# list): per type, the list and regenerate actions keyturn's azure-key provider calls
# (crates/rotation/src/provider/azure_keys/table.rs; the Rust test
# `the_key_operator_role_holds_exactly_the_actions_the_served_operations_need` in crates/local/src/arm/mod.rs
# derives them from the ARM emulator's routes and compares them with roles.json). The custom role must hold these,
# exactly: no read, write or delete of the resource (what DocumentDB Account Contributor, Redis Cache Contributor
# and the like add), no wildcard.
KEY_FAMILY_ACTIONS = {
    "Microsoft.Storage/storageAccounts": ["listkeys", "regeneratekey"],
    "Microsoft.DocumentDB/databaseAccounts": ["listKeys", "regenerateKey"],
    "Microsoft.Cache/redis": ["listKeys", "regenerateKey"],
    "Microsoft.ServiceBus/namespaces/authorizationRules": ["listkeys", "regenerateKeys"],
    "Microsoft.ServiceBus/namespaces/queues/authorizationRules": ["listkeys", "regenerateKeys"],
    "Microsoft.ServiceBus/namespaces/topics/authorizationRules": ["listkeys", "regenerateKeys"],
    "Microsoft.EventHub/namespaces/authorizationRules": ["listkeys", "regenerateKeys"],
    "Microsoft.EventHub/namespaces/eventhubs/authorizationRules": ["listkeys", "regenerateKeys"],
    "Microsoft.CognitiveServices/accounts": ["listKeys", "regenerateKey"],
    "Microsoft.Search/searchServices": ["listAdminKeys", "regenerateAdminKey"],
}
KEY_OPERATOR = "keyturn key operator"


def load(root: Path) -> dict:
    return json.loads((root / "roles.json").read_text())


def grants(roles: dict, handler: str, flags: set[str] = frozenset()) -> set[tuple[str, str]]:
    every = roles["handlers"][handler] + roles["everyHandler"]
    return {(g["role"], g["scope"]) for g in every if g.get("when") is None or g["when"] in flags}


# ---------------------------------------------------------------------------------------------------------------
# Format and ids


def format_problems(roles: dict) -> list[str]:
    problems = []
    if set(roles) != {"$comment", "roleDefinitions", "customRoles", "handlers", "everyHandler"}:
        problems.append(f"top-level keys {sorted(roles)}")
    for name, role in roles.get("customRoles", {}).items():
        if set(role) != {"description", "actions"}:
            problems.append(f"custom role {name}: keys {sorted(role)}, not description and actions")
        if name in roles["roleDefinitions"]:
            problems.append(f"custom role {name} is also in roleDefinitions")
    entries = [(h, g) for h, gs in roles["handlers"].items() for g in gs] + [("*", g) for g in roles["everyHandler"]]
    for h, g in entries:
        if not set(g) <= {"role", "scope", "when"} or not {"role", "scope"} <= set(g):
            problems.append(f"{h}: entry {g} is not {{role, scope, when?}}")
            continue
        if g["role"] not in roles["roleDefinitions"] and g["role"] not in roles.get("customRoles", {}):
            problems.append(f"{h}: role {g['role']} has no roleDefinitions or customRoles entry")
        elif g["role"] in roles.get("customRoles", {}) and g["scope"] != "azureKeyResources":
            # Only this scope's wiring creates the custom roles and assigns them (both deployments).
            problems.append(f"{h}: custom role {g['role']} at {g['scope']}, which creates no custom role")
        if g["scope"] not in SCOPES:
            problems.append(f"{h}: unknown scope {g['scope']}")
        if "when" in g and g["when"] not in FLAGS:
            problems.append(f"{h}: unknown flag {g['when']}")
    return problems


def id_problems(roles: dict) -> list[str]:
    return [
        f"{name}: {rid} is not the built-in role's id ({BUILT_IN_ROLES.get(name, 'no such built-in role')})"
        for name, rid in roles["roleDefinitions"].items()
        if BUILT_IN_ROLES.get(name) != rid
    ]


def test_format_is_the_one_the_local_stack_reads():
    roles = load(INFRA)
    assert format_problems(roles) == []
    assert sorted(roles["handlers"]) == sorted(HANDLERS)


def test_role_ids_are_the_built_in_ones():
    assert id_problems(load(INFRA)) == []


def test_detects_a_wrong_role_id_and_an_unknown_scope():
    roles = load(INFRA)
    roles["roleDefinitions"]["Key Vault Reader"] = "21090545-7ca7-4776-b22c-e363652d74d3"
    roles["roleDefinitions"]["Storage Table Data Contributor"] = "0a9a7e1f-b9d0-4cc4-a60d-0319b160ff3c"
    roles["handlers"]["expired"].append({"role": "Key Vault Reader", "scope": "subscription"})
    assert any(p.startswith("Key Vault Reader:") for p in id_problems(roles))
    assert any(p.startswith("Storage Table Data Contributor:") for p in id_problems(roles))
    assert "expired: unknown scope subscription" in format_problems(roles)


def custom_role_problems(roles: dict) -> list[str]:
    """keyturn key operator holds exactly the family's list and regenerate actions."""
    problems = []
    role = roles.get("customRoles", {}).get(KEY_OPERATOR)
    if role is None:
        return [f"no custom role {KEY_OPERATOR}"]
    expected = {f"{kind}/{op}/action" for kind, ops in KEY_FAMILY_ACTIONS.items() for op in ops}
    actions = role["actions"]
    for action in actions:
        if "*" in action:
            problems.append(f"{KEY_OPERATOR}: wildcard action {action}")
        elif action not in expected:
            problems.append(f"{KEY_OPERATOR}: {action} is not a list or regenerate action of the Azure key family")
    for action in sorted(expected - set(actions)):
        problems.append(f"{KEY_OPERATOR}: lacks {action}")
    if len(actions) != len(set(actions)):
        problems.append(f"{KEY_OPERATOR}: an action is listed twice")
    return problems


def test_the_key_operator_holds_exactly_the_key_familys_list_and_regenerate_actions():
    assert custom_role_problems(load(INFRA)) == []


@pytest.mark.parametrize(
    "mutation, expected",
    [
        (
            lambda a: a.append("Microsoft.DocumentDB/databaseAccounts/write"),
            f"{KEY_OPERATOR}: Microsoft.DocumentDB/databaseAccounts/write is not a list or regenerate action of the Azure key family",
        ),
        (lambda a: a.append("Microsoft.Cache/redis/*"), f"{KEY_OPERATOR}: wildcard action Microsoft.Cache/redis/*"),
        (
            lambda a: a.remove("Microsoft.Search/searchServices/regenerateAdminKey/action"),
            f"{KEY_OPERATOR}: lacks Microsoft.Search/searchServices/regenerateAdminKey/action",
        ),
        (
            lambda a: a.__setitem__(0, "Microsoft.Storage/storageAccounts/listKeys/action/extra"),
            f"{KEY_OPERATOR}: Microsoft.Storage/storageAccounts/listKeys/action/extra is not a list or regenerate action of the Azure key family",
        ),
    ],
)
def test_detects_a_key_operator_action_added_or_missing(mutation, expected):
    roles = load(INFRA)
    mutation(roles["customRoles"][KEY_OPERATOR]["actions"])
    assert expected in custom_role_problems(roles)


def test_detects_a_custom_role_at_a_scope_that_creates_none():
    roles = load(INFRA)
    roles["handlers"]["expired"].append({"role": KEY_OPERATOR, "scope": "vault"})
    assert f"expired: custom role {KEY_OPERATOR} at vault, which creates no custom role" in format_problems(roles)


# ---------------------------------------------------------------------------------------------------------------
# Least privilege


def privilege_problems(roles: dict) -> list[str]:
    problems = []
    for h in roles["handlers"]:
        base = grants(roles, h)
        # Secret values at vault scope: only near-expiry (it rotates) and new-version (it replicates values).
        for role, scope in base:
            if scope == "vault" and role in READS_SECRET_VALUES and h not in {"near-expiry", "new-version"}:
                problems.append(f"{h} may read every secret value in the vault ({role})")
            if role == "Key Vault Administrator":
                problems.append(f"{h} holds Key Vault Administrator")
            if scope == "lockContainer" and role != "Storage Blob Data Contributor":
                problems.append(f"{h} holds {role} on the shared lock container (leases need Contributor only)")
            if scope == "sweepStateContainer" and (h != "sweep" or role != "Storage Blob Data Contributor"):
                problems.append(f"{h} holds {role} on the sweep's state container (only the sweep, Contributor only)")
            if scope == "deadLetterContainer" and (h != "sweep" or role != "Storage Blob Data Reader"):
                problems.append(f"{h} holds {role} on the dead-letter container (only the sweep reads it, Reader only)")
    for g in roles["everyHandler"]:
        if g["scope"] == "vault":
            problems.append(f"every handler gets {g['role']} on the whole vault")
        if g["role"] in READS_SECRET_VALUES and g["scope"] != "notificationSecret":
            problems.append(f"every handler may read secret values at {g['scope']}")
    if ("Key Vault Secrets User", "notificationSecret") not in grants(roles, "expired"):
        problems.append("the notification secret is not granted at secret scope")
    if {g for g in grants(roles, "expired") if g[1] == "vault"} != {("Key Vault Reader", "vault")}:
        problems.append("expired is not read-only without expiredActionsEnabled")
    test_event = {(g["role"], g["scope"]) for g in roles["handlers"]["test-event"]}
    if {g for g in test_event if g[1] in {"vault", "canarySecret"}} != {
        ("Key Vault Reader", "vault"),
        ("Key Vault Secrets Officer", "canarySecret"),
    }:
        problems.append("test-event holds more than Reader on the vault and write on its canary")
    if (KEY_OPERATOR, "azureKeyResources") not in grants(roles, "near-expiry"):
        problems.append("near-expiry cannot rotate the keys of the resources the deployment binds")
    host = {g for g in grants(roles, "expired") if g[1] == "hostStorage"}
    for needed in ("Storage Blob Data Owner", "Storage Queue Data Contributor", "Storage Table Data Contributor"):
        if (needed, "hostStorage") not in host:
            problems.append(f"the Functions host lacks {needed} on its storage")
    for h in roles["handlers"]:
        for role, scope in grants(roles, h, FLAGS):
            if scope in {"mirrorVaults", "azureKeyResources", "canarySecret", "consumerWebApps", "consumerContainerApps"} and role in VAULT_WRITERS | {
                KEY_OPERATOR, "Website Contributor", "Container Apps Contributor"
            }:
                # The sweep's repair (sweepRepairEnabled) rotates what near-expiry would, through the same engine.
                owner = {
                    "mirrorVaults": {"new-version"},
                    "azureKeyResources": {"near-expiry", "sweep"},
                    "canarySecret": {"test-event"},
                    "consumerWebApps": {"new-version"},
                    "consumerContainerApps": {"new-version"},
                }
                if h not in owner[scope]:
                    problems.append(f"{h} may write {scope}, which only {' and '.join(sorted(owner[scope]))} needs")
    # Without its repair flag the sweep only reads the vault and writes its own state.
    if grants(roles, "sweep") - {g for g in grants(roles, "expired") if g[1] != "vault"} != {
        ("Key Vault Reader", "vault"),
        ("Storage Blob Data Contributor", "sweepStateContainer"),
        ("Storage Blob Data Reader", "deadLetterContainer"),
    }:
        problems.append(
            "sweep holds more than Reader on the vault and the dead letters and its state container without "
            "sweepRepairEnabled"
        )
    return problems


def test_grants_are_least_privilege():
    assert privilege_problems(load(INFRA)) == []


@pytest.mark.parametrize(
    "mutation, expected",
    [
        (
            lambda r: r["handlers"]["test-event"].append({"role": "Key Vault Secrets User", "scope": "vault"}),
            "test-event may read every secret value in the vault (Key Vault Secrets User)",
        ),
        (
            lambda r: r["everyHandler"].__setitem__(0, {"role": "Key Vault Secrets User", "scope": "vault"}),
            "every handler gets Key Vault Secrets User on the whole vault",
        ),
        (
            lambda r: r["handlers"]["expired"][1].pop("when"),
            "expired is not read-only without expiredActionsEnabled",
        ),
        (
            lambda r: r["handlers"]["test-event"].__setitem__(1, {"role": "Key Vault Secrets Officer", "scope": "vault"}),
            "test-event holds more than Reader on the vault and write on its canary",
        ),
        (
            lambda r: r["everyHandler"].pop(2),
            "the Functions host lacks Storage Queue Data Contributor on its storage",
        ),
        (
            lambda r: r["handlers"]["expired"].append({"role": "Key Vault Secrets Officer", "scope": "mirrorVaults"}),
            "expired may write mirrorVaults, which only new-version needs",
        ),
        (
            lambda r: r["handlers"]["sweep"].append({"role": "Website Contributor", "scope": "consumerWebApps"}),
            "sweep may write consumerWebApps, which only new-version needs",
        ),
        (
            lambda r: r["handlers"]["new-version"].append({"role": KEY_OPERATOR, "scope": "azureKeyResources"}),
            "new-version may write azureKeyResources, which only near-expiry and sweep needs",
        ),
    ],
)
def test_detects_a_widened_grant(mutation, expected):
    roles = load(INFRA)
    mutation(roles)
    assert expected in privilege_problems(roles)


# ---------------------------------------------------------------------------------------------------------------
# Both deployments read it and wire every scope


def bicep_wiring_problems(bicep_root: Path, roles: dict) -> list[str]:
    problems = []
    handler_text = (bicep_root / "modules" / "handler.bicep").read_text()
    if "loadJsonContent('../../roles.json')" not in handler_text:
        problems.append("handler.bicep does not read ../../roles.json")
    if not (bicep_root / "modules" / "../../roles.json").resolve().is_file():
        problems.append("handler.bicep's roles.json path does not exist")
    flags = {g["when"] for gs in roles["handlers"].values() for g in gs if "when" in g}
    flags |= {g["when"] for g in roles["everyHandler"] if "when" in g}
    main_vars = BicepParser().parse(text=(bicep_root / "main.bicep").read_text())["variables"]
    for flag in sorted(flags - set(main_vars["grantFlags"]["value"])):
        problems.append(f"bicep: grantFlags has no {flag}")
    doc = BicepParser().parse(text=handler_text)
    variables = doc["variables"]
    used_scopes = {g["scope"] for gs in roles["handlers"].values() for g in gs} | {g["scope"] for g in roles["everyHandler"]}
    # Each scope is filtered into a variable (filter(grants, g => g.scope == '<scope>')), and that variable is
    # the source of a role-assignment loop or the grants of a module.
    consumers = json.dumps({**doc["resources"], **doc["modules"]})
    for scope in sorted(used_scopes):
        holders = [name for name, v in variables.items() if f'"operand_2": "{scope}"' in json.dumps(v["value"])]
        if not holders:
            problems.append(f"bicep: no grant variable for scope {scope}")
        elif not any(f'"{name}"' in consumers for name in holders):
            problems.append(f"bicep: the {scope} grants ({holders}) reach no role assignment")
    return problems


def terraform_wiring_problems(tf_root: Path, roles: dict) -> list[str]:
    problems = []
    with (tf_root / "locals.tf").open() as f:
        loc = {k: v[0] for b in hcl2.load(f)["locals"] for k, v in b.items() if not k.startswith("__")}
    if loc.get("roles") != '${jsondecode(file("${path.module}/../roles.json"))}':
        problems.append(f"terraform: local.roles is {loc.get('roles')!r}, not jsondecode(file(.../roles.json))")
    used_scopes = {g["scope"] for gs in roles["handlers"].values() for g in gs} | {g["scope"] for g in roles["everyHandler"]}
    flags = {g["when"] for gs in roles["handlers"].values() for g in gs if "when" in g}
    for flag in sorted(flags - set(loc.get("grant_flags", {}))):
        problems.append(f"terraform: grant_flags has no {flag}")
    scope_ids = loc.get("scope_ids", "")
    for scope in sorted(used_scopes):
        if not re.search(rf"'{scope}':", scope_ids):
            problems.append(f"terraform: scope_ids has no {scope}")
    with (tf_root / "handlers.tf").open() as f:
        res = hcl2.load(f)["resource"]
    grant = [b["azurerm_role_assignment"]["grant"] for b in res if "grant" in b.get("azurerm_role_assignment", {})]
    if not grant or grant[0]["for_each"][0] != "${local.grant_assignments}":
        problems.append("terraform: no azurerm_role_assignment.grant over local.grant_assignments")
    elif "local.roles.roleDefinitions" not in grant[0]["role_definition_id"][0]:
        problems.append("terraform: the role ids do not come from roles.json")
    elif "azurerm_role_definition.custom" not in grant[0]["role_definition_id"][0]:
        problems.append("terraform: the custom roles' assignments do not use their definitions")
    custom = [b["azurerm_role_definition"]["custom"] for b in res if "custom" in b.get("azurerm_role_definition", {})]
    if not custom or "local.roles.customRoles" not in custom[0]["for_each"][0]:
        problems.append("terraform: no azurerm_role_definition.custom over roles.json's customRoles")
    elif custom[0]["permissions"][0]["actions"][0] != "${each.value.actions}":
        problems.append("terraform: the custom roles' actions do not come from roles.json")
    else:
        # The same platform rules as on the Bicep side (bicep_custom_role_problems).
        groups = loc.get("azure_key_resource_groups", "")
        if custom[0]["assignable_scopes"][0] != "${local.azure_key_resource_groups}" or "/resourceGroups/${split(\"/\", id)[4]}" not in groups:
            problems.append("terraform: the custom roles are not assignable in the bound resources' resource groups")
        if "data.azurerm_resource_group.this.name" not in custom[0]["name"][0]:
            problems.append("terraform: a custom role's name does not name the deployment's resource group (unique in the tenant)")
    return problems


def bicep_custom_role_problems(bicep_root: Path) -> list[str]:
    """main.bicep creates roles.json's custom roles with its actions, named as modules/key-grants.bicep assigns them."""
    problems = []
    main = BicepParser().parse(text=(bicep_root / "main.bicep").read_text())
    definitions = [d for d in main["resources"].values() if d["type"] == "Microsoft.Authorization/roleDefinitions"]
    if len(definitions) != 1 or "customRoles" not in json.dumps(definitions[0]["config"]["loop_type"]):
        problems.append("bicep: main.bicep does not create one role definition per roles.json customRoles entry")
        return problems
    body = definitions[0]["config"]["config"]
    # The loop item's value.actions (pycep: r . (value . actions)), and the name main.bicep and key-grants.bicep share.
    actions = json.dumps(body["properties"]["permissions"][0]["actions"])
    if '"operand_1": "value", "operand_2": "actions"' not in actions or "customRoleSeed" not in json.dumps(body["name"]):
        problems.append("bicep: the custom role definitions do not take their actions and names from roles.json")
    # Platform rules: a custom role's assignableScopes are management groups, subscriptions or resource groups
    # (not resources), so the bound resources' resource groups; its roleName is unique in the tenant, so it names
    # this deployment's resource group.
    scopes = body["properties"]["assignableScopes"]
    groups = main["variables"].get("azureKeyResourceGroupList", {}).get("value", {})
    if scopes != "azureKeyResourceGroups" or "/resourceGroups/${split(id, '/')[4]}" not in json.dumps(groups):
        problems.append("bicep: the custom roles are not assignable in the bound resources' resource groups")
    if "${resourceGroup().name}" not in body["properties"]["roleName"]:
        problems.append("bicep: a custom role's name does not name the deployment's resource group (unique in the tenant)")
    grants = (bicep_root / "modules" / "key-grants.bicep").read_text()
    if grants.count("guid(customRoleSeed, g.role)") < len(KEY_FAMILY_ACTIONS):
        problems.append("bicep: key-grants.bicep does not assign the custom role to every type of the family")
    for kind in KEY_FAMILY_ACTIONS:
        if f"'{kind}@" not in grants:
            problems.append(f"bicep: key-grants.bicep cannot assign on a {kind}")
    return problems


def literal_problems(root: Path, roles: dict) -> list[str]:
    """Neither deployment writes a role id, or a role roles.json grants to a handler, of its own."""
    problems = []
    handler_roles = {g["role"] for gs in roles["handlers"].values() for g in gs} | {g["role"] for g in roles["everyHandler"]}
    # The Event Grid topic's own role (dead letters) is not a handler's and is named where it is used.
    allowed = {"Storage Blob Data Contributor"}
    for p in sorted([*root.glob("bicep/**/*.bicep"), *root.glob("terraform/*.tf")]):
        text = p.read_text()
        for guid in re.findall(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", text, re.I):
            problems.append(f"{p.relative_to(root)}: role id {guid} written outside roles.json")
        for role in sorted(handler_roles - allowed):
            if role in text:
                problems.append(f"{p.relative_to(root)}: role {role} written outside roles.json")
    return problems


def test_both_deployments_read_roles_json_and_wire_every_scope():
    roles = load(INFRA)
    assert bicep_wiring_problems(INFRA / "bicep", roles) == []
    assert terraform_wiring_problems(INFRA / "terraform", roles) == []
    assert bicep_custom_role_problems(INFRA / "bicep") == []
    assert literal_problems(INFRA, roles) == []


def test_detects_a_custom_role_not_created_from_roles_json(infra_copy):
    main = infra_copy / "bicep" / "main.bicep"
    main.write_text(main.read_text().replace("actions: r.value.actions", "actions: []"))
    grants = infra_copy / "bicep" / "modules" / "key-grants.bicep"
    grants.write_text(grants.read_text().replace("'Microsoft.Cache/redis@", "'Microsoft.Cache/redisEnterprise@"))
    handlers_tf = infra_copy / "terraform" / "handlers.tf"
    handlers_tf.write_text(handlers_tf.read_text().replace("actions     = each.value.actions", 'actions     = ["*"]'))
    problems = bicep_custom_role_problems(infra_copy / "bicep")
    assert "bicep: the custom role definitions do not take their actions and names from roles.json" in problems
    assert "bicep: key-grants.bicep cannot assign on a Microsoft.Cache/redis" in problems
    tf = terraform_wiring_problems(infra_copy / "terraform", load(infra_copy))
    assert "terraform: the custom roles' actions do not come from roles.json" in tf


def test_detects_custom_roles_assignable_at_resources_or_named_alike_in_every_deployment(infra_copy):
    main = infra_copy / "bicep" / "main.bicep"
    text = main.read_text().replace("assignableScopes: azureKeyResourceGroups", "assignableScopes: azureKeyResourceIds")
    main.write_text(text.replace("roleName: '${r.key} (${resourceGroup().name}-${suffix})'", "roleName: r.key"))
    handlers_tf = infra_copy / "terraform" / "handlers.tf"
    text = handlers_tf.read_text().replace("assignable_scopes = local.azure_key_resource_groups", "assignable_scopes = local.azure_key_resource_ids")
    handlers_tf.write_text(text.replace("(${data.azurerm_resource_group.this.name}-${local.suffix})", "(keyturn)"))
    problems = bicep_custom_role_problems(infra_copy / "bicep")
    assert "bicep: the custom roles are not assignable in the bound resources' resource groups" in problems
    assert "bicep: a custom role's name does not name the deployment's resource group (unique in the tenant)" in problems
    tf = terraform_wiring_problems(infra_copy / "terraform", load(infra_copy))
    assert "terraform: the custom roles are not assignable in the bound resources' resource groups" in tf
    assert "terraform: a custom role's name does not name the deployment's resource group (unique in the tenant)" in tf



@pytest.fixture()
def infra_copy(tmp_path: Path) -> Path:
    for part in ("bicep", "terraform"):
        shutil.copytree(INFRA / part, tmp_path / part)
    shutil.copy(INFRA / "roles.json", tmp_path / "roles.json")
    return tmp_path


def test_detects_a_scope_left_unwired(infra_copy):
    roles = load(infra_copy)
    handler = infra_copy / "bicep" / "modules" / "handler.bicep"
    handler.write_text(handler.read_text().replace("g => g.scope == 'azureKeyResources'", "g => g.scope == 'azureKeys'"))
    locals_tf = infra_copy / "terraform" / "locals.tf"
    locals_tf.write_text(re.sub(r"\n *lockContainer *= .*\n", "\n", locals_tf.read_text()))
    assert "bicep: no grant variable for scope azureKeyResources" in bicep_wiring_problems(infra_copy / "bicep", roles)
    assert "terraform: scope_ids has no lockContainer" in terraform_wiring_problems(infra_copy / "terraform", roles)


def test_detects_a_flag_neither_deployment_sets(infra_copy):
    roles = load(infra_copy)
    roles["handlers"]["near-expiry"].append({"role": "Key Vault Reader", "scope": "vault", "when": "sweepEnabled"})
    assert "bicep: grantFlags has no sweepEnabled" in bicep_wiring_problems(infra_copy / "bicep", roles)
    assert "terraform: grant_flags has no sweepEnabled" in terraform_wiring_problems(infra_copy / "terraform", roles)


def test_detects_a_role_written_outside_roles_json(infra_copy):
    main = infra_copy / "bicep" / "main.bicep"
    main.write_text(main.read_text() + "\nvar extra = '4633458b-17de-408a-b874-0445c86b69e6' // Key Vault Secrets User\n")
    problems = literal_problems(infra_copy, load(infra_copy))
    assert "bicep/main.bicep: role id 4633458b-17de-408a-b874-0445c86b69e6 written outside roles.json" in problems
    assert "bicep/main.bicep: role Key Vault Secrets User written outside roles.json" in problems


# ---------------------------------------------------------------------------------------------------------------
# The README shows it



def readme_rows(readme: str) -> set[tuple[str, str, str, str]]:
    """(handler, role, scope, when) from the README's role matrix table."""
    rows = set()
    for line in readme.splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and (cells[0] in HANDLERS or cells[0] == "every handler"):
            rows.add(tuple(cells))
    return rows


def expected_rows(roles: dict) -> set[tuple[str, str, str, str]]:
    rows = {(h, g["role"], g["scope"], g.get("when", "")) for h, gs in roles["handlers"].items() for g in gs}
    rows |= {("every handler", g["role"], g["scope"], g.get("when", "")) for g in roles["everyHandler"]}
    return rows


def test_readme_shows_roles_json_row_for_row():
    assert readme_rows((INFRA / "README.md").read_text()) == expected_rows(load(INFRA))


def test_detects_a_readme_row_missing():
    readme = (INFRA / "README.md").read_text()
    mutated = "\n".join(l for l in readme.splitlines() if KEY_OPERATOR not in l)
    assert readme_rows(mutated) != expected_rows(load(INFRA))


# ---------------------------------------------------------------------------------------------------------------
# hostStorage is each handler's own: no handler can write another's package


def host_storage_problems(root: Path) -> list[str]:
    problems = []
    handler = BicepParser().parse(text=(root / "bicep" / "modules" / "handler.bicep").read_text())
    accounts = [
        (name, d)
        for name, d in handler["resources"].items()
        if d["type"] == "Microsoft.Storage/storageAccounts" and not d["existing"]
    ]
    if [name for name, _ in accounts] != ["hostStorage"]:
        problems.append("bicep: handler.bicep does not create exactly one storage account per handler (hostStorage)")
    settings = handler["resources"]["appSettings"]["config"]["properties"]["function"]["parameters"]["arg_1"]
    if settings.get("AzureWebJobsStorage__accountName") != {
        "operator": {"type": "property_accessor", "operands": {"operand_1": "hostStorage", "operand_2": "name"}}
    }:
        problems.append("bicep: AzureWebJobsStorage is not the handler's own account")
    deployment = json.dumps(handler["resources"]["app"]["config"]["properties"]["functionAppConfig"])
    if "hostStorage" not in deployment or "packageContainer" not in deployment:
        problems.append("bicep: the Flex package container is not in the handler's own account")
    with (root / "terraform" / "handlers.tf").open() as f:
        tf = hcl2.load(f)
    host = [b["azurerm_storage_account"]["host"] for b in tf["resource"] if "host" in b.get("azurerm_storage_account", {})]
    if not host or host[0]["for_each"][0] != "${toset(var.handlers)}":
        problems.append("terraform: no azurerm_storage_account.host per handler")
    app_settings = {k: v[0] for b in tf["locals"] for k, v in b.items() if not k.startswith("__")}["app_settings"]
    if "'AzureWebJobsStorage__accountName': '${azurerm_storage_account.host[h].name}'" not in app_settings:
        problems.append("terraform: AzureWebJobsStorage is not the handler's own account")
    package = [b["azurerm_storage_container"]["package"] for b in tf["resource"] if "package" in b.get("azurerm_storage_container", {})]
    if not package or package[0]["storage_account_id"][0] != "${azurerm_storage_account.host[each.key].id}":
        problems.append("terraform: the package container is not in the handler's own account")
    return problems


def test_host_storage_is_each_handlers_own():
    assert host_storage_problems(INFRA) == []


def test_detects_a_shared_host_storage(infra_copy):
    handler = infra_copy / "bicep" / "modules" / "handler.bicep"
    handler.write_text(handler.read_text().replace("AzureWebJobsStorage__accountName: hostStorage.name", "AzureWebJobsStorage__accountName: state.name"))
    handlers_tf = infra_copy / "terraform" / "handlers.tf"
    handlers_tf.write_text(
        handlers_tf.read_text().replace(
            "storage_account_id    = azurerm_storage_account.host[each.key].id",
            "storage_account_id    = azurerm_storage_account.state.id",
        )
    )
    problems = host_storage_problems(infra_copy)
    assert "bicep: AzureWebJobsStorage is not the handler's own account" in problems, problems
    assert "terraform: the package container is not in the handler's own account" in problems, problems
