// keyturn: the whole Azure deployment (Bicep). infra/terraform describes the same resources; infra/tests checks
// that the two agree. Deploy into an existing resource group (see infra/README.md for the steps, or `azd up`).
// The Event Grid subscriptions are not here: Event Grid refuses a subscription to a function whose code is not
// deployed yet, so subscriptions.bicep is deployed after the packages (azd's postdeploy hook, infra/hooks).
//
// API versions (ARM template reference, learn.microsoft.com/azure/templates):
//   Microsoft.Storage/storageAccounts (+ blobServices, containers, managementPolicies)  2023-05-01
//   Microsoft.OperationalInsights/workspaces                        2023-09-01
//   Microsoft.Insights/components                                   2020-02-02
//   Microsoft.Insights/diagnosticSettings                           2021-05-01-preview
//   Microsoft.Insights/actionGroups                                 2023-01-01
//   Microsoft.Insights/metricAlerts                                 2018-03-01
//   Microsoft.Insights/workbooks                                    2023-06-01
//   Microsoft.ManagedIdentity/userAssignedIdentities                2023-01-31
//   Microsoft.Web/serverfarms, sites, sites/config, sites/basicPublishingCredentialsPolicies   2024-04-01
//   Microsoft.Authorization/roleAssignments                         2022-04-01
//   Microsoft.EventGrid/systemTopics (+ eventSubscriptions)         2025-02-15
//   Microsoft.KeyVault/vaults, vaults/secrets (existing only)       2023-07-01
//
// Everything in this file must also parse with checkov's Bicep parser (pycep), which knows a subset of Bicep's
// functions: no map()/reduce()/items(), no for-expression inside a function call, no quotes inside '${...}'.
// Every for-expression and if-condition must be known at the start of the deployment (BCP177/BCP178):
// infra/tests/test_bicep_rules.py fails on one that reads a resource's properties, a module's outputs,
// reference() or list*().

@description('Region for the new resources. The Event Grid system topic always goes to the vault\'s region.')
param location string = resourceGroup().location

@description('Prefix of every resource name (lowercase letters and digits, 2-10 characters).')
@minLength(2)
@maxLength(10)
param namePrefix string = 'keyturn'

@description('Resource id of the existing Key Vault (RBAC permission model) whose events keyturn handles.')
param keyVaultId string

