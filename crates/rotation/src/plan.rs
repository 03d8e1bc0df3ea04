//! [`plan`]: the one decision table of rotation, pure (no I/O): what keyturn does with an object, given what
//! is known about it. The engine carries a plan out; `keyturn check` prints it; a scheduled sweep asks it
//! "what will keyturn do with this object, and when".
//!
//! | facts | plan |
//! |---|---|
//! | the event's version is not the latest | [`Plan::AlreadyRotated`] |
//! | the latest version carries `KeyturnReplicaOf` (a mirror's copy) | [`Plan::Replica`] |
//! | a policy tag is present but wrong (a value, a missing validity, an unknown provider) | `Err(PolicyError)` |
//! | no opt-in (`KeyturnRotation` absent or `off`) | [`Plan::NotOptedIn`] |
//! | a secret, opted in | [`Plan::RotateSecret`] with its provider and validity |
//! | a key or certificate, opted in, its native policy not read yet | [`Plan::ReadNativePolicy`] |
//! | a key whose own rotation policy has a Rotate action | [`Plan::NativeRotation`] |
//! | any other opted-in key | [`Plan::RotateKey`] |
//! | a certificate whose policy has an AutoRenew action | [`Plan::NativeRotation`] |
//! | a certificate issued by `Self` or an integrated CA ([`INTEGRATED_CAS`]) | [`Plan::RenewCertificate`] |
//! | any other certificate (`Unknown`, a private CA) | [`Plan::ManualActionDue`] |
//!
//! When: the plan is carried out when the near-expiry event arrives, [`near_expiry_at`] the version's expiry,
//! unless [`window`], the table's last row, holds it back:
//!
//! | a plan that acts (rotate, renew), and | window decision |
//! |---|---|
//! | no `KeyturnRotationWindow`, or one open now | [`WindowDecision::Open`]: carry it out |
//! | near expiry, every window closed, the next opening before the expiry | [`WindowDecision::Deferred`] until it opens |
//! | near expiry, the next opening at or after the expiry | [`WindowDecision::Overridden`]: carry it out (waiting would let it expire) |
//! | expired ([`ExpiryStage::Expired`]), whatever the window says | never held back: [`WindowDecision::Open`], or `Overridden` when a window is closed |
//! | near expiry, a window tag that does not parse | `Err(PolicyError)` naming the part at fault |
//!
//! The native policies cost a vault call, so they are read only once the tags opt in: a caller plans with
//! [`Native::Unread`] first and reads them (with the issuer's provider, see [`issuer_to_look_up`]) when the
//! plan says [`Plan::ReadNativePolicy`].

use chrono::{DateTime, Duration, Utc};
use keyturn_events::ObjectKind;
use keyturn_vault::model::{CertificatePolicy, KeyRotationPolicy, Tags};

use crate::policy::{self, Policy, PolicyError, Rotation};
use crate::window::{Override, RotationWindows, WindowDecision};

/// How many days before a version's expiry Key Vault raises `*NearExpiry` for it (fixed for secrets and
/// certificates; a key's follows its rotation policy's Notify action, 30 days unless changed).
pub const NEAR_EXPIRY_LEAD_DAYS: i64 = 30;

/// When the near-expiry event of a version expiring at `expires` arrives: when its plan is carried out.
pub fn near_expiry_at(expires: DateTime<Utc>) -> DateTime<Utc> {
    expires - Duration::days(NEAR_EXPIRY_LEAD_DAYS)
}

/// Issuer providers Key Vault can request certificates from by itself (integrated CAs).
pub const INTEGRATED_CAS: &[&str] = &["DigiCert", "GlobalSign"];

/// What is known about the object: its kind, its latest version and that version's tags, and which version
/// the event is about.
#[derive(Debug, Clone, Copy)]
pub struct ObjectFacts<'a> {
    pub kind: ObjectKind,
    /// The version the event is about; `None` when planning ahead (a survey, a sweep): the event to come will
    /// be about the latest version.
    pub event_version: Option<&'a str>,
    /// The object's latest version.
    pub latest_version: &'a str,
    /// The latest version's tags.
    pub tags: &'a Tags,
}

/// Key Vault's own policy for the object, as far as the decision needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Native {
    /// Not read (yet).
    Unread,
    /// A key's rotation policy.
    Key(KeyRotationPolicy),
    /// A certificate's policy, and the provider behind its issuer when the issuer is one configured in the
    /// vault (`None` for `Self`, `Unknown`, or an issuer not looked up).
    Certificate { policy: CertificatePolicy, issuer_provider: Option<String> },
}

