//! The rotation policy, read from the object's tags (the reference is docs/policy-tags.md).
//!
//! Microsoft's rotation samples drive rotation with `ValidityPeriodDays`, `CredentialId` and
//! `ProviderAddress`; keyturn honours those and adds a few `Keyturn*` tags, with the opt-in
//! (`KeyturnRotation`) required: an object without it is never rotated. Key Vault allows 15 tags per
//! object, so the vocabulary stays small. Tag names match case-insensitively.

use chrono::Duration;
use keyturn_events::ObjectKind;
use keyturn_vault::model::Tags;

/// Microsoft's: the new version's lifetime, in days (new exp = now + N days).
pub const VALIDITY_PERIOD_DAYS: &str = "ValidityPeriodDays";
/// Microsoft's: which credential the secret holds (a login name, `key1`/`key2`); carried forward.
pub const CREDENTIAL_ID: &str = "CredentialId";
/// Microsoft's: the resource that owns the credential (an ARM resource id); carried forward.
pub const PROVIDER_ADDRESS: &str = "ProviderAddress";
/// keyturn's opt-in: the provider for a secret (`generated`), or `enabled` for a key or certificate.
pub const ROTATION: &str = "KeyturnRotation";
/// keyturn's generated provider: the value's format.
pub const FORMAT: &str = "KeyturnFormat";
/// keyturn's generated provider: the value's length (characters, or random bytes for base64 and hex).
pub const LENGTH: &str = "KeyturnLength";
/// keyturn's generated provider: the character classes of a password.
pub const CHARSET: &str = "KeyturnCharset";
/// Provenance written on a new version: the version it replaced.
pub const ROTATED_FROM: &str = "KeyturnRotatedFrom";
/// Provenance written on a new version: the id of the event that caused it.
pub const EVENT_ID: &str = "KeyturnEventId";
/// Provenance written by `keyturn rollback`: the version rolled back (the one that was live).
pub const ROLLED_BACK_FROM: &str = "KeyturnRolledBackFrom";
/// Provenance written by `keyturn rollback`: the version whose value (and provider tags) the new version restores.
pub const ROLLBACK_OF: &str = "KeyturnRollbackOf";

/// The `expired` handler's opt-in action on an expired version: `rotate` or `disable` (absent: notify only).
pub const EXPIRED_ACTION: &str = "KeyturnExpiredAction";
/// The `new-version` handler: the vaults a secret's new versions are copied into (comma-separated names).
pub const MIRROR: &str = "KeyturnMirror";
/// Written on a mirror's copy: `<vault>/<name>/<version>` of its source. A replica never replicates onward.
pub const REPLICA_OF: &str = "KeyturnReplicaOf";
/// The tags a mirror's copy never carries: the ones that ask keyturn to act on the object. A replica is
/// rotated and disabled through its source only (the plan also ignores them on a replica).
pub const NOT_COPIED_TO_REPLICAS: &[&str] = &[ROTATION, EXPIRED_ACTION];
/// When a near-expiry rotation may start, e.g. `Sat 02:00-04:00 UTC` (grammar in [`crate::window`]).
pub use crate::window::ROTATION_WINDOW_TAG as ROTATION_WINDOW;
/// Written on a canary version by the `test-event` handler: `pass <time>` or `fail:<check> <time>`.
pub const CANARY_RESULT: &str = "KeyturnCanaryResult";

/// The longest validity keyturn accepts (100 years); longer is surely a typo.
const MAX_VALIDITY_DAYS: u32 = 36_500;

/// A tag that is present but wrong, or missing where the opt-in needs it. Never retryable: the same tags
/// give the same answer until someone edits them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tag {tag}: {problem}")]
pub struct PolicyError {
    pub tag: &'static str,
    pub problem: String,
}

impl PolicyError {
    fn invalid(tag: &'static str, value: &str, expected: impl std::fmt::Display) -> Self {
        Self { tag, problem: format!("'{value}' is not valid; expected {expected}") }
    }
}

/// Whether, and by what, the object is rotated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// No opt-in (or an explicit `off`): keyturn only reports.
    NotOptedIn,
    /// A secret rotated by the named provider.
    Provider(String),
    /// A key or certificate rotated by Key Vault's own operation.
    Enabled,
}

