output "handlers" {
  description = "Per handler: function app name, identity client id and principal id, host storage account."
  value = {
    for h in var.handlers : h => {
      app_name              = azapi_resource.function_app[h].name
      identity_client_id    = azurerm_user_assigned_identity.handler[h].client_id
      identity_principal_id = azurerm_user_assigned_identity.handler[h].principal_id
      host_storage_name     = azurerm_storage_account.host[h].name
    }
  }
}

output "state_storage_name" {
  description = "Storage account holding the rotation locks and the dead letters."
  value       = azurerm_storage_account.state.name
}

output "state_blob_endpoint" {
  description = "Blob endpoint of the state account (KEYTURN_LOCK_ACCOUNT_URL)."
  value       = azurerm_storage_account.state.primary_blob_endpoint
}

output "system_topic_name" {
  description = "Event Grid system topic on the vault (in the vault's resource group)."
  value       = azurerm_eventgrid_system_topic.vault.name
}

output "application_insights_name" {
  description = "Application Insights resource receiving the handlers' telemetry."
  value       = azurerm_application_insights.this.name
}
