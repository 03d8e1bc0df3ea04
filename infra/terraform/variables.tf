# Inputs. Each mirrors a parameter of infra/bicep/main.bicep (same meaning, snake_case names).

variable "resource_group_name" {
  description = "Existing resource group for the new resources (the Event Grid system topic goes to the vault's resource group)."
  type        = string
}

variable "location" {
  description = "Region for the new resources. Empty: the resource group's region. The system topic always takes the vault's region."
  type        = string
  default     = ""
}

variable "name_prefix" {
  description = "Prefix of every resource name (lowercase letters, digits and hyphens, 2-10 characters)."
  type        = string
  default     = "keyturn"

  validation {
    condition     = can(regex("^[a-z0-9-]{2,10}$", var.name_prefix))
    error_message = "name_prefix must be 2-10 lowercase letters, digits or hyphens."
  }
}

variable "key_vault_id" {
  description = "Resource id of the existing Key Vault (RBAC permission model) whose events keyturn handles. Must be in the provider's subscription."
  type        = string

  validation {
    condition     = can(regex("(?i)^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft.KeyVault/vaults/[^/]+$", var.key_vault_id))
    error_message = "key_vault_id must be a Key Vault resource id."
  }
}

variable "handlers" {
  description = "Handlers to deploy: any of near-expiry, expired, new-version, test-event, sweep. Each becomes its own function app with its own identity and host storage; its roles are those infra/roles.json lists for it."
  type        = list(string)
  default     = ["near-expiry", "expired", "new-version", "test-event", "sweep"]

  validation {
    condition     = length(var.handlers) > 0 && alltrue([for h in var.handlers : contains(["near-expiry", "expired", "new-version", "test-event", "sweep"], h)])
    error_message = "handlers must be a non-empty subset of near-expiry, expired, new-version, test-event, sweep."
  }
}

variable "hosting_plan" {
  description = "FlexConsumption (default, scales to zero) or ElasticPremium (always-warm instances, EP1-EP3)."
  type        = string
  default     = "FlexConsumption"

  validation {
    condition     = contains(["FlexConsumption", "ElasticPremium"], var.hosting_plan)
    error_message = "hosting_plan must be FlexConsumption or ElasticPremium."
  }
}

variable "flex_maximum_instance_count" {
  description = "Flex Consumption: the most instances one handler may scale out to."
  type        = number
  default     = 40

  validation {
    condition     = var.flex_maximum_instance_count >= 1 && var.flex_maximum_instance_count <= 1000
    error_message = "flex_maximum_instance_count must be between 1 and 1000."
  }
}

variable "flex_instance_memory_mb" {
  description = "Flex Consumption: memory of one instance in MB (512, 2048 or 4096)."
  type        = number
  default     = 512

  validation {
    condition     = contains([512, 2048, 4096], var.flex_instance_memory_mb)
    error_message = "flex_instance_memory_mb must be 512, 2048 or 4096."
  }
}

variable "elastic_premium_sku" {
  description = "Elastic Premium: plan SKU."
  type        = string
  default     = "EP1"

  validation {
    condition     = contains(["EP1", "EP2", "EP3"], var.elastic_premium_sku)
    error_message = "elastic_premium_sku must be EP1, EP2 or EP3."
  }
}

variable "notify_secret_uri" {
  description = "Versionless URI of the Key Vault secret holding the notification channel URLs (KEYTURN_NOTIFY), e.g. https://kv.vault.azure.net/secrets/keyturn-notify. The secret must exist: each handler may read that secret alone (infra/roles.json, notificationSecret). Empty: no notification channels."
  type        = string
  default     = ""
}

variable "notify_vault_id" {
  description = "Resource id of the vault holding notify_secret_uri. Empty: the monitored vault (key_vault_id)."
  type        = string
  default     = ""
}

variable "canary_secret_name" {
  description = "Name of the canary secret whose new versions go to test-event (and to no other handler). It must exist in the monitored vault: test-event is granted write on it alone."
  type        = string
  default     = "keyturn-canary"
}

variable "mirror_vault_ids" {
  description = "Resource ids of vaults new-version replicates secrets to (KEYTURN_MIRROR_VAULTS). Empty: no replication."
  type        = list(string)
  default     = []
}

variable "expired_actions_enabled" {
  description = "Grant expired the write roles its opt-in actions (emergency rotation, disable) need. false: read-only."
  type        = bool
  default     = false
}

variable "sweep_repair_enabled" {
  description = "Let the sweep repair lost near-expiry events: it rotates opted-in objects near-expiry should have rotated (KEYTURN_SWEEP_REPAIR), and holds near-expiry's write roles for it. false: the sweep only reads."
  type        = bool
  default     = false
}

variable "entra_applications" {
  description = "The Entra ID applications whose client secrets near-expiry may rotate (the entra-app-secret provider; KEYTURN_ENTRA_APPLICATIONS): ;-separated <vault>[/<name or prefix*>]=<application object id>[,<id>] entries. The Graph permission (Application.ReadWrite.OwnedBy and ownership of each application) is not an Azure role and is granted by hand: docs/operations.md. Empty: none."
  type        = string
  default     = ""
}