/// Character classes a generated password draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Charset {
    pub lower: bool,
    pub upper: bool,
    pub digits: bool,
    pub symbols: bool,
}

impl Charset {
    pub const ALL: Self = Self { lower: true, upper: true, digits: true, symbols: true };

    pub(crate) fn count(self) -> usize {
        [self.lower, self.upper, self.digits, self.symbols].iter().filter(|c| **c).count()
    }
}

/// The shape of a generated value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueFormat {
    /// `length` characters drawn from `charset`, at least one from each class.
    Password { length: usize, charset: Charset },
    /// `length` characters of A-Z, a-z, 0-9.
    Alphanumeric { length: usize },
    /// `bytes` random bytes, standard base64 with padding.
    Base64 { bytes: usize },
    /// `bytes` random bytes, URL-safe base64 without padding.
    Base64Url { bytes: usize },
    /// `bytes` random bytes, lowercase hex.
    Hex { bytes: usize },
}

/// The default: a 32-character password of all four classes.
pub const DEFAULT_FORMAT: ValueFormat = ValueFormat::Password { length: 32, charset: Charset::ALL };

/// Everything the tags say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub rotation: Rotation,
    pub validity: Option<Duration>,
    pub credential_id: Option<String>,
    pub provider_address: Option<String>,
    pub format: ValueFormat,
}

/// A tag's value by case-insensitive name, trimmed.
pub fn tag<'t>(tags: &'t Tags, name: &str) -> Option<&'t str> {
    tags.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim())
}

impl Policy {
    /// Reads the policy of an object of `kind` from its tags.
    pub fn from_tags(kind: ObjectKind, tags: &Tags) -> Result<Self, PolicyError> {
        let rotation = match tag(tags, ROTATION) {
            None => Rotation::NotOptedIn,
            Some(v) if v.eq_ignore_ascii_case("off") => Rotation::NotOptedIn,
            Some(v) => match kind {
                ObjectKind::Secret => Rotation::Provider(v.to_ascii_lowercase()),
                ObjectKind::Key | ObjectKind::Certificate if v.eq_ignore_ascii_case("enabled") => Rotation::Enabled,
                _ => return Err(PolicyError::invalid(ROTATION, v, format!("'enabled' or 'off' for a {kind}"))),
            },
        };
        let validity = match tag(tags, VALIDITY_PERIOD_DAYS) {
            None => None,
            Some(v) => match v.parse::<u32>() {
                Ok(days) if (1..=MAX_VALIDITY_DAYS).contains(&days) => Some(Duration::days(days.into())),
                _ => {
                    return Err(PolicyError::invalid(
                        VALIDITY_PERIOD_DAYS,
                        v,
                        format!("a whole number of days from 1 to {MAX_VALIDITY_DAYS}"),
                    ));
                }
            },
        };
        Ok(Self {
            rotation,
            validity,
            credential_id: tag(tags, CREDENTIAL_ID).map(str::to_owned),
            provider_address: tag(tags, PROVIDER_ADDRESS).map(str::to_owned),
            format: value_format(tags)?,
        })
    }

    /// The validity a rotation needs: a new secret version without an expiry would never raise another
    /// near-expiry event, and rotation would silently stop.
    pub fn required_validity(&self) -> Result<Duration, PolicyError> {
        self.validity.ok_or_else(|| PolicyError {
            tag: VALIDITY_PERIOD_DAYS,
            problem: "is missing; a rotated secret needs it to set its next expiry (e.g. 60)".to_owned(),
        })
    }
}

