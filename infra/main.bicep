// The whole Azure deployment of the Axly API, into one resource group:
//   az deployment group create -g <resource group> -f infra/main.bicep -p infra/main.bicepparam
// Function App (Flex Consumption by default), its storage, PostgreSQL Flexible Server with
// PgBouncer, Key Vault with every secret, Log Analytics + Application Insights, and the
// seed's two alert rules to Slack. README "Deploy" has the steps around it.

@description('Short lower-case prefix of every resource name (letters and digits).')
@minLength(2)
@maxLength(9)
param name string = 'axly'

@description('Azure region of every resource (Flex Consumption is offered in most, not all, regions).')
param location string = resourceGroup().location

@description('FlexConsumption (default) or ElasticPremium; see modules/functionapp.bicep.')
@allowed([
  'FlexConsumption'
  'ElasticPremium'
])
param hostingPlan string = 'FlexConsumption'

@description('Elastic Premium size (ignored on Flex Consumption).')
@allowed([
  'EP1'
  'EP2'
  'EP3'
])
param premiumSku string = 'EP1'

@description('Most app instances. Each opens at most DB_POOL_SIZE + DB_MAX_OVERFLOW (5) connections to PgBouncer, whose max_client_conn (5000) they stay far under; PgBouncer shares its default_pool_size (50) server connections among them (README, Database connections).')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Flex Consumption instance memory in MB.')
@allowed([
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Exact origins browsers may call the API from, e.g. [\'https://app.axly.pro\']; the platform answers CORS (no \'*\').')
param corsAllowedOrigins array = []

@description('PostgreSQL compute tier: General Purpose or Memory Optimized (Burstable has no PgBouncer).')
@allowed([
  'GeneralPurpose'
  'MemoryOptimized'
])
param postgresTier string = 'GeneralPurpose'

@description('PostgreSQL compute size.')
param postgresSkuName string = 'Standard_D2ds_v5'

@description('PostgreSQL storage in GiB (grows automatically; photos and recordings live in the database).')
param postgresStorageSizeGB int = 64

@description('Days of point-in-time restore.')
@minValue(7)
@maxValue(35)
param postgresBackupRetentionDays int = 14

@description('Geo-redundant backups; fixed at creation, not offered in every region.')
@allowed([
  'Enabled'
  'Disabled'
])
param postgresGeoRedundantBackup string = 'Enabled'

@description('PostgreSQL high availability.')
@allowed([
  'ZoneRedundant'
  'SameZone'
  'Disabled'
])
param postgresHighAvailability string = 'Disabled'

@description('AzureServices: public endpoint admitting Azure-internal addresses only. VNet: private server in postgresDelegatedSubnetId; then set appSubnetId too, so the app can reach it.')
@allowed([
  'AzureServices'
  'VNet'
])
param postgresNetworkAccess string = 'AzureServices'

@description('VNet mode: subnet delegated to Microsoft.DBforPostgreSQL/flexibleServers.')
param postgresDelegatedSubnetId string = ''

@description('VNet mode: private DNS zone privatelink.postgres.database.azure.com, linked to the VNet.')
param postgresPrivateDnsZoneId string = ''

@description('Subnet for the app\'s VNet integration (delegated to Microsoft.App/environments on Flex Consumption); empty: none.')
param appSubnetId string = ''

@description('PostgreSQL administrator login.')
param postgresAdminLogin string = 'axlyadmin'

@secure()
@description('PostgreSQL administrator password (8-128 characters, three of: upper, lower, digit, symbol). Written to Key Vault, never output.')
@minLength(8)
param postgresAdminPassword string

@description('The app\'s own PostgreSQL login (DB_URI), with data access only; README "Deploy" creates it with deploy/app_role.py.')
param postgresAppLogin string = 'axly_app'

@secure()
@description('Password of the app\'s PostgreSQL login. Written to Key Vault (inside DB_URI), never output.')
@minLength(16)
param postgresAppPassword string

@description('The application database.')
param databaseName string = 'axly'

@description('openai: OPENAI_API_KEY (secret openai-api-key). azureOpenAI: AZURE_OPENAI_ENDPOINT, AZURE_OPENAI_DEPLOYMENT and AZURE_OPENAI_API_KEY (secret azure-openai-api-key).')
@allowed([
  'openai'
  'azureOpenAI'
])
param aiProvider string = 'openai'

@description('azureOpenAI: the resource endpoint, e.g. https://<resource>.openai.azure.com.')
param azureOpenAIEndpoint string = ''

@description('azureOpenAI: the chat deployment name.')
param azureOpenAIDeployment string = ''

@description('sendgrid: SENDGRID_KEY (secret sendgrid-key). smtp: SMTP_HOST, SMTP_PORT, SMTP_USERNAME, SMTP_STARTTLS and SMTP_PASSWORD (secret smtp-password).')
@allowed([
  'sendgrid'
  'smtp'
])
param emailBackend string = 'sendgrid'

@description('Sender address of the e-mails (PINs).')
param emailFrom string = 'no-reply@axly.pro'

@description('smtp: server host name.')
param smtpHost string = ''

@description('smtp: server port.')
param smtpPort int = 587

@description('smtp: login (empty: none).')
param smtpUsername string = ''

@description('smtp: upgrade the connection with STARTTLS.')
param smtpStartTls bool = true

@secure()
@description('Slack incoming-webhook URL the alerts are posted to.')
param slackWebhookUrl string

@description('Object id of the user or group that sets the secrets (granted Key Vault Secrets Officer); empty: grant it yourself.')
param secretsOfficerPrincipalId string = ''

@description('Type of secretsOfficerPrincipalId.')
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param secretsOfficerPrincipalType string = 'User'

@description('Days Log Analytics keeps logs and telemetry.')
@minValue(30)
@maxValue(730)
param logRetentionInDays int = 90

@description('Tags on every resource.')
param tags object = {
  application: 'axly-api'
}

// Globally unique names, stable for this resource group.
var prefix = toLower(name)
var suffix = uniqueString(resourceGroup().id)
var functionAppName = '${prefix}-api-${suffix}'
var keyVaultName = take('kv-${prefix}-${suffix}', 24)
var storageAccountName = take('st${prefix}${suffix}', 24)
var postgresServerName = '${prefix}-pg-${suffix}'

// Only Elastic Premium mounts an Azure Files content share.
var isPremium = hostingPlan == 'ElasticPremium'
var contentShareName = isPremium ? toLower(functionAppName) : ''

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    location: location
    workspaceName: '${prefix}-log-${suffix}'
    appInsightsName: '${prefix}-appi-${suffix}'
    retentionInDays: logRetentionInDays
    tags: tags
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'keyVault'
  params: {
    location: location
    name: keyVaultName
    secretsOfficerPrincipalId: secretsOfficerPrincipalId
    secretsOfficerPrincipalType: secretsOfficerPrincipalType
    tags: tags
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  params: {
    location: location
    name: storageAccountName
    deploymentContainerName: 'app-package'
    contentShareName: contentShareName
    keyVaultName: keyVault.outputs.name
    connectionStringSecretName: 'storage-connection-string'
    tags: tags
  }
}

module postgres 'modules/postgres.bicep' = {
  name: 'postgres'
  params: {
    location: location
    name: postgresServerName
    tier: postgresTier
    skuName: postgresSkuName
    storageSizeGB: postgresStorageSizeGB
    backupRetentionDays: postgresBackupRetentionDays
    geoRedundantBackup: postgresGeoRedundantBackup
    highAvailability: postgresHighAvailability
    networkAccess: postgresNetworkAccess
    delegatedSubnetId: postgresDelegatedSubnetId
    privateDnsZoneId: postgresPrivateDnsZoneId
    adminLogin: postgresAdminLogin
    adminPassword: postgresAdminPassword
    appLogin: postgresAppLogin
    appPassword: postgresAppPassword
    databaseName: databaseName
    keyVaultName: keyVault.outputs.name
    adminPasswordSecretName: 'postgres-admin-password'
    dbUriSecretName: 'db-uri'
    migrationUriSecretName: 'db-migration-uri'
    tags: tags
  }
}

// The settings api/settings.py reads. Secrets are Key Vault references only: the app's
// identity resolves them at start-up (README "Deploy" sets the ones the template cannot).
var useOpenAI = aiProvider == 'openai'
var useSendGrid = emailBackend == 'sendgrid'

var aiSettings = useOpenAI ? {
  OPENAI_API_KEY: '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=openai-api-key)'
} : {
  AZURE_OPENAI_ENDPOINT: azureOpenAIEndpoint
  AZURE_OPENAI_DEPLOYMENT: azureOpenAIDeployment
  AZURE_OPENAI_API_KEY: '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=azure-openai-api-key)'
}

var emailSettings = useSendGrid ? {
  SENDGRID_KEY: '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=sendgrid-key)'
} : {
  SMTP_HOST: smtpHost
  SMTP_PORT: string(smtpPort)
  SMTP_USERNAME: smtpUsername
  SMTP_PASSWORD: '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=smtp-password)'
  SMTP_STARTTLS: smtpStartTls ? 'true' : 'false'
}

var appSettings = union({
  AXLY_ENV: 'production'
  DB_URI: '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=db-uri)'
  DB_POOLER: 'pgbouncer'
  DB_MIGRATION_URI: '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=db-migration-uri)'
  JWT_SECRET: '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=jwt-secret)'
  EMAIL_FROM: emailFrom
}, aiSettings, emailSettings)

// Settings of api/settings.py this template deliberately leaves to their defaults, one per
// line as "NAME = default: why" (tests/infra fail on a setting neither set above nor here):
//   DB_POOL_SIZE = default: 5 connections per instance to PgBouncer, enough for the worker's threads since a diagnosis holds none while the AI answers
//   DB_MAX_OVERFLOW = default: 0, so an instance never opens more than DB_POOL_SIZE
//   DB_POOL_TIMEOUT_S = default: 10 s waiting for a free connection, then 503
//   DB_POOL_RECYCLE_S = default: 300 s, so connections are renewed every few minutes (a failover or a PgBouncer restart is picked up)
//   DB_STATEMENT_TIMEOUT_S = default: 15 s, far below DIAGNOSE_DEADLINE_S
//   DB_IDLE_IN_TRANSACTION_TIMEOUT_S = default: 30 s; no transaction waits on anything slow
//   DB_CONNECT_TIMEOUT_S = default: 5 s to connect, then 503
//   DB_KEEPALIVES_IDLE_S = default: 30 s, so a dead peer of an idle pooled connection is found within about a minute
//   ATTACHMENT_BYTES_PER_DAY = default: a product limit, kept in code
//   DB_MIGRATE_ON_STARTUP = default: the first instance migrates under an advisory lock, so the pipeline needs no network path to the database
//   JWT_ISSUER = default: a product constant, the same in every deployment
//   JWT_AUDIENCE = default: a product constant, the same in every deployment
//   ACCESS_TOKEN_MINUTES = default: token lifetimes are product policy, kept in code
//   REFRESH_TOKEN_DAYS = default: token lifetimes are product policy, kept in code
//   REFRESH_REUSE_INTERVAL_S = default: security policy (10 s, as Supabase Auth allows), kept in code
//   MAX_BODY_BYTES = default: a product limit, kept in code
//   APP_VERSION = default: the version belongs to the code package, not to the infrastructure
//   MAX_VEHICLES_PER_USER = default: a product limit, kept in code
//   MAX_MODS_PER_VEHICLE = default: a product limit, kept in code
//   OPENAI_BASE_URL = default: empty means OpenAI's own API
//   OPENAI_MODEL = default: the model is a product choice, kept in code
//   OPENAI_TRANSCRIBE_MODEL = default: the model is a product choice, kept in code
//   OPENAI_AUDIO_MODEL = default: sound analysis stays off until a model is chosen in code
//   OPENAI_TIMEOUT_S = default: tuned in code below Azure's ~230 s request limit
//   OPENAI_MAX_RETRIES = default: tuned in code with the turn's time budget
//   DIAGNOSE_DEADLINE_S = default: tuned in code below Azure's ~230 s request limit
//   AZURE_OPENAI_API_VERSION = default: the API version the code was tested with
//   DIAGNOSE_HISTORY_TURNS = default: a product limit, kept in code
//   DIAGNOSES_PER_DAY = default: a product limit, kept in code
//   MESSAGES_PER_CONVERSATION = default: a product limit, kept in code
//   DIAGNOSE_MAX_BODY_BYTES = default: a product limit, kept in code
//   SUPPORTED_LANGUAGES = default: the languages the code has translations for (en,es,fr,de,pt); a language needs code before it can be listed
//   DEFAULT_LANGUAGE = default: en, the language of the prompt and of answers nobody asked another language for
//   PIN_EXP_MINUTES = default: security policy (at most 10 minutes), kept in code
//   BCRYPT_ROUNDS = default: security policy, kept in code
//   BCRYPT_MAX_CONCURRENCY = default: 0 sizes the limit to each instance's cores, whatever the plan
//   PIN_WRONG_TRIES_PER_DAY = default: security policy, kept in code
//   PIN_EMAILS_PER_HOUR = default: the e-mail budget is product policy, kept in code
//   CLIENT_PIN_REQUESTS_PER_HOUR = default: abuse policy, kept in code
//   CLIENT_AUTH_FAILURES_PER_HOUR = default: abuse policy, kept in code
//   PRODUCT_NAME = default: the product's name
//   SENDGRID_API_HOST = default: SendGrid's global API; EU data residency needs api.eu.sendgrid.com here
// (CORS_ALLOWED_ORIGINS is the host's setting, not the app's: the platform writes it from
// siteConfig.cors, corsAllowedOrigins; never an app setting.)
//   APPINSIGHTS_INSTRUMENTATIONKEY = default: the seed's setting; APPLICATIONINSIGHTS_CONNECTION_STRING (set with the host's settings) replaces it
//   TELEMETRY_SAMPLING_RATIO = default: 1 keeps every request; lower it here only if ingestion costs call for it

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionApp'
  params: {
    location: location
    name: functionAppName
    planName: '${prefix}-plan-${suffix}'
    hostingPlan: hostingPlan
    premiumSku: premiumSku
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    storageAccountName: storage.outputs.name
    storageBlobEndpoint: storage.outputs.blobEndpoint
    deploymentContainerName: 'app-package'
    contentShareName: contentShareName
    storageConnectionSecretName: 'storage-connection-string'
    keyVaultName: keyVault.outputs.name
    appInsightsName: monitoring.outputs.appInsightsName
    corsAllowedOrigins: corsAllowedOrigins
    virtualNetworkSubnetId: appSubnetId
    appSettings: appSettings
    tags: tags
  }
  // DB_URI must exist in the vault before the app first resolves its references.
  dependsOn: [
    postgres
  ]
}

module alerts 'modules/alerts.bicep' = {
  name: 'alerts'
  params: {
    location: location
    namePrefix: prefix
    appInsightsId: monitoring.outputs.appInsightsId
    postgresServerId: postgres.outputs.id
    slackWebhookUrl: slackWebhookUrl
    tags: tags
  }
}

output hostname string = functionApp.outputs.hostname
output functionAppName string = functionApp.outputs.name
output keyVaultName string = keyVault.outputs.name
output appInsightsId string = monitoring.outputs.appInsightsId
