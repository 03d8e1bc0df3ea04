// keyturn: the whole Azure deployment (Bicep). infra/terraform describes the same resources; infra/tests checks
// that the two agree. Deploy into an existing resource group (see infra/README.md for the steps).
//
// API versions (ARM template reference, learn.microsoft.com/azure/templates):
//   Microsoft.Storage/storageAccounts (+ blobServices, containers)  2023-05-01
//   Microsoft.OperationalInsights/workspaces                        2023-09-01
//   Microsoft.Insights/components                                   2020-02-02
//   Microsoft.Insights/diagnosticSettings                           2021-05-01-preview
//   Microsoft.ManagedIdentity/userAssignedIdentities                2023-01-31
//   Microsoft.Web/serverfarms, Microsoft.Web/sites                  2024-04-01 (functionAppConfig: 2023-12-01 and later)
//   Microsoft.Authorization/roleAssignments                         2022-04-01
//   Microsoft.EventGrid/systemTopics (+ eventSubscriptions)         2025-02-15
//   Microsoft.KeyVault/vaults (existing only)                       2023-07-01
//
// Everything in this file must also parse with checkov's Bicep parser (pycep), which knows a subset of Bicep's
// functions: no map()/reduce()/items() outside loops, no quotes inside '${...}'. infra/tests fails if it does not.

@description('Region for the new resources. The Event Grid system topic always goes to the vault\'s region.')
param location string = resourceGroup().location

@description('Prefix of every resource name (lowercase letters and digits, 2-10 characters).')
@minLength(2)
@maxLength(10)
param namePrefix string = 'keyturn'

@description('Resource id of the existing Key Vault (RBAC permission model) whose events keyturn handles.')
param keyVaultId string

@description('Handlers to deploy: any of near-expiry, expired, new-version, test-event. Each becomes its own function app.')
param handlers array = [
  'near-expiry'
  'expired'
  'new-version'
  'test-event'
]

@description('FlexConsumption (default, scales to zero) or ElasticPremium (always-warm instances, EP1-EP3).')
@allowed([
  'FlexConsumption'
  'ElasticPremium'
])
param hostingPlan string = 'FlexConsumption'

@description('Flex Consumption: the most instances one handler may scale out to.')
@minValue(1)
@maxValue(1000)
param flexMaximumInstanceCount int = 40

@description('Flex Consumption: memory of one instance in MB (512, 2048 or 4096).')
@allowed([
  512
  2048
  4096
])
param flexInstanceMemoryMB int = 512

@description('Elastic Premium: plan SKU.')
@allowed([
  'EP1'
  'EP2'
  'EP3'
])
param elasticPremiumSku string = 'EP1'

@description('Versionless URI of the Key Vault secret holding the notification channel URLs (KEYTURN_NOTIFY), e.g. https://kv.vault.azure.net/secrets/keyturn-notify. Empty: no notification channels.')
param notifySecretUri string = ''

@description('Resource id of the vault holding notifySecretUri. Empty: the monitored vault (keyVaultId).')
param notifyVaultId string = ''

@description('Name of the canary secret whose new versions go to test-event (and to no other handler).')
param canarySecretName string = 'keyturn-canary'

@description('Resource ids of vaults new-version replicates secrets to (KEYTURN_MIRROR_VAULTS). Empty: no replication.')
param mirrorVaultIds array = []

@description('Grant expired the write roles its opt-in actions (emergency rotation, disable) need. false: read-only.')
param expiredActionsEnabled bool = false

@description('Create the Event Grid subscriptions. Event Grid checks that the function exists, so the first deployment passes false, the handler packages are deployed, then a second deployment passes true (infra/README.md).')
param createSubscriptions bool = true

@description('Blob container holding the rotation locks (KEYTURN_LOCK_CONTAINER).')
param lockContainerName string = 'keyturn-locks'

@description('Blob container receiving events Event Grid could not deliver.')
param deadLetterContainerName string = 'keyturn-deadletter'

@description('keyturn log filter (KEYTURN_LOG), e.g. info or keyturn=debug,info.')
param logFilter string = 'info'

@description('Log Analytics retention in days.')
@minValue(30)
@maxValue(730)
param logRetentionDays int = 30

@description('Tags applied to every new resource.')
param tags object = {
  application: 'keyturn'
}

