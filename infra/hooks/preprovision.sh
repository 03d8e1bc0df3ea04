#!/usr/bin/env bash
# azd's preprovision hook (azure.yaml): what a first deployment needs before anything is created.
# - the monitored vault's id (KEYTURN_KEY_VAULT_ID) and the canary secret in it: test-event is granted write on
#   that one secret, and a role assignment needs its scope to exist;
# - Flex Consumption: azd deploys keyturn there only (infra/README.md, "Why azd deploys to Flex Consumption only"),
#   so it stops before creating anything when another plan is asked for;
# - the `custom` runtime offered in the region on Flex Consumption (not every region has it).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

# azd deploys a function app that is not on Flex Consumption through Kudu's zip deploy, which refuses an app whose
# WEBSITE_RUN_FROM_PACKAGE is a URL (keyturn's Elastic Premium apps run from their package blob). Kudu's other
# mode keeps the package on the app's Azure Files content share, which needs a storage account key (keys are off).
plan=${KEYTURN_HOSTING_PLAN:-FlexConsumption}
[ "$plan" = FlexConsumption ] \
  || fail "azd deploys keyturn to Flex Consumption only, and KEYTURN_HOSTING_PLAN is $plan: azd's zip deploy cannot write an Elastic Premium app that runs from its package blob. Deploy Elastic Premium with the az CLI or Terraform (infra/README.md), or azd env set KEYTURN_HOSTING_PLAN FlexConsumption."

: "${KEYTURN_KEY_VAULT_ID:?set it first: azd env set KEYTURN_KEY_VAULT_ID \$(az keyvault show --name <vault> --query id -o tsv)}"
: "${AZURE_LOCATION:?azd sets AZURE_LOCATION; run azd env set AZURE_LOCATION <region>}"
vault_name=${KEYTURN_KEY_VAULT_ID##*/}
canary=${KEYTURN_CANARY_SECRET:-keyturn-canary}

az keyvault secret show --vault-name "$vault_name" --name "$canary" --query id -o tsv >/dev/null 2>&1 \
  || fail "the canary secret $canary does not exist in $vault_name (or you may not read it). Create it: az keyvault secret set --vault-name $vault_name --name $canary --value \"\$(date -u +%FT%TZ)\""

# The version main.bicep and handlers.tf ask for (functionAppConfig.runtime.version; infra/tests/test_azd.py keeps
# the three equal). A version the region does not offer fails the deployment of every app.
custom_runtime_version=1.0
runtimes=$(az functionapp list-flexconsumption-runtimes --location "$AZURE_LOCATION" --runtime custom \
  --query '[].version' -o tsv 2>/dev/null || true)
[ -n "$runtimes" ] \
  || fail "Flex Consumption offers no custom runtime in $AZURE_LOCATION (az functionapp list-flexconsumption-runtimes --location $AZURE_LOCATION --runtime custom). Pick another region (az functionapp list-flexconsumption-locations), or deploy on Elastic Premium with the az CLI or Terraform (infra/README.md)."
printf '%s\n' "$runtimes" | grep -qxF "$custom_runtime_version" \
  || fail "Flex Consumption in $AZURE_LOCATION offers the custom runtime in version $(echo "$runtimes" | tr '\n' ' ')but not $custom_runtime_version, the version keyturn's deployment asks for. Pick another region (az functionapp list-flexconsumption-locations), or deploy on Elastic Premium with the az CLI or Terraform (infra/README.md)."
printf 'keyturn: custom runtime %s on Flex Consumption in %s\n' "$custom_runtime_version" "$AZURE_LOCATION" >&2
