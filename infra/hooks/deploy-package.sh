#!/usr/bin/env bash
# deploy-package.sh <resource group> <app> <package.zip> <function> <FlexConsumption|ElasticPremium> <host storage>:
# Terraform's step between the apps and the Event Grid subscriptions (infra/terraform/packages.tf). Deploys the
# package with Entra ID (basic publishing credentials are off), then waits until the app lists the function, so
# the subscription that follows is accepted.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
[ "$#" -eq 6 ] || fail "usage: deploy-package.sh <resource group> <app> <package.zip> <function> <FlexConsumption|ElasticPremium> <host storage account>"
rg=$1 app=$2 zip=$3 function=$4 plan=$5 storage=$6
[ -f "$zip" ] || fail "$zip does not exist: build the packages first (cargo run -p keyturn-cli -- package --build --target x86_64-unknown-linux-musl)"
case $plan in
  FlexConsumption)
    # One deploy into the app's package container.
    az functionapp deploy --resource-group "$rg" --name "$app" --src-path "$zip" --type zip --output none ;;
  ElasticPremium)
    # The app runs from the package blob (WEBSITE_RUN_FROM_PACKAGE), read with its identity.
    az storage blob upload --auth-mode login --account-name "$storage" --container-name package \
      --name "$function.zip" --file "$zip" --overwrite --output none
    az functionapp restart --resource-group "$rg" --name "$app" --output none ;;
  *) fail "unknown hosting plan $plan (FlexConsumption or ElasticPremium)" ;;
esac
wait_for_function "$rg" "$app" "$function"
