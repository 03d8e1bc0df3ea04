# One function app per selected handler, each with its own identity and plan (Flex Consumption allows one app per
# plan) and only the roles its job needs.

resource "azurerm_user_assigned_identity" "handler" {
  for_each            = toset(var.handlers)
  name                = "${local.app_names[each.key]}-id"
  resource_group_name = data.azurerm_resource_group.this.name
  location            = local.location
  tags                = var.tags
}

# The handler's own host storage: AzureWebJobsStorage (blobs, queues, tables of the Functions host) and its
# package. No other handler holds a role here, so no other handler can replace this one's code.
resource "azurerm_storage_account" "host" {
  #checkov:skip=CKV_AZURE_35:Flex Consumption apps without VNet integration reach their host storage over its public endpoint; a deny-by-default firewall needs VNet integration, which this deployment does not create.
  #checkov:skip=CKV_AZURE_59:same reason as CKV_AZURE_35; public network access stays on, but every request needs an Entra ID token (shared keys are disabled).
  #checkov:skip=CKV_AZURE_206:host state and a package CI can rebuild; locally redundant storage is enough.
  #checkov:skip=CKV_AZURE_43:false positive: checkov cannot evaluate the computed name, substr(prefix + handler without hyphens + sha1(), 0, 24), which is lowercase letters and digits, at most 24 characters.
  #checkov:skip=CKV_AZURE_33:the host's queues carry no keyturn data (the Event Grid trigger uses none); the blobs, where the package and the host's state live, are logged to Log Analytics (azurerm_monitor_diagnostic_setting.host_blob).
  #checkov:skip=CKV2_AZURE_33:private endpoints need a VNet, which this deployment does not create.
  #checkov:skip=CKV2_AZURE_1:Microsoft-managed keys; the account holds the Functions host's state and the package, no customer data.
  for_each                          = toset(var.handlers)
  name                              = local.host_storage_names[each.key]
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

# Flex Consumption reads its package from this container; Elastic Premium runs from the package blob in it
# (WEBSITE_RUN_FROM_PACKAGE).
resource "azurerm_storage_container" "package" {
  #checkov:skip=CKV2_AZURE_21:storage insights needs an account key (shared keys are disabled); blob reads, writes and deletes go to Log Analytics through azurerm_monitor_diagnostic_setting.host_blob instead.
  for_each              = toset(var.handlers)
  name                  = "package"
  storage_account_id    = azurerm_storage_account.host[each.key].id
  container_access_type = "private"
}

resource "azurerm_monitor_diagnostic_setting" "host_blob" {
  for_each                   = toset(var.handlers)
  name                       = "keyturn-blob-logs"
  target_resource_id         = "${azurerm_storage_account.host[each.key].id}/blobServices/default"
  log_analytics_workspace_id = azurerm_log_analytics_workspace.this.id

  enabled_log {
    category_group = "allLogs"
  }
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
  # Flex takes the runtime from functionAppConfig: it refuses FUNCTIONS_WORKER_RUNTIME, sets
  # FUNCTIONS_EXTENSION_VERSION itself and runs from its deployment container, not WEBSITE_RUN_FROM_PACKAGE
  # (infra/README.md, "Flex Consumption and Elastic Premium"). Elastic Premium needs all three, and runs from the
  # package blob read with the app's identity (no Azure Files content share: that would need shared keys).
  app_settings = {
    for h in var.handlers : h => merge(
      {
        AzureWebJobsStorage__accountName          = azurerm_storage_account.host[h].name
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
          WEBSITE_RUN_FROM_PACKAGE                     = "${azurerm_storage_account.host[h].primary_blob_endpoint}${azurerm_storage_container.package[h].name}/${h}.zip"
          WEBSITE_RUN_FROM_PACKAGE_BLOB_MI_RESOURCE_ID = azurerm_user_assigned_identity.handler[h].id
        } : k => v if !local.is_flex
      },
      local.keyturn_settings[h],
    )
  }

  # siteConfig: Flex Consumption refuses ftpsState, so the Premium-only properties are added only on Premium
  # (infra/tests/test_bicep_rules.py keeps them apart on both sides). The app settings are part of siteConfig
  # here: azapi reads each resource back with GET, and App Service returns app settings only through
  # POST .../config/appsettings/list, so a separate sites/config resource (Bicep's way) would never read back.
  site_config = {
    minTlsVersion    = "1.2"
    scmMinTlsVersion = "1.2"
    http20Enabled    = true
  }
  premium_only_site_config = {
    ftpsState = "Disabled"
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
  tags      = merge(var.tags, { "keyturn-handler" = each.key, "azd-service-name" = each.key })

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
      siteConfig = merge(
        local.site_config,
        { for k, v in local.premium_only_site_config : k => v if !local.is_flex },
        { appSettings = [for k, v in local.app_settings[each.key] : { name = k, value = v }] },
      )
      functionAppConfig = local.is_flex ? {
        deployment = {
          storage = {
            type  = "blobContainer"
            value = "${azurerm_storage_account.host[each.key].primary_blob_endpoint}${azurerm_storage_container.package[each.key].name}"
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

# Basic (user name and password) publishing is off for FTP and for the SCM site: deployments authenticate with
# Entra ID (az functionapp deploy, azd).
resource "azapi_resource" "basic_publishing_credentials" {
  for_each  = { for p in setproduct(var.handlers, ["ftp", "scm"]) : "${p[0]}|${p[1]}" => { handler = p[0], kind = p[1] } }
  type      = "Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01"
  name      = each.value.kind
  parent_id = azapi_resource.function_app[each.value.handler].id
  body = {
    properties = {
      allow = false
    }
  }
}

# The custom roles infra/roles.json defines (customRoles: the key operator, exactly the list and regenerate
# actions of the Azure key family), created when a resource is bound, assignable in the resource groups holding the
# bound resources. A role name is unique in the tenant, so it carries this deployment's resource group.
resource "azurerm_role_definition" "custom" {
  for_each          = length(local.azure_key_resource_ids) > 0 ? local.roles.customRoles : {}
  name              = "${each.key} (${data.azurerm_resource_group.this.name}-${local.suffix})"
  scope             = local.azure_key_resource_groups[0]
  description       = each.value.description
  assignable_scopes = local.azure_key_resource_groups
  permissions {
    actions     = each.value.actions
    not_actions = []
  }
}

# Every grant infra/roles.json lists for the deployed handlers, at the scope it names (locals.tf, scope_ids). The
# role definition id is the built-in role's, in the subscription of the scope, or the custom role's.
resource "azurerm_role_assignment" "grant" {
  for_each           = local.grant_assignments
  scope              = each.value.scope_id
  role_definition_id = contains(keys(local.roles.customRoles), each.value.role) ? azurerm_role_definition.custom[each.value.role].role_definition_resource_id : "/subscriptions/${split("/", each.value.scope_id)[2]}/providers/Microsoft.Authorization/roleDefinitions/${local.roles.roleDefinitions[each.value.role]}"
  principal_id       = azurerm_user_assigned_identity.handler[each.value.handler].principal_id
  principal_type     = "ServicePrincipal"
  description        = "keyturn ${each.value.handler}: ${each.value.role} (${each.value.scope})"
}