/// What keyturn does with the object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// The event's version is no longer the latest: a rotation already happened. Nothing to do.
    AlreadyRotated { event_version: String, latest: String },
    /// The object does not opt in: nothing is rotated; a person must act before it expires.
    NotOptedIn,
    /// A replica (`KeyturnReplicaOf`): its source is rotated and mirrored here; keyturn never rotates or
    /// disables a copy itself (for a shared credential, rotating the copy would kill the source's value).
    Replica { source: String },
    /// The object opts in, and its native policy decides the rest: read it and plan again.
    ReadNativePolicy,
    /// Key Vault's own policy rotates or renews it; keyturn does not double-rotate.
    NativeRotation { detail: String },
    /// keyturn cannot rotate it; a person must.
    ManualActionDue { reason: String },
    /// A new secret value from `provider`, valid for `validity`.
    RotateSecret { provider: String, validity: Duration },
    /// Key Vault's rotate operation.
    RotateKey,
    /// A new certificate version through its own policy, from `issuer`.
    RenewCertificate { issuer: String },
}

impl Plan {
    /// A short stable label, the same words as the engine's outcomes where they meet.
    pub fn label(&self) -> &'static str {
        match self {
            Self::AlreadyRotated { .. } => "already-rotated",
            Self::NotOptedIn => "not-opted-in",
            Self::Replica { .. } => "replica",
            Self::ReadNativePolicy => "read-native-policy",
            Self::NativeRotation { .. } => "native-rotation",
            Self::ManualActionDue { .. } => "manual-action-due",
            Self::RotateSecret { .. } => "rotate-secret",
            Self::RotateKey => "rotate-key",
            Self::RenewCertificate { .. } => "renew-certificate",
        }
    }
}

impl Plan {
    /// Whether carrying the plan out changes the vault (a rotation, a renewal): the plans a window may hold back.
    pub fn acts(&self) -> bool {
        matches!(self, Self::RotateSecret { .. } | Self::RotateKey | Self::RenewCertificate { .. })
    }
}

/// Why a plan is carried out now: what the version's expiry has come to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiryStage {
    /// The version nears its expiry (a `*NearExpiry` event, or the sweep repairing a missed one): a rotation
    /// waits for the object's window.
    NearExpiry,
    /// The version has expired (`KeyturnExpiredAction=rotate`): never held back by a window.
    Expired,
}

/// The window row of the decision table (module docs): whether `plan` may be carried out at `now`, given the
/// object's `KeyturnRotationWindow` (in `tags`) and its latest version's expiry.
pub fn window(
    plan: &Plan,
    tags: &Tags,
    expires: Option<DateTime<Utc>>,
    stage: ExpiryStage,
    now: DateTime<Utc>,
) -> Result<WindowDecision, PolicyError> {
    if !plan.acts() {
        return Ok(WindowDecision::Open);
    }
    let windows = match (RotationWindows::for_object(policy::tag(tags, policy::ROTATION_WINDOW)), stage) {
        (Ok(windows), _) => windows,
        // Not even a window its owner mistyped holds an expired object back.
        (Err(_), ExpiryStage::Expired) => return Ok(WindowDecision::Open),
        (Err(error), ExpiryStage::NearExpiry) => return Err(error.into()),
    };
    Ok(match (WindowDecision::decide(windows.as_ref(), expires, now), stage) {
        // The expired event is the authority here, whatever this process's clock says of the expiry.
        (WindowDecision::Deferred { .. }, ExpiryStage::Expired) => {
            WindowDecision::Overridden { reason: Override::Expired }
        }
        (decision, _) => decision,
    })
}

