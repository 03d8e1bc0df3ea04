//! `keyturn`, the command line: run the local stack for experiments, post Key Vault-shaped events to a
//! handler, build the deployable packages, and survey a vault without changing it.
//!
//! The binary (`src/main.rs`) only calls [`main`]; each command is one module with an `Args` (its flags,
//! with help and examples) and a `run` that returns what the process should exit with.
//!
//! # Layout
//! - [`cli`]: the top-level parser, the command list, logging, and the exit code table shown in `--help`.
//! - [`exit`]: [`exit::CommandFailure`], an error that knows its exit code and says what to do about it.
//! - [`output`]: where results (stdout) and progress (stderr) go; colour only on a terminal without NO_COLOR.
//! - [`handlers`]: the five handlers as data (name, trigger: event types and canary rule, or a timer) and where
//!   their binaries are.
//! - [`dev_state`]: the file `keyturn dev` writes so `keyturn send --to dev` can find the running stack.
//! - [`commands::demo`]: `keyturn demo`, the main job on the local stack start to finish, then a report.
//! - [`commands::dev`]: `keyturn dev`, the local stack with the built handlers behind it, until Ctrl-C.
//! - [`commands::send`]: `keyturn send`, one event to a Functions Event Grid webhook.
//! - [`commands::package`]: `keyturn package`, `dist/<handler>/` and `dist/<handler>.zip`, validated.
//! - [`commands::check`]: `keyturn check`, every object of a vault with its expiry, policy and what each
//!   handler would do; read-only.

pub mod cli;
pub mod commands;
pub mod dev_state;
pub mod exit;
pub mod handlers;
pub mod output;

pub use cli::main;