fn value_format(tags: &Tags) -> Result<ValueFormat, PolicyError> {
    let format = tag(tags, FORMAT).unwrap_or("password").to_ascii_lowercase();
    let length = |default: usize, min: usize, unit: &str| -> Result<usize, PolicyError> {
        match tag(tags, LENGTH) {
            None => Ok(default),
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (min..=4096).contains(&n) => Ok(n),
                _ => Err(PolicyError::invalid(LENGTH, v, format!("a whole number of {unit} from {min} to 4096"))),
            },
        }
    };
    let charset_given = tag(tags, CHARSET);
    if charset_given.is_some() && format != "password" {
        return Err(PolicyError {
            tag: CHARSET,
            problem: format!("applies to KeyturnFormat=password only, not '{format}'"),
        });
    }
    Ok(match format.as_str() {
        "password" => {
            let charset = match charset_given {
                None => Charset::ALL,
                Some(v) => charset(v)?,
            };
            let length = length(32, 8, "characters")?;
            ValueFormat::Password { length: length.max(charset.count()), charset }
        }
        "alphanumeric" => ValueFormat::Alphanumeric { length: length(32, 8, "characters")? },
        "base64" => ValueFormat::Base64 { bytes: length(32, 16, "bytes")? },
        "base64url" => ValueFormat::Base64Url { bytes: length(32, 16, "bytes")? },
        "hex" => ValueFormat::Hex { bytes: length(32, 16, "bytes")? },
        _ => {
            return Err(PolicyError::invalid(FORMAT, &format, "one of password, alphanumeric, base64, base64url, hex"));
        }
    })
}

fn charset(value: &str) -> Result<Charset, PolicyError> {
    let mut set = Charset { lower: false, upper: false, digits: false, symbols: false };
    for class in value.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        match class.to_ascii_lowercase().as_str() {
            "lower" => set.lower = true,
            "upper" => set.upper = true,
            "digits" => set.digits = true,
            "symbols" => set.symbols = true,
            _ => {
                return Err(PolicyError::invalid(
                    CHARSET,
                    value,
                    "a comma-separated list of lower, upper, digits, symbols",
                ));
            }
        }
    }
    if set.count() == 0 {
        return Err(PolicyError::invalid(CHARSET, value, "at least one of lower, upper, digits, symbols"));
    }
    Ok(set)
}

/// What the `expired` handler does beyond notifying, by [`EXPIRED_ACTION`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiredAction {
    /// No tag (or `notify`): notify only.
    Notify,
    /// An emergency rotation through the engine (which still needs the object's rotation policy).
    Rotate,
    /// Disable the expired version (never any other).
    Disable,
}

impl ExpiredAction {
    /// Reads [`EXPIRED_ACTION`]; a value other than `notify`, `rotate` or `disable` is an error, never a
    /// guess: nothing destructive happens without an explicit opt-in.
    pub fn from_tags(tags: &Tags) -> Result<Self, PolicyError> {
        match tag(tags, EXPIRED_ACTION).map(str::to_ascii_lowercase).as_deref() {
            None | Some("notify") => Ok(Self::Notify),
            Some("rotate") => Ok(Self::Rotate),
            Some("disable") => Ok(Self::Disable),
            Some(_) => Err(PolicyError::invalid(
                EXPIRED_ACTION,
                tag(tags, EXPIRED_ACTION).unwrap_or_default(),
                "one of rotate, disable, notify",
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Notify => "notify",
            Self::Rotate => "rotate",
            Self::Disable => "disable",
        }
    }
}

/// The vaults [`MIRROR`] names, lowercase, without duplicates, in the order given; empty when absent.
pub fn mirrors(tags: &Tags) -> Result<Vec<String>, PolicyError> {
    let Some(value) = tag(tags, MIRROR) else { return Ok(Vec::new()) };
    let mut vaults: Vec<String> = Vec::new();
    for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if !keyturn_config::vaults::is_object_name(name) || name.len() > 24 {
            return Err(PolicyError::invalid(MIRROR, value, "a comma-separated list of vault names"));
        }
        let name = name.to_ascii_lowercase();
        if !vaults.contains(&name) {
            vaults.push(name);
        }
    }
    Ok(vaults)
}

/// The source a replica was copied from ([`REPLICA_OF`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaOf {
    pub vault: String,
    pub name: String,
    pub version: String,
}

