// The Function App (Linux, Python 3.11, Functions v4) and its plan: Flex Consumption by
// default, Elastic Premium when the plan parameter says so. System-assigned identity,
// HTTPS only, TLS >= 1.2, FTP and basic publishing credentials off. The identity reads
// Key Vault secrets and the host's storage; the app settings are their own resource, after
// those role assignments, because Key Vault references resolve with that identity.
// Checked against Microsoft.Web/sites@2024-04-01 (properties.functionAppConfig:
// deployment.storage {type blobContainer, value, authentication SystemAssignedIdentity},
// scaleAndConcurrency, runtime {name, version}) and Microsoft's Flex Consumption
// quickstart templates (function-app-flex-managed-identities, functions-quickstart-python-
// http-azd: AzureWebJobsStorage__accountName/__credential, Storage Blob Data Owner).

@description('Azure region of the app.')
param location string

@description('Name of the Function App (globally unique: <name>.azurewebsites.net).')
param name string

@description('Name of its plan.')
param planName string

@description('FlexConsumption (default: scale to zero, identity-based storage) or ElasticPremium (always-warm instances, Azure Files content share).')
@allowed([
  'FlexConsumption'
  'ElasticPremium'
])
param hostingPlan string

@description('Elastic Premium size (ignored on Flex Consumption).')
@allowed([
  'EP1'
  'EP2'
  'EP3'
])
param premiumSku string

@description('Most instances the app scales out to (Flex Consumption: 40-1000).')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int

@description('Flex Consumption instance memory in MB.')
@allowed([
  2048
  4096
])
param instanceMemoryMB int

@description('The host storage account.')
param storageAccountName string

@description('Its blob endpoint, e.g. https://<account>.blob.core.windows.net/.')
param storageBlobEndpoint string

@description('Blob container Flex Consumption deploys the package to.')
param deploymentContainerName string

@description('Elastic Premium: the Azure Files content share.')
param contentShareName string

@description('Elastic Premium: Key Vault secret holding the storage connection string.')
param storageConnectionSecretName string

@description('The vault the app reads its secrets from.')
param keyVaultName string

@description('The Application Insights component the app reports to.')
param appInsightsName string

@description('Exact origins the platform answers CORS for (the app never does: DECISIONS, CORS on Azure).')
param corsAllowedOrigins array

@description('Subnet delegated to Microsoft.App/environments (Flex Consumption) or Microsoft.Web/serverFarms (Elastic Premium) for VNet integration; empty: none.')
param virtualNetworkSubnetId string

@description('The settings api/settings.py reads (values or Key Vault references), from main.bicep.')
param appSettings object

param tags object

var isFlex = hostingPlan == 'FlexConsumption'
var inVnet = !empty(virtualNetworkSubnetId)

// Built-in roles.
var keyVaultSecretsUserRoleId = '4633458b-17de-408a-b874-0445c86b69e6'
var storageBlobDataOwnerRoleId = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225:Zone redundancy is a plan choice with a cost; not the default.
  name: planName
  location: location
  tags: tags
  kind: isFlex ? 'functionapp' : 'elastic'
  sku: isFlex ? {
    name: 'FC1'
    tier: 'FlexConsumption'
  } : {
    name: premiumSku
    tier: 'ElasticPremium'
  }
  properties: {
    reserved: true // Linux
    // Elastic Premium on Linux bursts to at most 100 instances.
    maximumElasticWorkerCount: isFlex ? null : min(maximumInstanceCount, 100)
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_17:Client certificates are not used: the mobile app sends Bearer tokens over TLS.
  // checkov:skip=CKV_AZURE_222:This is the public API of a mobile app: it must be reachable from the internet.
  // checkov:skip=CKV_AZURE_212:Flex Consumption scales from zero by design; always-ready instances (or Elastic Premium) are a cost choice.
  // checkov:skip=CKV_AZURE_213:/api/health answers 503 while the database is down; instances replaced for a database outage come back no healthier, so the platform health check stays off.
  name: name
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    virtualNetworkSubnetId: inVnet ? virtualNetworkSubnetId : null
    // Flex Consumption routes all outbound traffic through the integrated VNet by itself.
    vnetRouteAllEnabled: isFlex ? null : inVnet
    functionAppConfig: isFlex ? {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storageBlobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'SystemAssignedIdentity'
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    } : null
    siteConfig: {
      // Flex Consumption takes the runtime from functionAppConfig.runtime instead.
      linuxFxVersion: isFlex ? null : 'Python|3.11'
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      cors: {
        allowedOrigins: corsAllowedOrigins
        supportCredentials: false
      }
    }
  }
}

