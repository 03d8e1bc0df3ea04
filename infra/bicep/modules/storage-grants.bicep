// Role assignments of one principal on one existing storage account (roles.json's storageKeyAccounts scope: the
// accounts whose keys near-expiry may rotate). Deployed at the account's resource group.

@description('Name of the storage account (in this deployment\'s resource group).')
param storageAccountName string

@description('Principal (object) id of the identity receiving the roles.')
param principalId string

@description('Grants from infra/roles.json: objects with a role name.')
param grants array

@description('roles.json\'s roleDefinitions: role name to built-in role definition id.')
param roleDefinitions object

@description('Why the roles exist (the role assignments\' description).')
param purpose string

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource assignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for g in grants: {
  name: guid(account.id, principalId, roleDefinitions[g.role])
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitions[g.role])
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: purpose
  }
}]