@description('Handlers to deploy: any of near-expiry, expired, new-version, test-event, sweep. Each becomes its own function app with its own identity and host storage; its roles are those infra/roles.json lists for it.')
param handlers array = [
  'near-expiry'
  'expired'
  'new-version'
  'test-event'
  'sweep'
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

@description('Versionless URI of the Key Vault secret holding the notification channel URLs (KEYTURN_NOTIFY), e.g. https://kv.vault.azure.net/secrets/keyturn-notify. The secret must exist: each handler may read that secret alone (infra/roles.json, notificationSecret). Empty: no notification channels.')
param notifySecretUri string = ''

@description('Resource id of the vault holding notifySecretUri. Empty: the monitored vault (keyVaultId).')
param notifyVaultId string = ''

@description('Name of the canary secret whose new versions go to test-event (and to no other handler). It must exist in the monitored vault: test-event is granted write on it alone.')
param canarySecretName string = 'keyturn-canary'

@description('Resource ids of vaults new-version replicates secrets to (KEYTURN_MIRROR_VAULTS). Empty: no replication.')
param mirrorVaultIds array = []

@description('Resource ids of storage accounts whose keys the monitored vault\'s secrets may rotate (KEYTURN_STORAGE_ACCOUNTS, bound to every secret of the vault; the storage-account-key provider). near-expiry (and the repairing sweep) hold the key operator role of infra/roles.json (customRoles) on each (azureKeyResources). Empty: none. For a binding per secret name, use azureKeyResources.')
param storageKeyAccountIds array = []

@description('Resource ids of the App Service / Functions apps (Microsoft.Web/sites) and Container Apps (Microsoft.App/containerApps) that read the monitored vault\'s secrets: new-version refreshes their Key Vault references or restarts their active revisions on each new version (KEYTURN_CONSUMERS; infra/roles.json, consumerWebApps and consumerContainerApps). Empty: none.')
param consumerAppIds array = []

@description('KEYTURN_CONSUMERS for new-version: ;-separated <vault>[/<name or prefix*>]=<resource id>[,<id>] entries, to bind each consumer to the secrets it reads. Empty: every consumerAppIds app is bound to every secret of the monitored vault.')
param consumers string = ''

@description('Resources of the Azure key family whose keys near-expiry may rotate (KEYTURN_AZURE_KEY_RESOURCES; the azure-key provider): storage accounts, Cosmos DB accounts, Redis caches, Service Bus and Event Hubs authorization rules, Azure AI services, Azure AI Search. Each entry: {resourceId, secrets?}: secrets = the monitored vault\'s secret names or prefix* it is bound to (comma-separated; absent or empty: every secret). near-expiry (and the repairing sweep) hold the key operator role of infra/roles.json (customRoles) on each (azureKeyResources). Empty: none.')
param azureKeyResources array = []

@description('The Entra ID applications whose client secrets near-expiry may rotate (the entra-app-secret provider; KEYTURN_ENTRA_APPLICATIONS): ;-separated <vault>[/<name or prefix*>]=<application object id>[,<id>] entries. The Graph permission (Application.ReadWrite.OwnedBy and ownership of each application) is not an Azure role and is granted by hand: docs/operations.md. Empty: none.')
param entraApplications string = ''

@description('Grant expired the write roles its opt-in actions (emergency rotation, disable) need. false: read-only.')
param expiredActionsEnabled bool = false

@description('Let the sweep repair lost near-expiry events: it rotates opted-in objects near-expiry should have rotated (KEYTURN_SWEEP_REPAIR), and holds near-expiry\'s write roles for it. false: the sweep only reads.')
param sweepRepairEnabled bool = false

@description('Blob container (in the shared state account) holding the rotation locks (KEYTURN_LOCK_CONTAINER).')
param lockContainerName string = 'keyturn-locks'

@description('Blob container (in the shared state account) holding the sweep\'s state: thresholds fired, versions paged (KEYTURN_SWEEP_STATE_CONTAINER).')
param sweepStateContainerName string = 'keyturn-sweep'

@description('The sweep\'s NCRONTAB schedule (KEYTURN_SWEEP_SCHEDULE, read by the Functions host); hourly by default.')
param sweepSchedule string = '0 0 * * * *'

@description('Blob container (in the shared state account) receiving events Event Grid could not deliver.')
param deadLetterContainerName string = 'keyturn-deadletter'

@description('Days a dead-lettered event is kept before the lifecycle rule deletes it.')
@minValue(1)
@maxValue(3650)
param deadLetterRetentionDays int = 30

@description('keyturn log filter (KEYTURN_LOG), e.g. info or keyturn=debug,info.')
param logFilter string = 'info'

@description('Log Analytics retention in days.')
@minValue(30)
@maxValue(730)
param logRetentionDays int = 30

@description('Email addresses the alerts go to. With alertWebhookUrl also empty, no action group is created and the alerts only show in the portal.')
param alertEmails array = []

@description('Webhook (https) the alerts are posted to (common alert schema). Empty: none.')
@secure()
param alertWebhookUrl string = ''

@description('Failed Event Grid delivery attempts within 15 minutes that raise an alert (a single failure is retried and is no news).')
@minValue(1)
param deliveryFailureThreshold int = 10

@description('Tags applied to every new resource.')
param tags object = {
  application: 'keyturn'
}

// Event routing per handler. The roles are not here: infra/roles.json holds them, for Bicep, Terraform and the
// local stack alike. A handler without event types (the timer-triggered sweep) gets no subscription.
var handlerConfig = {
  'near-expiry': {
    eventTypes: [
      'Microsoft.KeyVault.SecretNearExpiry'
      'Microsoft.KeyVault.KeyNearExpiry'
      'Microsoft.KeyVault.CertificateNearExpiry'
    ]
    canary: 'exclude'
  }
  expired: {
    eventTypes: [
      'Microsoft.KeyVault.SecretExpired'
      'Microsoft.KeyVault.KeyExpired'
      'Microsoft.KeyVault.CertificateExpired'
    ]
    canary: 'exclude'
  }
  'new-version': {
    eventTypes: [
      'Microsoft.KeyVault.SecretNewVersionCreated'
      'Microsoft.KeyVault.KeyNewVersionCreated'
      'Microsoft.KeyVault.CertificateNewVersionCreated'
    ]
    canary: 'exclude'
  }
  'test-event': {
    eventTypes: [
      'Microsoft.KeyVault.SecretNewVersionCreated'
    ]
    canary: 'only'
  }
  sweep: {
    eventTypes: []
    canary: 'exclude'
  }
}

var roles = loadJsonContent('../roles.json')

// The flags roles.json's `when` names; `always` is what a grant without `when` gets.
var grantFlags = {
  always: true
  expiredActionsEnabled: expiredActionsEnabled
  sweepRepairEnabled: sweepRepairEnabled
}

// The Event Grid system topic's identity writes dead letters (not a handler, so not in roles.json).
var deadLetterRole = 'Storage Blob Data Contributor'

var suffix = take(uniqueString(resourceGroup().id), 6)
var storagePrefix = replace(toLower(namePrefix), '-', '')
var stateStorageName = take('${storagePrefix}state${uniqueString(resourceGroup().id)}', 24)
var vaultSubscriptionId = split(keyVaultId, '/')[2]
var vaultResourceGroup = split(keyVaultId, '/')[4]
var vaultName = last(split(keyVaultId, '/'))

// The Azure key family's bound resources (both parameters), the resource groups holding them (the custom roles'
// assignable scopes: Azure takes management groups, subscriptions and resource groups there), and the bindings.
var azureKeyBoundIds = [for r in azureKeyResources: r.resourceId]
var azureKeyResourceIds = union(storageKeyAccountIds, azureKeyBoundIds)
var azureKeyResourceGroupList = [for id in azureKeyResourceIds: '/subscriptions/${split(id, '/')[2]}/resourceGroups/${split(id, '/')[4]}']
var azureKeyResourceGroups = union(azureKeyResourceGroupList, [])
var azureKeyBindingList = [for r in azureKeyResources: empty(union({ secrets: '' }, r).secrets) ? '${vaultName}=${r.resourceId}' : '${vaultName}/${union({ secrets: '' }, r).secrets}=${r.resourceId}']
var azureKeyBindings = join(azureKeyBindingList, ';')
// The custom role definitions' names: guid(customRoleSeed, role name), here and in modules/key-grants.bicep.
var customRoleSeed = resourceGroup().id
var keyVaultDns = environment().suffixes.keyvaultDns
var vaultUrl = 'https://${vaultName}${keyVaultDns}'
var effectiveNotifyVaultId = empty(notifyVaultId) ? keyVaultId : notifyVaultId
var mirrorVaultUrls = [for id in mirrorVaultIds: 'https://${last(split(id, '/'))}${keyVaultDns}']
// The deployment's one mirror route (KEYTURN_MIRROR_ROUTES): the monitored vault's secrets may be mirrored to the
// mirror vaults, and nowhere else; KeyturnMirror tags pick among them.
var mirrorRoutes = '${vaultName}=${join(map(mirrorVaultIds, id => last(split(id, '/'))), ',')}'
var consumerBindings = empty(consumers) ? '${vaultName}=${join(consumerAppIds, ',')}' : consumers
var canaryFilterValues = [
  canarySecretName
]
var alertReceivers = !empty(alertEmails) || !empty(alertWebhookUrl)

// The shared state account: rotation locks and dead letters. No handler holds a role on the account itself:
// roles.json grants the lock container to the handlers that take locks; Event Grid's identity writes dead letters.
resource state 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: Flex Consumption apps without VNet integration and Event Grid dead-lettering reach the account over its public endpoint; a deny-by-default firewall needs VNet integration, which this deployment does not create.
  // checkov:skip=CKV_AZURE_59: same reason as CKV_AZURE_35; public network access stays on, but every request needs an Entra ID token (shared keys are disabled).
  // checkov:skip=CKV_AZURE_206: the data is transient (locks, dead letters kept deadLetterRetentionDays); locally redundant storage is enough.
  // checkov:skip=CKV_AZURE_43: false positive: checkov cannot evaluate the computed name, take(prefix without hyphens + 'state' + uniqueString(), 24), which is lowercase letters and digits, 3 to 24 characters.
  name: stateStorageName
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

resource stateBlob 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: state
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
  parent: stateBlob
  name: lockContainerName
  properties: {
    publicAccess: 'None'
  }
}

