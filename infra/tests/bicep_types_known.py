"""Azure's published Bicep types, for the resource types and API versions infra/bicep uses (test_bicep_types.py).

Where the facts come from: Azure/bicep-types-az, the repository the Bicep compiler takes its Azure resource types
from (packaged as Azure.Bicep.Types.Az). Its `generated/<folder>/<provider namespace>/<api version>/types.json`
files hold, per namespace and version, a list of types: a `ResourceType` named `<Type>@<apiVersion>` whose `body`
is an `ObjectType` (or, for types whose schema depends on the resource's name, a `DiscriminatedObjectType`: a
`discriminator` property and one `elements` entry per value), whose `properties` entry is the `<Type>Properties`
object. `generated/index.json` maps every `<Type>@<apiVersion>` to one of those files; it is built from them by
Azure/bicep-types src/bicep-types/src/indexer.ts (buildIndex: files in lower-case path order, the first file
declaring a name, compared case-insensitively, wins). The snapshot below was read the same way, from every
types.json of the namespaces used, at:

    Azure/bicep-types-az commit 1f896de2db966ad91e8f7d7d981e11d32e4f5d8d (2026-08-20, "Update types from
    https://github.com/Azure/azure-rest-api-specs/tree/b7170cade0 (#2780)")

(index.json itself was not in the copy read; the refresh below applies buildIndex's rule, and at this commit each
Type@apiVersion recorded here is declared by exactly one file). `file` gives that types.json (under generated/)
and the ResourceType's position in it (`#/<index>`, as index.json writes it).

What is recorded, per `<Type>@<apiVersion>`:
- `resource`: the body's writable keys (`name`, `location`, `kind`, `sku`, `identity`, `properties`...);
  `properties`: the writable keys of its `properties` object, or ANY when it takes any key (`additionalProperties`,
  as the app settings of Microsoft.Web/sites/config `appsettings` do). Writable: the property's `flags` lack
  ReadOnly (Azure/bicep-types src/bicep-types/src/types.ts, ObjectTypePropertyFlags: Required 1, ReadOnly 2,
  WriteOnly 4, DeployTimeConstant 8, Identifier 16).
- `extension`: the type can be deployed as an extension resource (`writableScopes` has ScopeType.Extension, 16), so
  Bicep gives it a `scope` property.
- for a discriminated body: `discriminator`, every value it takes (`values`) and the elements infra/bicep uses.
- PUBLISHED_VERSIONS: every API version of each type used, so a failure can name the nearest ones.

How Bicep uses them (Azure/bicep src/Bicep.Core/TypeSystem/Providers/Az/AzResourceTypeFactory.cs,
GetValidationFlags): the resource body is validated strictly (an unknown key is error BCP037, a read-only one
BCP073; only the common keys of LanguageConstants.KnownTopLevelResourceProperties are let through as fallbacks when
a type lacks them); inside `properties` the same mistakes are warnings, and a Type@apiVersion missing from the
index is warning BCP081 ("does not have types available ... will not block the resource from being deployed").
Such mistakes reach Azure Resource Manager, where an API version the resource provider does not serve fails the
deployment and an unknown property is ignored or refused; test_bicep_types.py fails on them first.

Refresh (after changing a type or an API version in infra/bicep): with a clone of Azure/bicep-types-az, its work
tree or only its git directory (read at HEAD),

    .venv/infra/bin/python infra/tests/bicep_types_known.py /path/to/bicep-types-az

rewrites the block between the SNAPSHOT markers (COMMIT included) for exactly the Type@apiVersion infra/bicep
declares and the discriminator values it writes; the commit quoted above is then updated by hand (`git log -1`).
Review the diff: a key that disappears from a schema is a finding about the Bicep, not about the snapshot.
"""

from __future__ import annotations

import bisect

ANY = "*"

