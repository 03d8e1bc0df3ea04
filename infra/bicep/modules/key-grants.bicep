// Role assignments of one principal on one resource of the Azure key family (roles.json's azureKeyResources scope:
// the resources whose keys near-expiry may rotate). Deployed at the resource's resource group. Bicep scopes an
// assignment to a resource only through a symbol of that resource's type, so this module declares each type (and
// id shape) of the family and assigns on the one the id names; the others are skipped (their conditions are false).

@description('Resource id of a resource of the Azure key family: /subscriptions/<s>/resourceGroups/<g>/providers/<type>/<name>[/<child type>/<name>...].')
param resourceId string

@description('Principal (object) id of the identity receiving the roles.')
param principalId string

@description('Grants from infra/roles.json: objects with the name of a custom role (customRoles).')
param grants array

@description('What the custom role definitions\' names (GUIDs) are derived from: guid(customRoleSeed, role name), as main.bicep creates them.')
param customRoleSeed string

@description('Why the roles exist (the role assignments\' description).')
param purpose string

// /subscriptions/<s>/resourceGroups/<g>/providers/<namespace>/<type>/<name>[/<type>/<name>[/<type>/<name>]]
// Padded, so that an index past the id's end reads '' whichever way ARM evaluates a conditional's branches.
var depth = length(split(resourceId, '/'))
var segments = concat(split(resourceId, '/'), ['', '', '', ''])
var typePath = toLower(depth == 9 ? '${segments[6]}/${segments[7]}' : depth == 11 ? '${segments[6]}/${segments[7]}/${segments[9]}' : '${segments[6]}/${segments[7]}/${segments[9]}/${segments[11]}')
var isStorage = typePath == 'microsoft.storage/storageaccounts'
var isCosmos = typePath == 'microsoft.documentdb/databaseaccounts'
var isRedis = typePath == 'microsoft.cache/redis'
var isCognitive = typePath == 'microsoft.cognitiveservices/accounts'
var isSearch = typePath == 'microsoft.search/searchservices'
var isBusRule = typePath == 'microsoft.servicebus/namespaces/authorizationrules'
var isQueueRule = typePath == 'microsoft.servicebus/namespaces/queues/authorizationrules'
var isTopicRule = typePath == 'microsoft.servicebus/namespaces/topics/authorizationrules'
var isHubsRule = typePath == 'microsoft.eventhub/namespaces/authorizationrules'
var isHubRule = typePath == 'microsoft.eventhub/namespaces/eventhubs/authorizationrules'
// The resource's name as ARM spells a child's: <parent>/<child>[/<grandchild>].
var name1 = segments[8]
var name2 = depth >= 11 ? '${segments[8]}/${segments[10]}' : ''
var name3 = depth >= 13 ? '${segments[8]}/${segments[10]}/${segments[12]}' : ''

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = if (isStorage) {
  name: name1
}
resource cosmos 'Microsoft.DocumentDB/databaseAccounts@2024-11-15' existing = if (isCosmos) {
  name: name1
}
resource redis 'Microsoft.Cache/redis@2024-11-01' existing = if (isRedis) {
  name: name1
}
resource cognitive 'Microsoft.CognitiveServices/accounts@2024-10-01' existing = if (isCognitive) {
  name: name1
}
resource search 'Microsoft.Search/searchServices@2025-05-01' existing = if (isSearch) {
  name: name1
}
resource busRule 'Microsoft.ServiceBus/namespaces/authorizationRules@2024-01-01' existing = if (isBusRule) {
  name: name2
}
resource queueRule 'Microsoft.ServiceBus/namespaces/queues/authorizationRules@2024-01-01' existing = if (isQueueRule) {
  name: name3
}
resource topicRule 'Microsoft.ServiceBus/namespaces/topics/authorizationRules@2024-01-01' existing = if (isTopicRule) {
  name: name3
}
resource hubsRule 'Microsoft.EventHub/namespaces/authorizationRules@2024-01-01' existing = if (isHubsRule) {
  name: name2
}
resource hubRule 'Microsoft.EventHub/namespaces/eventhubs/authorizationRules@2024-01-01' existing = if (isHubRule) {
  name: name3
}

resource storageGrants 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for g in grants: if (isStorage) {
  name: guid(resourceId, principalId, g.role)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', guid(customRoleSeed, g.role))
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: purpose
  }
}]
resource cosmosGrants 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for g in grants: if (isCosmos) {
  name: guid(resourceId, principalId, g.role)
  scope: cosmos
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', guid(customRoleSeed, g.role))
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: purpose
  }
}]
resource redisGrants 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for g in grants: if (isRedis) {
  name: guid(resourceId, principalId, g.role)
  scope: redis
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', guid(customRoleSeed, g.role))
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: purpose
  }
}]
resource cognitiveGrants 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for g in grants: if (isCognitive) {
  name: guid(resourceId, principalId, g.role)
  scope: cognitive
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', guid(customRoleSeed, g.role))
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: purpose
  }
}]
resource searchGrants 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for g in grants: if (isSearch) {
  name: guid(resourceId, principalId, g.role)
  scope: search
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', guid(customRoleSeed, g.role))
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: purpose
  }
}]
resource busRuleGrants 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for g in grants: if (isBusRule) {
  name: guid(resourceId, principalId, g.role)
  scope: busRule
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', guid(customRoleSeed, g.role))
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: purpose
  }
}]
resource queueRuleGrants 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for g in grants: if (isQueueRule) {
  name: guid(resourceId, principalId, g.role)
  scope: queueRule
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', guid(customRoleSeed, g.role))
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: purpose
  }
}]
resource topicRuleGrants 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for g in grants: if (isTopicRule) {
  name: guid(resourceId, principalId, g.role)
  scope: topicRule
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', guid(customRoleSeed, g.role))
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: purpose
  }
}]
resource hubsRuleGrants 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for g in grants: if (isHubsRule) {
  name: guid(resourceId, principalId, g.role)
  scope: hubsRule
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', guid(customRoleSeed, g.role))
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: purpose
  }
}]
resource hubRuleGrants 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for g in grants: if (isHubRule) {
  name: guid(resourceId, principalId, g.role)
  scope: hubRule
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', guid(customRoleSeed, g.role))
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: purpose
  }
}]
