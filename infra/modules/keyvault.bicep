// The Key Vault that holds every secret the app reads (Key Vault references in its app
// settings): RBAC only (no access policies), soft delete, purge protection.
// Microsoft.KeyVault/vaults@2023-07-01: enableRbacAuthorization, enableSoftDelete,
// softDeleteRetentionInDays, enablePurgeProtection, publicNetworkAccess, networkAcls.

@description('Azure region of the vault.')
param location string

@description('Name of the vault (3-24 characters, globally unique).')
@minLength(3)
@maxLength(24)
param name string

@description('Object id of a user or group that may set and read secrets (Key Vault Secrets Officer), e.g. the operator who runs `az keyvault secret set`. Empty: nobody is granted.')
param secretsOfficerPrincipalId string

@description('Type of secretsOfficerPrincipalId.')
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param secretsOfficerPrincipalType string

param tags object

// Built-in role "Key Vault Secrets Officer".
var secretsOfficerRoleId = 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_109:Key Vault references are resolved from the app's outbound addresses, which a firewall cannot list on Flex Consumption without VNet integration; access is RBAC-only.
  // checkov:skip=CKV_AZURE_189:Same reason: the app reaches the vault over its public endpoint; every request needs an Entra token and an RBAC role.
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource secretsOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(secretsOfficerPrincipalId)) {
  name: guid(vault.id, secretsOfficerPrincipalId, secretsOfficerRoleId)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', secretsOfficerRoleId)
    principalId: secretsOfficerPrincipalId
    principalType: secretsOfficerPrincipalType
  }
}

output name string = vault.name
output uri string = vault.properties.vaultUri