/// The decision for `object`, whose deployment offers `providers` (their `KeyturnRotation` names).
pub fn plan(object: &ObjectFacts<'_>, native: &Native, providers: &[&str]) -> Result<Plan, PolicyError> {
    if let Some(event_version) = object.event_version
        && !event_version.eq_ignore_ascii_case(object.latest_version)
    {
        return Ok(Plan::AlreadyRotated {
            event_version: event_version.to_owned(),
            latest: object.latest_version.to_owned(),
        });
    }
    // Before the policy: a replica carries its source's tags, which say nothing about what keyturn may do here.
    if let Some(source) = policy::ReplicaOf::from_tags(object.tags) {
        return Ok(Plan::Replica { source: source.to_string() });
    }
    let policy = Policy::from_tags(object.kind, object.tags)?;
    match (&policy.rotation, object.kind) {
        (Rotation::NotOptedIn, _) => Ok(Plan::NotOptedIn),
        (Rotation::Provider(provider), _) => {
            if !providers.contains(&provider.as_str()) {
                return Err(PolicyError {
                    tag: policy::ROTATION,
                    problem: format!(
                        "'{provider}' is not a provider this deployment has; expected one of {}",
                        providers.join(", ")
                    ),
                });
            }
            Ok(Plan::RotateSecret { provider: provider.clone(), validity: policy.required_validity()? })
        }
        (Rotation::Enabled, ObjectKind::Key) => match native {
            Native::Key(native) if native.rotates => {
                let trigger = native.trigger.as_deref().unwrap_or("no trigger stated");
                Ok(Plan::NativeRotation {
                    detail: format!("the key's rotation policy has a Rotate action ({trigger})"),
                })
            }
            Native::Key(_) => Ok(Plan::RotateKey),
            _ => Ok(Plan::ReadNativePolicy),
        },
        (Rotation::Enabled, _) => match native {
            Native::Certificate { policy, .. } if policy.auto_renew => Ok(Plan::NativeRotation {
                detail: "the certificate policy has an AutoRenew lifetime action".to_owned(),
            }),
            Native::Certificate { policy, issuer_provider } => {
                let issuer = policy.issuer.clone().unwrap_or_else(|| "Unknown".to_owned());
                let integrated = issuer_provider
                    .as_deref()
                    .is_some_and(|p| INTEGRATED_CAS.iter().any(|ca| ca.eq_ignore_ascii_case(p)));
                if issuer.eq_ignore_ascii_case("Self") || integrated {
                    Ok(Plan::RenewCertificate { issuer })
                } else {
                    Ok(Plan::ManualActionDue {
                        reason: format!(
                            "the certificate is issued by '{issuer}', which Key Vault cannot request from by itself; \
                             renew it with its CA and merge or import the new certificate"
                        ),
                    })
                }
            }
            _ => Ok(Plan::ReadNativePolicy),
        },
    }
}

