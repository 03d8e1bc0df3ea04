//! keyturn's embedded local stack: everything a handler talks to in Azure, on one machine, with no account.
//!
//! # Layout
//! (each module adds its line here)
//! - [`clock`]: the movable clock the vault and Event Grid share (advance by days, or run at N× speed).
//! - [`tls`]: the local CA (generated at start, PEM written for clients to trust) and the listeners' leaf.
//! - [`identity`]: App Service-style managed identity endpoint; the registry of tokens it issued.
//! - [`rbac`]: role assignments (principal, role, scope) the Key Vault emulator (built-in roles) and the ARM
//!   emulator (infra/roles.json's custom roles) check every operation against.
//! - [`roles`]: the role matrix `infra/roles.json` (embedded, or another file) resolved for a deployment into
//!   per-handler identities and role assignments.
//! - [`keyvault`]: Key Vault emulator over HTTPS: secrets, keys, certificates, soft delete, throttling,
//!   faults, persistence; its store publishes the change feed Event Grid consumes.
//! - [`management`]: the stack's HTTP management API: move the clock, publish events, subscribe, inspect.
//! - [`eventgrid`]: Event Grid emulator: Key Vault events from vault changes and the clock, delivered with
//!   the service's retry schedule, dead-lettering, duplicates and reordering.
//! - [`stack`]: the whole stack in one call: vaults + identity, Event Grid fed by the vaults, management API.
//! - [`functions_host`]: Azure Functions host stand-in: host.json + function folders, the handler process
//!   (readiness, crash restarts, functionTimeout), and the Event Grid webhook `/runtime/webhooks/eventgrid`.
//! - [`lambda`]: AWS Lambda stand-in: a Runtime API, a function URL (HTTP ⇄ payload-2.0 events) and the
//!   handler process started with Lambda's environment.
//! - [`receivers`]: a notification receiver on loopback that checks what keyturn's webhook receivers, Slack and
//!   Teams check (signatures, Block Kit, Adaptive Cards): the demo's and the tests'.
//! - [`arm`]: Azure Resource Manager emulator: the Azure key family's list and regenerate key operations (storage,
//!   Cosmos DB, Redis, Service Bus, Event Hubs, Azure AI services, Azure AI Search) over HTTPS, tokens from
//!   the local identity endpoint, role assignments enforced (403 `AuthorizationFailed`); [`arm::consumers`]: its
//!   consumer apps (Key Vault reference refresh, Container App restarts).
//! - [`graph`]: Microsoft Graph emulator: application addPassword/removePassword/get over HTTPS, Graph's
//!   permissions (owned applications) and errors, and the client-credentials sign-in that proves which secrets work.
//! - [`paging`]: PagerDuty Events API v2 and Opsgenie Alert API receivers, following the vendors' contracts.

pub mod arm;
pub mod clock;
pub mod eventgrid;
pub mod functions_host;
pub mod graph;
pub mod identity;
pub mod keyvault;
pub mod lambda;
pub mod management;
pub mod paging;
pub mod rbac;
pub mod receivers;
pub mod roles;
pub mod stack;
pub mod tls;
