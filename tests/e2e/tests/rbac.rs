//! Issue 14's "must withstand" for RBAC, end to end: each real handler binary runs behind the Functions host
//! stand-in under its own managed identity holding exactly its grants from infra/roles.json. With those grants
//! each action succeeds; with the one role that action needs removed, the handler answers a permanent
//! (`rejected`) outcome whose message names that role, and the vault is left as it was. An identity cannot read
//! what it holds no role for, even when it calls the emulator directly.

// Helpers outside #[test] functions unwrap too: a panic there is a failed test with a line number.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::TimeDelta;
use keyturn_e2e::receivers::{HttpSink, http_sink};
use keyturn_e2e::{
    Chain, EXPIRED_EVENT_TYPES, NEAR_EXPIRY_EVENT_TYPES, NEW_VERSION_EVENT_TYPES, bounded, deployment_of, fast_retries,
    fast_stack, seed_rsa_key, seed_secret, tags, workspace_binary,
};
use keyturn_events::event::TEST_EVENT_TYPE;
use keyturn_host::{Outcome, Status};
use keyturn_local::identity::ManagedIdentity;
use keyturn_local::keyvault::StoredKind;
use keyturn_local::keyvault::certs::{CertificatePolicy, IssuerParams, X509Props};
use keyturn_local::keyvault::store::AttributeInput;
use keyturn_local::rbac::Scope;
use keyturn_local::roles::Deployment;
use keyturn_local::stack::LocalStack;

const VAULT: &str = "kv-one";
const MIRROR: &str = "kv-dr";
const CANARY: &str = "keyturn-canary";
/// Every test here: a handler that has not answered by then is hung.
const LIMIT: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------------------------------------------
// Shared setup.

/// One handler to run: which, what it subscribes to, its settings on top of the stack's, and how its deployment
/// differs from what its settings say.
struct Handler {
    function: &'static str,
    event_types: Vec<&'static str>,
    settings: Vec<(String, String)>,
    adjust: fn(&mut Deployment),
}

impl Handler {
    fn new(function: &'static str, event_types: &[&'static str], stack: &LocalStack, sink: &HttpSink) -> Self {
        let mut settings = stack.handler_env();
        settings.extend(fast_retries());
        settings.push(("KEYTURN_NOTIFY".to_owned(), sink.channels()));
        Handler { function, event_types: event_types.to_vec(), settings, adjust: |_| {} }
    }

    fn setting(mut self, name: &str, value: &str) -> Self {
        self.settings.retain(|(key, _)| key != name);
        self.settings.push((name.to_owned(), value.to_owned()));
        self
    }

    fn adjust(mut self, adjust: fn(&mut Deployment)) -> Self {
        self.adjust = adjust;
        self
    }

    /// Starts the handler under its own identity; then, when `revoke` names one, removes that grant (role, scope)
    /// from it before anything happens in the vault.
    async fn start(self, stack: LocalStack, revoke: Option<(&str, Scope)>) -> Chain {
        let mut deployment = deployment_of(&stack, &self.settings);
        (self.adjust)(&mut deployment);
        let binary = workspace_binary(self.function);
        let chain = Chain::start_as(stack, self.function, &binary, &self.event_types, self.settings, deployment).await;
        if let Some((role, scope)) = revoke {
            let identity = identity_of(&chain.stack, self.function);
            let assignments = chain.stack.emulator().assignments();
            let held = assignments.of(&identity.object_id);
            let grant = held
                .iter()
                .find(|grant| grant.role.name == role && grant.scope == scope)
                .unwrap_or_else(|| panic!("{} does not hold {role} at {scope:?}: {held:#?}", self.function));
            assert!(assignments.unassign(&identity.object_id, grant.role, &scope));
        }
        chain
    }
}

/// The identity the chain made for `function` (`keyturn-<function>`).
fn identity_of(stack: &LocalStack, function: &str) -> ManagedIdentity {
    let name = format!("keyturn-{function}");
    let all = stack.emulator().identities().list();
    let mut found: Vec<ManagedIdentity> = all.iter().filter(|identity| identity.name == name).cloned().collect();
    assert_eq!(found.len(), 1, "identities named {name}: {all:#?}");
    found.remove(0)
}

