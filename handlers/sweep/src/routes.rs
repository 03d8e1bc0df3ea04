//! Routing: which of the configured channels (`KEYTURN_NOTIFY`) each severity goes to, from
//! `KEYTURN_SWEEP_ROUTES` (read by keyturn-config; its grammar is parsed here, where severities and channel
//! kinds are known).
//!
//! Grammar: `<severity>=<channel>[,<channel>...]`, rules separated by `;`, where `<severity>` is `info`,
//! `warning` or `critical` and `<channel>` is a channel kind (`webhook`, `slack`, `teams`, `email`,
//! `pagerduty`, `opsgenie`: every channel of that kind), `#<n>` (the n-th channel of `KEYTURN_NOTIFY`, from
//! 1), `all` or `none`. E.g. `info=email;warning=slack;critical=pagerduty,slack`.
//!
//! Unset: every severity goes to every channel (a pager then pages from its own `min_severity`, default
//! warning). Set: a severity without a rule goes nowhere, and the start-up log says so. A rule naming a
//! kind no channel has, or a position past the list, is an error: the deployment meant a channel it lacks.

use keyturn_notify::{ChannelId, ChannelKind, Severity};

/// The setting's name, for errors.
const SETTING: &str = keyturn_config::sweep::SWEEP_ROUTES;

/// A routing table that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{SETTING}: {0} (expected e.g. info=email;warning=slack;critical=pagerduty)")]
pub struct RouteError(String);

/// The channels of each severity, resolved against the channel list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routes {
    info: Vec<ChannelId>,
    warning: Vec<ChannelId>,
    critical: Vec<ChannelId>,
}

impl Routes {
    /// Parses `text` (`None`: the setting is unset) against `channels`, the configured channel list.
    pub fn parse(text: Option<&str>, channels: &[ChannelId]) -> Result<Self, RouteError> {
        let Some(text) = text else {
            return Ok(Self { info: channels.to_vec(), warning: channels.to_vec(), critical: channels.to_vec() });
        };
        let mut routes = Self { info: Vec::new(), warning: Vec::new(), critical: Vec::new() };
        let mut seen = Vec::new();
        for rule in text.split(';').map(str::trim).filter(|r| !r.is_empty()) {
            let (severity, targets) = rule.split_once('=').ok_or_else(|| RouteError(format!("'{rule}' has no '='")))?;
            let severity = match severity.trim().to_ascii_lowercase().as_str() {
                "info" => Severity::Info,
                "warning" => Severity::Warning,
                "critical" => Severity::Critical,
                other => return Err(RouteError(format!("'{other}' is not a severity (info, warning, critical)"))),
            };
            if seen.contains(&severity) {
                return Err(RouteError(format!("{severity} has two rules")));
            }
            seen.push(severity);
            let mut chosen: Vec<ChannelId> = Vec::new();
            for target in targets.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                for channel in select(target, channels)? {
                    if !chosen.contains(&channel) {
                        chosen.push(channel);
                    }
                }
            }
            *routes.of_mut(severity) = chosen;
        }
        Ok(routes)
    }

    /// The channels `severity` goes to, in list order.
    pub fn channels(&self, severity: Severity) -> &[ChannelId] {
        match severity {
            Severity::Info => &self.info,
            Severity::Warning => &self.warning,
            Severity::Critical => &self.critical,
        }
    }

    fn of_mut(&mut self, severity: Severity) -> &mut Vec<ChannelId> {
        match severity {
            Severity::Info => &mut self.info,
            Severity::Warning => &mut self.warning,
            Severity::Critical => &mut self.critical,
        }
    }
}

