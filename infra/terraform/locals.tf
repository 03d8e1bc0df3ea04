locals {
  # The role matrix. infra/tests/test_parity.py compares it with infra/bicep/main.bicep (handlerConfig and the
  # role lists below it), and infra/README.md documents it: change all three together.
  handler_config = {
    "near-expiry" = {
      event_types = [
        "Microsoft.KeyVault.SecretNearExpiry",
        "Microsoft.KeyVault.KeyNearExpiry",
        "Microsoft.KeyVault.CertificateNearExpiry",
      ]
      canary = "exclude"
      vault_roles = [
        "Key Vault Secrets Officer",
        "Key Vault Crypto Officer",
        "Key Vault Certificates Officer",
      ]
      mirror_roles = []
    }
    "expired" = {
      event_types = [
        "Microsoft.KeyVault.SecretExpired",
        "Microsoft.KeyVault.KeyExpired",
        "Microsoft.KeyVault.CertificateExpired",
      ]
      canary = "exclude"
      vault_roles = [
        "Key Vault Reader",
      ]
      mirror_roles = []
    }
    "new-version" = {
      event_types = [
        "Microsoft.KeyVault.SecretNewVersionCreated",
        "Microsoft.KeyVault.KeyNewVersionCreated",
        "Microsoft.KeyVault.CertificateNewVersionCreated",
      ]
      canary = "exclude"
      vault_roles = [
        "Key Vault Reader",
        "Key Vault Secrets User",
      ]
      mirror_roles = [
        "Key Vault Secrets Officer",
      ]
    }
    "test-event" = {
      event_types = [
        "Microsoft.KeyVault.SecretNewVersionCreated",
      ]
      canary = "only"
      vault_roles = [
        "Key Vault Reader",
        "Key Vault Secrets User",
      ]
      mirror_roles = []
    }
  }

  # expired's vault roles when expired_actions_enabled is true (instead of its read-only vault_roles).
  expired_action_roles = [
    "Key Vault Secrets Officer",
    "Key Vault Crypto Officer",
    "Key Vault Certificates Officer",
  ]

  # Roles every handler identity holds besides its vault roles.
  storage_roles  = ["Storage Blob Data Owner"]
  insights_roles = ["Monitoring Metrics Publisher"]
  notify_roles   = ["Key Vault Secrets User"]

  # The Event Grid system topic's identity writes dead letters.
  dead_letter_roles = ["Storage Blob Data Contributor"]

  # Names, derived from the resource group id like Bicep's uniqueString(resourceGroup().id) (other values, same
  # stability: a redeployment to the same resource group keeps every name).
  location             = var.location != "" ? var.location : data.azurerm_resource_group.this.location
  suffix               = substr(sha1(data.azurerm_resource_group.this.id), 0, 6)
  storage_account_name = substr("${replace(var.name_prefix, "-", "")}${sha1(data.azurerm_resource_group.this.id)}", 0, 24)
  app_names            = { for h in var.handlers : h => "${var.name_prefix}-${h}-${local.suffix}" }
  is_flex              = var.hosting_plan == "FlexConsumption"

  vault_id_parts       = split("/", var.key_vault_id)
  vault_resource_group = local.vault_id_parts[4]
  vault_name           = local.vault_id_parts[8]
  vault_url            = "https://${local.vault_name}.${var.key_vault_dns_suffix}"
  mirror_vault_urls    = [for id in var.mirror_vault_ids : "https://${element(split("/", id), 8)}.${var.key_vault_dns_suffix}"]
  notify_enabled       = var.notify_secret_uri != ""
  notify_vault_id      = var.notify_vault_id != "" ? var.notify_vault_id : var.key_vault_id

  # Every (handler, vault, role) grant: the monitored vault, the notification vault, the mirror vaults. Grouped
  # by a case-insensitive key so the notification vault being the monitored vault does not grant a role twice.
  monitored_vault_roles = {
    for h in var.handlers : h => (h == "expired" && var.expired_actions_enabled ? local.expired_action_roles : local.handler_config[h].vault_roles)
  }
  vault_role_grants = flatten([
    for h in var.handlers : concat(
      [for r in local.monitored_vault_roles[h] : { handler = h, vault_id = var.key_vault_id, role = r, purpose = "monitored vault" }],
      [for r in local.notify_roles : { handler = h, vault_id = local.notify_vault_id, role = r, purpose = "notification channels (Key Vault reference)" } if local.notify_enabled],
      flatten([for v in var.mirror_vault_ids : [for r in local.handler_config[h].mirror_roles : { handler = h, vault_id = v, role = r, purpose = "mirror vault" }]]),
    )
  ])
  vault_role_assignments = {
    for key, grants in { for g in local.vault_role_grants : "${g.handler}|${lower(g.vault_id)}|${g.role}" => g... } :
    key => grants[0]
  }
  storage_role_assignments  = { for p in setproduct(var.handlers, local.storage_roles) : "${p[0]}|${p[1]}" => { handler = p[0], role = p[1] } }
  insights_role_assignments = { for p in setproduct(var.handlers, local.insights_roles) : "${p[0]}|${p[1]}" => { handler = p[0], role = p[1] } }

  # keyturn's settings (the names are keyturn's configuration reference). Optional settings are left out when
  # they do not apply; the filter only looks at values known at plan time.
  keyturn_settings = {
    for h in var.handlers : h => merge(
      {
        KEYTURN_VAULTS           = local.vault_url
        KEYTURN_CREDENTIAL       = "managed-identity"
        KEYTURN_LOCK_ACCOUNT_URL = azurerm_storage_account.this.primary_blob_endpoint
        KEYTURN_LOCK_CONTAINER   = azurerm_storage_container.locks.name
        KEYTURN_LOG              = var.log_filter
      },
      {
        for k, v in {
          KEYTURN_NOTIFY        = local.notify_enabled ? "@Microsoft.KeyVault(SecretUri=${var.notify_secret_uri})" : null
          KEYTURN_CANARY_SECRET = h == "test-event" ? var.canary_secret_name : null
          KEYTURN_MIRROR_VAULTS = h == "new-version" && length(var.mirror_vault_ids) > 0 ? join(",", local.mirror_vault_urls) : null
        } : k => v if v != null
      },
    )
  }
}