fn vault_scope() -> Scope {
    Scope::vault(VAULT)
}

/// The typed outcome of every invocation the handler answered, oldest first.
fn outcomes(chain: &Chain) -> Vec<Outcome> {
    chain.host.invocations().into_iter().filter_map(|record| record.result.ok()?.outcome()).collect()
}

/// The one outcome about `name` in the watched vault (a mirror's copy has its own event).
fn only_outcome_about(chain: &Chain, name: &str) -> Outcome {
    let about: Vec<Outcome> = outcomes(chain)
        .into_iter()
        // A refusal before the object was read carries no object: its message names it.
        .filter(|outcome| {
            outcome.object.as_ref().map_or_else(
                || outcome.message.contains(&format!("{VAULT}/{name}:")),
                |object| (object.vault(), object.name()) == (VAULT, name),
            )
        })
        .collect();
    let [outcome] = &about[..] else { panic!("outcomes about {name}: {:#?}", outcomes(chain)) };
    outcome.clone()
}

/// The outcome was done with `action`.
fn assert_done(outcome: &Outcome, action: &str) {
    assert_eq!((outcome.status, outcome.action.as_deref()), (Status::Done, Some(action)), "{outcome:#?}");
}

/// The outcome is permanent (`rejected`: Event Grid does not retry it) and its message names `role`.
fn assert_refused_naming(outcome: &Outcome, role: &str) {
    assert_eq!(outcome.status, Status::Rejected, "{outcome:#?}");
    let message = &outcome.message;
    assert!(message.contains("missing role") && message.contains(role), "the message does not name {role}: {message}");
}

fn secret_versions(stack: &LocalStack, vault: &str, name: &str) -> usize {
    stack.emulator().store().list_secret_versions(vault, name).map(|versions| versions.len()).unwrap_or(0)
}

fn advance(stack: &LocalStack, days: i64) {
    stack.emulator().clock().advance(TimeDelta::days(days).to_std().unwrap());
}

// ---------------------------------------------------------------------------------------------------------------
// near-expiry: secret rotation, key rotation, certificate renewal.

fn near_expiry(stack: &LocalStack, sink: &HttpSink) -> Handler {
    Handler::new("near-expiry", &NEAR_EXPIRY_EVENT_TYPES, stack, sink)
}

/// A generated secret 31 days from expiry rotates a day on with near-expiry's grants, and is refused naming
/// Key Vault Secrets Officer without it.
async fn secret_rotation(revoke: Option<(&str, Scope)>) -> (Chain, Outcome) {
    let sink = http_sink().await;
    let stack = fast_stack(&[VAULT]).await;
    let policy = tags(&[("KeyturnRotation", "generated"), ("ValidityPeriodDays", "60")]);
    seed_secret(&stack, VAULT, "db-password", "seeded-db-password-0001", 31, policy);
    let chain = near_expiry(&stack, &sink).start(stack, revoke).await;
    advance(&chain.stack, 1);
    chain.settle(1, Duration::from_secs(60)).await;
    let outcome = only_outcome_about(&chain, "db-password");
    (chain, outcome)
}

#[tokio::test]
async fn near_expiry_rotates_a_secret_with_its_roles_and_not_without_secrets_officer() {
    bounded(LIMIT, async {
        let (chain, outcome) = secret_rotation(None).await;
        assert_done(&outcome, "rotated");
        assert_eq!(secret_versions(&chain.stack, VAULT, "db-password"), 2);
        chain.shutdown().await;

        let (chain, outcome) = secret_rotation(Some(("Key Vault Secrets Officer", vault_scope()))).await;
        assert_refused_naming(&outcome, "Key Vault Secrets Officer");
        assert_eq!(secret_versions(&chain.stack, VAULT, "db-password"), 1, "nothing changed in the vault");
        chain.shutdown().await;
    })
    .await;
}

