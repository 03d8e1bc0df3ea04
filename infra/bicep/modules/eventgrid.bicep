// The Event Grid system topic on the monitored vault, and its delivery-failure logs. Deployed at the vault's
// resource group; the topic takes the vault's region. The subscriptions are in ../subscriptions.bicep, deployed
// once the handlers' code is (Event Grid checks that the function exists).

@description('Name of the monitored vault (in this deployment\'s resource group).')
param vaultName string

@description('Region of the vault (a system topic is in its source\'s region). main.bicep reads it from the vault: the topic\'s location must be known at the start of the deployment, which vault.location read here is not (BCP120).')
param location string

@description('Name of the system topic. A vault can have only one system topic.')
param topicName string

@description('Tags of the topic.')
param tags object

@description('Resource id of the user-assigned identity Event Grid uses to write dead letters.')
param topicIdentityId string

@description('Log Analytics workspace receiving the topic\'s DeliveryFailures logs.')
param workspaceId string

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: vaultName
}

resource topic 'Microsoft.EventGrid/systemTopics@2025-02-15' = {
  name: topicName
  location: location
  tags: tags
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${topicIdentityId}': {}
    }
  }
  properties: {
    source: vault.id
    topicType: 'Microsoft.KeyVault.vaults'
  }
}

// Each failed delivery attempt, with its reason, to Log Analytics (the dashboard's failures panel), in the
// resource-specific table AegDeliveryFailureLogs.
resource deliveryFailureLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'keyturn-delivery-failures'
  scope: topic
  properties: {
    workspaceId: workspaceId
    logAnalyticsDestinationType: 'Dedicated'
    logs: [
      {
        category: 'DeliveryFailures'
        enabled: true
      }
    ]
  }
}

@description('Name of the system topic.')
output topicName string = topic.name

@description('Resource id of the system topic (the metric alerts\' scope).')
output topicId string = topic.id
