// The Event Grid subscriptions, one per handler with event types: deployed AFTER the handlers' code, because
// Event Grid refuses an AzureFunction subscription to a function that does not exist yet. Deployed at the
// monitored vault's resource group by infra/hooks/postdeploy.sh (azd's postdeploy hook, or by hand:
// infra/README.md) with the parameters main.bicep outputs as KEYTURN_SUBSCRIPTION_PARAMETERS.

@description('Name of the existing system topic on the vault (main.bicep creates it).')
param topicName string

@description('Resource id of the user-assigned identity Event Grid uses to write dead letters.')
param topicIdentityId string

@description('Resource id of the storage account holding the dead-letter container.')
param deadLetterStorageAccountId string

@description('Name of the dead-letter blob container.')
param deadLetterContainerName string

@description('One object per handler: name, functionId, eventTypes (empty: no subscription), advancedFilters.')
param subscriptions array

resource topic 'Microsoft.EventGrid/systemTopics@2025-02-15' existing = {
  name: topicName
}

// Batch size 1: the Functions extension runs a batch in parallel and fails it whole, so one slow or failing event
// would make Event Grid resend its neighbours. 30 attempts over 24 hours is Event Grid's maximum.
resource eventSubscriptions 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2025-02-15' = [for s in subscriptions: if (!empty(s.eventTypes)) {
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
