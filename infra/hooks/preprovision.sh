#!/usr/bin/env bash
# azd's preprovision hook (azure.yaml): what a first deployment needs before anything is created.
# - the monitored vault's id (KEYTURN_KEY_VAULT_ID) and the canary secret in it: test-event is granted write on
#   that one secret, and a role assignment needs its scope to exist;
# - on Flex Consumption, the `custom` runtime offered in the region (not every region has it).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

: "${KEYTURN_KEY_VAULT_ID:?set it first: azd env set KEYTURN_KEY_VAULT_ID \$(az keyvault show --name <vault> --query id -o tsv)}"
: "${AZURE_LOCATION:?azd sets AZURE_LOCATION; run azd env set AZURE_LOCATION <region>}"
vault_name=${KEYTURN_KEY_VAULT_ID##*/}
canary=${KEYTURN_CANARY_SECRET:-keyturn-canary}

az keyvault secret show --vault-name "$vault_name" --name "$canary" --query id -o tsv >/dev/null 2>&1 \
  || fail "the canary secret $canary does not exist in $vault_name (or you may not read it). Create it: az keyvault secret set --vault-name $vault_name --name $canary --value \"\$(date -u +%FT%TZ)\""

if [ "${KEYTURN_HOSTING_PLAN:-FlexConsumption}" = FlexConsumption ]; then
  runtimes=$(az functionapp list-flexconsumption-runtimes --location "$AZURE_LOCATION" --runtime custom \
    --query '[].version' -o tsv 2>/dev/null || true)
  [ -n "$runtimes" ] \
    || fail "Flex Consumption offers no custom runtime in $AZURE_LOCATION (az functionapp list-flexconsumption-runtimes --location $AZURE_LOCATION --runtime custom). Pick another region (az functionapp list-flexconsumption-locations) or azd env set KEYTURN_HOSTING_PLAN ElasticPremium."
  printf 'keyturn: custom runtime on Flex Consumption in %s: %s\n' "$AZURE_LOCATION" "$(echo "$runtimes" | tr '\n' ' ')" >&2
fi
