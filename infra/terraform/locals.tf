locals {
  # Event routing per handler. The roles are not here: infra/roles.json holds them, for Bicep, Terraform and the
  # local stack alike. A handler without event types (the timer-triggered sweep) gets no subscription. infra/tests/test_parity.py compares this with handlerConfig in infra/bicep/main.bicep.
  handler_config = {
    "near-expiry" = {
      event_types = [
        "Microsoft.KeyVault.SecretNearExpiry",
        "Microsoft.KeyVault.KeyNearExpiry",
        "Microsoft.KeyVault.CertificateNearExpiry",
      ]
      canary = "exclude"
    }
    "expired" = {
      event_types = [
        "Microsoft.KeyVault.SecretExpired",
        "Microsoft.KeyVault.KeyExpired",
        "Microsoft.KeyVault.CertificateExpired",
      ]
      canary = "exclude"
    }
    "new-version" = {
      event_types = [
        "Microsoft.KeyVault.SecretNewVersionCreated",
        "Microsoft.KeyVault.KeyNewVersionCreated",
        "Microsoft.KeyVault.CertificateNewVersionCreated",
      ]
      canary = "exclude"
    }
    "test-event" = {
      event_types = [
        "Microsoft.KeyVault.SecretNewVersionCreated",
      ]
      canary = "only"
    }
    "sweep" = {
      event_types = []
      canary      = "exclude"
    }
  }

  # The role matrix, read from the one file that holds it.
  roles = jsondecode(file("${path.module}/../roles.json"))

  # The flags roles.json's `when` names; `always` is what a grant without `when` gets.
  grant_flags = {
    always                = true
    expiredActionsEnabled = var.expired_actions_enabled
    sweepRepairEnabled    = var.sweep_repair_enabled
  }

  # The Event Grid system topic's identity writes dead letters (not a handler, so not in roles.json).
  dead_letter_role = "Storage Blob Data Contributor"

  # Names, derived from the resource group id like Bicep's uniqueString(resourceGroup().id) (other values, same
  # stability: a redeployment to the same resource group keeps every name).
  location           = var.location != "" ? var.location : data.azurerm_resource_group.this.location
  suffix             = substr(sha1(data.azurerm_resource_group.this.id), 0, 6)
  storage_prefix     = replace(var.name_prefix, "-", "")
  state_storage_name = substr("${local.storage_prefix}state${sha1(data.azurerm_resource_group.this.id)}", 0, 24)
  host_storage_names = {
    for h in var.handlers : h => substr("${local.storage_prefix}${replace(h, "-", "")}${sha1("${data.azurerm_resource_group.this.id}/${h}")}", 0, 24)
  }
  app_names = { for h in var.handlers : h => "${var.name_prefix}-${h}-${local.suffix}" }
  is_flex   = var.hosting_plan == "FlexConsumption"

  vault_id_parts       = split("/", var.key_vault_id)
  vault_resource_group = local.vault_id_parts[4]
  vault_name           = local.vault_id_parts[8]
  vault_url            = "https://${local.vault_name}.${var.key_vault_dns_suffix}"
  mirror_vault_urls    = [for id in var.mirror_vault_ids : "https://${element(split("/", id), 8)}.${var.key_vault_dns_suffix}"]
  mirror_routes        = "${local.vault_name}=${join(",", [for id in var.mirror_vault_ids : element(split("/", id), 8)])}"
  # The Azure key family's bound resources (both variables), the resource groups holding them (the custom roles'
  # assignable scopes: Azure takes management groups, subscriptions and resource groups there), and the bindings.
  azure_key_resource_ids = distinct(concat(var.storage_key_account_ids, [for r in var.azure_key_resources : r.resource_id]))
  azure_key_resource_groups = distinct([
    for id in local.azure_key_resource_ids : "/subscriptions/${split("/", id)[2]}/resourceGroups/${split("/", id)[4]}"
  ])
  azure_key_bindings = join(";", [
    for r in var.azure_key_resources : r.secrets == "" ? "${local.vault_name}=${r.resource_id}" : "${local.vault_name}/${r.secrets}=${r.resource_id}"
  ])
  storage_key_bindings = "${local.vault_name}=${join(",", var.storage_key_account_ids)}"
  # The handlers that rotate keys: near-expiry, and the sweep when it repairs (roles.json grants them the key
  # operator role).
  rotates_keys    = { for h in var.handlers : h => h == "near-expiry" || (h == "sweep" && var.sweep_repair_enabled) }
  notify_enabled  = var.notify_secret_uri != ""
  notify_vault_id = var.notify_vault_id != "" ? var.notify_vault_id : var.key_vault_id
  # https://<vault>.vault.azure.net/secrets/<name>: the fifth segment is the secret's name.
  notify_secret_name = local.notify_enabled ? split("/", var.notify_secret_uri)[4] : ""

  # Each handler's grants: its own and every handler's, without those whose `when` flag is off.
  handler_grants = {
    for h in var.handlers : h => [
      for g in concat(local.roles.handlers[h], local.roles.everyHandler) : g if local.grant_flags[try(g.when, "always")]
    ]
  }

  # What each roles.json scope means for one handler: the resource ids it grants on. A scope missing here fails
  # the plan (an unknown key), so roles.json cannot name a scope this deployment does not wire. The consumers are
  # split by type: each type's role is granted on its own apps only.
  scope_ids = {
    for h in var.handlers : h => {
      vault                 = [var.key_vault_id]
      canarySecret          = ["${var.key_vault_id}/secrets/${var.canary_secret_name}"]
      notificationSecret    = local.notify_enabled ? ["${local.notify_vault_id}/secrets/${local.notify_secret_name}"] : []
      mirrorVaults          = var.mirror_vault_ids
      azureKeyResources     = local.azure_key_resource_ids
      consumerWebApps       = [for id in var.consumer_app_ids : id if strcontains(lower(id), "/providers/microsoft.web/sites/")]
      consumerContainerApps = [for id in var.consumer_app_ids : id if strcontains(lower(id), "/providers/microsoft.app/containerapps/")]
      hostStorage           = [azurerm_storage_account.host[h].id]
      lockContainer         = [azurerm_storage_container.locks.id]
      sweepStateContainer   = [azurerm_storage_container.sweep_state.id]
      deadLetterContainer   = [azurerm_storage_container.dead_letter.id]
      insights              = [azurerm_application_insights.this.id]
    }
  }

  # One role assignment per (handler, scope, resource, role). The keys use positions, not ids, so they are known
  # at plan time even for resources this deployment creates.
  grant_assignments = merge([
    for h in var.handlers : merge([
      for g in local.handler_grants[h] : {
        for i, scope_id in local.scope_ids[h][g.scope] :
        "${h}|${g.scope}|${i}|${g.role}" => { handler = h, scope = g.scope, scope_id = scope_id, role = g.role }
      }
    ]...)
  ]...)

  # keyturn's settings (the names are keyturn's configuration reference). Optional settings are left out when
  # they do not apply; the filter only looks at values known at plan time.
  keyturn_settings = {
    for h in var.handlers : h => merge(
      {
        KEYTURN_VAULTS           = local.vault_url
        KEYTURN_CREDENTIAL       = "managed-identity"
        KEYTURN_LOCK_ACCOUNT_URL = azurerm_storage_account.state.primary_blob_endpoint
        KEYTURN_LOCK_CONTAINER   = azurerm_storage_container.locks.name
        KEYTURN_LOG              = var.log_filter
      },
      {
        for k, v in {
          KEYTURN_NOTIFY        = local.notify_enabled ? "@Microsoft.KeyVault(SecretUri=${var.notify_secret_uri})" : null
          KEYTURN_CANARY_SECRET = h == "test-event" ? var.canary_secret_name : null
          KEYTURN_MIRROR_VAULTS = h == "new-version" && length(var.mirror_vault_ids) > 0 ? join(",", local.mirror_vault_urls) : null
          # The one mirror route: the monitored vault's secrets to the mirror vaults; KeyturnMirror picks among them.
          KEYTURN_MIRROR_ROUTES           = h == "new-version" && length(var.mirror_vault_ids) > 0 ? local.mirror_routes : null
          KEYTURN_ENTRA_APPLICATIONS      = h == "near-expiry" && var.entra_applications != "" ? var.entra_applications : null
          KEYTURN_CONSUMERS               = h == "new-version" && length(var.consumer_app_ids) > 0 ? (var.consumers != "" ? var.consumers : "${local.vault_name}=${join(",", var.consumer_app_ids)}") : null
          KEYTURN_AZURE_KEY_RESOURCES     = local.rotates_keys[h] && length(var.azure_key_resources) > 0 ? local.azure_key_bindings : null
          KEYTURN_STORAGE_ACCOUNTS        = local.rotates_keys[h] && length(var.storage_key_account_ids) > 0 ? local.storage_key_bindings : null
          KEYTURN_SWEEP_STATE_ACCOUNT_URL = h == "sweep" ? azurerm_storage_account.state.primary_blob_endpoint : null
          KEYTURN_SWEEP_STATE_CONTAINER   = h == "sweep" ? azurerm_storage_container.sweep_state.name : null
          KEYTURN_SWEEP_SCHEDULE          = h == "sweep" ? var.sweep_schedule : null
          KEYTURN_SWEEP_REPAIR            = h == "sweep" ? (var.sweep_repair_enabled ? "on" : "off") : null
        } : k => v if v != null
      },
      # The sweep reads the dead letters the subscriptions write, to report and re-drive them.
      {
        for k, v in {
          KEYTURN_SWEEP_DEAD_LETTER_ACCOUNT_URL = azurerm_storage_account.state.primary_blob_endpoint
          KEYTURN_SWEEP_DEAD_LETTER_CONTAINER   = azurerm_storage_container.dead_letter.name
        } : k => v if h == "sweep"
      },
    )
  }
}
