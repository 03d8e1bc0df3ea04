//! `keyturn package`: `dist/<handler>/` (host.json, the executable as `handler`, `<handler>/function.json`,
//! and `local.settings.json` for `func start`) and `dist/<handler>.zip` (without local.settings.json: in Azure
//! those values are app settings), validated against the custom-handler layout
//! (../shared/reference/functions-custom-handler.md, "Packaging"), with an executable for the platform the
//! function app runs on, and ready for zip deploy or `func start`.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::exit::{CommandFailure, ExitStatus};
use crate::handlers::{self, BinaryOverride, HANDLERS, Handler};
use crate::output::{self, Output, Tone};

mod files;

pub use files::{EXECUTABLE, Options, Packaged, package, validate};

const AFTER_HELP: &str = "\
Examples:
  keyturn package                              # every handler, from target/dist
  keyturn package near-expiry expired --build  # cargo build --profile dist, then those two
  keyturn package --profile release            # the quicker release build instead (target/release)
  # static binaries, as Microsoft suggests
  keyturn package --build --target x86_64-unknown-linux-musl
  keyturn package test-event --binary test-event=./my-build --out /tmp/pkg
  keyturn package --setting KEYTURN_VAULTS=kv-one --setting KEYTURN_NOTIFY=...
Then: `cd dist/near-expiry && func start` (Azurite running for AzureWebJobsStorage), or zip deploy
dist/near-expiry.zip.";

#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct Args {
    /// Handlers to package [default: all five].
    #[arg(value_name = "HANDLER", value_parser = handlers::parse_name)]
    pub handlers: Vec<&'static Handler>,

    /// Where the folders and zips go.
    #[arg(long, value_name = "DIR", default_value = "dist")]
    pub out: PathBuf,

    /// Run `cargo build --profile <profile> -p <handler>...` first.
    #[arg(long)]
    pub build: bool,

    /// The cargo profile to build with and take the binaries from: `dist` (release with whole-program LTO: the
    /// smaller, faster-starting binary deployments get) or `release`.
    #[arg(long, value_name = "PROFILE", default_value = handlers::DIST_PROFILE, value_parser = ["dist", "release"])]
    pub profile: String,

    /// Build for this target triple and take the binaries from target/<triple>/<profile>.
    #[arg(long, value_name = "TRIPLE")]
    pub target: Option<String>,

    /// Cargo's target directory [default: $CARGO_TARGET_DIR, else <repo>/target].
    #[arg(long, value_name = "DIR")]
    pub target_dir: Option<PathBuf>,

    /// Package this executable as that handler instead of the built one (repeatable).
    #[arg(long, value_name = "HANDLER=PATH")]
    pub binary: Vec<BinaryOverride>,

    /// The repository (host.json, function-definitions/) [default: found from the working directory].
    #[arg(long, value_name = "DIR")]
    pub app_root: Option<PathBuf>,

    /// A value for the package's local.settings.json (repeatable), e.g. KEYTURN_VAULTS=kv-one.
    #[arg(long, value_name = "NAME=VALUE", value_parser = parse_setting)]
    pub setting: Vec<(String, String)>,

    /// Print what was written as JSON.
    #[arg(long)]
    pub json: bool,
}

fn parse_setting(value: &str) -> Result<(String, String), String> {
    match value.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => Ok((name.trim().to_owned(), value.to_owned())),
        _ => Err(format!("'{value}' is not NAME=VALUE, e.g. KEYTURN_VAULTS=kv-one")),
    }
}

pub async fn run(args: Args, output: &Output) -> Result<ExitStatus, CommandFailure> {
    let root = handlers::app_root(args.app_root.as_deref())?;
    let target_dir = handlers::target_dir(args.target_dir.as_deref(), &root);
    let selected: Vec<&'static Handler> =
        if args.handlers.is_empty() { HANDLERS.iter().collect() } else { args.handlers.clone() };
    let binary_of = |handler: &Handler| {
        args.binary
            .iter()
            .rev()
            .find(|o| o.handler.name == handler.name)
            .map(|o| o.path.clone())
            .unwrap_or_else(|| handlers::built_binary(&target_dir, args.target.as_deref(), &args.profile, handler))
    };

    let to_build: Vec<&Handler> =
        selected.iter().copied().filter(|h| !args.binary.iter().any(|o| o.handler.name == h.name)).collect();
    if args.build && !to_build.is_empty() {
        let command = handlers::build_command(&to_build, &args.profile, args.target.as_deref());
        output.status(&format!("building: {command}"));
        cargo_build(&root, &args, &to_build).await?;
    }

    let missing: Vec<&Handler> = selected.iter().copied().filter(|h| !binary_of(h).is_file()).collect();
    if !missing.is_empty() {
        let paths: Vec<String> = missing.iter().map(|h| binary_of(h).display().to_string()).collect();
        return Err(CommandFailure::setup(format!("not built: {}", paths.join(", "))).hint(format!(
            "run `{}` (or pass --build)",
            handlers::build_command(&missing, &args.profile, args.target.as_deref())
        )));
    }

    let options = Options::new(args.target.as_deref(), &args.setting)?;
    let out = if args.out.is_absolute() { args.out.clone() } else { root.join(&args.out) };
    let mut packaged = Vec::new();
    for handler in selected {
        output.status(&format!("packaging {}", handler.name));
        packaged.push(package(&root, &out, handler, &binary_of(handler), &options)?);
    }

    if args.json {
        output.json(&Value::Array(
            packaged
                .iter()
                .map(|p| {
                    json!({
                        "handler": p.handler,
                        "folder": p.folder.display().to_string(),
                        "zip": p.zip.display().to_string(),
                        "executableBytes": p.executable_bytes,
                        "folderBytes": p.folder_bytes,
                        "zipBytes": p.zip_bytes,
                    })
                })
                .collect(),
        ));
    } else {
        let rows: Vec<Vec<(String, Option<Tone>)>> = packaged
            .iter()
            .map(|p| {
                vec![
                    (p.handler.to_owned(), Some(Tone::Strong)),
                    (output::size(p.executable_bytes), None),
                    (output::size(p.zip_bytes), None),
                    (display_relative(&p.zip, &root), Some(Tone::Dim)),
                ]
            })
            .collect();
        output.line(&output::table(output, &["HANDLER", "EXECUTABLE", "ZIP", "PACKAGE"], &rows));
    }
    Ok(ExitStatus::Ok)
}

fn display_relative(path: &Path, root: &Path) -> String {
    path.strip_prefix(root).unwrap_or(path).display().to_string()
}

async fn cargo_build(root: &Path, args: &Args, handlers: &[&Handler]) -> Result<(), CommandFailure> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = tokio::process::Command::new(cargo);
    command.current_dir(root).args(["build", "--profile", &args.profile]);
    if let Some(triple) = &args.target {
        command.args(["--target", triple]);
    }
    if let Some(dir) = &args.target_dir {
        command.arg("--target-dir").arg(dir);
    }
    for handler in handlers {
        command.args(["-p", handler.name]);
    }
    // cargo's own progress goes straight to the terminal; killed with keyturn.
    let status = command.kill_on_drop(true).status().await.map_err(|error| {
        CommandFailure::setup(format!("cannot run cargo: {error}"))
            .hint("install Rust (rustup.rs) or build the handlers yourself")
    })?;
    if status.success() {
        Ok(())
    } else {
        Err(CommandFailure::failed(format!("cargo build failed ({status})")).hint("its errors are printed above"))
    }
}