// The role matrix. infra/tests/test_parity.py compares it with infra/terraform/locals.tf, and infra/README.md
// documents it: change all three together.
var handlerConfig = {
  'near-expiry': {
    eventTypes: [
      'Microsoft.KeyVault.SecretNearExpiry'
      'Microsoft.KeyVault.KeyNearExpiry'
      'Microsoft.KeyVault.CertificateNearExpiry'
    ]
    canary: 'exclude'
    vaultRoles: [
      'Key Vault Secrets Officer'
      'Key Vault Crypto Officer'
      'Key Vault Certificates Officer'
    ]
    mirrorRoles: []
  }
  expired: {
    eventTypes: [
      'Microsoft.KeyVault.SecretExpired'
      'Microsoft.KeyVault.KeyExpired'
      'Microsoft.KeyVault.CertificateExpired'
    ]
    canary: 'exclude'
    vaultRoles: [
      'Key Vault Reader'
    ]
    mirrorRoles: []
  }
  'new-version': {
    eventTypes: [
      'Microsoft.KeyVault.SecretNewVersionCreated'
      'Microsoft.KeyVault.KeyNewVersionCreated'
      'Microsoft.KeyVault.CertificateNewVersionCreated'
    ]
    canary: 'exclude'
    vaultRoles: [
      'Key Vault Reader'
      'Key Vault Secrets User'
    ]
    mirrorRoles: [
      'Key Vault Secrets Officer'
    ]
  }
  'test-event': {
    eventTypes: [
      'Microsoft.KeyVault.SecretNewVersionCreated'
    ]
    canary: 'only'
    vaultRoles: [
      'Key Vault Reader'
      'Key Vault Secrets User'
    ]
    mirrorRoles: []
  }
}

// expired's vault roles when expiredActionsEnabled is true (instead of its read-only vaultRoles).
var expiredActionRoles = [
  'Key Vault Secrets Officer'
  'Key Vault Crypto Officer'
  'Key Vault Certificates Officer'
]

// Roles every handler identity holds besides its vault roles.
var storageRoles = [
  'Storage Blob Data Owner'
]
var insightsRoles = [
  'Monitoring Metrics Publisher'
]
var notifyRoles = [
  'Key Vault Secrets User'
]

// The Event Grid system topic's identity writes dead letters.
var deadLetterRoles = [
  'Storage Blob Data Contributor'
]

// Built-in role definition ids (learn.microsoft.com/azure/role-based-access-control/built-in-roles).
var roleIds = {
  'Key Vault Reader': '21090545-7ca7-4776-b22c-e363652d74d2'
  'Key Vault Secrets User': '4633458b-17de-408a-b874-0445c86b69e6'
  'Key Vault Secrets Officer': 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'
  'Key Vault Crypto Officer': '14b46e9e-c2b7-41b4-b07b-48a6ebf60603'
  'Key Vault Certificates Officer': 'a4417e6f-fecd-4de8-b567-7b0420556985'
  'Storage Blob Data Owner': 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  'Storage Blob Data Contributor': 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  'Monitoring Metrics Publisher': '3913510d-42f4-4e42-8a64-420c390055eb'
}

var suffix = take(uniqueString(resourceGroup().id), 6)
var storagePrefix = replace(toLower(namePrefix), '-', '')
var storageAccountName = take('${storagePrefix}${uniqueString(resourceGroup().id)}', 24)
var vaultSubscriptionId = split(keyVaultId, '/')[2]
var vaultResourceGroup = split(keyVaultId, '/')[4]
var vaultName = last(split(keyVaultId, '/'))
var keyVaultDns = environment().suffixes.keyvaultDns
var vaultUrl = 'https://${vaultName}${keyVaultDns}'
var effectiveNotifyVaultId = empty(notifyVaultId) ? keyVaultId : notifyVaultId
var notifyOnMonitoredVault = toLower(effectiveNotifyVaultId) == toLower(keyVaultId)
var mirrorVaultUrls = [for id in mirrorVaultIds: 'https://${last(split(id, '/'))}${keyVaultDns}']
var canaryFilterValues = [
  canarySecretName
]

// Storage: the apps' runtime (AzureWebJobsStorage), their deployment packages, the rotation locks and the dead
// letters. Identity-based access only.
resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: Flex Consumption apps without VNet integration and Event Grid dead-lettering reach the account over its public endpoint; a deny-by-default firewall needs VNet integration, which this deployment does not create.
  // checkov:skip=CKV_AZURE_59: same reason as CKV_AZURE_35; public network access stays on, but every request needs an Entra ID token (shared keys are disabled).
  // checkov:skip=CKV_AZURE_206: the data is transient (locks, packages CI can rebuild, dead letters of the last day); locally redundant storage is enough.
  // checkov:skip=CKV_AZURE_43: false positive: checkov cannot evaluate the computed name, take(prefix without hyphens + uniqueString(), 24), which is lowercase letters and digits, 3 to 24 characters.
  name: storageAccountName
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

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
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

resource lockContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: lockContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource deadLetterContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deadLetterContainerName
  properties: {
    publicAccess: 'None'
  }
}

// One package container per app: Flex Consumption reads its package from it; Elastic Premium runs from the
// package blob in it (WEBSITE_RUN_FROM_PACKAGE).
resource packageContainers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [for h in handlers: {
  parent: blobService
  name: 'package-${h}'
  properties: {
    publicAccess: 'None'
  }
}]

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: '${namePrefix}-log-${suffix}'
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: logRetentionDays
  }
}

