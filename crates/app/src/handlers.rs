//! The five handlers as data, so `package`, `dev`, `demo` and the tests work for whichever of them are
//! built: adding a handler is adding a row here (and its function folder).
//!
//! Four are triggered by Event Grid: their event types and canary rule are those of each handler's Event Grid
//! subscription in infra/bicep and infra/terraform (infra/README.md). The fifth, `sweep`, runs on a timer
//! whose NCRONTAB schedule is an app setting.

/// What a subscription does with the canary secret's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Canary {
    /// `StringNotIn subject [canary]`: every handler but test-event.
    Exclude,
    /// `StringIn subject [canary]`: test-event only.
    Only,
}

/// What invokes a handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// Its Event Grid subscription: `includedEventTypes` and the canary rule.
    EventGrid { event_types: &'static [&'static str], canary: Canary },
    /// A timer: the app setting holding its NCRONTAB schedule (function.json says `%<setting>%`), and the
    /// schedule a package writes when none is given.
    Timer { schedule_setting: &'static str, default_schedule: &'static str },
}

/// One handler: function name = binary name = function folder = route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handler {
    pub name: &'static str,
    pub trigger: Trigger,
    /// Its one job, for help text and listings.
    pub job: &'static str,
}

impl Handler {
    /// `includedEventTypes` of its subscription (none for a timer).
    pub fn event_types(&self) -> &'static [&'static str] {
        match self.trigger {
            Trigger::EventGrid { event_types, .. } => event_types,
            Trigger::Timer { .. } => &[],
        }
    }

    /// Its subscription's canary rule; `None` for a timer, which has no subscription.
    pub fn canary(&self) -> Option<Canary> {
        match self.trigger {
            Trigger::EventGrid { canary, .. } => Some(canary),
            Trigger::Timer { .. } => None,
        }
    }

    /// Whether a timer invokes it (the sweep) rather than Event Grid.
    pub fn is_timer(&self) -> bool {
        matches!(self.trigger, Trigger::Timer { .. })
    }
}

/// The app setting holding the sweep's NCRONTAB schedule; read by the Functions host, never by keyturn.
pub const SWEEP_SCHEDULE_SETTING: &str = "KEYTURN_SWEEP_SCHEDULE";
/// Hourly at minute 0 (NCRONTAB's first field is seconds).
pub const DEFAULT_SWEEP_SCHEDULE: &str = "0 0 * * * *";

/// The canary secret's name unless configured otherwise (infra's `canary_secret_name` default).
pub const DEFAULT_CANARY_SECRET: &str = "keyturn-canary";

pub const HANDLERS: [Handler; 5] = [
    Handler {
        name: "near-expiry",
        trigger: Trigger::EventGrid {
            event_types: &[
                "Microsoft.KeyVault.SecretNearExpiry",
                "Microsoft.KeyVault.KeyNearExpiry",
                "Microsoft.KeyVault.CertificateNearExpiry",
            ],
            canary: Canary::Exclude,
        },
        job: "rotate per the object's policy, or notify that manual action is due",
    },
    Handler {
        name: "expired",
        trigger: Trigger::EventGrid {
            event_types: &[
                "Microsoft.KeyVault.SecretExpired",
                "Microsoft.KeyVault.KeyExpired",
                "Microsoft.KeyVault.CertificateExpired",
            ],
            canary: Canary::Exclude,
        },
        job: "notify at high severity",
    },
    Handler {
        name: "new-version",
        trigger: Trigger::EventGrid {
            event_types: &[
                "Microsoft.KeyVault.SecretNewVersionCreated",
                "Microsoft.KeyVault.KeyNewVersionCreated",
                "Microsoft.KeyVault.CertificateNewVersionCreated",
            ],
            canary: Canary::Exclude,
        },
        job: "tell consumers a new version exists",
    },
    Handler {
        name: "test-event",
        trigger: Trigger::EventGrid {
            event_types: &["Microsoft.KeyVault.SecretNewVersionCreated"],
            canary: Canary::Only,
        },
        job: "prove the whole path works (test events, the canary secret)",
    },
    Handler {
        name: "sweep",
        trigger: Trigger::Timer { schedule_setting: SWEEP_SCHEDULE_SETTING, default_schedule: DEFAULT_SWEEP_SCHEDULE },
        job: "on a timer: expiry thresholds once per version, digests, pages resolved on rotation",
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
        assert_eq!(find("expired").and_then(Handler::canary), Some(Canary::Exclude));
        let sweep = find("sweep").unwrap();
        assert!(sweep.is_timer() && sweep.event_types().is_empty() && sweep.canary().is_none());
        let folder = app.functions().find(|f| f.name == "sweep").unwrap();
        assert_eq!(folder.schedule.as_deref(), Some("%KEYTURN_SWEEP_SCHEDULE%"), "function.json names the setting");
        assert_eq!(find("nope"), None);
    }
}
