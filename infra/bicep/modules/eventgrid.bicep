// The Event Grid system topic on the monitored vault and one subscription per handler. Deployed at the vault's
// resource group; the topic takes the vault's region.

@description('Name of the monitored vault (in this deployment\'s resource group).')
param vaultName string

@description('Name of the system topic. A vault can have only one system topic.')
param topicName string

@description('Tags of the topic.')
param tags object

@description('Resource id of the user-assigned identity Event Grid uses to write dead letters.')
param topicIdentityId string

@description('Resource id of the storage account holding the dead-letter container.')
param deadLetterStorageAccountId string

@description('Name of the dead-letter blob container.')
param deadLetterContainerName string

@description('One object per handler: name, functionId, eventTypes, advancedFilters.')
param subscriptions array

@description('Create the subscriptions (false on the first deployment, before the handler packages exist).')
param createSubscriptions bool

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: vaultName
}

resource topic 'Microsoft.EventGrid/systemTopics@2025-02-15' = {
  name: topicName
  location: vault.location
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

// Batch size 1: the Functions extension runs a batch in parallel and fails it whole, so one slow or failing event
// would make Event Grid resend its neighbours. 30 attempts over 24 hours is Event Grid's maximum.
resource eventSubscriptions 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2025-02-15' = [for s in subscriptions: if (createSubscriptions) {
  parent: topic
  name: s.name
  properties: {
    eventDeliverySchema: 'EventGridSchema'
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: s.functionId
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    filter: {
      includedEventTypes: s.eventTypes
      advancedFilters: s.advancedFilters
    }
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: 1440
    }
    deadLetterWithResourceIdentity: {
      identity: {
        type: 'UserAssigned'
        userAssignedIdentity: topicIdentityId
      }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: {
          resourceId: deadLetterStorageAccountId
          blobContainerName: deadLetterContainerName
        }
      }
    }
  }
}]

@description('Name of the system topic.')
output topicName string = topic.name
