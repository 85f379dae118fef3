// PostgreSQL Flexible Server with the application database, SSL required, the built-in
// PgBouncer enabled (port 6432), backups, and network access as a parameter. The admin
// password arrives as a secure parameter and leaves only into Key Vault, with the DB_URI
// (through PgBouncer, as the app's own role) and DB_MIGRATION_URI (direct, as the
// administrator, who owns the schema) the app reads. Checked against the
// ARM reference of Microsoft.DBforPostgreSQL flexibleServers@2024-08-01
// (properties.network.publicNetworkAccess, backup, storage, authConfig) and
// flexibleServers/configurations@2024-08-01 ({source, value}).

@description('Azure region of the server.')
param location string

@description('Name of the server (3-63 lower-case letters, digits and hyphens, globally unique).')
param name string

@description('Compute tier. Built-in PgBouncer exists only on General Purpose and Memory Optimized: on Burstable the pgbouncer.* parameters are hidden and the pooler is unavailable.')
@allowed([
  'GeneralPurpose'
  'MemoryOptimized'
])
param tier string

@description('Compute size, e.g. Standard_D2ds_v5 (General Purpose) or Standard_E2ds_v5 (Memory Optimized).')
param skuName string

@description('Storage in GiB (grows automatically).')
param storageSizeGB int

@description('Days of point-in-time restore.')
@minValue(7)
@maxValue(35)
param backupRetentionDays int

@description('Geo-redundant backups (fixed when the server is created).')
@allowed([
  'Enabled'
  'Disabled'
])
param geoRedundantBackup string

@description('High availability: a standby in another zone, the same zone, or none.')
@allowed([
  'ZoneRedundant'
  'SameZone'
  'Disabled'
])
param highAvailability string

@description('AzureServices: public endpoint, only Azure-internal addresses admitted (firewall rule 0.0.0.0). VNet: no public endpoint; the server is injected into delegatedSubnetId and resolved through privateDnsZoneId.')
@allowed([
  'AzureServices'
  'VNet'
])
param networkAccess string

@description('VNet mode: a subnet delegated to Microsoft.DBforPostgreSQL/flexibleServers.')
param delegatedSubnetId string

@description('VNet mode: a private DNS zone (e.g. privatelink.postgres.database.azure.com) linked to the VNet.')
param privateDnsZoneId string

@description('Administrator login name.')
param adminLogin string

@secure()
@description('Administrator password; stored in Key Vault, never output.')
param adminPassword string

@description('The app\'s own login (DB_URI): data access only, created after deployment by deploy/app_role.py, since Bicep cannot create PostgreSQL roles.')
param appLogin string

@secure()
@description('The app\'s login password; stored in Key Vault (inside DB_URI), never output.')
param appPassword string

@description('Name of the application database.')
param databaseName string

@description('Vault that receives the password and the two connection URIs.')
param keyVaultName string

@description('Name of the secret holding the administrator password.')
param adminPasswordSecretName string

@description('Name of the secret holding the DB_URI the app reads (through PgBouncer, 6432).')
param dbUriSecretName string

@description('Name of the secret holding DB_MIGRATION_URI (straight to PostgreSQL, 5432).')
param migrationUriSecretName string

param tags object

var inVnet = networkAccess == 'VNet'

resource server 'Microsoft.DBforPostgreSQL/flexibleServers@2024-08-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: skuName
    tier: tier
  }
  properties: {
    version: '16'
    administratorLogin: adminLogin
    administratorLoginPassword: adminPassword
    authConfig: {
      activeDirectoryAuth: 'Disabled'
      passwordAuth: 'Enabled'
    }
    storage: {
      storageSizeGB: storageSizeGB
      autoGrow: 'Enabled'
    }
    backup: {
      backupRetentionDays: backupRetentionDays
      geoRedundantBackup: geoRedundantBackup
    }
    highAvailability: {
      mode: highAvailability
    }
    network: inVnet ? {
      delegatedSubnetResourceId: delegatedSubnetId
      privateDnsZoneArmResourceId: privateDnsZoneId
      publicNetworkAccess: 'Disabled'
    } : {
      publicNetworkAccess: 'Enabled'
    }
  }
}

resource database 'Microsoft.DBforPostgreSQL/flexibleServers/databases@2024-08-01' = {
  parent: server
  name: databaseName
  properties: {
    charset: 'UTF8'
    collation: 'en_US.utf8'
  }
}

// Connections without TLS are refused (the default, pinned here so nobody turns it off).
resource requireSecureTransport 'Microsoft.DBforPostgreSQL/flexibleServers/configurations@2024-08-01' = {
  parent: server
  name: 'require_secure_transport'
  properties: {
    source: 'user-defined'
    value: 'on'
  }
}

// Built-in PgBouncer on port 6432 (no restart needed). The server accepts one
// configuration change at a time, hence the chain of dependsOn.
resource pgbouncer 'Microsoft.DBforPostgreSQL/flexibleServers/configurations@2024-08-01' = {
  parent: server
  name: 'pgbouncer.enabled'
  properties: {
    source: 'user-defined'
    value: 'true'
  }
  dependsOn: [
    requireSecureTransport
  ]
}

// "Allow public access from any Azure service within Azure": the documented special rule
// whose start and end address are both 0.0.0.0.
resource allowAzureServices 'Microsoft.DBforPostgreSQL/flexibleServers/firewallRules@2024-08-01' = if (!inVnet) {
  parent: server
  name: 'AllowAllAzureServicesAndResourcesWithinAzureIps'
  properties: {
    startIpAddress: '0.0.0.0'
    endIpAddress: '0.0.0.0'
  }
  dependsOn: [
    pgbouncer
  ]
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource adminPasswordSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  // checkov:skip=CKV_AZURE_41:An expiring secret would stop the app; the password is rotated by hand (README, Deploy).
  parent: vault
  name: adminPasswordSecretName
  properties: {
    contentType: 'PostgreSQL administrator password'
    value: adminPassword
  }
}

// Requests go through the built-in PgBouncer (6432, transaction pooling: the app sets
// DB_POOLER=pgbouncer, so it prepares no statements and keeps no session state). Migrations
// hold a session-level advisory lock, which a transaction pooler cannot keep: they connect
// straight to PostgreSQL (5432) through DB_MIGRATION_URI.
var serverAddress = server.properties.fullyQualifiedDomainName
// The app connects as its own role, with data access only; only migrations, which own the
// schema, connect as the administrator.
var credentials = '${uriComponent(adminLogin)}:${uriComponent(adminPassword)}'
var appCredentials = '${uriComponent(appLogin)}:${uriComponent(appPassword)}'

resource dbUriSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  // checkov:skip=CKV_AZURE_41:An expiring secret would stop the app; it changes with the password.
  parent: vault
  name: dbUriSecretName
  properties: {
    contentType: 'PostgreSQL connection URI through PgBouncer (DB_URI)'
    value: 'postgresql://${appCredentials}@${serverAddress}:6432/${database.name}?sslmode=require'
  }
}

resource migrationUriSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  // checkov:skip=CKV_AZURE_41:An expiring secret would stop the app; it changes with the password.
  parent: vault
  name: migrationUriSecretName
  properties: {
    contentType: 'PostgreSQL connection URI, direct (DB_MIGRATION_URI)'
    value: 'postgresql://${credentials}@${serverAddress}:5432/${database.name}?sslmode=require'
  }
}

output id string = server.id