// The sweep's state: which thresholds fired per object version and channel, which versions are paged.
resource sweepStateContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: stateBlob
  name: sweepStateContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource deadLetterContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: stateBlob
  name: deadLetterContainerName
  properties: {
    publicAccess: 'None'
  }
}

// Dead letters are evidence for a replay, not an archive: deleted after deadLetterRetentionDays.
resource deadLetterLifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: state
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'keyturn-delete-dead-letters'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [
                '${deadLetterContainerName}/'
              ]
            }
            actions: {
              baseBlob: {
                delete: {
                  daysAfterModificationGreaterThan: deadLetterRetentionDays
                }
              }
            }
          }
        }
      ]
    }
  }
}

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

// Blob reads, writes and deletes of the state account (locks taken, dead letters written) to Log Analytics; the
// dashboard counts dead letters from these.
resource stateBlobLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'keyturn-blob-logs'
  scope: stateBlob
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

resource deadLetterWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(deadLetterContainer.id, topicIdentity.id, roles.roleDefinitions[deadLetterRole])
  scope: deadLetterContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.roleDefinitions[deadLetterRole])
    principalId: topicIdentity.properties.principalId
    principalType: 'ServicePrincipal'
    description: 'keyturn: Event Grid writes undeliverable events here'
  }
}

