// One keyturn handler: its own user-assigned identity, host storage account, plan and Linux function app running
// the custom handler, and exactly the grants infra/roles.json lists for it. Deployed once per selected handler by
// main.bicep.

@description('Handler name: near-expiry, expired, new-version or test-event (= function name = route = key in roles.json).')
param handler string

@description('Region of the app.')
param location string

@description('Tags for every resource.')
param tags object

@description('Function app name (globally unique; at most 32 characters keeps the host id unique).')
@maxLength(32)
param appName string

@description('Name of this handler\'s own host storage account (AzureWebJobsStorage and its package; 3-24 lowercase letters and digits).')
@minLength(3)
@maxLength(24)
param hostStorageName string

@description('FlexConsumption or ElasticPremium.')
param hostingPlan string

@description('Flex Consumption: maximum instance count.')
param flexMaximumInstanceCount int

@description('Flex Consumption: instance memory in MB.')
param flexInstanceMemoryMB int

@description('Elastic Premium: plan SKU.')
param elasticPremiumSku string

@description('The shared state account (same resource group) holding the lock container.')
param stateStorageName string

@description('The rotation-lock container in the state account.')
param lockContainerName string

@description('The sweep\'s state container in the state account.')
param sweepStateContainerName string

@description('The container the Event Grid subscriptions dead-letter into, in the state account.')
param deadLetterContainerName string

@description('Application Insights component (same resource group).')
param insightsName string

@description('Log Analytics workspace receiving the host storage account\'s blob logs.')
param workspaceId string

@description('The flags roles.json\'s `when` names, each true or false (`always`: true).')
param grantFlags object

@description('Resource id of the monitored vault.')
param keyVaultId string

@description('Name of the canary secret in the monitored vault.')
param canarySecretName string

@description('Versionless URI of the notification secret; empty: none.')
param notifySecretUri string

@description('Resource id of the vault holding the notification secret.')
param notifyVaultId string

@description('Resource ids of the mirror vaults.')
param mirrorVaultIds array

@description('Resource ids of the Azure key family\'s resources bound to the azure-key provider (and the storage accounts of storage-account-key).')
param azureKeyResourceIds array

@description('What main.bicep derives its custom role definitions\' names from (guid(customRoleSeed, role name)).')
param customRoleSeed string

@description('Resource ids of the consumer apps new-version refreshes (Microsoft.Web/sites and Microsoft.App/containerApps).')
param consumerAppIds array

@description('keyturn app settings (KEYTURN_*), merged with the platform settings below.')
param keyturnSettings object

var roles = loadJsonContent('../../roles.json')

// This handler's grants: its own and every handler's, without those whose `when` flag is off.
var grants = filter(concat(roles.handlers[handler], roles.everyHandler), g => grantFlags[union({ when: 'always' }, g).when])
var vaultGrants = filter(grants, g => g.scope == 'vault')
var canaryGrants = filter(grants, g => g.scope == 'canarySecret')
var notifyGrants = empty(notifySecretUri) ? [] : filter(grants, g => g.scope == 'notificationSecret')
var mirrorGrants = filter(grants, g => g.scope == 'mirrorVaults')
var azureKeyGrants = filter(grants, g => g.scope == 'azureKeyResources')
var consumerWebAppGrants = filter(grants, g => g.scope == 'consumerWebApps')
var consumerContainerAppGrants = filter(grants, g => g.scope == 'consumerContainerApps')
// The consumers by type: each type's role is granted on its own apps only.
var consumerWebAppIds = filter(consumerAppIds, id => contains(toLower(id), '/providers/microsoft.web/sites/'))
var consumerContainerAppIds = filter(consumerAppIds, id => contains(toLower(id), '/providers/microsoft.app/containerapps/'))
var hostStorageGrants = filter(grants, g => g.scope == 'hostStorage')
var lockGrants = filter(grants, g => g.scope == 'lockContainer')
var sweepStateGrants = filter(grants, g => g.scope == 'sweepStateContainer')
var deadLetterGrants = filter(grants, g => g.scope == 'deadLetterContainer')
var insightsGrants = filter(grants, g => g.scope == 'insights')