// No FTP and no basic-auth publishing: the pipeline deploys with an Entra token (OIDC).
resource ftpCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource readSecrets 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, site.id, keyVaultSecretsUserRoleId)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUserRoleId)
    principalId: site.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

// The host keeps its keys and leases in blobs, and Flex Consumption reads the package from
// the deployment container: Storage Blob Data Owner, as in Microsoft's templates.
resource ownBlobs 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, site.id, storageBlobDataOwnerRoleId)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwnerRoleId)
    principalId: site.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

// What the Functions host needs on every plan.
var hostSettings = {
  AzureWebJobsStorage__accountName: storage.name
  AzureWebJobsStorage__credential: 'managedidentity'
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsights.properties.ConnectionString
  // The Python worker's threads for synchronous functions (README "Database connections").
  // Unset, it is min(32, cores + 4): 5 on a one-core instance, where a few diagnoses waiting
  // for the AI provider would queue every other request. The pool (DB_POOL_SIZE 5) and
  // bcrypt's slots (2 x cores at most) are sized for 32, the figure bench/turns.py measures.
  PYTHON_THREADPOOL_THREAD_COUNT: '32'
}

// glibc's allocator, read once when the worker process starts (hence an app setting, not
// code): one arena instead of one per thread (8 x cores), so the megabytes a diagnosis
// decodes are reused by the next one on any thread instead of each thread's arena keeping
// its own. Measured (bench/media.py, README "Operations"): 40 diagnoses with a 5 MB photo
// grew the process 146 -> 272 MiB with glibc's defaults, 146 -> 177 with 2 arenas, and
// not at all with 1 (147 MiB), peak growth per request 2.9x the body. The GIL already
// serialises the app's allocations; with one arena diagnose2 latency stayed within the noise.
var allocatorSettings = {
  MALLOC_ARENA_MAX: '1'
}

// What Elastic Premium needs besides (Flex Consumption rejects these: it reads the runtime
// from functionAppConfig and the package from the deployment container). The package is
// built by the pipeline, so no build on the server; WEBSITE_RUN_FROM_PACKAGE=1 is what a
// zip deploy sets, kept here so a template run never drops it.
var premiumSettings = isFlex ? {} : {
  FUNCTIONS_EXTENSION_VERSION: '~4'
  FUNCTIONS_WORKER_RUNTIME: 'python'
  WEBSITE_CONTENTAZUREFILECONNECTIONSTRING: '@Microsoft.KeyVault(VaultName=${vault.name};SecretName=${storageConnectionSecretName})'
  WEBSITE_CONTENTSHARE: contentShareName
  WEBSITE_SKIP_CONTENTSHARE_VALIDATION: '1'
  WEBSITE_RUN_FROM_PACKAGE: '1'
  SCM_DO_BUILD_DURING_DEPLOYMENT: 'false'
  ENABLE_ORYX_BUILD: 'false'
}

// The whole set of app settings: a later run of the template replaces it, so every
// setting the app needs is here (main.bicep lists the ones left to their defaults).
resource settings 'Microsoft.Web/sites/config@2024-04-01' = {
  // checkov reads this app-settings resource as if it were the site's web config; the site
  // above carries the real one. Its checks that do not apply to app settings:
  // checkov:skip=CKV_AZURE_13:The API authenticates every caller itself (JWT); App Service authentication stays off.
  // checkov:skip=CKV_AZURE_222:The public API of a mobile app must be reachable from the internet.
  // checkov:skip=CKV_AZURE_63:HTTP logs of the App Service web server do not exist for Function Apps; requests go to Application Insights.
  // checkov:skip=CKV_AZURE_65:Detailed error pages are an App Service web server feature; the app answers problem+json itself.
  // checkov:skip=CKV_AZURE_66:Failed request tracing is an App Service (IIS) feature; failures are traced in Application Insights.
  // checkov:skip=CKV_AZURE_80:Not a .NET app.
  // checkov:skip=CKV_AZURE_88:No Azure Files mount is needed on Flex Consumption; Elastic Premium mounts its content share.
  parent: site
  name: 'appsettings'
  properties: union(hostSettings, allocatorSettings, premiumSettings, appSettings)
  dependsOn: [
    readSecrets
    ownBlobs
  ]
}

output name string = site.name
output hostname string = site.properties.defaultHostName
