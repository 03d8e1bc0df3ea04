//! Forged `*Expired` events: the `expired` handler acts only on the vault's own word.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use keyturn_e2e::receivers::http_sink;
use keyturn_e2e::{
    Chain, EXPIRED_EVENT_TYPES, bounded, deployment_of, fast_retries, fast_stack, seed_rsa_key, seed_secret, tags,
    vault_event, workspace_binary,
};
use keyturn_events::KeyVaultEventType::{self, CertificateExpired, KeyExpired, SecretExpired};
use keyturn_host::Status;
use keyturn_local::keyvault::certs::{CertificatePolicy, IssuerParams, X509Props};
use keyturn_local::keyvault::store::AttributeInput;
use keyturn_local::stack::LocalStack;

use crate::{assert_refused, last_about, notifications_about, seed_for_a_year};

const VAULT: &str = "kv-one";
const DISABLE: (&str, &str) = ("KeyturnExpiredAction", "disable");

/// The `expired` binary behind the stand-in, notifying `channels`, with its actions turned on as
/// `expiredActionsEnabled` does in infra (the write roles come with it: the refusal must be keyturn's rule).
async fn expired_chain(stack: LocalStack, channels: String) -> Chain {
    let mut settings = stack.handler_env();
    settings.push(("KEYTURN_NOTIFY".to_owned(), channels));
    settings.extend(fast_retries());
    let mut deployment = deployment_of(&stack, &settings);
    deployment.flags.insert("expiredActionsEnabled".into());
    let binary = workspace_binary("expired");
    Chain::start_as(stack, "expired", &binary, &EXPIRED_EVENT_TYPES, settings, deployment).await
}

/// A self-signed certificate valid for a year, tagged `tags`; returns its version.
fn seed_certificate(stack: &LocalStack, name: &str, tags: BTreeMap<String, String>) -> String {
    let policy = CertificatePolicy {
        issuer: Some(IssuerParams { name: Some("Self".into()), ..IssuerParams::default() }),
        x509_props: Some(X509Props {
            subject: Some(format!("CN={name}.example.test")),
            validity_months: Some(12),
            ..X509Props::default()
        }),
        lifetime_actions: Some(Vec::new()),
        ..CertificatePolicy::default()
    };
    let store = stack.emulator().store();
    store.create_certificate(VAULT, name, Some(policy), AttributeInput::default(), tags).unwrap();
    // Issuance completes when the certificate is next read.
    store.get_certificate(VAULT, name, None).unwrap().version.version
}

/// An `*Expired` event for `version` of `name`, claiming it expired a minute ago, as anyone who can reach the
/// function endpoint (or publish to the topic) can send one.
fn forge(chain: &Chain, event_type: KeyVaultEventType, name: &str, version: &str) {
    let id = format!("{name}-forged");
    let claimed = Some(Utc::now() - TimeDelta::minutes(1));
    chain.stack.grid().publish(vault_event(event_type, &id, VAULT, name, version, claimed));
}

/// Whoever can forge an event sends `SecretExpired`, `KeyExpired` and `CertificateExpired` for versions a year
/// from expiry, each tagged `KeyturnExpiredAction=disable` (and a secret tagged `rotate`): nothing is disabled or
/// rotated; each event gets one permanent `rejected` answer and one warning, both saying the vault's clock says
/// the version has not expired. Beside it, a real expiry (the vault's clock moved past a secret's `exp`, the
/// emulator raising the event, as Key Vault does) still disables that secret, at critical severity.
#[tokio::test]
async fn a_forged_expired_event_for_a_version_that_has_not_expired_changes_nothing() {
    bounded(Duration::from_secs(120), async {
        let sink = http_sink().await;
        let stack = fast_stack(&[VAULT]).await;
        let chain = expired_chain(stack, sink.channels()).await;
        let stack = &chain.stack;
        let store = stack.emulator().store();

        let secret = seed_for_a_year(stack, VAULT, "forged-disable", "value-forged-disable-0001", &[DISABLE]);
        let rotate =
            [("KeyturnExpiredAction", "rotate"), ("KeyturnRotation", "generated"), ("ValidityPeriodDays", "60")];
        let rotated = seed_for_a_year(stack, VAULT, "forged-rotate", "value-forged-rotate-0002", &rotate);
        let key = seed_rsa_key(stack, VAULT, "forged-key", 365, tags(&[DISABLE]));
        let certificate = seed_certificate(stack, "forged-cert", tags(&[DISABLE]));
        let real = seed_secret(stack, VAULT, "really-expired", "value-really-expired-0003", 1, tags(&[DISABLE]));

        forge(&chain, SecretExpired, "forged-disable", &secret);
        forge(&chain, SecretExpired, "forged-rotate", &rotated);
        forge(&chain, KeyExpired, "forged-key", &key);
        forge(&chain, CertificateExpired, "forged-cert", &certificate);
        chain.settle(4, Duration::from_secs(60)).await;

        // Nothing changed: every version is enabled, and no new version was made.
        // Read through the listing: the emulator (like Key Vault) refuses to get a disabled version.
        for name in ["forged-disable", "forged-rotate"] {
            let versions = store.list_secret_versions(VAULT, name).unwrap();
            assert!(versions.iter().all(|view| view.version.attributes.enabled), "{name} was disabled");
        }
        assert_eq!(store.list_secret_versions(VAULT, "forged-rotate").unwrap().len(), 1, "no emergency rotation");
        assert!(store.get_key(VAULT, "forged-key", None).unwrap().version.attributes.enabled);
        assert!(store.get_certificate(VAULT, "forged-cert", None).unwrap().version.attributes.enabled);
        // A permanent, clear refusal with a warning, for each.
        for (name, version, action) in [
            ("forged-disable", &secret, "disable"),
            ("forged-rotate", &rotated, "rotate"),
            ("forged-key", &key, "disable"),
            ("forged-cert", &certificate, "disable"),
        ] {
            let not_expired = format!("the vault says version {version} has not expired: it expires ");
            let opt_in = format!("KeyturnExpiredAction={action}");
            assert_refused(&chain, &sink, VAULT, name, &[&not_expired, "the vault's clock reads", &opt_in]);
            assert_eq!(last_about(&chain, VAULT, name).action.as_deref(), Some("not-expired"));
        }

        // The legitimate path beside it: two days on by the vault's clock, the real expiry is acted on.
        stack.emulator().clock().advance(TimeDelta::days(2).to_std().unwrap());
        chain.settle(5, Duration::from_secs(60)).await;
        let disabled = last_about(&chain, VAULT, "really-expired");
        assert_eq!((disabled.status, disabled.action.as_deref()), (Status::Done, Some("disabled")), "{disabled:#?}");
        let versions = store.list_secret_versions(VAULT, "really-expired").unwrap();
        assert!(versions.iter().all(|view| view.version.version == real && !view.version.attributes.enabled));
        let critical = notifications_about(&sink, VAULT, "really-expired");
        assert_eq!(critical.len(), 1, "{critical:#?}");
        assert_eq!(critical[0]["severity"], "critical");

        chain.assert_no_secret_leaked(&[VAULT], sink.bodies());
        chain.shutdown().await;
    })
    .await;
}