var isFlex = hostingPlan == 'FlexConsumption'
var packageContainerName = 'package'
// https://<vault>.vault.azure.net/secrets/<name>: the fifth segment is the secret's name.
var notifySecretName = empty(notifySecretUri) ? '' : split(notifySecretUri, '/')[4]

resource state 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: stateStorageName
  resource blob 'blobServices' existing = {
    name: 'default'
    resource locks 'containers' existing = {
      name: lockContainerName
    }
    resource sweepState 'containers' existing = {
      name: sweepStateContainerName
    }
    resource deadLetters 'containers' existing = {
      name: deadLetterContainerName
    }
  }
}

resource insights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: insightsName
}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: '${appName}-id'
  location: location
  tags: tags
}

// The handler's own host storage: AzureWebJobsStorage (blobs, queues, tables of the Functions host) and its
// package. No other handler holds a role here, so no other handler can replace this one's code.
resource hostStorage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: Flex Consumption apps without VNet integration reach their host storage over its public endpoint; a deny-by-default firewall needs VNet integration, which this deployment does not create.
  // checkov:skip=CKV_AZURE_59: same reason as CKV_AZURE_35; public network access stays on, but every request needs an Entra ID token (shared keys are disabled).
  // checkov:skip=CKV_AZURE_206: host state and a package CI can rebuild; locally redundant storage is enough.
  // checkov:skip=CKV_AZURE_43: false positive: checkov cannot evaluate the computed name main.bicep passes, take(prefix + handler without hyphens + uniqueString(), 24): lowercase letters and digits, 3 to 24 characters (also enforced by this parameter's decorators).
  name: hostStorageName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowCrossTenantReplication: false
    isLocalUserEnabled: false
    isSftpEnabled: false
    publicNetworkAccess: 'Enabled'
    sasPolicy: {
      expirationAction: 'Log'
      sasExpirationPeriod: '0.01:00:00'
    }
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource hostBlob 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: hostStorage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

// Flex Consumption reads its package from this container; Elastic Premium runs from the package blob in it
// (WEBSITE_RUN_FROM_PACKAGE).
resource packageContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: hostBlob
  name: packageContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource hostBlobLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'keyturn-blob-logs'
  scope: hostBlob
  properties: {
    workspaceId: workspaceId
    logs: [
      {
        categoryGroup: 'allLogs'
        enabled: true
      }
    ]
  }
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
  properties: isFlex ? {
    reserved: true
  } : {
    reserved: true
    maximumElasticWorkerCount: 20
  }
}

// siteConfig: Flex Consumption refuses ftpsState and linuxFxVersion (and deprecates alwaysOn,
// use32BitWorkerProcess and the other properties infra/README.md lists), so the Premium-only properties are added
// only on Premium. infra/tests/test_bicep_rules.py keeps them apart.
var siteConfig = {
  minTlsVersion: '1.2'
  scmMinTlsVersion: '1.2'
  http20Enabled: true
}
var premiumOnlySiteConfig = {
  ftpsState: 'Disabled'
}

