// The seed's two alert rules (original README, section 10): failed (5xx) requests above
// 1 % of requests over 5 minutes, and PostgreSQL CPU above 70 % for 10 minutes. Both go to
// one action group whose webhook receiver posts to Slack.
//
// A Slack incoming webhook only accepts a message ({"text": ...}); an action group posts
// Azure Monitor's common alert schema ({"schemaId", "data"}), which Slack rejects
// (400 no_text). So the webhook receiver is a small Logic App that turns the alert into a
// Slack message and posts it to the Slack URL (a secure parameter, hidden from run history).
// API versions: Microsoft.Insights/actionGroups@2023-01-01 (webhookReceivers),
// scheduledQueryRules@2023-12-01 (criteria.allOf with metricMeasureColumn),
// metricAlerts@2018-03-01 (SingleResourceMultipleMetricCriteria), Logic/workflows@2019-05-01.

@description('Azure region of the Logic App and the log alert.')
param location string

@description('Prefix of the resource names.')
param namePrefix string

@description('Application Insights component whose requests the 5xx rule counts.')
param appInsightsId string

@description('PostgreSQL Flexible Server whose CPU the second rule watches.')
param postgresServerId string

@secure()
@description('Slack incoming-webhook URL the alerts are posted to.')
param slackWebhookUrl string

param tags object

// The seed's thresholds (tests/infra check them).
var failedRequestPercentThreshold = 1
var failedRequestWindow = 'PT5M'
var databaseCpuPercentThreshold = 70
var databaseCpuWindow = 'PT10M'

resource slackRelay 'Microsoft.Logic/workflows@2019-05-01' = {
  name: '${namePrefix}-alerts-to-slack'
  location: location
  tags: tags
  properties: {
    state: 'Enabled'
    parameters: {
      slackWebhookUrl: {
        value: slackWebhookUrl
      }
    }
    definition: {
      '$schema': 'https://schema.management.azure.com/providers/Microsoft.Logic/schemas/2016-06-01/workflowdefinition.json#'
      contentVersion: '1.0.0.0'
      parameters: {
        slackWebhookUrl: {
          type: 'SecureString'
        }
      }
      triggers: {
        alert: {
          type: 'Request'
          kind: 'Http'
          inputs: {
            method: 'POST'
          }
        }
      }
      actions: {
        postToSlack: {
          type: 'Http'
          runAfter: {}
          inputs: {
            method: 'POST'
            uri: '@parameters(\'slackWebhookUrl\')'
            headers: {
              'Content-Type': 'application/json'
            }
            body: {
              text: '@{triggerBody()?[\'data\']?[\'essentials\']?[\'monitorCondition\']}: @{triggerBody()?[\'data\']?[\'essentials\']?[\'alertRule\']} (@{triggerBody()?[\'data\']?[\'essentials\']?[\'severity\']}) @{triggerBody()?[\'data\']?[\'essentials\']?[\'description\']}'
            }
          }
          runtimeConfiguration: {
            secureData: {
              properties: [
                'inputs'
              ]
            }
          }
        }
      }
      outputs: {}
    }
  }
}

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: '${namePrefix}-alerts'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: take('${namePrefix}alerts', 12)
    enabled: true
    webhookReceivers: [
      {
        name: 'slack'
        serviceUri: listCallbackUrl(resourceId('Microsoft.Logic/workflows/triggers', slackRelay.name, 'alert'), '2019-05-01').value
        useCommonAlertSchema: true
      }
    ]
  }
}

// A ratio of two counts is beyond a metric alert, so this is a log search alert over the
// request telemetry. Each invocation writes two request rows: the Functions host's, and the
// app's own span (its child, carrying the custom dimension request_id: api/telemetry).
// Only the host's are counted — one per invocation, there even when the app's span never
// got out (a timeout, a crashed worker) — each weighted by itemCount, so a sampled row
// still stands for the invocations it represents (host.json keeps requests unsampled).
resource failedRequests 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${namePrefix}-failed-requests'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Axly API: 5xx above ${failedRequestPercentThreshold} % of requests'
    description: 'More than ${failedRequestPercentThreshold} % of the API\'s requests failed with a 5xx status in 5 minutes.'
    severity: 1
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: failedRequestWindow
    windowSize: failedRequestWindow
    criteria: {
      allOf: [
        {
          query: '''
requests
| where isempty(tostring(customDimensions.request_id))
| summarize total = sum(itemCount), failed = sumif(itemCount, toint(resultCode) >= 500)
| extend failedPercent = iff(total == 0, 0.0, 100.0 * failed / total)
'''
          metricMeasureColumn: 'failedPercent'
          timeAggregation: 'Maximum'
          operator: 'GreaterThan'
          threshold: failedRequestPercentThreshold
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

// Average CPU of the last 10 minutes, evaluated every minute.
resource databaseCpu 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: '${namePrefix}-database-cpu'
  location: 'global'
  tags: tags
  properties: {
    description: 'PostgreSQL CPU above ${databaseCpuPercentThreshold} % for 10 minutes.'
    severity: 2
    enabled: true
    scopes: [
      postgresServerId
    ]
    evaluationFrequency: 'PT1M'
    windowSize: databaseCpuWindow
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          name: 'cpu'
          criterionType: 'StaticThresholdCriterion'
          metricNamespace: 'Microsoft.DBforPostgreSQL/flexibleServers'
          metricName: 'cpu_percent'
          operator: 'GreaterThan'
          threshold: databaseCpuPercentThreshold
          timeAggregation: 'Average'
        }
      ]
    }
    autoMitigate: true
    actions: [
      {
        actionGroupId: actionGroup.id
      }
    ]
  }
}
