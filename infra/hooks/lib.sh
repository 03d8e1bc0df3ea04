# Shared by the deployment hooks: sourced, not run.
# shellcheck shell=bash

fail() { printf 'keyturn: %s\n' "$*" >&2; exit 1; }

# wait_for_function <resource group> <app> <function>: Event Grid refuses an AzureFunction subscription until
# the app lists the function, which happens some seconds after the package is deployed (the host indexes
# function.json). Waits up to KEYTURN_FUNCTION_WAIT_SECS (default 600).
wait_for_function() {
  local rg=$1 app=$2 function=$3 waited=0 limit=${KEYTURN_FUNCTION_WAIT_SECS:-600}
  until az functionapp function show --resource-group "$rg" --name "$app" --function-name "$function" \
      --query name -o tsv >/dev/null 2>&1; do
    [ "$waited" -lt "$limit" ] \
      || fail "$app does not list the function $function after ${limit}s: is its package deployed (az functionapp deploy, or azd deploy)? Its host logs in Application Insights say why it did not start."
    sleep 10
    waited=$((waited + 10))
  done
  printf 'keyturn: %s lists %s\n' "$app" "$function" >&2
}