async fn key_rotation(revoke: Option<(&str, Scope)>) -> (Chain, Outcome) {
    let sink = http_sink().await;
    let stack = fast_stack(&[VAULT]).await;
    seed_rsa_key(&stack, VAULT, "signing-key", 31, tags(&[("KeyturnRotation", "enabled")]));
    let chain = near_expiry(&stack, &sink).start(stack, revoke).await;
    advance(&chain.stack, 1);
    chain.settle(1, Duration::from_secs(60)).await;
    let outcome = only_outcome_about(&chain, "signing-key");
    (chain, outcome)
}

#[tokio::test]
async fn near_expiry_rotates_a_key_with_its_roles_and_not_without_crypto_officer() {
    bounded(LIMIT, async {
        let (chain, outcome) = key_rotation(None).await;
        assert_done(&outcome, "rotated");
        assert_eq!(chain.stack.emulator().store().list_key_versions(VAULT, "signing-key").unwrap().len(), 2);
        chain.shutdown().await;

        let (chain, outcome) = key_rotation(Some(("Key Vault Crypto Officer", vault_scope()))).await;
        assert_refused_naming(&outcome, "Key Vault Crypto Officer");
        assert_eq!(chain.stack.emulator().store().list_key_versions(VAULT, "signing-key").unwrap().len(), 1);
        chain.shutdown().await;
    })
    .await;
}

async fn certificate_renewal(revoke: Option<(&str, Scope)>) -> (Chain, Outcome) {
    let sink = http_sink().await;
    let stack = fast_stack(&[VAULT]).await;
    let store = stack.emulator().store();
    let policy = CertificatePolicy {
        issuer: Some(IssuerParams { name: Some("Self".into()), ..IssuerParams::default() }),
        x509_props: Some(X509Props {
            subject: Some("CN=api.example.test".into()),
            validity_months: Some(12),
            ..X509Props::default()
        }),
        lifetime_actions: Some(Vec::new()),
        ..CertificatePolicy::default()
    };
    let enabled = tags(&[("KeyturnRotation", "enabled")]);
    store.create_certificate(VAULT, "tls-cert", Some(policy), AttributeInput::default(), enabled).unwrap();
    // Issuance completes when the certificate is next read.
    store.get_certificate(VAULT, "tls-cert", None).unwrap();
    let chain = near_expiry(&stack, &sink).start(stack, revoke).await;
    // Eleven months on, the certificate is 30 days from expiry.
    advance(&chain.stack, 340);
    chain.settle(1, Duration::from_secs(60)).await;
    let outcome = only_outcome_about(&chain, "tls-cert");
    (chain, outcome)
}

fn certificate_versions(stack: &LocalStack) -> usize {
    stack.emulator().store().list_certificate_versions(VAULT, "tls-cert").unwrap().len()
}

