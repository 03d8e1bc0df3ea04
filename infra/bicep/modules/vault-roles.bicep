// Role assignments of one principal on one existing Key Vault. Deployed at the vault's resource group, which may
// differ from the apps' resource group.

@description('Name of the vault (in this deployment\'s resource group).')
param vaultName string

@description('Principal (object) id of the identity receiving the roles.')
param principalId string

@description('Role names, each a key of roleIds.')
param roles array

@description('Role name to built-in role definition id.')
param roleIds object

@description('Why the roles exist (the role assignments\' description).')
param purpose string

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: vaultName
}

// guid(vault, principal, role): redeploying updates in place instead of failing with RoleAssignmentExists.
resource assignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for r in roles: {
  name: guid(vault.id, principalId, roleIds[r])
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds[r])
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: purpose
  }
}]
