# The Event Grid system topic on the monitored vault (in the vault's resource group and region) and one
# subscription per handler.

# The system topic's identity, created before the topic so its dead-letter role exists by the time the
# subscriptions are created.
resource "azurerm_user_assigned_identity" "topic" {
  name                = "${var.name_prefix}-eventgrid-${local.suffix}"
  resource_group_name = data.azurerm_resource_group.this.name
  location            = local.location
  tags                = var.tags
}

resource "azurerm_role_assignment" "dead_letter" {
  scope              = azurerm_storage_container.dead_letter.id
  role_definition_id = "${data.azurerm_subscription.current.id}/providers/Microsoft.Authorization/roleDefinitions/${local.roles.roleDefinitions[local.dead_letter_role]}"
  principal_id       = azurerm_user_assigned_identity.topic.principal_id
  principal_type     = "ServicePrincipal"
  description        = "keyturn: Event Grid writes undeliverable events here"
}

# A vault can have only one system topic.
resource "azurerm_eventgrid_system_topic" "vault" {
  name                = "${var.name_prefix}-${local.vault_name}-events"
  resource_group_name = local.vault_resource_group
  location            = data.azurerm_key_vault.monitored.location
  tags                = var.tags
  source_resource_id  = var.key_vault_id
  topic_type          = "Microsoft.KeyVault.vaults"

  identity {
    type         = "UserAssigned"
    identity_ids = [azurerm_user_assigned_identity.topic.id]
  }
}

# Each failed delivery attempt, with its reason, to Log Analytics (the dashboard's failures panel), in the
# resource-specific table AegDeliveryFailureLogs.
resource "azurerm_monitor_diagnostic_setting" "topic" {
  name                           = "keyturn-delivery-failures"
  target_resource_id             = azurerm_eventgrid_system_topic.vault.id
  log_analytics_workspace_id     = azurerm_log_analytics_workspace.this.id
  log_analytics_destination_type = "Dedicated"

  enabled_log {
    category = "DeliveryFailures"
  }
}

# Created only after each handler's package is deployed and its app lists the function (packages.tf): Event Grid
# refuses an AzureFunction subscription to a function that does not exist yet. Handlers without event types get
# none.
# Batch size 1: the Functions extension runs a batch in parallel and fails it whole, so one slow or failing event
# would make Event Grid resend its neighbours. 30 attempts over 24 hours is Event Grid's maximum.
resource "azurerm_eventgrid_system_topic_event_subscription" "handler" {
  for_each              = toset([for h in var.handlers : h if length(local.handler_config[h].event_types) > 0])
  name                  = "keyturn-${each.key}"
  system_topic          = azurerm_eventgrid_system_topic.vault.name
  resource_group_name   = local.vault_resource_group
  event_delivery_schema = "EventGridSchema"
  included_event_types  = local.handler_config[each.key].event_types

  azure_function_endpoint {
    function_id                       = "${azapi_resource.function_app[each.key].id}/functions/${each.key}"
    max_events_per_batch              = 1
    preferred_batch_size_in_kilobytes = 64
  }

  # The canary's new versions go to test-event and to no other handler.
  dynamic "advanced_filter" {
    for_each = local.handler_config[each.key].canary == "only" ? [1] : []
    content {
      string_in {
        key    = "subject"
        values = [var.canary_secret_name]
      }
    }
  }

  dynamic "advanced_filter" {
    for_each = local.handler_config[each.key].canary == "exclude" ? [1] : []
    content {
      string_not_in {
        key    = "subject"
        values = [var.canary_secret_name]
      }
    }
  }

  retry_policy {
    max_delivery_attempts = 30
    event_time_to_live    = 1440
  }

  dead_letter_identity {
    type                   = "UserAssigned"
    user_assigned_identity = azurerm_user_assigned_identity.topic.id
  }

  storage_blob_dead_letter_destination {
    storage_account_id          = azurerm_storage_account.state.id
    storage_blob_container_name = azurerm_storage_container.dead_letter.name
  }

  depends_on = [azurerm_role_assignment.dead_letter, terraform_data.package]
}
