//! keyturn's embedded local stack: everything a handler talks to in Azure, on one machine, with no account.
//!
//! # Layout
//! (each module adds its line here)
//! - [`functions_host`]: Azure Functions host stand-in: host.json + function folders, the handler process
//!   (readiness, crash restarts, functionTimeout), and the Event Grid webhook `/runtime/webhooks/eventgrid`.

pub mod functions_host;
