//! The four handlers as data, so `package`, `dev`, `demo` and the tests work for whichever of them are
//! built: adding a handler is adding a row here (and its function folder).
//!
//! The event types and the canary rule are those of each handler's Event Grid subscription in
//! infra/bicep and infra/terraform (infra/README.md).

/// What a subscription does with the canary secret's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Canary {
    /// `StringNotIn subject [canary]`: every handler but test-event.
    Exclude,
    /// `StringIn subject [canary]`: test-event only.
    Only,
}

/// One handler: function name = binary name = function folder = route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handler {
    pub name: &'static str,
    /// `includedEventTypes` of its subscription.
    pub event_types: &'static [&'static str],
    pub canary: Canary,
    /// Its one job, for help text and listings.
    pub job: &'static str,
}

/// The canary secret's name unless configured otherwise (infra's `canary_secret_name` default).
pub const DEFAULT_CANARY_SECRET: &str = "keyturn-canary";

pub const HANDLERS: [Handler; 4] = [
    Handler {
        name: "near-expiry",
        event_types: &[
            "Microsoft.KeyVault.SecretNearExpiry",
            "Microsoft.KeyVault.KeyNearExpiry",
            "Microsoft.KeyVault.CertificateNearExpiry",
        ],
        canary: Canary::Exclude,
        job: "rotate per the object's policy, or notify that manual action is due",
    },
    Handler {
        name: "expired",
        event_types: &[
            "Microsoft.KeyVault.SecretExpired",
            "Microsoft.KeyVault.KeyExpired",
            "Microsoft.KeyVault.CertificateExpired",
        ],
        canary: Canary::Exclude,
        job: "notify at high severity",
    },
    Handler {
        name: "new-version",
        event_types: &[
            "Microsoft.KeyVault.SecretNewVersionCreated",
            "Microsoft.KeyVault.KeyNewVersionCreated",
            "Microsoft.KeyVault.CertificateNewVersionCreated",
        ],
        canary: Canary::Exclude,
        job: "tell consumers a new version exists",
    },
    Handler {
        name: "test-event",
        event_types: &["Microsoft.KeyVault.SecretNewVersionCreated"],
        canary: Canary::Only,
        job: "prove the whole path works (test events, the canary secret)",
    },
];

/// The handler called `name`.
pub fn find(name: &str) -> Option<&'static Handler> {
    HANDLERS.iter().find(|h| h.name == name)
}

/// Every handler name, for messages.
pub fn names() -> String {
    HANDLERS.iter().map(|h| h.name).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FunctionApp;

    #[test]
    fn every_handler_has_a_function_folder_in_the_repository_and_no_other_folder_exists() {
        let root = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
        let app = FunctionApp::load(root).unwrap();
        let mut folders: Vec<&str> = app.functions().map(|f| f.name.as_str()).collect();
        let mut handlers: Vec<&str> = HANDLERS.iter().map(|h| h.name).collect();
        folders.sort_unstable();
        handlers.sort_unstable();
        assert_eq!(folders, handlers);
        assert_eq!(find("expired").map(|h| h.canary), Some(Canary::Exclude));
        assert_eq!(find("nope"), None);
    }
}
