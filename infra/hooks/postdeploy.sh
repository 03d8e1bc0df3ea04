#!/usr/bin/env bash
# Creates the Event Grid subscriptions once the handlers' code is deployed (Event Grid refuses an AzureFunction
# subscription to a function that does not exist yet): waits until every app lists its function, then deploys
# infra/bicep/subscriptions.bicep at the monitored vault's resource group.
#
# azd runs it as the postdeploy hook, with main.bicep's outputs in the environment. By hand, after
# `az deployment group create ... main.bicep` and the packages: infra/hooks/postdeploy.sh <app resource group>
# [deployment name, default main] reads the same outputs from that deployment.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
root=$(cd "$(dirname "$0")/../.." && pwd)

if [ "$#" -gt 0 ]; then
  AZURE_RESOURCE_GROUP=$1
  deployment=${2:-main}
  output() {
    az deployment group show --resource-group "$AZURE_RESOURCE_GROUP" --name "$deployment" \
      --query "properties.outputs.$1.value" -o json
  }
  KEYTURN_VAULT_SUBSCRIPTION_ID=$(output KEYTURN_VAULT_SUBSCRIPTION_ID | tr -d '"')
  KEYTURN_VAULT_RESOURCE_GROUP=$(output KEYTURN_VAULT_RESOURCE_GROUP | tr -d '"')
  KEYTURN_FUNCTION_APPS=$(output KEYTURN_FUNCTION_APPS)
  KEYTURN_SUBSCRIPTION_PARAMETERS=$(output KEYTURN_SUBSCRIPTION_PARAMETERS)
fi
: "${AZURE_RESOURCE_GROUP:?the app resource group (azd sets it; by hand: postdeploy.sh <resource group>)}"
: "${KEYTURN_VAULT_SUBSCRIPTION_ID:?main.bicep output missing: provision first}"
: "${KEYTURN_VAULT_RESOURCE_GROUP:?main.bicep output missing: provision first}"
: "${KEYTURN_FUNCTION_APPS:?main.bicep output missing: provision first}"
: "${KEYTURN_SUBSCRIPTION_PARAMETERS:?main.bicep output missing: provision first}"

# ["near-expiry=keyturn-near-expiry-abc123", ...]: the names hold no quotes, commas or spaces.
for pair in $(printf '%s' "$KEYTURN_FUNCTION_APPS" | tr -d '[]" \n' | tr ',' ' '); do
  wait_for_function "$AZURE_RESOURCE_GROUP" "${pair#*=}" "${pair%%=*}"
done

parameters=$(mktemp)
trap 'rm -f "$parameters"' EXIT
printf '%s' "$KEYTURN_SUBSCRIPTION_PARAMETERS" >"$parameters"
az deployment group create --subscription "$KEYTURN_VAULT_SUBSCRIPTION_ID" \
  --resource-group "$KEYTURN_VAULT_RESOURCE_GROUP" --name keyturn-subscriptions \
  --template-file "$root/infra/bicep/subscriptions.bicep" --parameters "@$parameters" --output none
printf 'keyturn: Event Grid subscriptions deployed\n' >&2
