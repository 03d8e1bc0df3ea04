//! The function app keyturn deploys, as files: what `keyturn package` writes and what the Functions host
//! stand-in (and `func start`) reads. No I/O beyond reading and writing that layout, so the product's
//! packaging never depends on the emulators.
//!
//! # Layout
//! - [`function_app`]: host.json and the function folders, read and validated ([`FunctionApp`]); the
//!   repository's `function-definitions/` or a package's folders at the app root.
//! - [`handlers`]: the five handlers as data: function name = folder = binary, and each one's Event Grid
//!   subscription (event types, the canary rule) as infra deploys it.
//! - [`local_settings`]: `local.settings.json`, and the settings checks Core Tools makes before `func start`
//!   runs anything (a worker runtime, storage for non-HTTP triggers).
//! - [`ncrontab`]: a timer trigger's schedule, parsed and checked as the host does, and when it next fires.
//! - [`executable`]: the handler executable: its name in a package, the executable bit, and the ELF header
//!   that says which platform it runs on.

pub mod executable;
pub mod function_app;
pub mod handlers;
pub mod local_settings;
pub mod ncrontab;

pub use executable::{EXECUTABLE, ExecutableError, Platform};
pub use function_app::{
    AppError, CustomHandler, DEFAULT_FUNCTION_TIMEOUT, DEFINITIONS_DIR, FunctionApp, FunctionDefinition, find_app_root,
};
pub use handlers::{Canary, DEFAULT_CANARY_SECRET, HANDLERS, Handler, Trigger};
pub use local_settings::{LOCAL_SETTINGS, LocalSettings, SettingsError};
