output "handlers" {
  description = "Per handler: function app name, identity client id and principal id, package container."
  value = {
    for h in var.handlers : h => {
      app_name              = azapi_resource.function_app[h].name
      identity_client_id    = azurerm_user_assigned_identity.handler[h].client_id
      identity_principal_id = azurerm_user_assigned_identity.handler[h].principal_id
      package_container     = azurerm_storage_container.package[h].name
    }
  }
}

output "storage_account_name" {
  description = "Storage account holding runtime state, packages, locks and dead letters."
  value       = azurerm_storage_account.this.name
}

output "storage_blob_endpoint" {
  description = "Blob endpoint of the storage account (KEYTURN_LOCK_ACCOUNT_URL)."
  value       = azurerm_storage_account.this.primary_blob_endpoint
}

output "system_topic_name" {
  description = "Event Grid system topic on the vault (in the vault's resource group)."
  value       = azurerm_eventgrid_system_topic.vault.name
}

output "application_insights_name" {
  description = "Application Insights resource receiving the handlers' telemetry."
  value       = azurerm_application_insights.this.name
}