/// The channels one target names.
fn select(target: &str, channels: &[ChannelId]) -> Result<Vec<ChannelId>, RouteError> {
    let lower = target.to_ascii_lowercase();
    match lower.as_str() {
        "all" => return Ok(channels.to_vec()),
        "none" => return Ok(Vec::new()),
        _ => {}
    }
    if let Some(position) = lower.strip_prefix('#') {
        let index: usize =
            position.parse().map_err(|_| RouteError(format!("'{target}' is not #<position>, e.g. #2")))?;
        return channels
            .iter()
            .find(|c| c.index() == index)
            .cloned()
            .map(|c| vec![c])
            .ok_or_else(|| RouteError(format!("'{target}': KEYTURN_NOTIFY has {} channels", channels.len())));
    }
    let kind = KINDS
        .into_iter()
        .find(|k| k.as_str() == lower)
        .ok_or_else(|| RouteError(format!("'{target}' is not a channel kind, #<position>, all or none")))?;
    let matching: Vec<ChannelId> = channels.iter().filter(|c| c.kind() == kind).cloned().collect();
    if matching.is_empty() {
        return Err(RouteError(format!("'{target}': KEYTURN_NOTIFY has no {kind} channel")));
    }
    Ok(matching)
}

const KINDS: [ChannelKind; 6] = [
    ChannelKind::Webhook,
    ChannelKind::Slack,
    ChannelKind::Teams,
    ChannelKind::Email,
    ChannelKind::PagerDuty,
    ChannelKind::Opsgenie,
];

/// A channel's stable name in the sweep's state: its position and kind, e.g. `c2-slack`. Reordering
/// `KEYTURN_NOTIFY` renames channels, so their next due thresholds go out once more (never fewer).
pub fn state_name(channel: &ChannelId) -> String {
    format!("c{}-{}", channel.index(), channel.kind())
}

/// Whether a channel pages one object version at a time (instead of taking digests).
pub fn is_pager(channel: &ChannelId) -> bool {
    matches!(channel.kind(), ChannelKind::PagerDuty | ChannelKind::Opsgenie)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyturn_notify::Notify;
    use keyturn_notify::testing::FakeNotifier;

    const LIST: &str = "smtp://mail.example.com:587?from=kt@example.com&to=ops@example.com \
        slack://hooks.slack.com/services/T0/B0/X0 \
        pagerduty://0123456789abcdef0123456789abcdef@events.pagerduty.com \
        slack://hooks.slack.com/services/T1/B1/X1";

    fn channels() -> Vec<ChannelId> {
        FakeNotifier::with_channels(LIST).channels()
    }

    fn indexes(channels: &[ChannelId]) -> Vec<usize> {
        channels.iter().map(ChannelId::index).collect()
    }

    #[test]
    fn unset_sends_every_severity_everywhere() {
        let routes = Routes::parse(None, &channels()).unwrap();
        for severity in [Severity::Info, Severity::Warning, Severity::Critical] {
            assert_eq!(indexes(routes.channels(severity)), [1, 2, 3, 4]);
        }
    }

    #[test]
    fn rules_pick_channels_by_kind_and_position_and_unnamed_severities_go_nowhere() {
        let routes = Routes::parse(Some(" info = email ; critical=pagerduty,#2, slack "), &channels()).unwrap();
        assert_eq!(indexes(routes.channels(Severity::Info)), [1]);
        assert_eq!(indexes(routes.channels(Severity::Warning)), [] as [usize; 0]);
        assert_eq!(indexes(routes.channels(Severity::Critical)), [3, 2, 4]);
        assert_eq!(state_name(&routes.channels(Severity::Critical)[0]), "c3-pagerduty");
        assert!(is_pager(&routes.channels(Severity::Critical)[0]));
        let all = Routes::parse(Some("warning=all;info=none"), &channels()).unwrap();
        assert_eq!((all.channels(Severity::Warning).len(), all.channels(Severity::Info).len()), (4, 0));
    }

    #[test]
    fn mistakes_are_named() {
        for (text, expected) in [
            ("info", "'info' has no '='"),
            ("urgent=slack", "'urgent' is not a severity"),
            ("info=slack;info=email", "info has two rules"),
            ("info=teams", "KEYTURN_NOTIFY has no teams channel"),
            ("info=#9", "'#9': KEYTURN_NOTIFY has 4 channels"),
            ("info=#x", "is not #<position>"),
            ("info=sms", "'sms' is not a channel kind"),
        ] {
            let error = Routes::parse(Some(text), &channels()).unwrap_err().to_string();
            assert!(error.starts_with("KEYTURN_SWEEP_ROUTES: "), "{error}");
            assert!(error.contains(expected), "{text}: {error}");
        }
    }
}