#[tokio::test]
async fn near_expiry_renews_a_certificate_with_its_roles_and_not_without_certificates_officer() {
    bounded(LIMIT, async {
        let (chain, outcome) = certificate_renewal(None).await;
        assert_done(&outcome, "renewal-started");
        assert_eq!(certificate_versions(&chain.stack), 2, "the renewal issued a new version");
        chain.shutdown().await;

        let (chain, outcome) = certificate_renewal(Some(("Key Vault Certificates Officer", vault_scope()))).await;
        assert_refused_naming(&outcome, "Key Vault Certificates Officer");
        assert_eq!(certificate_versions(&chain.stack), 1, "nothing changed in the vault");
        chain.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------------------------------
// expired: notify (read-only), and with expiredActionsEnabled its disable action.

fn expired(stack: &LocalStack, sink: &HttpSink) -> Handler {
    Handler::new("expired", &EXPIRED_EVENT_TYPES, stack, sink)
}

fn secret_enabled(stack: &LocalStack, name: &str) -> bool {
    // Through the listing: the emulator (like Key Vault) refuses to get a disabled version.
    let versions = stack.emulator().store().list_secret_versions(VAULT, name).unwrap();
    versions.iter().all(|view| view.version.attributes.enabled)
}

/// A secret expiring in a day, 2 days on, handled by `handler`.
async fn expiry(
    handler: fn(&LocalStack, &HttpSink) -> Handler,
    tags: BTreeMap<String, String>,
    revoke: Option<(&str, Scope)>,
) -> (Chain, HttpSink, Outcome) {
    let sink = http_sink().await;
    let stack = fast_stack(&[VAULT]).await;
    seed_secret(&stack, VAULT, "old-secret", "seeded-old-secret-0001", 1, tags);
    let chain = handler(&stack, &sink).start(stack, revoke).await;
    advance(&chain.stack, 2);
    chain.settle(1, Duration::from_secs(60)).await;
    let outcome = only_outcome_about(&chain, "old-secret");
    (chain, sink, outcome)
}

#[tokio::test]
async fn expired_notifies_read_only_with_its_roles_and_not_without_key_vault_reader() {
    bounded(LIMIT, async {
        let (chain, sink, outcome) = expiry(expired, BTreeMap::new(), None).await;
        assert_done(&outcome, "notified");
        assert_eq!(sink.accepted_on("/webhook").len(), 1, "{:#?}", sink.received());
        chain.shutdown().await;

        let (chain, sink, outcome) = expiry(expired, BTreeMap::new(), Some(("Key Vault Reader", vault_scope()))).await;
        assert_refused_naming(&outcome, "Key Vault Reader");
        assert!(secret_enabled(&chain.stack, "old-secret"));
        assert!(sink.accepted_on("/webhook").is_empty(), "{:#?}", sink.received());
        chain.shutdown().await;
    })
    .await;
}

fn expired_with_actions(stack: &LocalStack, sink: &HttpSink) -> Handler {
    expired(stack, sink).adjust(|deployment| {
        deployment.flags.insert("expiredActionsEnabled".into());
    })
}

#[tokio::test]
async fn expired_disables_with_its_action_roles_and_not_without_secrets_officer() {
    bounded(LIMIT, async {
        let disable = || tags(&[("KeyturnExpiredAction", "disable")]);
        let (chain, _sink, outcome) = expiry(expired_with_actions, disable(), None).await;
        assert_done(&outcome, "disabled");
        assert!(!secret_enabled(&chain.stack, "old-secret"));
        chain.shutdown().await;

        let revoke = Some(("Key Vault Secrets Officer", vault_scope()));
        let (chain, _sink, outcome) = expiry(expired_with_actions, disable(), revoke).await;
        assert_refused_naming(&outcome, "Key Vault Secrets Officer");
        assert!(secret_enabled(&chain.stack, "old-secret"), "nothing changed in the vault");
        chain.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn the_expired_identity_cannot_read_a_secret_value_even_calling_the_vault_directly() {
    bounded(LIMIT, async {
        let sink = http_sink().await;
        let stack = fast_stack(&[VAULT]).await;
        seed_secret(&stack, VAULT, "db-password", "seeded-db-password-0001", 30, BTreeMap::new());
        let chain = expired(&stack, &sink).start(stack, None).await;
        let identity = identity_of(&chain.stack, "expired");

        // A token for the expired handler's identity, from the identity endpoint as the handler gets one.
        let env = chain.stack.emulator().identity_env();
        let plain = keyturn_e2e::client();
        let token_url = format!(
            "{}?api-version=2019-08-01&resource=https%3A%2F%2Fvault.azure.net&client_id={}",
            env.endpoint, identity.client_id
        );
        let token: serde_json::Value = plain
            .get(token_url)
            .header("x-identity-header", &env.header)
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = token["access_token"].as_str().unwrap();

        let ca = reqwest::Certificate::from_pem(chain.stack.emulator().ca_pem().as_bytes()).unwrap();
        let vault = reqwest::Client::builder().no_proxy().add_root_certificate(ca).build().unwrap();
        let url = format!("{}/secrets/db-password?api-version=7.5", chain.stack.emulator().vault_url(VAULT).unwrap());
        let get = |url: String| vault.get(url).bearer_auth(token).send();

        // Key Vault Reader lists the secret's metadata...
        let listed =
            get(format!("{}/secrets?api-version=7.5", chain.stack.emulator().vault_url(VAULT).unwrap())).await.unwrap();
        assert_eq!(listed.status().as_u16(), 200);
        // ...but may not read its value.
        let response = get(url).await.unwrap();
        assert_eq!(response.status().as_u16(), 403);
        let body = response.text().await.unwrap();
        assert!(!body.contains("seeded-db-password-0001"), "{body}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["error"]["innererror"]["code"], "ForbiddenByRbac", "{body}");
        assert!(body.contains("Microsoft.KeyVault/vaults/secrets/getSecret/action"), "{body}");
        chain.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------------------------------
// new-version: mirror to a mirror vault.

fn new_version(stack: &LocalStack, sink: &HttpSink) -> Handler {
    let url = |vault: &str| format!("{vault}={}", stack.emulator().vault_url(vault).unwrap());
    Handler::new("new-version", &NEW_VERSION_EVENT_TYPES, stack, sink)
        .setting("KEYTURN_VAULTS", &url(VAULT))
        .setting("KEYTURN_MIRROR_VAULTS", &url(MIRROR))
}

async fn mirroring(revoke: Option<(&str, Scope)>) -> (Chain, Outcome) {
    let sink = http_sink().await;
    let stack = fast_stack(&[VAULT, MIRROR]).await;
    let chain = new_version(&stack, &sink).start(stack, revoke).await;
    seed_secret(&chain.stack, VAULT, "app-config", "value-app-config-0001", 90, tags(&[("KeyturnMirror", MIRROR)]));
    chain.settle(1, Duration::from_secs(60)).await;
    let outcome = only_outcome_about(&chain, "app-config");
    (chain, outcome)
}

#[tokio::test]
async fn new_version_mirrors_with_its_roles_and_not_without_secrets_officer_on_the_mirror() {
    bounded(LIMIT, async {
        let (chain, outcome) = mirroring(None).await;
        assert_done(&outcome, "mirrored");
        assert_eq!(secret_versions(&chain.stack, MIRROR, "app-config"), 1);
        chain.shutdown().await;

        let (chain, outcome) = mirroring(Some(("Key Vault Secrets Officer", Scope::vault(MIRROR)))).await;
        assert_refused_naming(&outcome, "Key Vault Secrets Officer");
        assert_eq!(secret_versions(&chain.stack, MIRROR, "app-config"), 0, "nothing written to the mirror");
        chain.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------------------------------
// test-event: the canary round trip with only its roles.

fn test_event(stack: &LocalStack, sink: &HttpSink) -> Handler {
    Handler::new("test-event", &["Microsoft.KeyVault.SecretNewVersionCreated", TEST_EVENT_TYPE], stack, sink)
        .setting("KEYTURN_CANARY_SECRET", CANARY)
}

fn canary_tag(stack: &LocalStack) -> Option<String> {
    let versions = stack.emulator().store().list_secret_versions(VAULT, CANARY).unwrap();
    versions.into_iter().find_map(|view| view.version.tags.get("KeyturnCanaryResult").cloned())
}

async fn canary(revoke: Option<(&str, Scope)>) -> (Chain, Outcome) {
    let sink = http_sink().await;
    let stack = fast_stack(&[VAULT]).await;
    let chain = test_event(&stack, &sink).start(stack, revoke).await;
    seed_secret(&chain.stack, VAULT, CANARY, "value-canary-0000001", 90, BTreeMap::new());
    chain.settle(1, Duration::from_secs(60)).await;
    let outcome = only_outcome_about(&chain, CANARY);
    (chain, outcome)
}

#[tokio::test]
async fn the_canary_round_trip_passes_with_only_test_event_roles_and_not_without_its_canary_grant() {
    bounded(LIMIT, async {
        let (chain, outcome) = canary(None).await;
        assert_done(&outcome, "pass");
        assert!(canary_tag(&chain.stack).is_some_and(|tag| tag.starts_with("pass ")), "{:?}", canary_tag(&chain.stack));
        chain.shutdown().await;

        let canary_scope = Scope::object(VAULT, StoredKind::Secret, CANARY);
        let (chain, outcome) = canary(Some(("Key Vault Secrets Officer", canary_scope))).await;
        assert_refused_naming(&outcome, "Key Vault Secrets Officer");
        assert_eq!(canary_tag(&chain.stack), None, "no result was recorded");
        assert_eq!(secret_versions(&chain.stack, VAULT, CANARY), 1);
        chain.shutdown().await;
    })
    .await;
}