// Blob reads, writes and deletes (locks taken, packages fetched, dead letters written) to Log Analytics.
resource blobLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'keyturn-blob-logs'
  scope: blobService
  properties: {
    workspaceId: workspace.id
    logs: [
      {
        categoryGroup: 'allLogs'
        enabled: true
      }
    ]
  }
}

// Local (instrumentation key) authentication is off: the apps publish telemetry with their identities.
resource insights 'Microsoft.Insights/components@2020-02-02' = {
  name: '${namePrefix}-appi-${suffix}'
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    DisableLocalAuth: true
  }
}

// The system topic's identity: created here, before the topic, so its dead-letter role exists by the time the
// subscriptions are created.
resource topicIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: '${namePrefix}-eventgrid-${suffix}'
  location: location
  tags: tags
}

resource deadLetterWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for r in deadLetterRoles: {
  name: guid(deadLetterContainer.id, topicIdentity.id, roleIds[r])
  scope: deadLetterContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds[r])
    principalId: topicIdentity.properties.principalId
    principalType: 'ServicePrincipal'
    description: 'keyturn: Event Grid writes undeliverable events here'
  }
}]

module apps 'modules/handler.bicep' = [for (h, i) in handlers: {
  name: 'keyturn-${h}'
  params: {
    handler: h
    location: location
    tags: tags
    appName: '${namePrefix}-${h}-${suffix}'
    hostingPlan: hostingPlan
    flexMaximumInstanceCount: flexMaximumInstanceCount
    flexInstanceMemoryMB: flexInstanceMemoryMB
    elasticPremiumSku: elasticPremiumSku
    storageAccountName: storage.name
    packageContainerName: packageContainers[i].name
    insightsName: insights.name
    roleIds: roleIds
    storageRoles: storageRoles
    insightsRoles: insightsRoles
    keyVaultId: keyVaultId
    vaultRoles: union(h == 'expired' && expiredActionsEnabled ? expiredActionRoles : handlerConfig[h].vaultRoles, !empty(notifySecretUri) && notifyOnMonitoredVault ? notifyRoles : [])
    notifyVaultId: effectiveNotifyVaultId
    notifyRoles: !empty(notifySecretUri) && !notifyOnMonitoredVault ? notifyRoles : []
    mirrorVaultIds: mirrorVaultIds
    mirrorRoles: empty(mirrorVaultIds) ? [] : handlerConfig[h].mirrorRoles
    keyturnSettings: union({
      KEYTURN_VAULTS: vaultUrl
      KEYTURN_CREDENTIAL: 'managed-identity'
      KEYTURN_LOCK_ACCOUNT_URL: storage.properties.primaryEndpoints.blob
      KEYTURN_LOCK_CONTAINER: lockContainer.name
      KEYTURN_LOG: logFilter
    }, empty(notifySecretUri) ? {} : {
      KEYTURN_NOTIFY: '@Microsoft.KeyVault(SecretUri=${notifySecretUri})'
    }, h == 'test-event' ? {
      KEYTURN_CANARY_SECRET: canarySecretName
    } : {}, h == 'new-version' && !empty(mirrorVaultIds) ? {
      KEYTURN_MIRROR_VAULTS: join(mirrorVaultUrls, ',')
    } : {})
  }
}]

module eventGrid 'modules/eventgrid.bicep' = {
  name: 'keyturn-eventgrid'
  scope: resourceGroup(vaultSubscriptionId, vaultResourceGroup)
  dependsOn: [
    deadLetterWriter
  ]
  params: {
    vaultName: vaultName
    topicName: '${namePrefix}-${vaultName}-events'
    tags: tags
    topicIdentityId: topicIdentity.id
    deadLetterStorageAccountId: storage.id
    deadLetterContainerName: deadLetterContainer.name
    subscriptions: [for (h, i) in handlers: {
      name: 'keyturn-${h}'
      functionId: '${apps[i].outputs.appId}/functions/${h}'
      eventTypes: handlerConfig[h].eventTypes
      advancedFilters: [
        {
          operatorType: handlerConfig[h].canary == 'only' ? 'StringIn' : 'StringNotIn'
          key: 'subject'
          values: canaryFilterValues
        }
      ]
    }]
    createSubscriptions: createSubscriptions
  }
}

@description('Per handler: function app name, identity client id and principal id.')
output handlers array = [for (h, i) in handlers: {
  handler: h
  appName: apps[i].outputs.appName
  identityClientId: apps[i].outputs.identityClientId
  identityPrincipalId: apps[i].outputs.identityPrincipalId
  packageContainer: packageContainers[i].name
}]

@description('Storage account holding runtime state, packages, locks and dead letters.')
output storageAccountName string = storage.name

@description('Blob endpoint of the storage account (KEYTURN_LOCK_ACCOUNT_URL).')
output storageBlobEndpoint string = storage.properties.primaryEndpoints.blob

@description('Event Grid system topic on the vault (in the vault\'s resource group).')
output systemTopicName string = eventGrid.outputs.topicName

@description('Application Insights resource receiving the handlers\' telemetry.')
output applicationInsightsName string = insights.name