// The custom roles infra/roles.json defines (customRoles: the key operator, exactly the list and regenerate
// actions of the Azure key family), created when a resource is bound, assignable in the resource groups holding the
// bound resources. A role name is unique in the tenant, so it carries this deployment's resource group.
resource customRoles 'Microsoft.Authorization/roleDefinitions@2022-04-01' = [for r in items(roles.customRoles): if (!empty(azureKeyResourceIds)) {
  name: guid(customRoleSeed, r.key)
  properties: {
    roleName: '${r.key} (${resourceGroup().name}-${suffix})'
    description: r.value.description
    type: 'CustomRole'
    permissions: [
      {
        actions: r.value.actions
        notActions: []
      }
    ]
    assignableScopes: azureKeyResourceGroups
  }
}]

module apps 'modules/handler.bicep' = [for h in handlers: {
  name: 'keyturn-${h}'
  // The key grants name the custom roles, which must exist first.
  dependsOn: [customRoles]
  params: {
    handler: h
    location: location
    tags: tags
    appName: '${namePrefix}-${h}-${suffix}'
    hostStorageName: take('${storagePrefix}${replace(h, '-', '')}${uniqueString(resourceGroup().id, h)}', 24)
    hostingPlan: hostingPlan
    flexMaximumInstanceCount: flexMaximumInstanceCount
    flexInstanceMemoryMB: flexInstanceMemoryMB
    elasticPremiumSku: elasticPremiumSku
    stateStorageName: state.name
    lockContainerName: lockContainer.name
    sweepStateContainerName: sweepStateContainer.name
    deadLetterContainerName: deadLetterContainer.name
    insightsName: insights.name
    workspaceId: workspace.id
    grantFlags: grantFlags
    keyVaultId: keyVaultId
    canarySecretName: canarySecretName
    notifySecretUri: notifySecretUri
    notifyVaultId: effectiveNotifyVaultId
    mirrorVaultIds: mirrorVaultIds
    azureKeyResourceIds: azureKeyResourceIds
    customRoleSeed: customRoleSeed
    consumerAppIds: consumerAppIds
    keyturnSettings: union({
      KEYTURN_VAULTS: vaultUrl
      KEYTURN_CREDENTIAL: 'managed-identity'
      KEYTURN_LOCK_ACCOUNT_URL: state.properties.primaryEndpoints.blob
      KEYTURN_LOCK_CONTAINER: lockContainer.name
      KEYTURN_LOG: logFilter
    }, empty(notifySecretUri) ? {} : {
      KEYTURN_NOTIFY: '@Microsoft.KeyVault(SecretUri=${notifySecretUri})'
    }, h == 'test-event' ? {
      KEYTURN_CANARY_SECRET: canarySecretName
    } : {}, h == 'new-version' && !empty(mirrorVaultIds) ? {
      KEYTURN_MIRROR_VAULTS: join(mirrorVaultUrls, ',')
      KEYTURN_MIRROR_ROUTES: mirrorRoutes
    } : {}, h == 'new-version' && !empty(consumerAppIds) ? {
      KEYTURN_CONSUMERS: consumerBindings
    } : {}, h == 'sweep' ? {
      KEYTURN_SWEEP_STATE_ACCOUNT_URL: state.properties.primaryEndpoints.blob
      KEYTURN_SWEEP_STATE_CONTAINER: sweepStateContainer.name
      KEYTURN_SWEEP_SCHEDULE: sweepSchedule
      KEYTURN_SWEEP_REPAIR: sweepRepairEnabled ? 'on' : 'off'
      KEYTURN_SWEEP_DEAD_LETTER_ACCOUNT_URL: state.properties.primaryEndpoints.blob
      KEYTURN_SWEEP_DEAD_LETTER_CONTAINER: deadLetterContainer.name
    } : {}, h == 'near-expiry' && !empty(entraApplications) ? {
      KEYTURN_ENTRA_APPLICATIONS: entraApplications
    } : {}, (h == 'near-expiry' || (h == 'sweep' && sweepRepairEnabled)) && !empty(azureKeyResources) ? {
      KEYTURN_AZURE_KEY_RESOURCES: azureKeyBindings
    } : {}, (h == 'near-expiry' || (h == 'sweep' && sweepRepairEnabled)) && !empty(storageKeyAccountIds) ? {
      KEYTURN_STORAGE_ACCOUNTS: '${vaultName}=${join(storageKeyAccountIds, ',')}'
    } : {})
  }
}]

