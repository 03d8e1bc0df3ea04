"""Terraform's plan-time rule (terraform_known.py cites it): every `count`, and every `for_each`'s keys, are known
when Terraform plans, so a first `terraform apply` cannot stop at "Invalid for_each argument" or "Invalid count
argument". Each rule is proven on a copy with the rule broken, as the other infra tests do."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import terraform_known

INFRA = Path(__file__).resolve().parent.parent


@pytest.fixture()
def tf_copy(tmp_path: Path) -> Path:
    shutil.copytree(INFRA / "terraform", tmp_path / "terraform")
    return tmp_path / "terraform"


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times in {path}"
    path.write_text(text.replace(old, new))


def test_every_for_each_key_and_count_is_known_at_plan_time():
    assert terraform_known.violations(INFRA / "terraform") == []


def test_the_analysis_sees_every_for_each_and_count():
    # A rule that finds nothing to check passes vacuously: count what it checks.
    blocks = terraform_known.checked_blocks(INFRA / "terraform")
    args = [(address, arg) for _, address, arg, _ in blocks]
    assert ("azurerm_role_assignment.grant", "for_each") in args, args
    assert ("azurerm_monitor_action_group.alerts", "count") in args, args
    assert len(args) >= 10, args


def test_detects_role_assignment_keys_made_of_resource_ids(tf_copy):
    # The natural way to write the grants, and the one Terraform refuses: the key holds the scope's id, which for
    # the host storage, the lock container and Application Insights exists only after apply.
    edit(tf_copy / "locals.tf", '"${h}|${g.scope}|${i}|${g.role}" =>', '"${h}|${scope_id}|${g.role}" =>')
    found = terraform_known.violations(tf_copy)
    assert any(
        "azurerm_role_assignment.grant: for_each keys read azurerm_storage_account.host" in v
        and "local.grant_assignments -> local.scope_ids" in v
        for v in found
    ), found
    assert any("azurerm_application_insights.this" in v for v in found), found


def test_detects_a_set_of_resource_attributes(tf_copy):
    edit(
        tf_copy / "packages.tf",
        "for_each = toset(var.handlers)",
        "for_each = toset([for h in var.handlers : azapi_resource.function_app[h].id])",
    )
    found = terraform_known.violations(tf_copy)
    assert any("terraform_data.package: for_each keys read azapi_resource.function_app" in v for v in found), found


def test_detects_a_count_from_a_resource_attribute(tf_copy):
    edit(
        tf_copy / "monitoring.tf",
        "count               = local.alert_receivers ? 1 : 0",
        "count               = azurerm_application_insights.this.app_id != \"\" ? 1 : 0",
    )
    found = terraform_known.violations(tf_copy)
    assert any("azurerm_monitor_action_group.alerts: count read azurerm_application_insights.this" in v for v in found), found


def test_detects_keys_read_from_a_resource_instance(tf_copy):
    # Iterating a resource's instances is fine for their keys, not for their attributes.
    edit(
        tf_copy / "packages.tf",
        "for_each = toset(var.handlers)",
        "for_each = { for k, v in azurerm_user_assigned_identity.handler : v.principal_id => k }",
    )
    found = terraform_known.violations(tf_copy)
    assert any("for_each keys read azurerm_user_assigned_identity.handler" in v for v in found), found


def test_values_and_instance_keys_are_not_flagged(tf_copy):
    # The negative control: unknown values under known keys, and a resource's instance keys, are what Terraform
    # accepts.
    edit(
        tf_copy / "packages.tf",
        "for_each = toset(var.handlers)",
        "for_each = { for k, v in azurerm_user_assigned_identity.handler : k => { id = v.principal_id, app = azapi_resource.function_app[k].id } }",
    )
    assert terraform_known.violations(tf_copy) == []
