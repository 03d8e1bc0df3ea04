# Provider versions. azurerm 5.x manages everything but the function apps; azapi manages the function apps
# (Microsoft.Web/sites@2024-04-01) because azurerm_function_app_flex_consumption (5.2) cannot express this
# deployment: it always writes an AzureWebJobsStorage connection string, with an empty key under identity-based
# storage (hashicorp/terraform-provider-azurerm#29693), and it has no key_vault_reference_identity_id
# (#31439, open). azapi sends the same ARM body as infra/bicep/modules/handler.bicep.
terraform {
  required_version = ">= 1.9"

  required_providers {
    azurerm = {
      source  = "hashicorp/azurerm"
      version = "~> 5.2"
    }
    azapi = {
      source  = "Azure/azapi"
      version = "~> 2.0"
    }
  }
}

provider "azurerm" {
  features {}

  # The storage account has shared keys disabled: data-plane calls must use Entra ID.
  storage_use_azuread = true
}

provider "azapi" {}
