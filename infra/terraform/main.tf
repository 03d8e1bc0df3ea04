# keyturn: the whole Azure deployment (Terraform). infra/bicep describes the same resources; infra/tests checks
# that the two agree. The ARM API versions behind each resource are listed in infra/README.md. One `terraform
# apply` creates the apps, deploys their packages (packages.tf) and only then the Event Grid subscriptions.

data "azurerm_resource_group" "this" {
  name = var.resource_group_name
}

data "azurerm_subscription" "current" {}

data "azurerm_key_vault" "monitored" {
  name                = local.vault_name
  resource_group_name = local.vault_resource_group
}

# The shared state account: rotation locks and dead letters. No handler holds a role on the account itself:
# roles.json grants the lock container to the handlers that take locks; Event Grid's identity writes dead letters.
# Each handler's host storage is its own account (handlers.tf).
resource "azurerm_storage_account" "state" {
  #checkov:skip=CKV_AZURE_35:Flex Consumption apps without VNet integration and Event Grid dead-lettering reach the account over its public endpoint; a deny-by-default firewall needs VNet integration, which this deployment does not create.
  #checkov:skip=CKV_AZURE_59:same reason as CKV_AZURE_35; public network access stays on, but every request needs an Entra ID token (shared keys are disabled).
  #checkov:skip=CKV_AZURE_206:the data is transient (locks, dead letters kept dead_letter_retention_days); locally redundant storage is enough.
  #checkov:skip=CKV_AZURE_43:false positive: checkov cannot evaluate the computed name, substr(prefix without hyphens + "state" + sha1(resource group id), 0, 24), which is lowercase letters and digits, at most 24 characters.
  #checkov:skip=CKV_AZURE_33:the state account has no queues, so Queue service logging has nothing to log.
  #checkov:skip=CKV2_AZURE_33:private endpoints need a VNet, which this deployment does not create.
  #checkov:skip=CKV2_AZURE_1:Microsoft-managed keys; the account holds locks and dead letters, no customer data.
  name                              = local.state_storage_name
  resource_group_name               = data.azurerm_resource_group.this.name
  location                          = local.location
  tags                              = var.tags
  account_kind                      = "StorageV2"
  account_tier                      = "Standard"
  account_replication_type          = "LRS"
  min_tls_version                   = "TLS1_2"
  https_traffic_only_enabled        = true
  allow_nested_items_to_be_public   = false
  shared_access_key_enabled         = false
  default_to_oauth_authentication   = true
  cross_tenant_replication_enabled  = false
  local_user_enabled                = false
  sftp_enabled                      = false
  public_network_access_enabled     = true
  infrastructure_encryption_enabled = false

  sas_policy {
    expiration_period = "0.01:00:00"
    expiration_action = "Log"
  }

  network_rules {
    default_action = "Allow"
    bypass         = ["AzureServices"]
  }

  blob_properties {
    delete_retention_policy {
      days = 7
    }
    container_delete_retention_policy {
      days = 7
    }
  }
}

resource "azurerm_storage_container" "locks" {
  #checkov:skip=CKV2_AZURE_21:storage insights needs an account key (shared keys are disabled); blob reads, writes and deletes go to Log Analytics through azurerm_monitor_diagnostic_setting.state_blob instead.
  name                  = var.lock_container_name
  storage_account_id    = azurerm_storage_account.state.id
  container_access_type = "private"
}

# The sweep's state: which thresholds fired per object version and channel, which versions are paged.
resource "azurerm_storage_container" "sweep_state" {
  #checkov:skip=CKV2_AZURE_21:storage insights needs an account key (shared keys are disabled); blob reads, writes and deletes go to Log Analytics through azurerm_monitor_diagnostic_setting.state_blob instead.
  name                  = var.sweep_state_container_name
  storage_account_id    = azurerm_storage_account.state.id
  container_access_type = "private"
}

resource "azurerm_storage_container" "dead_letter" {
  #checkov:skip=CKV2_AZURE_21:storage insights needs an account key (shared keys are disabled); blob reads, writes and deletes go to Log Analytics through azurerm_monitor_diagnostic_setting.state_blob instead.
  name                  = var.dead_letter_container_name
  storage_account_id    = azurerm_storage_account.state.id
  container_access_type = "private"
}

# Dead letters are evidence for a replay, not an archive: deleted after dead_letter_retention_days.
resource "azurerm_storage_management_policy" "state" {
  storage_account_id = azurerm_storage_account.state.id

  rule {
    name    = "keyturn-delete-dead-letters"
    enabled = true

    filters {
      blob_types   = ["blockBlob"]
      prefix_match = ["${var.dead_letter_container_name}/"]
    }

    actions {
      base_blob {
        delete_after_days_since_modification_greater_than = var.dead_letter_retention_days
      }
    }
  }
}

resource "azurerm_log_analytics_workspace" "this" {
  name                = "${var.name_prefix}-log-${local.suffix}"
  resource_group_name = data.azurerm_resource_group.this.name
  location            = local.location
  tags                = var.tags
  sku                 = "PerGB2018"
  retention_in_days   = var.log_retention_days
}

# Blob reads, writes and deletes of the state account (locks taken, dead letters written) to Log Analytics; the
# dashboard counts dead letters from these.
resource "azurerm_monitor_diagnostic_setting" "state_blob" {
  name                       = "keyturn-blob-logs"
  target_resource_id         = "${azurerm_storage_account.state.id}/blobServices/default"
  log_analytics_workspace_id = azurerm_log_analytics_workspace.this.id

  enabled_log {
    category_group = "allLogs"
  }
}

# Local (instrumentation key) authentication is off: the apps publish telemetry with their identities.
resource "azurerm_application_insights" "this" {
  name                         = "${var.name_prefix}-appi-${local.suffix}"
  resource_group_name          = data.azurerm_resource_group.this.name
  location                     = local.location
  tags                         = var.tags
  application_type             = "web"
  workspace_id                 = azurerm_log_analytics_workspace.this.id
  local_authentication_enabled = false
}