// The monitored vault, read for its region (the system topic must be in it). A new resource's location must be known
// at the start of the deployment (BCP120) and an existing resource's location is not, so the topic cannot read
// vault.location itself; a module parameter may (it is passed when the module deploys).
resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: vaultName
  scope: resourceGroup(vaultSubscriptionId, vaultResourceGroup)
}

module eventGrid 'modules/eventgrid.bicep' = {
  name: 'keyturn-eventgrid'
  scope: resourceGroup(vaultSubscriptionId, vaultResourceGroup)
  params: {
    vaultName: vaultName
    location: vault.location
    topicName: '${namePrefix}-${vaultName}-events'
    tags: tags
    topicIdentityId: topicIdentity.id
    workspaceId: workspace.id
  }
}

// Alerts: an action group when someone is to be told, and metric alerts on the system topic and the apps.
resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (alertReceivers) {
  name: '${namePrefix}-alerts-${suffix}'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: take(namePrefix, 12)
    enabled: true
    emailReceivers: [for (address, i) in alertEmails: {
      name: 'email-${i}'
      emailAddress: address
      useCommonAlertSchema: true
    }]
    webhookReceivers: empty(alertWebhookUrl) ? [] : [
      {
        name: 'webhook'
        serviceUri: alertWebhookUrl
        useCommonAlertSchema: true
      }
    ]
  }
}

// Event Grid system topic metrics (Microsoft.EventGrid/systemTopics): what was given up on, dropped, or is
// failing right now.
var topicAlerts = [
  {
    name: 'dead-lettered'
    metricName: 'DeadLetteredCount'
    threshold: 0
    severity: 1
    description: 'keyturn: Event Grid dead-lettered an event after its retries (see the dead-letter container; docs/operations.md says how to replay).'
  }
  {
    name: 'dropped'
    metricName: 'DroppedEventCount'
    threshold: 0
    severity: 1
    description: 'keyturn: Event Grid dropped an event it could neither deliver nor dead-letter.'
  }
  {
    name: 'delivery-failing'
    metricName: 'DeliveryAttemptFailCount'
    threshold: deliveryFailureThreshold
    severity: 2
    description: 'keyturn: deliveries to the handlers keep failing (Event Grid is retrying; look for retry lines in Application Insights).'
  }
]

