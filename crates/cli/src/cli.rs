//! The top-level parser: global flags, the command list, and what the process exits with.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::commands::{check, demo, dev, package, rollback, send};
use crate::exit::{CommandFailure, EXIT_CODES_HELP, ExitStatus};
use crate::output::Output;

const ABOUT: &str = "keyturn: Azure Key Vault lifecycle events, handled by small Rust functions";

const AFTER_HELP: &str = "\
Examples:
  keyturn demo                    # the main job on the local stack, then a report
  keyturn dev                     # the local stack and the built handlers, until Ctrl-C
  keyturn send near-expiry --vault kv-one --secret db-password --to dev
  keyturn package --build         # dist/<handler>/ and dist/<handler>.zip, all four
  keyturn check --vault kv-one    # each object: expiry, policy, what would happen
  keyturn rollback kv-one/storage-key   # the previous credential back, where it still works
";

#[derive(Debug, Parser)]
#[command(name = "keyturn", version, about = ABOUT, after_help = format!("{AFTER_HELP}\n{EXIT_CODES_HELP}"))]
pub struct Cli {
    /// Log what keyturn's libraries do (to stderr); repeat for more (-vv).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run keyturn's main job on the embedded local stack: seed a vault, move the clock, report what happened.
    Demo(demo::Args),
    /// Run the local stack (Key Vault, identity, Event Grid) with the built handlers behind it, until Ctrl-C.
    Dev(dev::Args),
    /// Post a Key Vault-shaped event (or a keyturn test event, or a saved/dead-lettered file) to a handler's Event Grid webhook.
    Send(send::Args),
    /// Build the deployable folders and zips: dist/<handler>/ and dist/<handler>.zip.
    Package(package::Args),
    /// Survey a vault, read-only: expiry, policy, and what each handler would do with each object.
    Check(check::Args),
    /// Write a secret's previous value back as a new version, where its provider keeps the previous credential working.
    Rollback(rollback::Args),
}

/// Parses the command line, runs the command, and turns the result into an exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            // --help and --version are "errors" that print to stdout and exit 0.
            let _ = error.print();
            return if error.use_stderr() { ExitStatus::Usage.into() } else { ExitStatus::Ok.into() };
        }
    };
    init_logging(cli.verbose);
    let output = Output::detect();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            output.error(&format!("cannot start the async runtime: {error}"));
            return ExitStatus::Failed.into();
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Demo(args) => demo::run(args, &output).await,
            Command::Dev(args) => dev::run(args, &output).await,
            Command::Send(args) => send::run(args, &output).await,
            Command::Package(args) => package::run(args, &output).await,
            Command::Check(args) => check::run(args, &output).await,
            Command::Rollback(args) => rollback::run(args, &output).await,
        }
    });
    // Nothing keyturn starts may outlive it: background tasks are dropped with the runtime, promptly.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    match result {
        Ok(status) => status.into(),
        Err(failure) => report(&output, &failure),
    }
}

fn report(output: &Output, failure: &CommandFailure) -> ExitCode {
    output.error(&failure.to_string());
    failure.status.into()
}

/// Logs go to stderr, quiet by default: the command's own lines are the interface.
fn init_logging(verbose: u8) {
    let filter = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none())
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn help_lists_every_command_examples_and_exit_codes() {
        let help = Cli::command().render_long_help().to_string();
        for word in ["dev", "send", "package", "check", "Examples:", "Exit codes:", "3  endpoint unreachable"] {
            assert!(help.contains(word), "{word} missing from:\n{help}");
        }
    }
}