resource app 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222: Event Grid delivers to AzureFunction endpoints through the app's public endpoint; the apps have no HTTP-triggered functions, and the host's webhook routes need a system key.
  // checkov:skip=CKV_AZURE_17: Event Grid's AzureFunction delivery cannot present a client certificate.
  // checkov:skip=CKV_AZURE_212: scale to zero is intended (Flex Consumption); a cold start only delays an event, which Event Grid retries for 24 hours.
  // checkov:skip=CKV_AZURE_213: no HTTP endpoint to probe; the host supervises the handler process and its readiness route.
  // checkov:skip=CKV_AZURE_15: false positive: minTlsVersion is '1.2' in the siteConfig variable, which checkov does not resolve through union().
  // checkov:skip=CKV_AZURE_18: false positive: http20Enabled is true in the siteConfig variable, which checkov does not resolve through union().
  // checkov:skip=CKV_AZURE_67: false positive: same as CKV_AZURE_18.
  // checkov:skip=CKV_AZURE_78: FTP is off: ftpBasicAuth below forbids FTP publishing on both plans, and Premium also gets ftpsState Disabled (Flex Consumption rejects that property).
  name: appName
  location: location
  tags: union(tags, {
    'keyturn-handler': handler
    'azd-service-name': handler
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
    siteConfig: union(siteConfig, isFlex ? {} : premiumOnlySiteConfig)
    functionAppConfig: isFlex ? {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${hostStorage.properties.primaryEndpoints.blob}${packageContainer.name}'
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

// Basic (user name and password) publishing is off for FTP and for the SCM site: deployments authenticate with
// Entra ID (az functionapp deploy, azd).
resource ftpBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: app
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: app
  name: 'scm'
  properties: {
    allow: false
  }
}

// App settings as a child resource with a plain object: the values come from other resources' properties (known
// only while deploying), which a for-expression may not read (BCP178).
resource appSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  // checkov:skip=CKV_AZURE_13: false positive: checkov runs its sites/config 'web' checks (authentication settings) on every sites/config resource; this one is 'appsettings', name/value pairs only.
  // checkov:skip=CKV_AZURE_63: false positive: checkov runs its sites/config 'web' checks (HTTP logging) on every sites/config resource; this one is 'appsettings', name/value pairs only.
  // checkov:skip=CKV_AZURE_65: false positive: checkov runs its sites/config 'web' checks (detailed error messages) on every sites/config resource; this one is 'appsettings', name/value pairs only.
  // checkov:skip=CKV_AZURE_66: false positive: checkov runs its sites/config 'web' checks (failed request tracing) on every sites/config resource; this one is 'appsettings', name/value pairs only.
  // checkov:skip=CKV_AZURE_80: false positive: checkov runs its sites/config 'web' checks (.NET Framework version) on every sites/config resource; this one is 'appsettings', name/value pairs only.
  // checkov:skip=CKV_AZURE_88: false positive: checkov runs its sites/config 'web' checks (Azure Files mounts) on every sites/config resource; this one is 'appsettings', name/value pairs only.
  // checkov:skip=CKV_AZURE_222: false positive: checkov runs its sites/config 'web' checks (public network access) on every sites/config resource; this one is 'appsettings', name/value pairs only.
  parent: app
  name: 'appsettings'
  properties: union({
    AzureWebJobsStorage__accountName: hostStorage.name
    AzureWebJobsStorage__credential: 'managedidentity'
    AzureWebJobsStorage__clientId: identity.properties.clientId
    APPLICATIONINSIGHTS_CONNECTION_STRING: insights.properties.ConnectionString
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identity.properties.clientId};Authorization=AAD'
    AZURE_CLIENT_ID: identity.properties.clientId
  }, isFlex ? {} : {
    // Elastic Premium needs the runtime settings Flex refuses or ignores, and runs from the package blob read with the
    // app's identity (no Azure Files content share: that would need shared keys).
    FUNCTIONS_WORKER_RUNTIME: 'custom'
    FUNCTIONS_EXTENSION_VERSION: '~4'
    WEBSITE_RUN_FROM_PACKAGE: '${hostStorage.properties.primaryEndpoints.blob}${packageContainer.name}/${handler}.zip'
    WEBSITE_RUN_FROM_PACKAGE_BLOB_MI_RESOURCE_ID: identity.id
  }, keyturnSettings)
  // The host starts with these settings: let it find its storage and telemetry roles in place.
  dependsOn: [
    hostStorageAccess
    insightsAccess
  ]
}

resource hostStorageAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for g in hostStorageGrants: {
  name: guid(hostStorage.id, identity.id, roles.roleDefinitions[g.role])
  scope: hostStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.roleDefinitions[g.role])
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    description: 'keyturn ${handler}: its own host storage and package'
  }
}]

resource lockAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for g in lockGrants: {
  name: guid(state::blob::locks.id, identity.id, roles.roleDefinitions[g.role])
  scope: state::blob::locks
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.roleDefinitions[g.role])
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    description: 'keyturn ${handler}: rotation locks (blob leases)'
  }
}]

resource sweepStateAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for g in sweepStateGrants: {
  name: guid(state::blob::sweepState.id, identity.id, roles.roleDefinitions[g.role])
  scope: state::blob::sweepState
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.roleDefinitions[g.role])
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    description: 'keyturn ${handler}: the sweep\'s state (thresholds fired, versions paged)'
  }
}]