resource topicMetricAlerts 'Microsoft.Insights/metricAlerts@2018-03-01' = [for a in topicAlerts: {
  name: '${namePrefix}-${a.name}-${suffix}'
  location: 'global'
  tags: tags
  properties: {
    description: a.description
    severity: a.severity
    enabled: true
    scopes: [
      eventGrid.outputs.topicId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: a.metricName
          metricNamespace: 'Microsoft.EventGrid/systemTopics'
          metricName: a.metricName
          operator: 'GreaterThan'
          threshold: a.threshold
          timeAggregation: 'Total'
        }
      ]
    }
    actions: alertReceivers ? [
      {
        actionGroupId: actionGroup.id
      }
    ] : []
  }
}]

// Function failures: every failed invocation is a failed request in Application Insights (a retry line).
resource functionFailureAlert 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: '${namePrefix}-function-failures-${suffix}'
  location: 'global'
  tags: tags
  properties: {
    description: 'keyturn: handler invocations failed (retry lines in Application Insights; Event Grid redelivers).'
    severity: 2
    enabled: true
    scopes: [
      insights.id
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'requests-failed'
          metricNamespace: 'microsoft.insights/components'
          metricName: 'requests/failed'
          operator: 'GreaterThan'
          threshold: 0
          timeAggregation: 'Count'
        }
      ]
    }
    actions: alertReceivers ? [
      {
        actionGroupId: actionGroup.id
      }
    ] : []
  }
}

// keyturn's dashboard: rotations and failures by handler, dead letters, objects expiring soon, from the
// handlers' own log lines (infra/workbook.json, shared with Terraform).
resource dashboard 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(resourceGroup().id, 'keyturn-dashboard')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: 'keyturn'
    category: 'workbook'
    sourceId: toLower(workspace.id)
    serializedData: replace(replace(loadTextContent('../workbook.json'), '__WORKSPACE_ID__', workspace.id), '__DEAD_LETTER_CONTAINER__', deadLetterContainerName)
  }
}

@description('Per handler: function app name, identity client id and principal id, host storage account.')
output handlers array = [for (h, i) in handlers: {
  handler: h
  appName: apps[i].outputs.appName
  identityClientId: apps[i].outputs.identityClientId
  identityPrincipalId: apps[i].outputs.identityPrincipalId
  hostStorageName: apps[i].outputs.hostStorageName
}]

@description('Storage account holding the rotation locks and the dead letters.')
output stateStorageName string = state.name

@description('Blob endpoint of the state account (KEYTURN_LOCK_ACCOUNT_URL).')
output stateBlobEndpoint string = state.properties.primaryEndpoints.blob

@description('Event Grid system topic on the vault (in the vault\'s resource group).')
output systemTopicName string = eventGrid.outputs.topicName

@description('Application Insights resource receiving the handlers\' telemetry.')
output applicationInsightsName string = insights.name

@description('Subscription of the monitored vault (where subscriptions.bicep is deployed); azd\'s postdeploy hook reads it.')
output KEYTURN_VAULT_SUBSCRIPTION_ID string = vaultSubscriptionId

@description('Resource group of the monitored vault (where subscriptions.bicep is deployed).')
output KEYTURN_VAULT_RESOURCE_GROUP string = vaultResourceGroup

@description('handler=app for each handler (the postdeploy hook waits until each app lists its function).')
output KEYTURN_FUNCTION_APPS array = [for (h, i) in handlers: '${h}=${apps[i].outputs.appName}']

@description('The parameters of subscriptions.bicep, as an ARM parameters file (the postdeploy hook writes it out).')
output KEYTURN_SUBSCRIPTION_PARAMETERS object = {
  '$schema': 'https://schema.management.azure.com/schemas/2019-04-01/deploymentParameters.json#'
  contentVersion: '1.0.0.0'
  parameters: {
    topicName: {
      value: eventGrid.outputs.topicName
    }
    topicIdentityId: {
      value: topicIdentity.id
    }
    deadLetterStorageAccountId: {
      value: state.id
    }
    deadLetterContainerName: {
      value: deadLetterContainer.name
    }
    subscriptions: {
      value: [for (h, i) in handlers: {
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
    }
  }
}
