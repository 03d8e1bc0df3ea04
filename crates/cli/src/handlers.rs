//! The five handlers, for the commands: parsing their names, where their binaries are built, how to build
//! them. The table itself (names, subscriptions) is the function app's, in [`keyturn_app::handlers`].

use std::path::{Path, PathBuf};

pub use keyturn_app::handlers::{find, names};
pub use keyturn_app::{Canary, DEFAULT_CANARY_SECRET, HANDLERS, Handler, Trigger};

use crate::exit::CommandFailure;

/// Parses a handler name for clap, listing the valid ones on a mistake.
pub fn parse_name(name: &str) -> Result<&'static Handler, String> {
    find(name).ok_or_else(|| format!("'{name}' is not a handler; expected one of {}", names()))
}

/// `--binary <handler>=<path>`: run or package this executable as that handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinaryOverride {
    pub handler: &'static Handler,
    pub path: PathBuf,
}

impl std::str::FromStr for BinaryOverride {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let (name, path) = value
            .split_once('=')
            .ok_or_else(|| format!("'{value}' is not <handler>=<path>, e.g. near-expiry=./my-build"))?;
        if path.is_empty() {
            return Err(format!("'{value}' names no path after '='"));
        }
        Ok(Self { handler: parse_name(name)?, path: PathBuf::from(path) })
    }
}

/// The repository (or app) root: `explicit`, else the nearest ancestor of the working directory holding
/// host.json.
pub fn app_root(explicit: Option<&Path>) -> Result<PathBuf, CommandFailure> {
    if let Some(root) = explicit {
        if root.join("host.json").is_file() {
            return Ok(root.to_path_buf());
        }
        return Err(CommandFailure::setup(format!("{} holds no host.json", root.display()))
            .hint("pass --app-root <the keyturn repository>"));
    }
    let cwd = std::env::current_dir()
        .map_err(|error| CommandFailure::setup(format!("cannot read the working directory: {error}")))?;
    keyturn_app::find_app_root(&cwd).ok_or_else(|| {
        CommandFailure::setup(format!("no host.json in {} or any folder above it", cwd.display()))
            .hint("run keyturn inside the keyturn repository, or pass --app-root <path>")
    })
}

/// Cargo's target directory: `explicit`, else `CARGO_TARGET_DIR`, else `<root>/target`.
pub fn target_dir(explicit: Option<&Path>, root: &Path) -> PathBuf {
    match explicit {
        Some(dir) => dir.to_path_buf(),
        None => match std::env::var_os("CARGO_TARGET_DIR").filter(|v| !v.is_empty()) {
            Some(dir) => root.join(dir),
            None => root.join("target"),
        },
    }
}

/// The cargo profile deployments are built with (Cargo.toml `[profile.dist]`: release with whole-program LTO),
/// which `keyturn package` builds and takes by default and the benches measure. `release` stays the quick
/// optimised build for the demo and `keyturn dev --release`.
pub const DIST_PROFILE: &str = "dist";

/// Where cargo leaves a handler's binary for a build `profile` (its folder: `debug`, `release`, or a custom
/// profile's name such as `dist`) and optional target triple.
pub fn built_binary(target_dir: &Path, triple: Option<&str>, profile: &str, handler: &Handler) -> PathBuf {
    let mut dir = target_dir.to_path_buf();
    if let Some(triple) = triple {
        dir.push(triple);
    }
    dir.join(profile).join(handler.name)
}

/// The cargo command that builds `handlers` for `profile` (and `triple`).
pub fn build_command(handlers: &[&Handler], profile: &str, triple: Option<&str>) -> String {
    let mut command = String::from("cargo build");
    match profile {
        "debug" => {}
        "release" => command.push_str(" --release"),
        custom => command.push_str(&format!(" --profile {custom}")),
    }
    if let Some(triple) = triple {
        command.push_str(&format!(" --target {triple}"));
    }
    for handler in handlers {
        command.push_str(&format!(" -p {}", handler.name));
    }
    command
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_overrides_name_a_known_handler_and_a_path() {
        let parsed: BinaryOverride = "test-event=/tmp/probe".parse().unwrap();
        assert_eq!(parsed.handler.name, "test-event");
        assert_eq!(parsed.path, Path::new("/tmp/probe"));
        let unknown = "rotator=/tmp/x".parse::<BinaryOverride>().unwrap_err();
        assert!(unknown.contains("expected one of near-expiry, expired, new-version, test-event, sweep"), "{unknown}");
        assert!("near-expiry".parse::<BinaryOverride>().is_err());
        assert!("near-expiry=".parse::<BinaryOverride>().is_err());
    }

    #[test]
    fn the_build_hint_is_the_command_that_builds_the_missing_binaries() {
        let handlers = [find("near-expiry").unwrap(), find("expired").unwrap()];
        assert_eq!(build_command(&handlers, "debug", None), "cargo build -p near-expiry -p expired");
        assert_eq!(
            build_command(&handlers[..1], "release", Some("x86_64-unknown-linux-musl")),
            "cargo build --release --target x86_64-unknown-linux-musl -p near-expiry"
        );
        assert_eq!(
            built_binary(Path::new("/t"), Some("x86_64-unknown-linux-musl"), "release", handlers[0]),
            Path::new("/t/x86_64-unknown-linux-musl/release/near-expiry")
        );
        assert_eq!(build_command(&handlers[1..], DIST_PROFILE, None), "cargo build --profile dist -p expired");
        assert_eq!(built_binary(Path::new("/t"), None, DIST_PROFILE, handlers[1]), Path::new("/t/dist/expired"));
    }
}
