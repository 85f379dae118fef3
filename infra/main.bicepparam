// Parameters of infra/main.bicep (README "Deploy"). Secrets come from the environment of
// whoever runs `az deployment group create`, never from this file.
using 'main.bicep'

param name = 'axly'
param corsAllowedOrigins = [
  'https://app.axly.pro'
]
param aiProvider = 'openai'
param emailBackend = 'sendgrid'
param emailFrom = 'no-reply@axly.pro'
param postgresAdminPassword = readEnvironmentVariable('AXLY_POSTGRES_ADMIN_PASSWORD')
param postgresAppPassword = readEnvironmentVariable('AXLY_POSTGRES_APP_PASSWORD')
param slackWebhookUrl = readEnvironmentVariable('AXLY_SLACK_WEBHOOK_URL')
param secretsOfficerPrincipalId = readEnvironmentVariable('AXLY_SECRETS_OFFICER_ID', '')