variable "storage_key_account_ids" {
  description = "Resource ids of storage accounts whose keys the monitored vault's secrets may rotate (KEYTURN_STORAGE_ACCOUNTS, bound to every secret of the vault; the storage-account-key provider). near-expiry (and the repairing sweep) hold the key operator role of infra/roles.json (customRoles) on each (azureKeyResources). Empty: none. For a binding per secret name, use azure_key_resources."
  type        = list(string)
  default     = []
}

variable "consumer_app_ids" {
  description = "Resource ids of the App Service / Functions apps (Microsoft.Web/sites) and Container Apps (Microsoft.App/containerApps) that read the monitored vault's secrets: new-version refreshes their Key Vault references or restarts their active revisions on each new version (KEYTURN_CONSUMERS; infra/roles.json, consumerWebApps and consumerContainerApps). Empty: none."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for id in var.consumer_app_ids : can(regex("(?i)^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/(Microsoft\\.Web/sites/[^/]+(/slots/[^/]+)?|Microsoft\\.App/containerApps/[^/]+)$", id))])
    error_message = "Each consumer must be the resource id of a Microsoft.Web/sites app (or slot) or a Microsoft.App/containerApps app."
  }
}

variable "consumers" {
  description = "KEYTURN_CONSUMERS for new-version: ;-separated <vault>[/<name or prefix*>]=<resource id>[,<id>] entries, to bind each consumer to the secrets it reads. Empty: every consumer_app_ids app is bound to every secret of the monitored vault."
  type        = string
  default     = ""
}

variable "azure_key_resources" {
  description = "Resources of the Azure key family whose keys near-expiry may rotate (KEYTURN_AZURE_KEY_RESOURCES; the azure-key provider): storage accounts, Cosmos DB accounts, Redis caches, Service Bus and Event Hubs authorization rules, Azure AI services, Azure AI Search. Each entry: resource_id, and secrets (optional): the monitored vault's secret names or prefix* it is bound to (comma-separated; empty: every secret). near-expiry (and the repairing sweep) hold the key operator role of infra/roles.json (customRoles) on each (azureKeyResources). Empty: none."
  type = list(object({
    resource_id = string
    secrets     = optional(string, "")
  }))
  default = []
}

variable "package_dir" {
  description = "Folder holding <handler>.zip for every deployed handler (what `keyturn package` writes). Each apply deploys a package whose hash changed, before the Event Grid subscriptions."
  type        = string
  default     = "../../dist"
}

variable "dead_letter_retention_days" {
  description = "Days a dead-lettered event is kept before the lifecycle rule deletes it."
  type        = number
  default     = 30

  validation {
    condition     = var.dead_letter_retention_days >= 1 && var.dead_letter_retention_days <= 3650
    error_message = "dead_letter_retention_days must be between 1 and 3650."
  }
}

variable "alert_emails" {
  description = "Email addresses the alerts go to. With alert_webhook_url also empty, no action group is created and the alerts only show in the portal."
  type        = list(string)
  default     = []
}

variable "alert_webhook_url" {
  description = "Webhook (https) the alerts are posted to (common alert schema). Empty: none."
  type        = string
  default     = ""
  sensitive   = true
}

variable "delivery_failure_threshold" {
  description = "Failed Event Grid delivery attempts within 15 minutes that raise an alert (a single failure is retried and is no news)."
  type        = number
  default     = 10

  validation {
    condition     = var.delivery_failure_threshold >= 1
    error_message = "delivery_failure_threshold must be at least 1."
  }
}

variable "lock_container_name" {
  description = "Blob container (in the shared state account) holding the rotation locks (KEYTURN_LOCK_CONTAINER)."
  type        = string
  default     = "keyturn-locks"
}

variable "sweep_state_container_name" {
  description = "Blob container (in the shared state account) holding the sweep's state: thresholds fired, versions paged (KEYTURN_SWEEP_STATE_CONTAINER)."
  type        = string
  default     = "keyturn-sweep"
}

variable "sweep_schedule" {
  description = "The sweep's NCRONTAB schedule (KEYTURN_SWEEP_SCHEDULE, read by the Functions host); hourly by default."
  type        = string
  default     = "0 0 * * * *"
}

variable "dead_letter_container_name" {
  description = "Blob container (in the shared state account) receiving events Event Grid could not deliver."
  type        = string
  default     = "keyturn-deadletter"
}

variable "log_filter" {
  description = "keyturn log filter (KEYTURN_LOG), e.g. info or keyturn=debug,info."
  type        = string
  default     = "info"
}

variable "log_retention_days" {
  description = "Log Analytics retention in days."
  type        = number
  default     = 30

  validation {
    condition     = var.log_retention_days >= 30 && var.log_retention_days <= 730
    error_message = "log_retention_days must be between 30 and 730."
  }
}

variable "key_vault_dns_suffix" {
  description = "DNS suffix of Key Vault in this cloud (Bicep reads it from environment())."
  type        = string
  default     = "vault.azure.net"
}

variable "tags" {
  description = "Tags applied to every new resource."
  type        = map(string)
  default = {
    application = "keyturn"
  }
}
