// The Functions host's storage account. Flex Consumption reaches it only with the app's
// managed identity (AzureWebJobsStorage__accountName, and the deployment container), so
// shared keys are off. Elastic Premium also mounts an Azure Files content share, and Azure
// Files has no identity-based mount: that plan needs a key, kept in Key Vault.
// Microsoft.Storage/storageAccounts@2023-05-01 as in Microsoft's quickstart template
// quickstarts/microsoft.web/function-app-flex-managed-identities.

@description('Azure region of the account.')
param location string

@description('Name of the account (3-24 lower-case letters and digits, globally unique).')
@minLength(3)
@maxLength(24)
param name string

@description('Blob container Flex Consumption deploys the app package to.')
param deploymentContainerName string

@description('Azure Files share the Elastic Premium plan mounts; empty on Flex Consumption.')
param contentShareName string

@description('Vault that receives the key-based connection string when a content share is needed.')
param keyVaultName string

@description('Name of that secret.')
param connectionStringSecretName string

param tags object

var needsContentShare = !empty(contentShareName)

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35:The Functions host reaches its storage over the public endpoint unless the app is VNet-integrated; access needs the app's identity (Flex) or the key in Key Vault (Premium).
  // checkov:skip=CKV_AZURE_59:Same reason as CKV_AZURE_35.
  // checkov:skip=CKV_AZURE_206:Zone-redundant (ZRS) is enough: the account holds the host's keys and leases and the deployment package, which the pipeline republishes; no regional failover uses a geo copy.
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_ZRS'
  }
  properties: {
    accessTier: 'Hot'
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    allowSharedKeyAccess: needsContentShare
    defaultToOAuthAuthentication: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource fileService 'Microsoft.Storage/storageAccounts/fileServices@2023-05-01' = if (needsContentShare) {
  parent: account
  name: 'default'
}

// Created here because the app's content-share setting is a Key Vault reference, which
// needs WEBSITE_SKIP_CONTENTSHARE_VALIDATION=1: then the platform does not create the share
// ("Use Key Vault references", Considerations for Azure Files mounting).
resource contentShare 'Microsoft.Storage/storageAccounts/fileServices/shares@2023-05-01' = if (needsContentShare) {
  parent: fileService
  name: needsContentShare ? contentShareName : 'unused' // a name even when not deployed
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource connectionString 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (needsContentShare) {
  // checkov:skip=CKV_AZURE_41:An expiring secret would stop the app; the key is rotated with the account's key rotation, not by expiry.
  // checkov:skip=CKV_AZURE_114:contentType is set below; checkov 3.3.30 does not read the properties of a conditional (if) resource.
  parent: vault
  name: connectionStringSecretName
  properties: {
    contentType: 'Azure Storage connection string'
    value: 'DefaultEndpointsProtocol=https;AccountName=${account.name};EndpointSuffix=${environment().suffixes.storage};AccountKey=${account.listKeys().keys[0].value}'
  }
}

output name string = account.name
output blobEndpoint string = account.properties.primaryEndpoints.blob