# BEGIN SNAPSHOT (written by this module's __main__; do not edit by hand)
COMMIT = "1f896de2db966ad91e8f7d7d981e11d32e4f5d8d"
TYPES: dict[str, dict] = {
    "Microsoft.App/containerApps@2024-03-01": {
        "file": "app_0/microsoft.app/2024-03-01/types.json#/261",
        "extension": False,
        "resource": ("extendedLocation", "identity", "location", "managedBy", "name", "properties", "tags"),
        "properties": ("configuration", "environmentId", "managedEnvironmentId", "template", "workloadProfileName"),
    },
    "Microsoft.Authorization/roleAssignments@2022-04-01": {
        "file": "authorization/microsoft.authorization/2022-04-01/types.json#/24",
        "extension": True,
        "resource": ("name", "properties"),
        "properties": (
            "condition", "conditionVersion", "delegatedManagedIdentityResourceId", "description", "principalId",
            "principalType", "roleDefinitionId",
        ),
    },
    "Microsoft.Authorization/roleDefinitions@2022-04-01": {
        "file": "authorization/microsoft.authorization/2022-04-01/types.json#/36",
        "extension": True,
        "resource": ("name", "properties"),
        "properties": ("assignableScopes", "description", "permissions", "roleName", "type"),
    },
    "Microsoft.Cache/redis@2024-11-01": {
        "file": "redis/microsoft.cache/2024-11-01/types.json#/90",
        "extension": False,
        "resource": ("identity", "location", "name", "properties", "tags", "zones"),
        "properties": (
            "disableAccessKeyAuthentication", "enableNonSslPort", "minimumTlsVersion", "publicNetworkAccess",
            "redisConfiguration", "redisVersion", "replicasPerMaster", "replicasPerPrimary", "shardCount", "sku",
            "staticIP", "subnetId", "tenantSettings", "updateChannel", "zonalAllocationPolicy",
        ),
    },
    "Microsoft.CognitiveServices/accounts@2024-10-01": {
        "file": "cognitiveservices/microsoft.cognitiveservices/2024-10-01/types.json#/111",
        "extension": False,
        "resource": ("identity", "kind", "location", "name", "properties", "sku", "tags"),
        "properties": (
            "allowedFqdnList", "amlWorkspace", "apiProperties", "customSubDomainName", "disableLocalAuth",
            "dynamicThrottlingEnabled", "encryption", "locations", "migrationToken", "networkAcls",
            "publicNetworkAccess", "raiMonitorConfig", "restore", "restrictOutboundNetworkAccess", "userOwnedStorage",
        ),
    },
    "Microsoft.DocumentDB/databaseAccounts@2024-11-15": {
        "file": "cosmos-db/microsoft.documentdb/2024-11-15/types.json#/128",
        "extension": False,
        "resource": ("identity", "kind", "location", "name", "properties", "tags"),
        "properties": (
            "analyticalStorageConfiguration", "apiProperties", "backupPolicy", "capabilities", "capacity",
            "connectorOffer", "consistencyPolicy", "cors", "createMode", "customerManagedKeyStatus",
            "databaseAccountOfferType", "defaultIdentity", "disableKeyBasedMetadataWriteAccess", "disableLocalAuth",
            "enableAnalyticalStorage", "enableAutomaticFailover", "enableBurstCapacity", "enableCassandraConnector",
            "enableFreeTier", "enableMultipleWriteLocations", "enablePartitionMerge",
            "enablePerRegionPerPartitionAutoscale", "ipRules", "isVirtualNetworkFilterEnabled", "keyVaultKeyUri",
            "locations", "minimalTlsVersion", "networkAclBypass", "networkAclBypassResourceIds", "publicNetworkAccess",
            "restoreParameters", "virtualNetworkRules",
        ),
    },
    "Microsoft.EventGrid/systemTopics/eventSubscriptions@2025-02-15": {
        "file": "eventgrid/microsoft.eventgrid/2025-02-15/types.json#/402",
        "extension": False,
        "resource": ("name", "properties"),
        "properties": (
            "deadLetterDestination", "deadLetterWithResourceIdentity", "deliveryWithResourceIdentity", "destination",
            "eventDeliverySchema", "expirationTimeUtc", "filter", "labels", "retryPolicy",
        ),
    },
    "Microsoft.EventGrid/systemTopics@2025-02-15": {
        "file": "eventgrid/microsoft.eventgrid/2025-02-15/types.json#/631",
        "extension": False,
        "resource": ("identity", "location", "name", "properties", "tags"),
        "properties": ("source", "topicType"),
    },
    "Microsoft.EventHub/namespaces/authorizationRules@2024-01-01": {
        "file": "eventhub/microsoft.eventhub/2024-01-01/types.json#/118",
        "extension": False,
        "resource": ("name", "properties"),
        "properties": ("rights",),
    },
    "Microsoft.EventHub/namespaces/eventhubs/authorizationRules@2024-01-01": {
        "file": "eventhub/microsoft.eventhub/2024-01-01/types.json#/141",
        "extension": False,
        "resource": ("name", "properties"),
        "properties": ("rights",),
    },
    "Microsoft.Insights/actionGroups@2023-01-01": {
        "file": "monitor_1/microsoft.insights/2023-01-01/types.json#/38",
        "extension": False,
        "resource": ("location", "name", "properties", "tags"),
        "properties": (
            "armRoleReceivers", "automationRunbookReceivers", "azureAppPushReceivers", "azureFunctionReceivers",
            "emailReceivers", "enabled", "eventHubReceivers", "groupShortName", "itsmReceivers", "logicAppReceivers",
            "smsReceivers", "voiceReceivers", "webhookReceivers",
        ),
    },
    "Microsoft.Insights/components@2020-02-02": {
        "file": "applicationinsights/microsoft.insights/2020-02-02/types.json#/27",
        "extension": False,
        "resource": ("etag", "kind", "location", "name", "properties", "tags"),
        "properties": (
            "Application_Type", "DisableIpMasking", "DisableLocalAuth", "Flow_Type", "ForceCustomerStorageForProfiler",
            "HockeyAppId", "ImmediatePurgeDataOn30Days", "IngestionMode", "publicNetworkAccessForIngestion",
            "publicNetworkAccessForQuery", "Request_Source", "RetentionInDays", "SamplingPercentage",
            "WorkspaceResourceId",
        ),
    },
    "Microsoft.Insights/diagnosticSettings@2021-05-01-preview": {
        "file": "monitor_1/microsoft.insights/2021-05-01-preview/types.json#/23",
        "extension": True,
        "resource": ("name", "properties"),
        "properties": (
            "eventHubAuthorizationRuleId", "eventHubName", "logAnalyticsDestinationType", "logs",
            "marketplacePartnerId", "metrics", "serviceBusRuleId", "storageAccountId", "workspaceId",
        ),
    },
    "Microsoft.Insights/metricAlerts@2018-03-01": {
        "file": "monitor_1/microsoft.insights/2018-03-01/types.json#/68",
        "extension": False,
        "resource": ("location", "name", "properties", "tags"),
        "properties": (
            "actions", "autoMitigate", "criteria", "description", "enabled", "evaluationFrequency", "scopes",
            "severity", "targetResourceRegion", "targetResourceType", "windowSize",
        ),
    },
    "Microsoft.Insights/workbooks@2023-06-01": {
        "file": "applicationinsights/microsoft.insights/2023-06-01/types.json#/29",
        "extension": False,
        "resource": ("etag", "identity", "kind", "location", "name", "properties", "tags"),
        "properties": (
            "category", "description", "displayName", "serializedData", "sourceId", "storageUri", "tags", "version",
        ),
    },
    "Microsoft.KeyVault/vaults/secrets@2023-07-01": {
        "file": "keyvault/microsoft.keyvault/2023-07-01/types.json#/330",
        "extension": False,
        "resource": ("name", "properties", "tags"),
        "properties": ("attributes", "contentType", "value"),
    },
    "Microsoft.KeyVault/vaults@2023-07-01": {
        "file": "keyvault/microsoft.keyvault/2023-07-01/types.json#/221",
        "extension": False,
        "resource": ("location", "name", "properties", "tags"),
        "properties": (
            "accessPolicies", "createMode", "enabledForDeployment", "enabledForDiskEncryption",
            "enabledForTemplateDeployment", "enablePurgeProtection", "enableRbacAuthorization", "enableSoftDelete",
            "networkAcls", "provisioningState", "publicNetworkAccess", "sku", "softDeleteRetentionInDays", "tenantId",
            "vaultUri",
        ),
    },
    "Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31": {
        "file": "msi/microsoft.managedidentity/2023-01-31/types.json#/18",
        "extension": False,
        "resource": ("location", "name", "tags"),
        "properties": None,
    },
    "Microsoft.OperationalInsights/workspaces@2023-09-01": {
        "file": "operationalinsights/microsoft.operationalinsights/2023-09-01/types.json#/265",
        "extension": False,
        "resource": ("etag", "identity", "location", "name", "properties", "tags"),
        "properties": (
            "defaultDataCollectionRuleResourceId", "features", "forceCmkForQuery", "publicNetworkAccessForIngestion",
            "publicNetworkAccessForQuery", "retentionInDays", "sku", "workspaceCapping",
        ),
    },
    "Microsoft.Search/searchServices@2025-05-01": {
        "file": "search/microsoft.search/2025-05-01/types.json#/121",
        "extension": False,
        "resource": ("identity", "location", "name", "properties", "sku", "tags"),
        "properties": (
            "authOptions", "computeType", "dataExfiltrationProtections", "disableLocalAuth", "encryptionWithCmk",
            "endpoint", "hostingMode", "networkRuleSet", "partitionCount", "publicNetworkAccess", "replicaCount",
            "semanticSearch", "upgradeAvailable",
        ),
    },
    "Microsoft.ServiceBus/namespaces/authorizationRules@2024-01-01": {
        "file": "servicebus/microsoft.servicebus/2024-01-01/types.json#/96",
        "extension": False,
        "resource": ("name", "properties"),
        "properties": ("rights",),
    },
    "Microsoft.ServiceBus/namespaces/queues/authorizationRules@2024-01-01": {
        "file": "servicebus/microsoft.servicebus/2024-01-01/types.json#/124",
        "extension": False,
        "resource": ("name", "properties"),
        "properties": ("rights",),
    },
    "Microsoft.ServiceBus/namespaces/topics/authorizationRules@2024-01-01": {
        "file": "servicebus/microsoft.servicebus/2024-01-01/types.json#/145",
        "extension": False,
        "resource": ("name", "properties"),
        "properties": ("rights",),
    },
    "Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01": {
        "file": "storage/microsoft.storage/2023-05-01/types.json#/90",
        "extension": False,
        "resource": ("name", "properties"),
        "properties": (
            "defaultEncryptionScope", "denyEncryptionScopeOverride", "enableNfsV3AllSquash", "enableNfsV3RootSquash",
            "immutableStorageWithVersioning", "metadata", "publicAccess",
        ),
    },
    "Microsoft.Storage/storageAccounts/blobServices@2023-05-01": {
        "file": "storage/microsoft.storage/2023-05-01/types.json#/48",
        "extension": False,
        "resource": ("name", "properties"),
        "properties": (
            "automaticSnapshotPolicyEnabled", "changeFeed", "containerDeleteRetentionPolicy", "cors",
            "defaultServiceVersion", "deleteRetentionPolicy", "isVersioningEnabled", "lastAccessTimeTrackingPolicy",
            "restorePolicy",
        ),
    },
    "Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01": {
        "file": "storage/microsoft.storage/2023-05-01/types.json#/359",
        "extension": False,
        "resource": ("name", "properties"),
        "properties": ("policy",),
    },
    "Microsoft.Storage/storageAccounts@2023-05-01": {
        "file": "storage/microsoft.storage/2023-05-01/types.json#/332",
        "extension": False,
        "resource": ("extendedLocation", "identity", "kind", "location", "name", "properties", "sku", "tags"),
        "properties": (
            "accessTier", "allowBlobPublicAccess", "allowCrossTenantReplication", "allowedCopyScope",
            "allowSharedKeyAccess", "azureFilesIdentityBasedAuthentication", "customDomain",
            "defaultToOAuthAuthentication", "dnsEndpointType", "enableExtendedGroups", "encryption",
            "immutableStorageWithVersioning", "isHnsEnabled", "isLocalUserEnabled", "isNfsV3Enabled", "isSftpEnabled",
            "keyPolicy", "largeFileSharesState", "minimumTlsVersion", "networkAcls", "publicNetworkAccess",
            "routingPreference", "sasPolicy", "supportsHttpsTrafficOnly",
        ),
    },
    "Microsoft.Web/serverfarms@2024-04-01": {
        "file": "web/microsoft.web/2024-04-01/types.json#/106",
        "extension": False,
        "resource": ("extendedLocation", "kind", "location", "name", "properties", "sku", "tags"),
        "properties": (
            "elasticScaleEnabled", "freeOfferExpirationTime", "hostingEnvironmentProfile", "hyperV", "isSpot",
            "isXenon", "kubeEnvironmentProfile", "maximumElasticWorkerCount", "perSiteScaling", "reserved",
            "spotExpirationTime", "targetWorkerCount", "targetWorkerSizeId", "workerTierName", "zoneRedundant",
        ),
    },
    "Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01": {
        "file": "web/microsoft.web/2024-04-01/types.json#/535",
        "extension": False,
        "discriminator": "name",
        "values": ("ftp", "scm"),
        "elements": {
            "ftp": {
                "resource": ("kind", "name", "properties"),
                "properties": ("allow",),
            },
            "scm": {
                "resource": ("kind", "name", "properties"),
                "properties": ("allow",),
            },
        },
    },
    "Microsoft.Web/sites/config@2024-04-01": {
        "file": "web/microsoft.web/2024-04-01/types.json#/726",
        "extension": False,
        "discriminator": "name",
        "values": (
            "appsettings", "authsettings", "authsettingsV2", "azurestorageaccounts", "backup", "connectionstrings",
            "logs", "metadata", "pushsettings", "slotConfigNames", "web",
        ),
        "elements": {
            "appsettings": {
                "resource": ("kind", "name", "properties"),
                "properties": "*",
            },
        },
    },
    "Microsoft.Web/sites@2023-12-01": {
        "file": "web/microsoft.web/2023-12-01/types.json#/565",
        "extension": False,
        "resource": ("extendedLocation", "identity", "kind", "location", "name", "properties", "tags"),
        "properties": (
            "clientAffinityEnabled", "clientCertEnabled", "clientCertExclusionPaths", "clientCertMode", "cloningInfo",
            "containerSize", "customDomainVerificationId", "dailyMemoryTimeQuota", "daprConfig", "dnsConfiguration",
            "enabled", "endToEndEncryptionEnabled", "functionAppConfig", "hostingEnvironmentProfile",
            "hostNamesDisabled", "hostNameSslStates", "httpsOnly", "hyperV", "isXenon", "keyVaultReferenceIdentity",
            "managedEnvironmentId", "publicNetworkAccess", "redundancyMode", "reserved", "resourceConfig",
            "scmSiteAlsoStopped", "serverFarmId", "siteConfig", "storageAccountRequired", "virtualNetworkSubnetId",
            "vnetBackupRestoreEnabled", "vnetContentShareEnabled", "vnetImagePullEnabled", "vnetRouteAllEnabled",
            "workloadProfileName",
        ),
    },
    "Microsoft.Web/sites@2024-04-01": {
        "file": "web/microsoft.web/2024-04-01/types.json#/524",
        "extension": False,
        "resource": ("extendedLocation", "identity", "kind", "location", "name", "properties", "tags"),
        "properties": (
            "autoGeneratedDomainNameLabelScope", "clientAffinityEnabled", "clientCertEnabled",
            "clientCertExclusionPaths", "clientCertMode", "cloningInfo", "containerSize", "customDomainVerificationId",
            "dailyMemoryTimeQuota", "daprConfig", "dnsConfiguration", "enabled", "endToEndEncryptionEnabled",
            "functionAppConfig", "hostingEnvironmentProfile", "hostNamesDisabled", "hostNameSslStates", "httpsOnly",
            "hyperV", "ipMode", "isXenon", "keyVaultReferenceIdentity", "managedEnvironmentId", "publicNetworkAccess",
            "redundancyMode", "reserved", "resourceConfig", "scmSiteAlsoStopped", "serverFarmId", "siteConfig",
            "storageAccountRequired", "virtualNetworkSubnetId", "vnetBackupRestoreEnabled", "vnetContentShareEnabled",
            "vnetImagePullEnabled", "vnetRouteAllEnabled", "workloadProfileName",
        ),
    },
}
PUBLISHED_VERSIONS: dict[str, tuple[str, ...]] = {
    "Microsoft.App/containerApps": (
        "2022-01-01-preview", "2022-03-01", "2022-06-01-preview", "2022-10-01", "2022-11-01-preview",
        "2023-04-01-preview", "2023-05-01", "2023-05-02-preview", "2023-08-01-preview", "2023-11-02-preview",
        "2024-02-02-preview", "2024-03-01", "2024-08-02-preview", "2024-10-02-preview", "2025-01-01",
        "2025-02-02-preview", "2025-07-01", "2025-10-02-preview", "2026-01-01",
    ),
    "Microsoft.Authorization/roleAssignments": (
        "2015-07-01", "2017-10-01-preview", "2018-01-01-preview", "2018-09-01-preview", "2020-03-01-preview",
        "2020-04-01-preview", "2020-08-01-preview", "2020-10-01-preview", "2022-04-01",
    ),
    "Microsoft.Authorization/roleDefinitions": ("2015-07-01", "2018-01-01-preview", "2022-04-01", "2022-05-01-preview"),
    "Microsoft.Cache/redis": (
        "2015-08-01", "2016-04-01", "2017-02-01", "2017-10-01", "2018-03-01", "2019-07-01", "2020-06-01", "2020-12-01",
        "2021-06-01", "2022-05-01", "2022-06-01", "2023-04-01", "2023-05-01-preview", "2023-08-01", "2024-03-01",
        "2024-04-01-preview", "2024-11-01", "2025-08-01-preview",
    ),
    "Microsoft.CognitiveServices/accounts": (
        "2016-02-01-preview", "2017-04-18", "2021-04-30", "2021-10-01", "2022-03-01", "2022-10-01", "2022-12-01",
        "2023-05-01", "2023-10-01-preview", "2024-04-01-preview", "2024-06-01-preview", "2024-10-01",
        "2025-04-01-preview", "2025-06-01", "2025-07-01-preview", "2025-09-01", "2025-10-01-preview", "2025-12-01",
        "2026-01-15-preview", "2026-03-01", "2026-03-15-preview", "2026-05-01", "2026-05-15-preview", "2026-07-01",
    ),
    "Microsoft.DocumentDB/databaseAccounts": (
        "2015-04-01", "2015-04-08", "2015-11-06", "2016-03-19", "2016-03-31", "2019-08-01", "2019-12-12", "2020-03-01",
        "2020-04-01", "2020-06-01-preview", "2020-09-01", "2021-01-15", "2021-03-01-preview", "2021-03-15",
        "2021-04-01-preview", "2021-04-15", "2021-05-15", "2021-06-15", "2021-07-01-preview", "2021-10-15",
        "2021-10-15-preview", "2021-11-15-preview", "2022-02-15-preview", "2022-05-15", "2022-05-15-preview",
        "2022-08-15", "2022-08-15-preview", "2022-11-15", "2022-11-15-preview", "2023-03-01-preview", "2023-03-15",
        "2023-03-15-preview", "2023-04-15", "2023-09-15", "2023-09-15-preview", "2023-11-15", "2023-11-15-preview",
        "2024-02-15-preview", "2024-05-15", "2024-05-15-preview", "2024-08-15", "2024-09-01-preview", "2024-11-15",
        "2024-12-01-preview", "2025-04-15", "2025-05-01-preview", "2025-10-15", "2025-11-01-preview", "2026-03-15",
        "2026-04-01-preview",
    ),
    "Microsoft.EventGrid/systemTopics": (
        "2020-04-01-preview", "2020-10-15-preview", "2021-06-01-preview", "2021-10-15-preview", "2021-12-01",
        "2022-06-15", "2023-06-01-preview", "2023-12-15-preview", "2024-06-01-preview", "2024-12-15-preview",
        "2025-02-15", "2025-04-01-preview", "2025-07-15-preview",
    ),
    "Microsoft.EventGrid/systemTopics/eventSubscriptions": (
        "2020-04-01-preview", "2020-10-15-preview", "2021-06-01-preview", "2021-10-15-preview", "2021-12-01",
        "2022-06-15", "2023-06-01-preview", "2023-12-15-preview", "2024-06-01-preview", "2024-12-15-preview",
        "2025-02-15", "2025-04-01-preview", "2025-07-15-preview",
    ),
    "Microsoft.EventHub/namespaces/authorizationRules": (
        "2014-09-01", "2015-08-01", "2017-04-01", "2018-01-01-preview", "2021-01-01-preview", "2021-06-01-preview",
        "2021-11-01", "2022-01-01-preview", "2022-10-01-preview", "2023-01-01-preview", "2024-01-01",
        "2024-05-01-preview", "2025-05-01-preview", "2026-01-01", "2026-07-01-preview",
    ),
    "Microsoft.EventHub/namespaces/eventhubs/authorizationRules": (
        "2014-09-01", "2015-08-01", "2017-04-01", "2018-01-01-preview", "2021-01-01-preview", "2021-06-01-preview",
        "2021-11-01", "2022-01-01-preview", "2022-10-01-preview", "2023-01-01-preview", "2024-01-01",
        "2024-05-01-preview", "2025-05-01-preview", "2026-01-01", "2026-07-01-preview",
    ),
    "Microsoft.Insights/actionGroups": (
        "2017-04-01", "2018-03-01", "2018-09-01", "2019-03-01", "2019-06-01", "2021-09-01", "2022-04-01", "2022-06-01",
        "2023-01-01", "2023-09-01-preview", "2024-10-01-preview",
    ),
    "Microsoft.Insights/components": ("2015-05-01", "2018-05-01-preview", "2020-02-02", "2020-02-02-preview"),
    "Microsoft.Insights/diagnosticSettings": (
        "2015-07-01", "2016-09-01", "2017-05-01-preview", "2020-01-01-preview", "2021-05-01-preview",
    ),
    "Microsoft.Insights/metricAlerts": ("2018-03-01", "2024-03-01-preview", "2026-01-01"),
    "Microsoft.Insights/workbooks": (
        "2015-05-01", "2018-06-17-preview", "2020-10-20", "2021-03-08", "2021-08-01", "2022-04-01", "2023-06-01",
    ),
    "Microsoft.KeyVault/vaults": (
        "2015-06-01", "2016-10-01", "2018-02-14", "2018-02-14-preview", "2019-09-01", "2020-04-01-preview",
        "2021-04-01-preview", "2021-06-01-preview", "2021-10-01", "2021-11-01-preview", "2022-02-01-preview",
        "2022-07-01", "2022-11-01", "2023-02-01", "2023-07-01", "2024-04-01-preview", "2024-11-01",
        "2024-12-01-preview", "2025-05-01", "2026-02-01", "2026-03-01-preview",
    ),
    "Microsoft.KeyVault/vaults/secrets": (
        "2016-10-01", "2018-02-14", "2018-02-14-preview", "2019-09-01", "2020-04-01-preview", "2021-04-01-preview",
        "2021-06-01-preview", "2021-10-01", "2021-11-01-preview", "2022-02-01-preview", "2022-07-01", "2022-11-01",
        "2023-02-01", "2023-07-01", "2024-04-01-preview", "2024-11-01", "2024-12-01-preview", "2025-05-01",
        "2026-02-01", "2026-03-01-preview",
    ),
    "Microsoft.ManagedIdentity/userAssignedIdentities": (
        "2015-08-31-preview", "2018-11-30", "2021-09-30-preview", "2022-01-31-preview", "2023-01-31",
        "2023-07-31-preview", "2024-11-30", "2025-01-31-preview", "2025-05-31-preview",
    ),
    "Microsoft.OperationalInsights/workspaces": (
        "2015-11-01-preview", "2020-03-01-preview", "2020-08-01", "2020-10-01", "2021-06-01", "2021-12-01-preview",
        "2022-10-01", "2023-09-01", "2025-02-01", "2025-07-01", "2026-03-01",
    ),
    "Microsoft.Search/searchServices": (
        "2015-02-28", "2015-08-19", "2019-10-01-preview", "2020-03-13", "2020-08-01", "2020-08-01-preview",
        "2021-04-01-preview", "2022-09-01", "2023-11-01", "2024-03-01-preview", "2024-06-01-preview",
        "2025-02-01-preview", "2025-05-01", "2026-03-01-preview", "2026-09-01-preview",
    ),
    "Microsoft.ServiceBus/namespaces/authorizationRules": (
        "2015-08-01", "2017-04-01", "2018-01-01-preview", "2021-01-01-preview", "2021-06-01-preview", "2021-11-01",
        "2022-01-01-preview", "2022-10-01-preview", "2023-01-01-preview", "2024-01-01", "2025-05-01-preview",
        "2026-01-01", "2026-07-01-preview",
    ),
    "Microsoft.ServiceBus/namespaces/queues/authorizationRules": (
        "2015-08-01", "2017-04-01", "2018-01-01-preview", "2021-01-01-preview", "2021-06-01-preview", "2021-11-01",
        "2022-01-01-preview", "2022-10-01-preview", "2023-01-01-preview", "2024-01-01", "2025-05-01-preview",
        "2026-01-01", "2026-07-01-preview",
    ),
    "Microsoft.ServiceBus/namespaces/topics/authorizationRules": (
        "2015-08-01", "2017-04-01", "2018-01-01-preview", "2021-01-01-preview", "2021-06-01-preview", "2021-11-01",
        "2022-01-01-preview", "2022-10-01-preview", "2023-01-01-preview", "2024-01-01", "2025-05-01-preview",
        "2026-01-01", "2026-07-01-preview",
    ),
    "Microsoft.Storage/storageAccounts": (
        "2015-05-01-preview", "2015-06-15", "2016-01-01", "2016-05-01", "2016-12-01", "2017-06-01", "2017-10-01",
        "2018-02-01", "2018-03-01-preview", "2018-07-01", "2018-11-01", "2019-04-01", "2019-06-01",
        "2020-08-01-preview", "2021-01-01", "2021-02-01", "2021-04-01", "2021-06-01", "2021-08-01", "2021-09-01",
        "2022-05-01", "2022-09-01", "2023-01-01", "2023-04-01", "2023-05-01", "2024-01-01", "2025-01-01", "2025-06-01",
        "2025-08-01", "2026-04-01",
    ),
    "Microsoft.Storage/storageAccounts/blobServices": (
        "2018-07-01", "2018-11-01", "2019-04-01", "2019-06-01", "2020-08-01-preview", "2021-01-01", "2021-02-01",
        "2021-04-01", "2021-06-01", "2021-08-01", "2021-09-01", "2022-05-01", "2022-09-01", "2023-01-01", "2023-04-01",
        "2023-05-01", "2024-01-01", "2025-01-01", "2025-06-01", "2025-08-01", "2026-04-01",
    ),
    "Microsoft.Storage/storageAccounts/blobServices/containers": (
        "2018-02-01", "2018-03-01-preview", "2018-07-01", "2018-11-01", "2019-04-01", "2019-06-01",
        "2020-08-01-preview", "2021-01-01", "2021-02-01", "2021-04-01", "2021-06-01", "2021-08-01", "2021-09-01",
        "2022-05-01", "2022-09-01", "2023-01-01", "2023-04-01", "2023-05-01", "2024-01-01", "2025-01-01", "2025-06-01",
        "2025-08-01", "2026-04-01",
    ),
    "Microsoft.Storage/storageAccounts/managementPolicies": (
        "2018-03-01-preview", "2018-11-01", "2019-04-01", "2019-06-01", "2020-08-01-preview", "2021-01-01",
        "2021-02-01", "2021-04-01", "2021-06-01", "2021-08-01", "2021-09-01", "2022-05-01", "2022-09-01", "2023-01-01",
        "2023-04-01", "2023-05-01", "2024-01-01", "2025-01-01", "2025-06-01", "2025-08-01", "2026-04-01",
    ),
    "Microsoft.Web/serverfarms": (
        "2015-08-01", "2016-09-01", "2018-02-01", "2019-08-01", "2020-06-01", "2020-09-01", "2020-10-01", "2020-12-01",
        "2021-01-01", "2021-01-15", "2021-02-01", "2021-03-01", "2022-03-01", "2022-09-01", "2023-01-01", "2023-12-01",
        "2024-04-01", "2024-11-01", "2025-03-01",
    ),
    "Microsoft.Web/sites": (
        "2015-08-01", "2016-08-01", "2018-02-01", "2018-11-01", "2019-08-01", "2020-06-01", "2020-09-01", "2020-10-01",
        "2020-12-01", "2021-01-01", "2021-01-15", "2021-02-01", "2021-03-01", "2022-03-01", "2022-09-01", "2023-01-01",
        "2023-12-01", "2024-04-01", "2024-11-01", "2025-03-01",
    ),
    "Microsoft.Web/sites/basicPublishingCredentialsPolicies": (
        "2019-08-01", "2020-06-01", "2020-09-01", "2020-10-01", "2020-12-01", "2021-01-01", "2021-01-15", "2021-02-01",
        "2021-03-01", "2022-03-01", "2022-09-01", "2023-01-01", "2023-12-01", "2024-04-01", "2024-11-01", "2025-03-01",
    ),
    "Microsoft.Web/sites/config": (
        "2015-08-01", "2016-08-01", "2018-02-01", "2018-11-01", "2019-08-01", "2020-06-01", "2020-09-01", "2020-10-01",
        "2020-12-01", "2021-01-01", "2021-01-15", "2021-02-01", "2021-03-01", "2022-03-01", "2022-09-01", "2023-01-01",
        "2023-12-01", "2024-04-01", "2024-11-01", "2025-03-01",
    ),
}
# END SNAPSHOT