/// The issuer whose provider a certificate's plan needs (an issuer configured in the vault); `None` when the
/// policy alone decides (`Self`, `Unknown`, no issuer, or an AutoRenew action).
pub fn issuer_to_look_up(policy: &CertificatePolicy) -> Option<&str> {
    let issuer = policy.issuer.as_deref()?;
    let decided = policy.auto_renew || ["self", "unknown", ""].contains(&issuer.to_ascii_lowercase().as_str());
    (!decided).then_some(issuer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> Tags {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn decide(
        kind: ObjectKind,
        event: Option<&str>,
        pairs: &[(&str, &str)],
        native: &Native,
    ) -> Result<Plan, PolicyError> {
        let tags = tags(pairs);
        plan(&ObjectFacts { kind, event_version: event, latest_version: "v1", tags: &tags }, native, &["generated"])
    }

    const OPTED_IN: &[(&str, &str)] = &[("KeyturnRotation", "generated"), ("ValidityPeriodDays", "60")];
    const ENABLED: &[(&str, &str)] = &[("KeyturnRotation", "enabled")];

    fn certificate(issuer: &str, auto_renew: bool, provider: Option<&str>) -> Native {
        Native::Certificate {
            policy: CertificatePolicy { issuer: Some(issuer.to_owned()), auto_renew },
            issuer_provider: provider.map(str::to_owned),
        }
    }

    #[test]
    fn a_later_version_means_already_rotated_before_anything_else() {
        let plan = decide(ObjectKind::Secret, Some("v0"), &[("KeyturnRotation", "nonsense")], &Native::Unread);
        assert_eq!(plan, Ok(Plan::AlreadyRotated { event_version: "v0".into(), latest: "v1".into() }));
        // Versions compare case-insensitively; planning ahead has no event version.
        assert_eq!(decide(ObjectKind::Secret, Some("V1"), OPTED_IN, &Native::Unread).unwrap().label(), "rotate-secret");
        assert_eq!(decide(ObjectKind::Secret, None, OPTED_IN, &Native::Unread).unwrap().label(), "rotate-secret");
    }

    #[test]
    fn every_row_for_secrets() {
        assert_eq!(decide(ObjectKind::Secret, None, &[], &Native::Unread), Ok(Plan::NotOptedIn));
        assert_eq!(
            decide(ObjectKind::Secret, None, &[("KeyturnRotation", "off")], &Native::Unread),
            Ok(Plan::NotOptedIn)
        );
        assert_eq!(
            decide(ObjectKind::Secret, None, OPTED_IN, &Native::Unread),
            Ok(Plan::RotateSecret { provider: "generated".into(), validity: Duration::days(60) })
        );
        let missing =
            decide(ObjectKind::Secret, None, &[("KeyturnRotation", "generated")], &Native::Unread).unwrap_err();
        assert_eq!(missing.tag, "ValidityPeriodDays");
        let unknown = decide(
            ObjectKind::Secret,
            None,
            &[("KeyturnRotation", "vaultwarden"), ("ValidityPeriodDays", "5")],
            &Native::Unread,
        )
        .unwrap_err();
        assert!(
            unknown
                .to_string()
                .contains("'vaultwarden' is not a provider this deployment has; expected one of generated"),
            "{unknown}"
        );
        let invalid = decide(ObjectKind::Secret, None, &[("ValidityPeriodDays", "soon")], &Native::Unread).unwrap_err();
        assert_eq!(invalid.tag, "ValidityPeriodDays");
    }

    #[test]
    fn a_replica_is_never_rotated_whatever_its_copied_tags_say() {
        let mut pairs = OPTED_IN.to_vec();
        pairs.push(("KeyturnReplicaOf", "kv-one/db/v9"));
        assert_eq!(
            decide(ObjectKind::Secret, Some("v1"), &pairs, &Native::Unread),
            Ok(Plan::Replica { source: "kv-one/db/v9".into() })
        );
        // Even with a policy tag that would be an error on a source.
        let odd = decide(
            ObjectKind::Secret,
            None,
            &[("KeyturnRotation", "nonsense"), ("KeyturnReplicaOf", "x")],
            &Native::Unread,
        );
        assert_eq!(odd.map(|p| p.label()), Ok("replica"));
    }

    #[test]
    fn every_row_for_keys() {
        assert_eq!(decide(ObjectKind::Key, None, &[], &Native::Unread), Ok(Plan::NotOptedIn));
        assert_eq!(decide(ObjectKind::Key, None, ENABLED, &Native::Unread), Ok(Plan::ReadNativePolicy));
        let manual = Native::Key(KeyRotationPolicy { rotates: false, trigger: None });
        assert_eq!(decide(ObjectKind::Key, None, ENABLED, &manual), Ok(Plan::RotateKey));
        let native = Native::Key(KeyRotationPolicy { rotates: true, trigger: Some("timeAfterCreate P90D".into()) });
        let Ok(Plan::NativeRotation { detail }) = decide(ObjectKind::Key, None, ENABLED, &native) else { panic!() };
        assert!(detail.contains("Rotate action (timeAfterCreate P90D)"), "{detail}");
        assert_eq!(
            decide(ObjectKind::Key, None, &[("KeyturnRotation", "generated")], &manual).unwrap_err().tag,
            "KeyturnRotation"
        );
    }

    #[test]
    fn every_row_for_certificates() {
        let cert = |native: &Native| decide(ObjectKind::Certificate, None, ENABLED, native).map(|p| p.label());
        assert_eq!(decide(ObjectKind::Certificate, None, &[], &Native::Unread), Ok(Plan::NotOptedIn));
        assert_eq!(cert(&Native::Unread), Ok("read-native-policy"));
        assert_eq!(cert(&certificate("Self", false, None)), Ok("renew-certificate"));
        assert_eq!(cert(&certificate("Self", true, None)), Ok("native-rotation"));
        assert_eq!(cert(&certificate("my-digicert", false, Some("DigiCert"))), Ok("renew-certificate"));
        assert_eq!(cert(&certificate("my-globalsign", false, Some("globalsign"))), Ok("renew-certificate"));
        assert_eq!(cert(&certificate("Unknown", false, None)), Ok("manual-action-due"));
        let Ok(Plan::ManualActionDue { reason }) =
            decide(ObjectKind::Certificate, None, ENABLED, &certificate("corp-ca", false, Some("OneCertV2-PrivateCA")))
        else {
            panic!()
        };
        assert!(reason.contains("issued by 'corp-ca'"), "{reason}");
    }

    /// The window row, one assertion per row of its table (the window's own grammar and arithmetic are tested
    /// in `window.rs`). 2026-12-02 is a Wednesday; the window opens on Saturday 2026-12-05 at 02:00 UTC.
    #[test]
    fn the_window_row_defers_only_a_near_expiry_rotation_that_can_wait() {
        let at = |text: &str| DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc);
        let wednesday = at("2026-12-02T10:00:00Z");
        let saturday = at("2026-12-05T02:00:00Z");
        let in_a_month = Some(at("2027-01-01T00:00:00Z"));
        let rotate = Plan::RotateSecret { provider: "generated".into(), validity: Duration::days(60) };
        let windowed = tags(&[("keyturnrotationwindow", "Sat 02:00-04:00 UTC")]);
        let row = |plan: &Plan, tags: &Tags, expires, stage, now| window(plan, tags, expires, stage, now);

        // No window, or one open now: carry it out.
        assert_eq!(row(&rotate, &tags(&[]), in_a_month, ExpiryStage::NearExpiry, wednesday), Ok(WindowDecision::Open));
        assert_eq!(row(&rotate, &windowed, in_a_month, ExpiryStage::NearExpiry, saturday), Ok(WindowDecision::Open));
        // Closed, and the next opening comes before the expiry: deferred until it opens (keys and renewals too).
        for plan in [rotate.clone(), Plan::RotateKey, Plan::RenewCertificate { issuer: "Self".into() }] {
            assert_eq!(
                row(&plan, &windowed, in_a_month, ExpiryStage::NearExpiry, wednesday),
                Ok(WindowDecision::Deferred { until: saturday }),
                "{plan:?}"
            );
        }
        // Closed, but the next opening is after the expiry: rotate now rather than let it expire.
        let friday = Some(at("2026-12-04T12:00:00Z"));
        assert_eq!(
            row(&rotate, &windowed, friday, ExpiryStage::NearExpiry, wednesday),
            Ok(WindowDecision::Overridden { reason: Override::NextWindowAfterExpiry { next_open: saturday } })
        );
        // Expired: never held back, even when this process's clock still sees the expiry ahead, and even by a
        // window tag that does not parse.
        assert_eq!(
            row(&rotate, &windowed, in_a_month, ExpiryStage::Expired, wednesday),
            Ok(WindowDecision::Overridden { reason: Override::Expired })
        );
        assert_eq!(row(&rotate, &windowed, in_a_month, ExpiryStage::Expired, saturday), Ok(WindowDecision::Open));
        let mistyped = tags(&[("KeyturnRotationWindow", "Sat 25:00-04:00")]);
        assert_eq!(row(&rotate, &mistyped, in_a_month, ExpiryStage::Expired, wednesday), Ok(WindowDecision::Open));
        // Near expiry, a window tag that does not parse is a policy error naming the part at fault.
        let error = row(&rotate, &mistyped, in_a_month, ExpiryStage::NearExpiry, wednesday).unwrap_err();
        assert_eq!(error.tag, "KeyturnRotationWindow");
        assert!(error.to_string().contains("'25:00' is not a time of day"), "{error}");
        // A plan that changes nothing has nothing to wait for, whatever the window says.
        for plan in [Plan::NotOptedIn, Plan::ManualActionDue { reason: "x".into() }, Plan::ReadNativePolicy] {
            assert!(!plan.acts());
            assert_eq!(row(&plan, &mistyped, in_a_month, ExpiryStage::NearExpiry, wednesday), Ok(WindowDecision::Open));
        }
    }

    #[test]
    fn the_plan_runs_thirty_days_before_expiry() {
        let expires = DateTime::from_timestamp(1_767_225_600, 0).unwrap();
        assert_eq!(expires - near_expiry_at(expires), Duration::days(30));
    }

    #[test]
    fn only_an_issuer_configured_in_the_vault_is_looked_up() {
        let policy =
            |issuer: Option<&str>, auto_renew| CertificatePolicy { issuer: issuer.map(str::to_owned), auto_renew };
        assert_eq!(issuer_to_look_up(&policy(Some("corp-ca"), false)), Some("corp-ca"));
        for (issuer, auto_renew) in
            [(Some("Self"), false), (Some("unknown"), false), (None, false), (Some("corp-ca"), true)]
        {
            assert_eq!(issuer_to_look_up(&policy(issuer, auto_renew)), None, "{issuer:?}");
        }
    }
}