impl ReplicaOf {
    /// Reads [`REPLICA_OF`]; `None` when the object is not a replica. A malformed value still marks a
    /// replica (it must not replicate onward), so it is kept whole in `name` with empty vault and version.
    pub fn from_tags(tags: &Tags) -> Option<Self> {
        let value = tag(tags, REPLICA_OF)?;
        let mut parts = value.splitn(3, '/');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(vault), Some(name), Some(version))
                if !vault.is_empty() && !name.is_empty() && !version.is_empty() =>
            {
                Some(Self { vault: vault.to_owned(), name: name.to_owned(), version: version.to_owned() })
            }
            _ => Some(Self { vault: String::new(), name: value.to_owned(), version: String::new() }),
        }
    }

    /// Whether this replica was copied from exactly `vault/name/version` (Key Vault names are case-insensitive).
    pub fn is_copy_of(&self, vault: &str, name: &str, version: &str) -> bool {
        // A malformed tag (empty vault) is a replica of nothing in particular: never "already copied".
        !self.vault.is_empty()
            && self.vault.eq_ignore_ascii_case(vault)
            && self.name.eq_ignore_ascii_case(name)
            && self.version.eq_ignore_ascii_case(version)
    }
}

impl std::fmt::Display for ReplicaOf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.vault, self.name, self.version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> Tags {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn no_opt_in_means_not_rotated_whatever_else_is_there() {
        let policy =
            Policy::from_tags(ObjectKind::Secret, &tags(&[("ValidityPeriodDays", "60"), ("CredentialId", "key1")]))
                .unwrap();
        assert_eq!(policy.rotation, Rotation::NotOptedIn);
        assert_eq!(policy.credential_id.as_deref(), Some("key1"));
        let off = Policy::from_tags(ObjectKind::Key, &tags(&[("KeyturnRotation", "OFF")])).unwrap();
        assert_eq!(off.rotation, Rotation::NotOptedIn);
    }

    #[test]
    fn every_tag_is_read_case_insensitively() {
        let policy = Policy::from_tags(
            ObjectKind::Secret,
            &tags(&[
                ("keyturnrotation", "Generated"),
                ("validityperioddays", " 90 "),
                ("CREDENTIALID", "app-login"),
                ("ProviderAddress", "/subscriptions/s/resourceGroups/r/providers/Microsoft.Sql/servers/db"),
                ("KeyturnFormat", "password"),
                ("KeyturnLength", "40"),
                ("KeyturnCharset", "lower, digits"),
            ]),
        )
        .unwrap();
        assert_eq!(policy.rotation, Rotation::Provider("generated".into()));
        assert_eq!(policy.validity, Some(Duration::days(90)));
        assert_eq!(policy.credential_id.as_deref(), Some("app-login"));
        assert!(policy.provider_address.unwrap().ends_with("/servers/db"));
        assert_eq!(
            policy.format,
            ValueFormat::Password {
                length: 40,
                charset: Charset { lower: true, upper: false, digits: true, symbols: false }
            }
        );
    }

    #[test]
    fn formats_and_their_defaults() {
        let format = |pairs: &[(&str, &str)]| Policy::from_tags(ObjectKind::Secret, &tags(pairs)).unwrap().format;
        assert_eq!(format(&[]), DEFAULT_FORMAT);
        assert_eq!(format(&[("KeyturnFormat", "base64")]), ValueFormat::Base64 { bytes: 32 });
        assert_eq!(
            format(&[("KeyturnFormat", "BASE64URL"), ("KeyturnLength", "64")]),
            ValueFormat::Base64Url { bytes: 64 }
        );
        assert_eq!(format(&[("KeyturnFormat", "hex"), ("KeyturnLength", "16")]), ValueFormat::Hex { bytes: 16 });
        assert_eq!(
            format(&[("KeyturnFormat", "alphanumeric"), ("KeyturnLength", "8")]),
            ValueFormat::Alphanumeric { length: 8 }
        );
    }

    #[test]
    fn keys_and_certificates_opt_in_with_enabled_only() {
        for kind in [ObjectKind::Key, ObjectKind::Certificate] {
            assert_eq!(
                Policy::from_tags(kind, &tags(&[("KeyturnRotation", "enabled")])).unwrap().rotation,
                Rotation::Enabled
            );
            let error = Policy::from_tags(kind, &tags(&[("KeyturnRotation", "generated")])).unwrap_err();
            assert_eq!(error.tag, "KeyturnRotation");
            assert!(error.problem.contains("'enabled' or 'off'"), "{error}");
        }
    }

