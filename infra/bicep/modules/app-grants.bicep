// Role assignments of one principal on one existing consumer app (roles.json's consumerWebApps and
// consumerContainerApps scopes: the apps whose Key Vault references new-version refreshes, or whose active revisions
// it restarts). Deployed at the app's resource group. A web app slot (.../sites/<app>/slots/<slot>) is granted on
// its app: Azure checks the app's roles for its slots.

@description('Resource id of the app: /subscriptions/<s>/resourceGroups/<g>/providers/Microsoft.Web/sites/<app>[/slots/<slot>] or .../Microsoft.App/containerApps/<app>.')
param appId string

@description('Principal (object) id of the identity receiving the roles.')
param principalId string

@description('Grants from infra/roles.json: objects with a role name.')
param grants array

@description('roles.json\'s roleDefinitions: role name to built-in role definition id.')
param roleDefinitions object

@description('Why the roles exist (the role assignments\' description).')
param purpose string

var segments = split(appId, '/')
var isWebApp = toLower(segments[6]) == 'microsoft.web'

resource webApp 'Microsoft.Web/sites@2023-12-01' existing = if (isWebApp) {
  name: segments[8]
}

resource containerApp 'Microsoft.App/containerApps@2024-03-01' existing = if (!isWebApp) {
  name: segments[8]
}

resource webAppAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for g in grants: if (isWebApp) {
  name: guid(webApp.id, principalId, roleDefinitions[g.role])
  scope: webApp
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitions[g.role])
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: purpose
  }
}]

resource containerAppAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for g in grants: if (!isWebApp) {
  name: guid(containerApp.id, principalId, roleDefinitions[g.role])
  scope: containerApp
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitions[g.role])
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: purpose
  }
}]
