"""Rules the platform enforces that checkov and pycep do not: each test states the rule and where it comes from,
checks the tree, and proves itself on a copy with the rule broken (a mutation), as the parity tests do.

- Bicep: every for-expression, if-condition and property that must be constant is known at the start of the
  deployment (BCP120/BCP177/BCP178/BCP182; bicep_constants.py cites Azure/bicep).
- Flex Consumption rejects some site properties and app settings that Elastic Premium needs: they are set only
  on Premium, on both sides; and the Flex-only functionAppConfig only on Flex.
- Basic publishing credentials (FTP and SCM) are disabled on every app, on both sides.
- Event Grid refuses an AzureFunction subscription to a function whose code is not deployed: the subscriptions
  are created after the packages (Bicep: subscriptions.bicep from the postdeploy hook; Terraform: after
  terraform_data.package), with no flag to remember.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import hcl2
import pytest
from pycep import BicepParser

import bicep_constants

INFRA = Path(__file__).resolve().parent.parent
ROOT = INFRA.parent

# Site properties and app settings Flex Consumption does not take, in two groups (infra/README.md, "Flex
# Consumption and Elastic Premium", cites the sources):
# - FLEX_REFUSED: the App Service resource provider fails the deployment with "The following app setting
#   (Site.SiteConfig.AppSettings.FUNCTIONS_WORKER_RUNTIME) for Flex Consumption sites is invalid" and "The following
#   list of 2 site configuration properties (Site.SiteConfig.FtpsState, Site.SiteConfig.LinuxFxVersion) for Flex
#   Consumption sites is invalid" (the RP's own messages, as quoted in public deployment logs).
# - FLEX_DEPRECATED: the rest of the table "Flex Consumption plan deprecations" (learn.microsoft.com/azure/
#   azure-functions/functions-app-settings#flex-consumption-plan-deprecations, linked from MicrosoftDocs/azure-docs
#   articles/azure-functions/flex-consumption-plan.md, "Deprecated properties and settings"): replaced by
#   functionAppConfig, set by the platform, or not valid; the platform ignores or overwrites them.
# Neither group is sent to Flex Consumption; Elastic Premium needs the runtime settings, and ftpsState Disabled
# turns FTP off there.
FLEX_REFUSED = {"ftpsState", "linuxFxVersion", "FUNCTIONS_WORKER_RUNTIME"}
FLEX_DEPRECATED = {
    # site properties (properties.* and properties.siteConfig.*); the table's properties.isReserved is the site's
    # `reserved` (the plan's `reserved: true`, which makes it Linux, is another resource's and stays)
    "reserved",
    "alwaysOn",
    "use32BitWorkerProcess",
    "isXenon",
    "windowsFxVersion",
    "preWarmedInstanceCount",
    "functionAppScaleLimit",
    "containerSize",
    "javaVersion",
    "powerShellVersion",
    "netFrameworkVersion",
    # app settings
    "FUNCTIONS_EXTENSION_VERSION",
    "FUNCTIONS_WORKER_RUNTIME_VERSION",
    "FUNCTIONS_MAX_HTTP_CONCURRENCY",
    "FUNCTIONS_WORKER_PROCESS_COUNT",
    "FUNCTIONS_WORKER_DYNAMIC_CONCURRENCY_ENABLED",
    "WEBSITE_NODE_DEFAULT_VERSION",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
    "WEBSITE_CONTENTSHARE",
    "WEBSITE_RUN_FROM_PACKAGE",
    "WEBSITE_MAX_DYNAMIC_APPLICATION_SCALE_OUT",
    "SCM_DO_BUILD_DURING_DEPLOYMENT",
    "ENABLE_ORYX_BUILD",
}
FLEX_REJECTED = FLEX_REFUSED | FLEX_DEPRECATED
# Elastic Premium runs a Linux custom handler only with these (and FTP off with ftpsState): the check also proves
# that Premium still gets them.
PREMIUM_REQUIRED = {"ftpsState", "FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION", "WEBSITE_RUN_FROM_PACKAGE"}


@pytest.fixture()
def infra_copy(tmp_path: Path) -> Path:
    for part in ("bicep", "terraform", "hooks"):
        shutil.copytree(INFRA / part, tmp_path / part)
    shutil.copy(INFRA / "roles.json", tmp_path / "roles.json")
    shutil.copy(INFRA / "workbook.json", tmp_path / "workbook.json")
    return tmp_path


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times in {path}"
    path.write_text(text.replace(old, new))


# ---------------------------------------------------------------------------------------------------------------
# BCP177/BCP178/BCP182


def all_violations(bicep_root: Path) -> list[str]:
    return [
        str(v)
        for p in sorted(bicep_root.rglob("*.bicep"))
        for v in bicep_constants.violations(p, str(p.relative_to(bicep_root)))
    ]


def test_every_for_and_if_is_known_at_the_start_of_the_deployment():
    assert all_violations(INFRA / "bicep") == []


def test_the_analysis_sees_every_loop_and_condition():
    # A rule that finds no loops would pass vacuously: count what it checks.
    counts = {}
    for p in sorted((INFRA / "bicep").rglob("*.bicep")):
        tokens = bicep_constants.tokenize(p.read_text())
        counts[p.name] = sum(1 for _ in bicep_constants.containers(tokens, bicep_constants.declarations(tokens)))
    assert counts["handler.bicep"] >= 8 and counts["main.bicep"] >= 5, counts


def test_detects_the_app_settings_loop_over_runtime_values(infra_copy):
    # issue 15's bug, as it was written: appSettings built with a for over items() of a variable that reads the
    # identity's client id and Application Insights' connection string.
    handler = infra_copy / "bicep" / "modules" / "handler.bicep"
    edit(
        handler,
        "resource appSettings 'Microsoft.Web/sites/config@2024-04-01' = {",
        "var platformSettings = {\n"
        "  AZURE_CLIENT_ID: identity.properties.clientId\n"
        "  APPLICATIONINSIGHTS_CONNECTION_STRING: insights.properties.ConnectionString\n"
        "}\n"
        "output mutatedSettings array = [for s in items(platformSettings): {\n"
        "  name: s.key\n"
        "  value: s.value\n"
        "}]\n\n"
        "resource appSettings 'Microsoft.Web/sites/config@2024-04-01' = {",
    )
    found = all_violations(infra_copy / "bicep")
    assert any("identity.properties" in v and "platformSettings" in v for v in found), found
    assert any("insights.properties" in v for v in found), found


def test_detects_a_runtime_value_inside_an_interpolated_string(infra_copy):
    edit(
        infra_copy / "bicep" / "modules" / "handler.bicep",
        "var packageContainerName = 'package'",
        "var packageContainerName = 'package'\n"
        "var packageUrls = ['${hostStorage.properties.primaryEndpoints.blob}package']\n"
        "output mutatedUrls array = [for u in packageUrls: u]",
    )
    found = all_violations(infra_copy / "bicep")
    assert any("hostStorage.properties" in v and "packageUrls" in v for v in found), found


def test_detects_list_and_reference_and_module_outputs(infra_copy):
    main = infra_copy / "bicep" / "main.bicep"
    edit(
        main,
        "var alertReceivers = ",
        "var keys = listKeys(state.id, '2023-05-01').keys\n"
        "output mutatedKeys array = [for k in keys: k.keyName]\n"
        "output mutatedRef array = [for x in reference(workspace.id).features: x]\n"
        "output mutatedOut array = [for x in eventGrid.outputs.topicName: x]\n"
        "var alertReceivers = ",
    )
    found = all_violations(infra_copy / "bicep")
    for needle in ("listKeys()", "reference()", "module eventGrid.outputs"):
        assert any(needle in v for v in found), (needle, found)


def test_detects_a_runtime_if_condition(infra_copy):
    edit(
        infra_copy / "bicep" / "main.bicep",
        "resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (alertReceivers) {",
        "resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (!empty(insights.properties.AppId)) {",
    )
    found = all_violations(infra_copy / "bicep")
    assert any("if-condition reads resource insights.properties" in v for v in found), found


def test_start_time_values_are_not_flagged(infra_copy):
    # The negative control: params, resource ids and names, and functions that are known at the start pass.
    edit(
        infra_copy / "bicep" / "main.bicep",
        "var alertReceivers = ",
        "output okIds array = [for (h, i) in handlers: '${state.id}/${h}/${take(uniqueString(resourceGroup().id), 4)}']\n"
        "var alertReceivers = ",
    )
    assert all_violations(infra_copy / "bicep") == []


def test_detects_the_id_of_an_existing_resource_bicep_inlines(infra_copy):
    # An existing resource named from a module output is inlined: its id (and its name) are known only while
    # deploying, though a plain existing resource's are known at the start (the rule used to miss this).
    edit(
        infra_copy / "bicep" / "main.bicep",
        "var alertReceivers = ",
        "resource topicByOutput 'Microsoft.EventGrid/systemTopics@2025-02-15' existing = {\n"
        "  name: eventGrid.outputs.topicName\n"
        "  resource sub 'eventSubscriptions' existing = {\n"
        "    name: 'literal'\n"
        "  }\n"
        "}\n"
        "output mutatedIds array = [for x in [topicByOutput.id]: x]\n"
        "output mutatedNames array = [for x in [topicByOutput.name]: x]\n"
        "output mutatedChildIds array = [for x in [topicByOutput::sub.id]: x]\n"
        "output okChild array = [for x in ['${topicByOutput::sub.name}${topicByOutput.type}${topicByOutput.apiVersion}']: x]\n"
        "var alertReceivers = ",
    )
    found = all_violations(infra_copy / "bicep")
    assert any("resource topicByOutput.id (an existing resource Bicep inlines)" in v for v in found), found
    assert any("resource topicByOutput.name (an existing resource Bicep inlines)" in v for v in found), found
    assert any("resource sub.id (an existing resource Bicep inlines)" in v for v in found), found
    # Exactly those three: the child's literal name, type and apiVersion stay readable, as in Bicep.
    assert len(found) == 3, found


def test_inlining_passes_from_one_existing_resource_to_the_next(infra_copy):
    # An existing resource named after an inlined one's name is inlined too (InlineDependencyVisitor visits the
    # resource whose name it reads), though its own parent is not.
    edit(
        infra_copy / "bicep" / "main.bicep",
        "var alertReceivers = ",
        "resource topicByOutput 'Microsoft.EventGrid/systemTopics@2025-02-15' existing = {\n"
        "  name: eventGrid.outputs.topicName\n"
        "}\n"
        "resource sameName 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {\n"
        "  name: topicByOutput.name\n"
        "}\n"
        "output mutatedIds array = [for x in [sameName.id]: x]\n"
        "var alertReceivers = ",
    )
    found = all_violations(infra_copy / "bicep")
    assert any("resource sameName.id (an existing resource Bicep inlines)" in v for v in found), found


def test_existing_resources_read_like_deployed_ones(infra_copy):
    # The other direction: Bicep reads id, name, type and apiVersion of a plain existing resource (and of its
    # nested children) at the start; location, sku, tags and properties of any resource, never.
    handler = infra_copy / "bicep" / "modules" / "handler.bicep"
    edit(
        handler,
        "var packageContainerName = 'package'",
        "var packageContainerName = 'package'\n"
        "output okExisting array = [for x in ['${state.id}${state.name}${state.type}${state.apiVersion}${state::blob::locks.id}${insights.id}']: x]\n"
        "output notLocation array = [for x in [hostStorage.location]: x]\n"
        "output notTags array = [for x in items(insights.tags): x]",
    )
    found = all_violations(infra_copy / "bicep")
    assert sorted(v.split(": ", 1)[1] for v in found) == [
        "for-expression reads resource hostStorage.location: known only while deploying",
        "for-expression reads resource insights.tags: known only while deploying",
    ], found


def test_detects_a_runtime_value_in_a_property_that_must_be_constant(infra_copy):
    # BCP120: a deployed resource's name, location, tags, identity, scope... and a module's name and scope are
    # written into the deployment plan, so they are known at the start. The topic once read its location from the
    # existing vault, which Bicep refuses (only id, name, type and apiVersion of the vault are known then).
    edit(infra_copy / "bicep" / "modules" / "eventgrid.bicep", "  location: location\n", "  location: vault.location\n")
    handler = infra_copy / "bicep" / "modules" / "handler.bicep"
    edit(handler, "  name: '${appName}-plan'\n", "  name: '${appName}-${identity.properties.clientId}'\n")
    edit(handler, "  name: '${appName}-vault'\n", "  name: '${appName}-${insights.properties.AppId}'\n")
    found = all_violations(infra_copy / "bicep")
    assert "modules/eventgrid.bicep:" in str(found), found
    assert any("location of resource topic reads resource vault.location" in v for v in found), found
    assert any("name of resource plan reads resource identity.properties" in v for v in found), found
    assert any("name of module vaultAccess reads resource insights.properties" in v for v in found), found


def test_a_scope_may_be_a_whole_resource_unless_bicep_inlines_it(infra_copy):
    # scope: hostStorage is how a role assignment names its scope; an existing resource named from a module output
    # is inlined, and Bicep refuses it there.
    edit(
        infra_copy / "bicep" / "main.bicep",
        "var alertReceivers = ",
        "resource topicByOutput 'Microsoft.EventGrid/systemTopics@2025-02-15' existing = {\n"
        "  name: eventGrid.outputs.topicName\n"
        "}\n"
        "resource mutatedLock 'Microsoft.Authorization/locks@2020-05-01' = {\n"
        "  name: 'keyturn-lock'\n"
        "  scope: topicByOutput\n"
        "  properties: {\n"
        "    level: 'CanNotDelete'\n"
        "  }\n"
        "}\n"
        "var alertReceivers = ",
    )
    found = all_violations(infra_copy / "bicep")
    assert [v.split(": ", 1)[1] for v in found] == [
        "scope of resource mutatedLock reads resource topicByOutput (an existing resource Bicep inlines): "
        "known only while deploying"
    ], found


# ---------------------------------------------------------------------------------------------------------------
# Flex-only and Premium-only properties


def bicep_keys(expr, variables: dict, premium_only: bool = False, out=None) -> dict[str, set[bool]]:
    """Object keys reachable from a pycep expression, following variables, and whether each is reached only on
    the Premium side of an `isFlex ? ... : ...`."""
    out = {} if out is None else out
    if isinstance(expr, str) and expr in variables:
        bicep_keys(variables[expr]["value"], variables, premium_only, out)
    elif isinstance(expr, dict):
        op = expr.get("operator", {})
        if op.get("type") == "conditional" and op["operands"]["condition"] == "isFlex":
            bicep_keys(op["operands"]["true_value"], variables, premium_only, out)
            bicep_keys(op["operands"]["false_value"], variables, True, out)
            return out
        for key, value in expr.items():
            if key not in ("operator", "function", "parameters", "operands") and not key.startswith(("arg_", "operand_")):
                out.setdefault(key, set()).add(premium_only)
            bicep_keys(value, variables, premium_only, out)
    elif isinstance(expr, list):
        for value in expr:
            bicep_keys(value, variables, premium_only, out)
    return out


def bicep_flex_problems(handler_bicep: Path) -> list[str]:
    doc = BicepParser().parse(text=handler_bicep.read_text())
    res, variables = doc["resources"], doc["variables"]
    problems = []
    # Every key under the site's properties (siteConfig and the top level) and the appsettings child.
    keys = bicep_keys(res["app"]["config"]["properties"], variables)
    bicep_keys(res["appSettings"]["config"]["properties"], variables, out=keys)
    lowered = {k.lower(): v for k, v in keys.items()}
    # Site property names are matched without case: ARM compares them so (the RP's error says LinuxFxVersion).
    for key in sorted(FLEX_REJECTED):
        if key.lower() in lowered and lowered[key.lower()] != {True}:
            problems.append(f"{key} is set on Flex Consumption too")
    for key in sorted(PREMIUM_REQUIRED):
        if lowered.get(key.lower()) != {True}:
            problems.append(f"{key} is not set on Elastic Premium")
    # Flex-only: functionAppConfig (runtime, deployment container, scale) exists on Flex Consumption alone.
    config = res["app"]["config"]["properties"].get("functionAppConfig", {})
    op = config.get("operator", {}) if isinstance(config, dict) else {}
    if not (op.get("type") == "conditional" and op["operands"]["condition"] == "isFlex" and op["operands"]["false_value"] is None):
        problems.append("functionAppConfig is set on Elastic Premium too")
    return problems


def terraform_flex_problems(handlers_tf: Path) -> list[str]:
    with handlers_tf.open() as f:
        doc = hcl2.load(f)
    loc = {k: v[0] for block in doc["locals"] for k, v in block.items() if not k.startswith("__")}
    problems = []
    for key in sorted(FLEX_REJECTED & set(loc["site_config"])):
        problems.append(f"{key} is in site_config, which Flex Consumption gets too")
    if loc["premium_only_site_config"].get("ftpsState") != "Disabled":
        problems.append("ftpsState Disabled is not in premium_only_site_config")
    app = doc["resource"]
    (site,) = [b["azapi_resource"]["function_app"] for b in app if "function_app" in b.get("azapi_resource", {})]
    # bc-python-hcl2 renders expressions back as text with its own spacing: compare without whitespace.
    # Site properties outside siteConfig (containerSize, reserved...): only as `local.is_flex ? null : ...`.
    for key, value in site["body"][0]["properties"].items():
        if key.lower() in {k.lower() for k in FLEX_REJECTED}:
            if not re.sub(r"\s+", "", str(value)).startswith("${local.is_flex?null:"):
                problems.append(f"site property {key} is given to Flex Consumption too")
    site_config = re.sub(r"\s+", "", str(site["body"][0]["properties"]["siteConfig"]))
    if "fork,vinlocal.premium_only_site_config:k=>vif!local.is_flex" not in site_config:
        problems.append("the site does not add premium_only_site_config on Premium only")
    config = re.sub(r"\s+", "", str(site["body"][0]["properties"]["functionAppConfig"]))
    if not (config.startswith("${local.is_flex?") and config.endswith(":None}")):
        problems.append("functionAppConfig is set on Elastic Premium too")
    settings = re.sub(r"\s+", "", loc["app_settings"])
    # The Premium-only settings sit in `{ for k, v in { ... } : k => v if !local.is_flex }`.
    guarded = [part.split("}:k=>vif!local.is_flex")[0] for part in settings.split("fork,vin{")[1:]]
    unguarded = settings
    for part in guarded:
        unguarded = unguarded.replace(part, "")
    def sets(key: str, text: str) -> bool:
        # The key as a whole name (bc-python-hcl2 renders it 'KEY': or KEY=): WEBSITE_RUN_FROM_PACKAGE is not
        # WEBSITE_RUN_FROM_PACKAGE_BLOB_MI_RESOURCE_ID.
        return re.search(rf"(?<![A-Za-z0-9_]){key}'?[:=]", text) is not None

    for key in sorted(k for k in FLEX_REJECTED if sets(k, unguarded)):
        problems.append(f"app setting {key} is given to Flex Consumption too")
    for key in sorted(PREMIUM_REQUIRED - {"ftpsState"}):
        if not any(sets(key, part) for part in guarded):
            problems.append(f"app setting {key} is not given to Elastic Premium")
    return problems


def test_flex_rejected_properties_are_set_only_on_premium():
    assert bicep_flex_problems(INFRA / "bicep" / "modules" / "handler.bicep") == []
    assert terraform_flex_problems(INFRA / "terraform" / "handlers.tf") == []


def test_detects_ftps_state_set_on_flex(infra_copy):
    edit(infra_copy / "bicep" / "modules" / "handler.bicep", "  http20Enabled: true\n}", "  http20Enabled: true\n  ftpsState: 'Disabled'\n}")
    edit(
        infra_copy / "terraform" / "handlers.tf",
        '    http20Enabled    = true\n  }',
        '    http20Enabled    = true\n    ftpsState        = "Disabled"\n  }',
    )
    assert "ftpsState is set on Flex Consumption too" in bicep_flex_problems(infra_copy / "bicep" / "modules" / "handler.bicep")
    assert "ftpsState is in site_config, which Flex Consumption gets too" in terraform_flex_problems(
        infra_copy / "terraform" / "handlers.tf"
    )


def test_detects_the_worker_runtime_given_to_flex(infra_copy):
    edit(
        infra_copy / "bicep" / "modules" / "handler.bicep",
        "    AzureWebJobsStorage__credential: 'managedidentity'\n",
        "    AzureWebJobsStorage__credential: 'managedidentity'\n    FUNCTIONS_WORKER_RUNTIME: 'custom'\n",
    )
    problems = bicep_flex_problems(infra_copy / "bicep" / "modules" / "handler.bicep")
    assert "FUNCTIONS_WORKER_RUNTIME is set on Flex Consumption too" in problems, problems
    edit(
        infra_copy / "terraform" / "handlers.tf",
        '        AzureWebJobsStorage__credential           = "managedidentity"\n',
        '        AzureWebJobsStorage__credential           = "managedidentity"\n        FUNCTIONS_EXTENSION_VERSION = "~4"\n',
    )
    problems = terraform_flex_problems(infra_copy / "terraform" / "handlers.tf")
    assert any("FUNCTIONS_EXTENSION_VERSION" in p for p in problems), problems


def test_detects_a_deprecated_site_property_given_to_flex(infra_copy):
    # Deprecated rather than refused (the platform ignores it), but it says something untrue about the app.
    edit(infra_copy / "bicep" / "modules" / "handler.bicep", "  http20Enabled: true\n}", "  http20Enabled: true\n  alwaysOn: true\n}")
    edit(infra_copy / "bicep" / "modules" / "handler.bicep", "    clientCertEnabled: false\n", "    clientCertEnabled: false\n    containerSize: 1536\n")
    edit(
        infra_copy / "terraform" / "handlers.tf",
        '    http20Enabled    = true\n  }',
        '    http20Enabled    = true\n    use32BitWorkerProcess = false\n  }',
    )
    problems = bicep_flex_problems(infra_copy / "bicep" / "modules" / "handler.bicep")
    assert "alwaysOn is set on Flex Consumption too" in problems, problems
    assert "containerSize is set on Flex Consumption too" in problems, problems
    edit(infra_copy / "terraform" / "handlers.tf", "      serverFarmId              = ", "      containerSize             = 1536\n      serverFarmId              = ")
    problems = terraform_flex_problems(infra_copy / "terraform" / "handlers.tf")
    assert "use32BitWorkerProcess is in site_config, which Flex Consumption gets too" in problems, problems
    assert "site property containerSize is given to Flex Consumption too" in problems, problems


def test_detects_premium_without_its_package_setting(infra_copy):
    # The other direction: moving a setting off Flex must not drop it from Premium, which needs it to run.
    edit(
        infra_copy / "bicep" / "modules" / "handler.bicep",
        "    WEBSITE_RUN_FROM_PACKAGE: '${hostStorage.properties.primaryEndpoints.blob}${packageContainer.name}/${handler}.zip'\n",
        "",
    )
    text = (infra_copy / "terraform" / "handlers.tf").read_text()
    line = next(l for l in text.splitlines(keepends=True) if l.strip().startswith("WEBSITE_RUN_FROM_PACKAGE "))
    (infra_copy / "terraform" / "handlers.tf").write_text(text.replace(line, ""))
    assert "WEBSITE_RUN_FROM_PACKAGE is not set on Elastic Premium" in bicep_flex_problems(
        infra_copy / "bicep" / "modules" / "handler.bicep"
    )
    assert "app setting WEBSITE_RUN_FROM_PACKAGE is not given to Elastic Premium" in terraform_flex_problems(
        infra_copy / "terraform" / "handlers.tf"
    )


def test_detects_flex_config_given_to_premium(infra_copy):
    edit(infra_copy / "bicep" / "modules" / "handler.bicep", "functionAppConfig: isFlex ? {", "functionAppConfig: true ? {")
    edit(infra_copy / "terraform" / "handlers.tf", "functionAppConfig = local.is_flex ? {", "functionAppConfig = true ? {")
    assert "functionAppConfig is set on Elastic Premium too" in bicep_flex_problems(infra_copy / "bicep" / "modules" / "handler.bicep")
    assert "functionAppConfig is set on Elastic Premium too" in terraform_flex_problems(infra_copy / "terraform" / "handlers.tf")


# ---------------------------------------------------------------------------------------------------------------
# Basic publishing credentials


def basic_auth_problems(root: Path) -> list[str]:
    problems = []
    doc = BicepParser().parse(text=(root / "bicep" / "modules" / "handler.bicep").read_text())
    policies = {
        d["config"]["name"]: d["config"]
        for d in doc["resources"].values()
        if d["type"] == "Microsoft.Web/sites/basicPublishingCredentialsPolicies"
    }
    for kind in ("ftp", "scm"):
        p = policies.get(kind)
        if p is None or p["parent"] != "app" or p["properties"]["allow"] is not False:
            problems.append(f"bicep: {kind} basic publishing credentials not disabled on the app")
    with (root / "terraform" / "handlers.tf").open() as f:
        tf = hcl2.load(f)
    body = None
    for block in tf["resource"]:
        body = block.get("azapi_resource", {}).get("basic_publishing_credentials", body)
    if body is None:
        problems.append("terraform: no basic_publishing_credentials resource")
    else:
        if not body["type"][0].startswith("Microsoft.Web/sites/basicPublishingCredentialsPolicies@"):
            problems.append("terraform: basic_publishing_credentials has the wrong type")
        for_each = re.sub(r"[\s'\"]", "", body["for_each"][0])
        if "setproduct(var.handlers,[ftp,scm])" not in for_each:
            problems.append("terraform: basic publishing credentials not disabled for ftp and scm of every app")
        if body["body"][0]["properties"]["allow"] is not False:
            problems.append("terraform: basic publishing credentials allowed")
    return problems


def test_basic_publishing_credentials_are_disabled():
    assert basic_auth_problems(INFRA) == []


def test_detects_basic_publishing_credentials_left_on(infra_copy):
    text = (infra_copy / "bicep" / "modules" / "handler.bicep").read_text()
    scm = text.index("name: 'scm'")
    (infra_copy / "bicep" / "modules" / "handler.bicep").write_text(
        text[:scm] + text[scm:].replace("allow: false", "allow: true", 1)
    )
    edit(infra_copy / "terraform" / "handlers.tf", "      allow = false", "      allow = true")
    problems = basic_auth_problems(infra_copy)
    assert "bicep: scm basic publishing credentials not disabled on the app" in problems, problems
    assert "terraform: basic publishing credentials allowed" in problems, problems


# ---------------------------------------------------------------------------------------------------------------
# Subscriptions after the code


def subscription_order_problems(root: Path) -> list[str]:
    problems = []
    for p in sorted((root / "bicep").rglob("*.bicep")):
        doc = BicepParser().parse(text=p.read_text())
        subs = [d for d in doc.get("resources", {}).values() if d["type"].endswith("/eventSubscriptions")]
        if subs and p.name != "subscriptions.bicep":
            problems.append(f"bicep: {p.name} creates Event Grid subscriptions before the code is deployed")
        for name in doc.get("parameters", {}):
            if "subscription" in name.lower() and name.lower().startswith(("create", "deploy", "enable")):
                problems.append(f"bicep: {p.name} has a flag {name} to remember")
    hook = (root / "hooks" / "postdeploy.sh").read_text()
    if "subscriptions.bicep" not in hook or "wait_for_function" not in hook:
        problems.append("hooks/postdeploy.sh does not wait for the functions and deploy subscriptions.bicep")
    tf = {}
    for p in sorted((root / "terraform").glob("*.tf")):
        with p.open() as f:
            tf[p.name] = hcl2.load(f)
    for doc in tf.values():
        for block in doc.get("variable", []):
            for name in block:
                if "subscription" in name and name.startswith(("create", "deploy", "enable")):
                    problems.append(f"terraform: a flag {name} to remember")
        for block in doc.get("resource", []):
            sub = block.get("azurerm_eventgrid_system_topic_event_subscription", {}).get("handler")
            if sub is not None and "${terraform_data.package}" not in sub.get("depends_on", [[]])[0]:
                problems.append("terraform: the subscriptions do not wait for terraform_data.package")
            package = block.get("terraform_data", {}).get("package")
            if package is not None and "deploy-package.sh" not in str(package.get("provisioner")):
                problems.append("terraform: terraform_data.package does not run hooks/deploy-package.sh")
    return problems


def test_subscriptions_are_created_after_the_code():
    assert subscription_order_problems(INFRA) == []
    assert "wait_for_function" in (INFRA / "hooks" / "deploy-package.sh").read_text()


def test_detects_subscriptions_created_with_the_apps(infra_copy):
    shutil.copy(infra_copy / "bicep" / "subscriptions.bicep", infra_copy / "bicep" / "modules" / "subs.bicep")
    edit(
        infra_copy / "terraform" / "eventgrid.tf",
        "depends_on = [azurerm_role_assignment.dead_letter, terraform_data.package]",
        "depends_on = [azurerm_role_assignment.dead_letter]",
    )
    edit(infra_copy / "bicep" / "main.bicep", "param logFilter string", "param createSubscriptions bool = true\n\n@description('x')\nparam logFilter string")
    problems = subscription_order_problems(infra_copy)
    assert "bicep: subs.bicep creates Event Grid subscriptions before the code is deployed" in problems, problems
    assert "bicep: main.bicep has a flag createSubscriptions to remember" in problems, problems
    assert "terraform: the subscriptions do not wait for terraform_data.package" in problems, problems