resource deadLetterAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for g in deadLetterGrants: {
  name: guid(state::blob::deadLetters.id, identity.id, roles.roleDefinitions[g.role])
  scope: state::blob::deadLetters
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.roleDefinitions[g.role])
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    description: 'keyturn ${handler}: reads the dead-lettered events to report and re-drive them'
  }
}]

resource insightsAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for g in insightsGrants: {
  name: guid(insights.id, identity.id, roles.roleDefinitions[g.role])
  scope: insights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.roleDefinitions[g.role])
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    description: 'keyturn ${handler}: telemetry with Entra ID authentication'
  }
}]

module vaultAccess 'vault-grants.bicep' = if (!empty(vaultGrants)) {
  name: '${appName}-vault'
  scope: resourceGroup(split(keyVaultId, '/')[2], split(keyVaultId, '/')[4])
  params: {
    vaultName: last(split(keyVaultId, '/'))
    principalId: identity.properties.principalId
    grants: vaultGrants
    roleDefinitions: roles.roleDefinitions
    purpose: 'keyturn ${handler}: monitored vault'
  }
}

module canaryAccess 'secret-grants.bicep' = if (!empty(canaryGrants)) {
  name: '${appName}-canary'
  scope: resourceGroup(split(keyVaultId, '/')[2], split(keyVaultId, '/')[4])
  params: {
    vaultName: last(split(keyVaultId, '/'))
    secretName: canarySecretName
    principalId: identity.properties.principalId
    grants: canaryGrants
    roleDefinitions: roles.roleDefinitions
    purpose: 'keyturn ${handler}: the canary secret only'
  }
}

module notifyAccess 'secret-grants.bicep' = if (!empty(notifyGrants)) {
  name: '${appName}-notify'
  scope: resourceGroup(split(notifyVaultId, '/')[2], split(notifyVaultId, '/')[4])
  params: {
    vaultName: last(split(notifyVaultId, '/'))
    secretName: notifySecretName
    principalId: identity.properties.principalId
    grants: notifyGrants
    roleDefinitions: roles.roleDefinitions
    purpose: 'keyturn ${handler}: Key Vault reference to the notification channels (this secret only)'
  }
}

module mirrorAccess 'vault-grants.bicep' = [for (v, i) in mirrorVaultIds: if (!empty(mirrorGrants)) {
  name: '${appName}-mirror-${i}'
  scope: resourceGroup(split(v, '/')[2], split(v, '/')[4])
  params: {
    vaultName: last(split(v, '/'))
    principalId: identity.properties.principalId
    grants: mirrorGrants
    roleDefinitions: roles.roleDefinitions
    purpose: 'keyturn ${handler}: mirror vault'
  }
}]

module azureKeyAccess 'key-grants.bicep' = [for (r, i) in azureKeyResourceIds: if (!empty(azureKeyGrants)) {
  name: '${appName}-azurekey-${i}'
  scope: resourceGroup(split(r, '/')[2], split(r, '/')[4])
  params: {
    resourceId: r
    principalId: identity.properties.principalId
    grants: azureKeyGrants
    customRoleSeed: customRoleSeed
    purpose: 'keyturn ${handler}: keys it may rotate (list and regenerate only)'
  }
}]

module consumerWebAppAccess 'app-grants.bicep' = [for (a, i) in consumerWebAppIds: if (!empty(consumerWebAppGrants)) {
  name: '${appName}-consumerweb-${i}'
  scope: resourceGroup(split(a, '/')[2], split(a, '/')[4])
  params: {
    appId: a
    principalId: identity.properties.principalId
    grants: consumerWebAppGrants
    roleDefinitions: roles.roleDefinitions
    purpose: 'keyturn ${handler}: consumer whose Key Vault references it refreshes'
  }
}]

module consumerContainerAppAccess 'app-grants.bicep' = [for (a, i) in consumerContainerAppIds: if (!empty(consumerContainerAppGrants)) {
  name: '${appName}-consumerca-${i}'
  scope: resourceGroup(split(a, '/')[2], split(a, '/')[4])
  params: {
    appId: a
    principalId: identity.properties.principalId
    grants: consumerContainerAppGrants
    roleDefinitions: roles.roleDefinitions
    purpose: 'keyturn ${handler}: consumer whose active revisions it restarts'
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

@description('Name of the handler\'s host storage account.')
output hostStorageName string = hostStorage.name
