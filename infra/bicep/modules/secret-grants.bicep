// Role assignments of one principal on one existing Key Vault secret (roles.json's canarySecret and
// notificationSecret scopes): the role reaches that secret and no other. The secret must exist before the
// deployment (infra/README.md, "Before you deploy"). Deployed at the vault's resource group.

@description('Name of the vault holding the secret (in this deployment\'s resource group).')
param vaultName string

@description('Name of the secret.')
param secretName string

@description('Principal (object) id of the identity receiving the roles.')
param principalId string

@description('Grants from infra/roles.json: objects with a role name.')
param grants array

@description('roles.json\'s roleDefinitions: role name to built-in role definition id.')
param roleDefinitions object

@description('Why the roles exist (the role assignments\' description).')
param purpose string

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: vaultName
}

resource secret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' existing = {
  parent: vault
  name: secretName
}

resource assignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for g in grants: {
  name: guid(secret.id, principalId, roleDefinitions[g.role])
  scope: secret
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitions[g.role])
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: purpose
  }
}]
