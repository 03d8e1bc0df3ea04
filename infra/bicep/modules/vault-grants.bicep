// Role assignments of one principal on one existing Key Vault (the grants roles.json lists at vault or
// mirrorVaults scope). Deployed at the vault's resource group, which may differ from the apps'.

@description('Name of the vault (in this deployment\'s resource group).')
param vaultName string

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

// guid(scope, principal, role): redeploying updates in place instead of failing with RoleAssignmentExists.
resource assignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for g in grants: {
  name: guid(vault.id, principalId, roleDefinitions[g.role])
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitions[g.role])
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: purpose
  }
}]
