# One function app per selected handler, each with its own identity and plan (Flex Consumption allows one app per
# plan) and only the roles its job needs.

resource "azurerm_user_assigned_identity" "handler" {
  for_each            = toset(var.handlers)
  name                = "${local.app_names[each.key]}-id"
  resource_group_name = data.azurerm_resource_group.this.name
  location            = local.location
  tags                = var.tags
}

resource "azurerm_service_plan" "handler" {
  #checkov:skip=CKV_AZURE_225:zone redundancy is available only in some regions and for Flex needs zone-redundant storage; an event that finds its zone down waits in Event Grid's retries.
  #checkov:skip=CKV_AZURE_212:scale to zero is intended (Flex Consumption); a cold start only delays an event, which Event Grid retries for 24 hours.
  for_each                     = toset(var.handlers)
  name                         = "${local.app_names[each.key]}-plan"
  resource_group_name          = data.azurerm_resource_group.this.name
  location                     = local.location
  tags                         = var.tags
  os_type                      = "Linux"
  sku_name                     = local.is_flex ? "FC1" : var.elastic_premium_sku
  maximum_elastic_worker_count = local.is_flex ? null : 20
}

locals {
  # Identity-based host storage (AzureWebJobsStorage__*), identity-based telemetry, keyturn's own settings.
  # Flex takes the runtime from functionAppConfig and rejects FUNCTIONS_WORKER_RUNTIME and
  # FUNCTIONS_EXTENSION_VERSION; Elastic Premium needs both, and runs from the package blob read with the app's
  # identity (no Azure Files content share: that would need shared keys).
  app_settings = {
    for h in var.handlers : h => merge(
      {
        AzureWebJobsStorage__accountName          = azurerm_storage_account.this.name
        AzureWebJobsStorage__credential           = "managedidentity"
        AzureWebJobsStorage__clientId             = azurerm_user_assigned_identity.handler[h].client_id
        APPLICATIONINSIGHTS_CONNECTION_STRING     = azurerm_application_insights.this.connection_string
        APPLICATIONINSIGHTS_AUTHENTICATION_STRING = "ClientId=${azurerm_user_assigned_identity.handler[h].client_id};Authorization=AAD"
        AZURE_CLIENT_ID                           = azurerm_user_assigned_identity.handler[h].client_id
      },
      {
        for k, v in {
          FUNCTIONS_WORKER_RUNTIME                     = "custom"
          FUNCTIONS_EXTENSION_VERSION                  = "~4"
          WEBSITE_RUN_FROM_PACKAGE                     = "${azurerm_storage_account.this.primary_blob_endpoint}${azurerm_storage_container.package[h].name}/${h}.zip"
          WEBSITE_RUN_FROM_PACKAGE_BLOB_MI_RESOURCE_ID = azurerm_user_assigned_identity.handler[h].id
        } : k => v if !local.is_flex
      },
      local.keyturn_settings[h],
    )
  }
}

# Microsoft.Web/sites@2024-04-01 through azapi (versions.tf says why not azurerm_function_app_flex_consumption).
resource "azapi_resource" "function_app" {
  #checkov:skip=CKV_AZURE_222:Event Grid delivers to AzureFunction endpoints through the app's public endpoint; the apps have no HTTP-triggered functions, and the host's webhook routes need a system key.
  #checkov:skip=CKV_AZURE_17:Event Grid's AzureFunction delivery cannot present a client certificate.
  #checkov:skip=CKV_AZURE_212:scale to zero is intended (Flex Consumption); a cold start only delays an event, which Event Grid retries for 24 hours.
  #checkov:skip=CKV_AZURE_213:no HTTP endpoint to probe; the host supervises the handler process and its readiness route.
  for_each  = toset(var.handlers)
  type      = "Microsoft.Web/sites@2024-04-01"
  name      = local.app_names[each.key]
  parent_id = data.azurerm_resource_group.this.id
  location  = local.location
  tags      = merge(var.tags, { "keyturn-handler" = each.key })

  identity {
    type         = "UserAssigned"
    identity_ids = [azurerm_user_assigned_identity.handler[each.key].id]
  }

  body = {
    kind = "functionapp,linux"
    properties = {
      serverFarmId              = azurerm_service_plan.handler[each.key].id
      httpsOnly                 = true
      clientCertEnabled         = false
      keyVaultReferenceIdentity = azurerm_user_assigned_identity.handler[each.key].id
      publicNetworkAccess       = "Enabled"
      siteConfig = {
        minTlsVersion    = "1.2"
        scmMinTlsVersion = "1.2"
        ftpsState        = "Disabled"
        http20Enabled    = true
        appSettings      = [for k, v in local.app_settings[each.key] : { name = k, value = v }]
      }
      functionAppConfig = local.is_flex ? {
        deployment = {
          storage = {
            type  = "blobContainer"
            value = "${azurerm_storage_account.this.primary_blob_endpoint}${azurerm_storage_container.package[each.key].name}"
            authentication = {
              type                           = "UserAssignedIdentity"
              userAssignedIdentityResourceId = azurerm_user_assigned_identity.handler[each.key].id
            }
          }
        }
        runtime = {
          name    = "custom"
          version = "1.0"
        }
        scaleAndConcurrency = {
          maximumInstanceCount = var.flex_maximum_instance_count
          instanceMemoryMB     = var.flex_instance_memory_mb
        }
      } : null
    }
  }
}

resource "azurerm_role_assignment" "storage" {
  for_each             = local.storage_role_assignments
  scope                = azurerm_storage_account.this.id
  role_definition_name = each.value.role
  principal_id         = azurerm_user_assigned_identity.handler[each.value.handler].principal_id
  principal_type       = "ServicePrincipal"
  description          = "keyturn ${each.value.handler}: host storage, package, rotation locks"
}

resource "azurerm_role_assignment" "insights" {
  for_each             = local.insights_role_assignments
  scope                = azurerm_application_insights.this.id
  role_definition_name = each.value.role
  principal_id         = azurerm_user_assigned_identity.handler[each.value.handler].principal_id
  principal_type       = "ServicePrincipal"
  description          = "keyturn ${each.value.handler}: telemetry with Entra ID authentication"
}

resource "azurerm_role_assignment" "vault" {
  for_each             = local.vault_role_assignments
  scope                = each.value.vault_id
  role_definition_name = each.value.role
  principal_id         = azurerm_user_assigned_identity.handler[each.value.handler].principal_id
  principal_type       = "ServicePrincipal"
  description          = "keyturn ${each.value.handler}: ${each.value.purpose}"
}