def schema(type_name: str, version: str) -> dict | None:
    """The snapshot's facts for Type@apiVersion (the type compared case-insensitively, as Bicep does)."""
    wanted = f"{type_name}@{version}".lower()
    return next((facts for name, facts in TYPES.items() if name.lower() == wanted), None)


def published_versions(type_name: str) -> tuple[str, ...] | None:
    return next((v for name, v in PUBLISHED_VERSIONS.items() if name.lower() == type_name.lower()), None)


def nearest_versions(type_name: str, version: str, n: int = 2) -> tuple[list[str], list[str]]:
    """The n published versions just before and just after `version` (API versions sort as strings)."""
    versions = sorted(published_versions(type_name) or ())
    i = bisect.bisect_left(versions, version)
    return versions[max(0, i - n) : i], versions[i : i + n]


# ---------------------------------------------------------------------------------------------------------------
# Refresh


def _snapshot(source: str) -> str:
    """The SNAPSHOT block, read from a bicep-types-az clone, for what infra/bicep declares."""
    import json
    import subprocess
    from pathlib import Path

    import test_bicep_types

    root = Path(source)
    if (root / "generated").is_dir():
        paths = sorted(str(p.relative_to(root)) for p in (root / "generated").rglob("types.json"))

        def read(path: str) -> bytes:
            return (root / path).read_bytes()

        git = ["git", "-C", str(root)]
    else:
        git = ["git", f"--git-dir={root}"]
        listing = subprocess.run(git + ["ls-tree", "-r", "--name-only", "HEAD", "generated/"], capture_output=True,
                                 text=True, check=True).stdout
        paths = [p for p in listing.splitlines() if p.endswith("/types.json")]

        def read(path: str) -> bytes:
            return subprocess.run(git + ["show", f"HEAD:{path}"], capture_output=True, check=True).stdout

    head = subprocess.run(git + ["rev-parse", "HEAD"], capture_output=True, text=True)
    commit = head.stdout.strip() if head.returncode == 0 else "unknown (not a git clone)"

    decls = test_bicep_types.all_declarations(Path(__file__).resolve().parent.parent / "bicep")
    spelled = {d.type_api.lower(): d.type_api for d in decls}
    type_spelled = {d.type.lower(): d.type for d in decls}
    names: dict[str, set[str]] = {}
    for d in decls:
        value = [t for t in d.keys.get("name", (0, []))[1] if t.kind != "nl"]
        if not d.existing and len(value) == 1 and value[0].kind == "str":
            names.setdefault(d.type_api.lower(), set()).add(value[0].text)
    namespaces = {t.split("/")[0] for t in type_spelled}

    found: dict[str, tuple[str, int, list]] = {}
    versions: dict[str, set[str]] = {}
    for path in sorted(paths, key=str.lower):  # buildIndex's order
        parts = path.split("/")
        if len(parts) != 5 or parts[2] not in namespaces:
            continue
        types = json.loads(read(path))
        for index, t in enumerate(types):
            if t.get("$type") != "ResourceType":
                continue
            type_api = t["name"].lower()
            type_name, _, version = type_api.partition("@")
            if type_name in type_spelled:
                versions.setdefault(type_spelled[type_name], set()).add(t["name"].partition("@")[2])
            if type_api in spelled and type_api not in found:
                found[type_api] = (path.removeprefix("generated/"), index, types)

    def deref(types: list, ref: dict) -> dict:
        return types[int(ref["$ref"].rsplit("/", 1)[1])]

    def writable(props: dict) -> list[str]:
        return sorted((k for k, p in props.items() if not p.get("flags", 0) & 2), key=str.lower)

    def body_facts(types: list, props: dict) -> dict:
        facts = {"resource": writable(props), "properties": None}
        if "properties" in props and not props["properties"].get("flags", 0) & 2:
            obj = deref(types, props["properties"]["type"])
            if obj.get("$type") != "ObjectType" or "additionalProperties" in obj:
                facts["properties"] = ANY
            else:
                facts["properties"] = writable(obj.get("properties", {}))
        return facts

    out = [f"COMMIT = {commit!r}", "TYPES: dict[str, dict] = {"]
    for type_api in sorted(spelled, key=lambda t: spelled[t].lower()):
        if type_api not in found:
            continue  # test_bicep_types reports it, with the published versions
        path, index, types = found[type_api]
        resource = types[index]
        body = deref(types, resource["body"])
        scopes = resource.get("writableScopes", resource.get("scopeType", 0))
        out.append(f"    {spelled[type_api]!r}: {{")
        out.append(f"        'file': {f'{path}#/{index}'!r},")
        out.append(f"        'extension': {bool(scopes & 16)!r},")
        if body["$type"] == "ObjectType":
            for key, value in body_facts(types, body["properties"]).items():
                out += _field(key, value, 8)
        else:
            values = sorted(body["elements"], key=str.lower)
            out.append(f"        'discriminator': {body['discriminator']!r},")
            out += _field("values", values, 8)
            out.append("        'elements': {")
            for value in sorted(names.get(type_api, set()) & set(values)):
                element = deref(types, body["elements"][value])
                props = {**body.get("baseProperties", {}), **element.get("properties", {})}
                out.append(f"            {value!r}: {{")
                for key, facts in body_facts(types, props).items():
                    out += _field(key, facts, 16)
                out.append("            },")
            out.append("        },")
        out.append("    },")
    out.append("}")
    out.append("PUBLISHED_VERSIONS: dict[str, tuple[str, ...]] = {")
    for type_name in sorted(versions, key=str.lower):
        out += _field(type_name, sorted(versions[type_name]), 4)
    out.append("}")
    return "\n".join(out).replace("'", '"') + "\n"


def _field(key: str, value, indent: int, width: int = 120) -> list[str]:
    """`key: value,` lines: a list as a tuple wrapped at `width`."""
    pad = " " * indent
    if not isinstance(value, list):
        return [f"{pad}{key!r}: {value!r},"]
    one = f"{pad}{key!r}: {tuple(value)!r},"
    if len(one) <= width:
        return [one]
    lines, line = [f"{pad}{key!r}: ("], pad + "    "
    for item in value:
        piece = f"{item!r}, "
        if len(line) + len(piece.rstrip()) > width:
            lines.append(line.rstrip())
            line = pad + "    "
        line += piece
    lines.append(line.rstrip())
    lines.append(f"{pad}),")
    return lines


if __name__ == "__main__":
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} <clone of Azure/bicep-types-az: work tree or git directory>")
    me = Path(__file__).resolve()
    text = me.read_text()
    begin = text.index("\n", text.index("# BEGIN SNAPSHOT")) + 1
    end = text.index("# END SNAPSHOT")
    me.write_text(text[:begin] + _snapshot(sys.argv[1]) + text[end:])
