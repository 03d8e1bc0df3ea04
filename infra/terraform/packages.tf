# The step between the apps and the Event Grid subscriptions: each handler's package (`keyturn package` writes
# dist/<handler>.zip) is deployed with the az CLI, then the app is polled until it lists its function; the
# subscriptions (eventgrid.tf) depend on this. A new package (another hash) is deployed on the next apply.
resource "terraform_data" "package" {
  for_each = toset(var.handlers)

  triggers_replace = {
    app     = azapi_resource.function_app[each.key].id
    package = fileexists("${var.package_dir}/${each.key}.zip") ? filesha256("${var.package_dir}/${each.key}.zip") : "missing"
  }

  lifecycle {
    precondition {
      condition     = fileexists("${var.package_dir}/${each.key}.zip")
      error_message = "${var.package_dir}/${each.key}.zip does not exist: build the packages first (cargo run -p keyturn-cli -- package --build --target x86_64-unknown-linux-musl), or set package_dir."
    }
  }

  provisioner "local-exec" {
    command = join(" ", [
      "${path.module}/../hooks/deploy-package.sh",
      data.azurerm_resource_group.this.name,
      azapi_resource.function_app[each.key].name,
      "${var.package_dir}/${each.key}.zip",
      each.key,
      var.hosting_plan,
      azurerm_storage_account.host[each.key].name,
    ])
  }

  # The app must be able to read its package and host storage before its first start.
  depends_on = [azurerm_role_assignment.grant, azapi_resource.basic_publishing_credentials]
}
