# Alerts: an action group when someone is to be told, and metric alerts on the system topic and the apps; and
# keyturn's dashboard (an Azure Monitor workbook shared with Bicep: infra/workbook.json).

resource "azurerm_monitor_action_group" "alerts" {
  count               = local.alert_receivers ? 1 : 0
  name                = "${var.name_prefix}-alerts-${local.suffix}"
  resource_group_name = data.azurerm_resource_group.this.name
  short_name          = substr(var.name_prefix, 0, 12)
  tags                = var.tags

  dynamic "email_receiver" {
    for_each = var.alert_emails
    content {
      name                    = "email-${email_receiver.key}"
      email_address           = email_receiver.value
      use_common_alert_schema = true
    }
  }

  dynamic "webhook_receiver" {
    for_each = var.alert_webhook_url == "" ? [] : [var.alert_webhook_url]
    content {
      name                    = "webhook"
      service_uri             = webhook_receiver.value
      use_common_alert_schema = true
    }
  }
}

locals {
  alert_receivers = length(var.alert_emails) > 0 || var.alert_webhook_url != ""

  # Event Grid system topic metrics (Microsoft.EventGrid/systemTopics): what was given up on, dropped, or is
  # failing right now.
  topic_alerts = {
    "dead-lettered" = {
      metric_name = "DeadLetteredCount"
      threshold   = 0
      severity    = 1
      description = "keyturn: Event Grid dead-lettered an event after its retries (see the dead-letter container; docs/operations.md says how to replay)."
    }
    "dropped" = {
      metric_name = "DroppedEventCount"
      threshold   = 0
      severity    = 1
      description = "keyturn: Event Grid dropped an event it could neither deliver nor dead-letter."
    }
    "delivery-failing" = {
      metric_name = "DeliveryAttemptFailCount"
      threshold   = var.delivery_failure_threshold
      severity    = 2
      description = "keyturn: deliveries to the handlers keep failing (Event Grid is retrying; look for retry lines in Application Insights)."
    }
  }
}

resource "azurerm_monitor_metric_alert" "topic" {
  for_each            = local.topic_alerts
  name                = "${var.name_prefix}-${each.key}-${local.suffix}"
  resource_group_name = data.azurerm_resource_group.this.name
  scopes              = [azurerm_eventgrid_system_topic.vault.id]
  description         = each.value.description
  severity            = each.value.severity
  frequency           = "PT5M"
  window_size         = "PT15M"
  tags                = var.tags

  criteria {
    metric_namespace = "Microsoft.EventGrid/systemTopics"
    metric_name      = each.value.metric_name
    aggregation      = "Total"
    operator         = "GreaterThan"
    threshold        = each.value.threshold
  }

  dynamic "action" {
    for_each = azurerm_monitor_action_group.alerts
    content {
      action_group_id = action.value.id
    }
  }
}

# Function failures: every failed invocation is a failed request in Application Insights (a retry line).
resource "azurerm_monitor_metric_alert" "function_failures" {
  name                = "${var.name_prefix}-function-failures-${local.suffix}"
  resource_group_name = data.azurerm_resource_group.this.name
  scopes              = [azurerm_application_insights.this.id]
  description         = "keyturn: handler invocations failed (retry lines in Application Insights; Event Grid redelivers)."
  severity            = 2
  frequency           = "PT5M"
  window_size         = "PT15M"
  tags                = var.tags

  criteria {
    metric_namespace = "microsoft.insights/components"
    metric_name      = "requests/failed"
    aggregation      = "Count"
    operator         = "GreaterThan"
    threshold        = 0
  }

  dynamic "action" {
    for_each = azurerm_monitor_action_group.alerts
    content {
      action_group_id = action.value.id
    }
  }
}

# keyturn's dashboard: rotations and failures by handler, dead letters, objects expiring soon, from the handlers'
# own log lines. The name must be a UUID; uuidv5 keeps it stable per resource group, like Bicep's guid().
resource "azurerm_application_insights_workbook" "dashboard" {
  name                = uuidv5("url", "${data.azurerm_resource_group.this.id}/keyturn-dashboard")
  resource_group_name = data.azurerm_resource_group.this.name
  location            = local.location
  display_name        = "keyturn"
  category            = "workbook"
  source_id           = lower(azurerm_log_analytics_workspace.this.id)
  tags                = var.tags
  data_json = replace(replace(file("${path.module}/../workbook.json"),
    "__WORKSPACE_ID__", azurerm_log_analytics_workspace.this.id),
  "__DEAD_LETTER_CONTAINER__", var.dead_letter_container_name)
}
