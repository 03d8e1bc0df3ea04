//! The handler binaries beside keyturn's own executable (`target/<profile>/`), built first when some are
//! missing and keyturn runs from the repository's target directory.
//!
//! The build names keyturn's own package as well as the handlers: cargo unifies features over the packages
//! of one invocation, so building the handlers alone would resolve shared dependencies (syn, uuid, ...) with
//! other features than keyturn's own build did and compile most of the tree a second time. With keyturn in
//! the same invocation, the build reuses everything `cargo run -p keyturn-cli` compiled and adds only the
//! handlers.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use crate::exit::CommandFailure;
use crate::handlers::{self, HANDLERS, Handler};
use crate::output::Output;

/// keyturn's own package, built together with the handlers.
const KEYTURN_PACKAGE: &str = env!("CARGO_PKG_NAME");

/// The Event Grid handlers' executables beside keyturn's own, built first when some are missing and keyturn can.
/// The demo's story is one event's path, so the timer-triggered sweep is not among them.
pub(super) async fn handler_binaries(
    output: &Output,
    no_build: bool,
) -> Result<Vec<(&'static Handler, PathBuf)>, CommandFailure> {
    let exe = std::env::current_exe()
        .map_err(|error| CommandFailure::setup(format!("cannot find keyturn's own executable: {error}")))?;
    let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    let binaries: Vec<(&'static Handler, PathBuf)> =
        HANDLERS.iter().filter(|h| !h.is_timer()).map(|h| (h, dir.join(h.name))).collect();
    let missing: Vec<&'static Handler> =
        binaries.iter().filter(|(_, path)| !path.is_file()).map(|(handler, _)| *handler).collect();
    if missing.is_empty() {
        return Ok(binaries);
    }
    let names = missing.iter().map(|h| h.name).collect::<Vec<_>>().join(", ");
    let build = CargoBuild::beside(&dir, &missing);
    let workspace = workspace_root();
    let (Some(build), Some(workspace), false) = (&build, &workspace, no_build) else {
        let command = build.as_ref().map_or_else(
            || handlers::build_command(&missing, "release", None),
            |build| build.command_line(workspace.as_deref()),
        );
        return Err(CommandFailure::setup(format!(
            "handler binaries missing beside keyturn in {}: {names}",
            dir.display()
        ))
        .hint(format!("build them in the keyturn repository with `{command}`, then run that build's keyturn")));
    };

    let command = build.command_line(Some(workspace));
    output.status(&format!(
        "{names} not built yet: building with `{command}` (once; a first build takes several minutes)"
    ));
    let building = Instant::now();
    let cargo = std::env::var_os("CARGO").filter(|v| !v.is_empty()).unwrap_or_else(|| "cargo".into());
    let status = tokio::process::Command::new(&cargo)
        .args(build.args())
        .arg("--target-dir")
        .arg(&build.target_dir)
        .current_dir(workspace)
        // cargo's progress goes to stderr like ours; stdout stays for the results.
        .stdout(Stdio::from(std::io::stderr()))
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .status()
        .await
        .map_err(|error| {
            CommandFailure::setup(format!("cannot run {}: {error}", Path::new(&cargo).display()))
                .hint(format!("install Rust (rustup.rs), or build the handlers yourself: `{command}`"))
        })?;
    if !status.success() {
        return Err(CommandFailure::setup(format!("building the handlers failed ({status})"))
            .hint(format!("run `{command}` in {} and fix what it reports", workspace.display())));
    }
    output.status(&format!("built {names} in {:.0} s", building.elapsed().as_secs_f64()));
    if let Some((_, path)) = binaries.iter().find(|(_, path)| !path.is_file()) {
        return Err(CommandFailure::setup(format!("cargo finished but {} is not there", path.display()))
            .hint(format!("run `{command}` in {} and check where it puts the binaries", workspace.display())));
    }
    Ok(binaries)
}

/// The cargo workspace keyturn was built from, when it is still there: found from the build's manifest
/// directory, else from the folders above the executable.
pub(super) fn workspace_root() -> Option<PathBuf> {
    let is_workspace = |dir: &Path| {
        std::fs::read_to_string(dir.join("Cargo.toml")).is_ok_and(|manifest| manifest.contains("[workspace]"))
    };
    let built_in = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    if is_workspace(&built_in) {
        return Some(built_in);
    }
    let exe = std::env::current_exe().ok()?;
    exe.ancestors().find(|dir| is_workspace(dir)).map(Path::to_path_buf)
}

/// The `cargo build` that puts handler binaries where keyturn's executable is: the same target directory,
/// target triple and profile, and keyturn's own package so that features unify as in keyturn's build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CargoBuild {
    /// The profile's folder name: `debug` (the dev profile), `release`, or a custom profile's name.
    pub(super) profile: String,
    pub(super) target_dir: PathBuf,
    pub(super) triple: Option<String>,
    pub(super) packages: Vec<&'static str>,
}

