// One keyturn handler: its own user-assigned identity, plan and Linux function app running the custom handler,
// and the identity's role assignments. Deployed once per selected handler by main.bicep.

@description('Handler name: near-expiry, expired, new-version or test-event (= function name = route).')
param handler string

@description('Region of the app.')
param location string

@description('Tags for every resource.')
param tags object

@description('Function app name (globally unique; at most 32 characters keeps the host id unique).')
@maxLength(32)
param appName string

@description('FlexConsumption or ElasticPremium.')
param hostingPlan string

@description('Flex Consumption: maximum instance count.')
param flexMaximumInstanceCount int

@description('Flex Consumption: instance memory in MB.')
param flexInstanceMemoryMB int

@description('Elastic Premium: plan SKU.')
param elasticPremiumSku string

@description('Storage account (same resource group) for AzureWebJobsStorage, packages and locks.')
param storageAccountName string

@description('Blob container holding this app\'s package.')
param packageContainerName string

@description('Application Insights component (same resource group).')
param insightsName string

@description('Role name to built-in role definition id.')
param roleIds object

@description('Roles on the storage account.')
param storageRoles array

@description('Roles on the Application Insights component.')
param insightsRoles array

@description('Resource id of the monitored vault.')
param keyVaultId string

@description('Roles on the monitored vault.')
param vaultRoles array

@description('Resource id of the vault holding the notification secret.')
param notifyVaultId string

@description('Roles on the notification vault when it is not the monitored vault (else folded into vaultRoles).')
param notifyRoles array

@description('Resource ids of the mirror vaults.')
param mirrorVaultIds array

@description('Roles on every mirror vault.')
param mirrorRoles array

@description('keyturn app settings (KEYTURN_*), merged with the platform settings below.')
param keyturnSettings object

var isFlex = hostingPlan == 'FlexConsumption'
var packageContainerUrl = '${storage.properties.primaryEndpoints.blob}${packageContainerName}'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource insights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: insightsName
}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: '${appName}-id'
  location: location
  tags: tags
}

// Flex Consumption allows one app per plan, so every handler gets its own plan on both hosting options.
resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: zone redundancy is available only in some regions and for Flex needs zone-redundant storage; an event that finds its zone down waits in Event Grid's retries.
  name: '${appName}-plan'
  location: location
  tags: tags
  kind: isFlex ? 'functionapp' : 'elastic'
  sku: isFlex ? {
    name: 'FC1'
    tier: 'FlexConsumption'
  } : {
    name: elasticPremiumSku
    tier: 'ElasticPremium'
  }
  properties: {
    reserved: true
    maximumElasticWorkerCount: isFlex ? null : 20
  }
}

// Identity-based host storage (AzureWebJobsStorage__*), identity-based telemetry, keyturn's own settings.
var platformSettings = {
  AzureWebJobsStorage__accountName: storage.name
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identity.properties.clientId
  APPLICATIONINSIGHTS_CONNECTION_STRING: insights.properties.ConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identity.properties.clientId};Authorization=AAD'
  AZURE_CLIENT_ID: identity.properties.clientId
}

// Flex takes the runtime from functionAppConfig and rejects FUNCTIONS_WORKER_RUNTIME and
// FUNCTIONS_EXTENSION_VERSION; Elastic Premium needs both, and runs from the package blob read with the app's
// identity (no Azure Files content share: that would need shared keys).
var elasticPremiumSettings = {
  FUNCTIONS_WORKER_RUNTIME: 'custom'
  FUNCTIONS_EXTENSION_VERSION: '~4'
  WEBSITE_RUN_FROM_PACKAGE: '${packageContainerUrl}/${handler}.zip'
  WEBSITE_RUN_FROM_PACKAGE_BLOB_MI_RESOURCE_ID: identity.id
}

var appSettings = union(platformSettings, isFlex ? {} : elasticPremiumSettings, keyturnSettings)

resource app 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222: Event Grid delivers to AzureFunction endpoints through the app's public endpoint; the apps have no HTTP-triggered functions, and the host's webhook routes need a system key.
  // checkov:skip=CKV_AZURE_17: Event Grid's AzureFunction delivery cannot present a client certificate.
  // checkov:skip=CKV_AZURE_212: scale to zero is intended (Flex Consumption); a cold start only delays an event, which Event Grid retries for 24 hours.
  // checkov:skip=CKV_AZURE_213: no HTTP endpoint to probe; the host supervises the handler process and its readiness route.
  name: appName
  location: location
  tags: union(tags, {
    'keyturn-handler': handler
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identity.id}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    keyVaultReferenceIdentity: identity.id
    publicNetworkAccess: 'Enabled'
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: [for s in items(appSettings): {
        name: s.key
        value: s.value
      }]
    }
    functionAppConfig: isFlex ? {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: packageContainerUrl
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identity.id
          }
        }
      }
      runtime: {
        name: 'custom'
        version: '1.0'
      }
      scaleAndConcurrency: {
        maximumInstanceCount: flexMaximumInstanceCount
        instanceMemoryMB: flexInstanceMemoryMB
      }
    } : null
  }
}

resource storageAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for r in storageRoles: {
  name: guid(storage.id, identity.id, roleIds[r])
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds[r])
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    description: 'keyturn ${handler}: host storage, package, rotation locks'
  }
}]

resource insightsAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for r in insightsRoles: {
  name: guid(insights.id, identity.id, roleIds[r])
  scope: insights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds[r])
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    description: 'keyturn ${handler}: telemetry with Entra ID authentication'
  }
}]

module vaultAccess 'vault-roles.bicep' = {
  name: '${appName}-vault'
  scope: resourceGroup(split(keyVaultId, '/')[2], split(keyVaultId, '/')[4])
  params: {
    vaultName: last(split(keyVaultId, '/'))
    principalId: identity.properties.principalId
    roles: vaultRoles
    roleIds: roleIds
    purpose: 'keyturn ${handler}: monitored vault'
  }
}

module notifyAccess 'vault-roles.bicep' = if (!empty(notifyRoles)) {
  name: '${appName}-notify'
  scope: resourceGroup(split(notifyVaultId, '/')[2], split(notifyVaultId, '/')[4])
  params: {
    vaultName: last(split(notifyVaultId, '/'))
    principalId: identity.properties.principalId
    roles: notifyRoles
    roleIds: roleIds
    purpose: 'keyturn ${handler}: Key Vault reference to the notification channels'
  }
}

module mirrorAccess 'vault-roles.bicep' = [for (v, i) in mirrorVaultIds: if (!empty(mirrorRoles)) {
  name: '${appName}-mirror-${i}'
  scope: resourceGroup(split(v, '/')[2], split(v, '/')[4])
  params: {
    vaultName: last(split(v, '/'))
    principalId: identity.properties.principalId
    roles: mirrorRoles
    roleIds: roleIds
    purpose: 'keyturn ${handler}: mirror vault'
  }
}]

@description('Resource id of the function app.')
output appId string = app.id

@description('Name of the function app.')
output appName string = app.name

@description('Client id of the app\'s identity (AZURE_CLIENT_ID).')
output identityClientId string = identity.properties.clientId

@description('Principal (object) id of the app\'s identity.')
output identityPrincipalId string = identity.properties.principalId
