//! What the benches share: they measure the binary that ships, so they build it with the deployments' profile
//! first.

use std::path::PathBuf;
use std::process::Command;

/// The cargo profile deployments are built with (Cargo.toml `[profile.dist]`, what `keyturn package` takes).
const SHIPPED_PROFILE: &str = "dist";

/// Builds the binary `name` of package `name` with the deployments' profile (`dist`: release with whole-program
/// LTO), in the target directory of the running bench (target/dist), so the figures are for what ships; returns
/// its path.
///
/// # Panics
/// When cargo cannot run or the build fails.
pub fn shipped_binary(name: &str) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(cargo)
        .args(["build", "--profile", SHIPPED_PROFILE, "--package", name, "--bin", name])
        .current_dir(crate::repo_root())
        .status()
        .unwrap_or_else(|error| panic!("running cargo to build {name} with profile {SHIPPED_PROFILE}: {error}"));
    assert!(status.success(), "building {name} with profile {SHIPPED_PROFILE} failed");
    // The bench runs from <target dir>/release/deps (cargo bench builds itself in release).
    let bench = std::env::current_exe().unwrap_or_else(|error| panic!("cannot find the running bench: {error}"));
    let target_dir =
        bench.ancestors().nth(3).unwrap_or_else(|| panic!("{} is not in <target dir>/<profile>/deps", bench.display()));
    let binary = target_dir.join(SHIPPED_PROFILE).join(name);
    assert!(binary.is_file(), "{} was not built", binary.display());
    binary
}

/// A local stack with `vault`, its throttling off (the benches measure the handler, not the emulated limits) and
/// Event Grid's retries at 1/1000 of real time, in case anything fails.
///
/// # Panics
/// When the stack cannot start.
pub async fn unthrottled_stack(vault: &str) -> keyturn_local::stack::LocalStack {
    let options = keyturn_local::eventgrid::EventGridOptions { time_scale: 0.001, ..Default::default() };
    keyturn_local::stack::LocalStack::start(
        keyturn_local::keyvault::KeyVaultEmulator::builder().vault(vault).no_throttling(),
        options,
    )
    .await
    .unwrap_or_else(|error| panic!("the local stack: {error}"))
}

/// Seeds a secret opted in to generated rotation (alphanumeric, 60 days), expiring at `exp`; returns its version.
///
/// # Panics
/// When the vault refuses it.
pub fn seed_opted_in(
    stack: &keyturn_local::stack::LocalStack,
    vault: &str,
    name: &str,
    value: String,
    exp: chrono::DateTime<chrono::Utc>,
) -> String {
    let spec = keyturn_local::keyvault::SecretSpec {
        value,
        content_type: None,
        attributes: keyturn_local::keyvault::store::AttributeInput { exp: Some(exp.timestamp()), ..Default::default() },
        tags: crate::tags(&[
            ("KeyturnRotation", "generated"),
            ("ValidityPeriodDays", "60"),
            ("KeyturnFormat", "alphanumeric"),
        ]),
    };
    crate::store_secret(stack, vault, name, spec)
}

/// The stack's handler settings plus `handler`'s own managed identity holding exactly its infra/roles.json grants
/// on the stack's vaults, as `keyturn dev` runs it: the benches measure under the same strict RBAC as every test.
///
/// # Panics
/// When the role matrix has no such handler.
pub fn handler_env_as(stack: &keyturn_local::stack::LocalStack, handler: &str) -> Vec<(String, String)> {
    let mut settings = stack.handler_env();
    let deployment = crate::deployment_of(stack, &settings);
    let identity = stack
        .handler_identity(handler, &deployment)
        .unwrap_or_else(|e| panic!("no identity for {handler} from infra/roles.json: {e}"));
    settings.extend(identity.app_settings());
    settings
}