impl CargoBuild {
    /// For binaries that belong in `bin_dir` (`<target dir>/[<triple>/]<profile>`); `None` when `bin_dir` is
    /// not in a cargo target directory (which cargo marks with CACHEDIR.TAG).
    pub(super) fn beside(bin_dir: &Path, handlers: &[&'static Handler]) -> Option<Self> {
        let is_target_dir = |dir: &Path| dir.join("CACHEDIR.TAG").is_file();
        let profile = bin_dir.file_name()?.to_str()?.to_owned();
        let parent = bin_dir.parent()?;
        let (target_dir, triple) = if is_target_dir(parent) {
            (parent.to_path_buf(), None)
        } else {
            let grandparent = parent.parent().filter(|dir| is_target_dir(dir))?;
            (grandparent.to_path_buf(), Some(parent.file_name()?.to_str()?.to_owned()))
        };
        let packages = std::iter::once(KEYTURN_PACKAGE).chain(handlers.iter().map(|h| h.name)).collect();
        Some(Self { profile, target_dir, triple, packages })
    }

    /// cargo's arguments, without `--target-dir` (always passed when building, shown only when unusual).
    pub(super) fn args(&self) -> Vec<String> {
        let mut args = vec!["build".to_owned()];
        match self.profile.as_str() {
            "debug" => {}
            "release" => args.push("--release".to_owned()),
            custom => args.extend(["--profile".to_owned(), custom.to_owned()]),
        }
        if let Some(triple) = &self.triple {
            args.extend(["--target".to_owned(), triple.clone()]);
        }
        for package in &self.packages {
            args.extend(["-p".to_owned(), (*package).to_owned()]);
        }
        args
    }

    /// The command as a person would type it in `workspace`.
    pub(super) fn command_line(&self, workspace: Option<&Path>) -> String {
        let mut line = format!("cargo {}", self.args().join(" "));
        let default_target = workspace.map(|root| root.join("target"));
        let same = |a: &Path, b: &Path| a.canonicalize().ok().zip(b.canonicalize().ok()).is_some_and(|(a, b)| a == b);
        if default_target.is_none_or(|default| !same(&default, &self.target_dir)) {
            line.push_str(&format!(" --target-dir {}", self.target_dir.display()));
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handlers_are_built_where_keyturn_is_with_its_profile_and_target() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::create_dir_all(target.join("x86_64-unknown-linux-musl/release")).unwrap();
        std::fs::create_dir_all(target.join("debug")).unwrap();
        std::fs::write(target.join("CACHEDIR.TAG"), "Signature: 8a477f597d28d172789f06886806bc55").unwrap();
        let two = [handlers::find("near-expiry").unwrap(), handlers::find("expired").unwrap()];

        let release = CargoBuild::beside(&target.join("x86_64-unknown-linux-musl/release"), &two).unwrap();
        assert_eq!(release.target_dir, target);
        assert_eq!(
            release.command_line(Some(dir.path())),
            "cargo build --release --target x86_64-unknown-linux-musl -p keyturn-cli -p near-expiry -p expired"
        );
        let debug = CargoBuild::beside(&target.join("debug"), &two[..1]).unwrap();
        assert_eq!(debug.args(), ["build", "-p", "keyturn-cli", "-p", "near-expiry"]);
        // Built into a target directory elsewhere: the command says where.
        assert_eq!(
            debug.command_line(Some(Path::new("/elsewhere"))),
            format!("cargo build -p keyturn-cli -p near-expiry --target-dir {}", target.display())
        );
        let custom = CargoBuild { profile: "profiling".into(), ..debug };
        assert_eq!(custom.args(), ["build", "--profile", "profiling", "-p", "keyturn-cli", "-p", "near-expiry"]);

        // Not a cargo target directory (e.g. ~/.cargo/bin): nothing to build beside.
        std::fs::create_dir_all(dir.path().join("bin")).unwrap();
        assert_eq!(CargoBuild::beside(&dir.path().join("bin"), &two), None);
    }
}