    #[test]
    fn bad_values_are_named_with_what_would_be_valid() {
        for (pairs, tag, expected) in [
            (
                &[("ValidityPeriodDays", "sixty")][..],
                "ValidityPeriodDays",
                "'sixty' is not valid; expected a whole number of days from 1 to 36500",
            ),
            (&[("ValidityPeriodDays", "0")][..], "ValidityPeriodDays", "from 1 to 36500"),
            (
                &[("KeyturnFormat", "uuid")][..],
                "KeyturnFormat",
                "one of password, alphanumeric, base64, base64url, hex",
            ),
            (&[("KeyturnLength", "4")][..], "KeyturnLength", "characters from 8 to 4096"),
            (&[("KeyturnFormat", "hex"), ("KeyturnLength", "8")][..], "KeyturnLength", "bytes from 16 to 4096"),
            (&[("KeyturnCharset", "emoji")][..], "KeyturnCharset", "lower, upper, digits, symbols"),
            (&[("KeyturnCharset", " , ")][..], "KeyturnCharset", "at least one of"),
            (
                &[("KeyturnFormat", "hex"), ("KeyturnCharset", "lower")][..],
                "KeyturnCharset",
                "applies to KeyturnFormat=password only",
            ),
        ] {
            let error = Policy::from_tags(ObjectKind::Secret, &tags(pairs)).unwrap_err();
            assert_eq!(error.tag, tag, "{pairs:?}");
            assert!(error.to_string().contains(expected), "{pairs:?}: {error}");
        }
    }

    #[test]
    fn rotating_a_secret_requires_a_validity() {
        let policy = Policy::from_tags(ObjectKind::Secret, &tags(&[("KeyturnRotation", "generated")])).unwrap();
        let error = policy.required_validity().unwrap_err();
        assert_eq!(error.tag, "ValidityPeriodDays");
        assert!(error.to_string().contains("is missing"));
    }

    #[test]
    fn the_expired_action_is_opt_in_and_never_guessed() {
        assert_eq!(ExpiredAction::from_tags(&tags(&[])).unwrap(), ExpiredAction::Notify);
        assert_eq!(
            ExpiredAction::from_tags(&tags(&[("keyturnexpiredaction", " Rotate ")])).unwrap(),
            ExpiredAction::Rotate
        );
        assert_eq!(
            ExpiredAction::from_tags(&tags(&[("KeyturnExpiredAction", "disable")])).unwrap(),
            ExpiredAction::Disable
        );
        let error = ExpiredAction::from_tags(&tags(&[("KeyturnExpiredAction", "delete")])).unwrap_err();
        assert_eq!(error.tag, "KeyturnExpiredAction");
        assert!(error.to_string().contains("one of rotate, disable, notify"), "{error}");
    }

    #[test]
    fn mirrors_are_a_checked_list_of_vault_names() {
        assert!(mirrors(&tags(&[])).unwrap().is_empty());
        assert_eq!(mirrors(&tags(&[("KeyturnMirror", "kv-Two, kv-three,kv-two,")])).unwrap(), ["kv-two", "kv-three"]);
        assert_eq!(mirrors(&tags(&[("KeyturnMirror", "kv/two")])).unwrap_err().tag, "KeyturnMirror");
    }

    #[test]
    fn a_replica_names_its_source_and_a_malformed_one_is_still_a_replica() {
        let replica = ReplicaOf::from_tags(&tags(&[("KeyturnReplicaOf", "kv-one/db/abc123")])).unwrap();
        assert!(replica.is_copy_of("KV-ONE", "db", "ABC123"));
        assert!(!replica.is_copy_of("kv-one", "db", "other"));
        assert_eq!(replica.to_string(), "kv-one/db/abc123");
        let odd = ReplicaOf::from_tags(&tags(&[("KeyturnReplicaOf", "garbage")])).unwrap();
        assert!(!odd.is_copy_of("", "garbage", ""));
        assert!(ReplicaOf::from_tags(&tags(&[])).is_none());
    }
}
