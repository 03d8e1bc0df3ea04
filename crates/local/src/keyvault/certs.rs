//! Certificates: self-signed issuance from a policy as an asynchronous operation, get, policy, versions, soft
//! delete; and their JSON.
//!
//! As in the service, creating a certificate answers 202 with an operation in progress; the new version (and
//! the key and secret of the same name and version that back it) appears when the operation completes, which
//! it does once the store's issuance delay has passed on the shared clock (zero by default: on the next look).

use super::crypto::{self, Curve, KeyMaterial, KeySpec};
use super::error::ServiceError;
use super::store::{
    AttributeInput, Attributes, CertData, CertExtra, Deleted, KeyData, SecretData, StoredKind, Vault, VaultStore,
    Version, apply_attributes, check_name, check_tags, new_version_id,
};
use super::wire::{AttributesIn, WireAttributes};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyUsagePurpose, OtherNameValue, SanType,
    SerialNumber,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;

const KIND: StoredKind = StoredKind::Certificate;
/// The secret content type the emulator issues. PKCS#12 is not produced (see `issue`).
pub const PEM_CONTENT_TYPE: &str = "application/x-pem-file";

/// A certificate policy in the service's wire shape (snake_case members, as the service uses).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CertificatePolicy {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_props: Option<KeyProps>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_props: Option<SecretProps>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x509_props: Option<X509Props>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifetime_actions: Option<Vec<CertLifetimeAction>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<IssuerParams>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attributes: Option<PolicyAttributes>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct KeyProps {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exportable: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kty: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_size: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reuse_key: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SecretProps {
    #[serde(rename = "contentType", skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct X509Props {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sans: Option<Sans>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ekus: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_usage: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validity_months: Option<u32>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Sans {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_names: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub emails: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upns: Option<Vec<String>>,
    #[serde(rename = "ipAddresses", skip_serializing_if = "Option::is_none")]
    pub ip_addresses: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uris: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CertLifetimeAction {
    pub trigger: CertTrigger,
    pub action: CertAction,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CertTrigger {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifetime_percentage: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub days_before_expiry: Option<u32>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CertAction {
    pub action_type: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IssuerParams {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cty: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_transparency: Option<bool>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PolicyAttributes {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated: Option<i64>,
}

/// A certificate operation (`/pending`) and, while it is in progress, what it will commit.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingCertificate {
    pub request_id: String,
    pub completes_at: i64,
    pub completed: bool,
    #[serde(with = "crypto::b64")]
    pub csr: Vec<u8>,
    pub issuer_name: String,
    pub staged: Option<Staged>,
}

/// A certificate version waiting for its operation to complete. Debug hides the key and secret.
#[derive(Clone, Serialize, Deserialize)]
pub struct Staged {
    pub version: String,
    pub cert: CertData,
    pub key: KeyMaterial,
    pub kty: String,
    pub secret_pem: String,
    pub attributes: Attributes,
    pub tags: BTreeMap<String, String>,
}

impl std::fmt::Debug for Staged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Staged")
            .field("version", &self.version)
            .field("kty", &self.kty)
            .field("secret_pem", &"****")
            .finish_non_exhaustive()
    }
}

/// A certificate version with its object's display name and policy.
#[derive(Debug, Clone)]
pub struct CertificateView {
    pub name: String,
    pub version: Version<CertData>,
    pub policy: CertificatePolicy,
}

/// Fills in the defaults the service applies to a policy and checks it can be issued here.
fn normalise_policy(mut policy: CertificatePolicy, now: i64) -> Result<CertificatePolicy, ServiceError> {
    let issuer = policy.issuer.get_or_insert_with(IssuerParams::default);
    let issuer_name = issuer.name.get_or_insert_with(|| "Self".into());
    if !issuer_name.eq_ignore_ascii_case("Self") {
        return Err(ServiceError::NotSupported(format!(
            "Issuer '{issuer_name}' is not available in the local emulator; only self-signed certificates (issuer 'Self') can be issued."
        )));
    }
    *issuer_name = "Self".into();
    let key = policy.key_props.get_or_insert_with(KeyProps::default);
    key.exportable.get_or_insert(true);
    key.reuse_key.get_or_insert(false);
    let kty = key.kty.get_or_insert_with(|| if key.crv.is_some() { "EC".into() } else { "RSA".into() });
    if kty.starts_with("RSA") {
        key.key_size.get_or_insert(2048);
    } else {
        key.crv.get_or_insert_with(|| "P-256".into());
    }
    policy
        .secret_props
        .get_or_insert_with(SecretProps::default)
        .content_type
        .get_or_insert_with(|| "application/x-pkcs12".into());
    let x509 = policy.x509_props.get_or_insert_with(X509Props::default);
    x509.validity_months.get_or_insert(12);
    x509.key_usage.get_or_insert_with(|| vec!["digitalSignature".into(), "keyEncipherment".into()]);
    x509.ekus.get_or_insert_with(|| vec!["1.3.6.1.5.5.7.3.1".into(), "1.3.6.1.5.5.7.3.2".into()]);
    let has_sans = x509.sans.as_ref().is_some_and(|s| {
        [&s.dns_names, &s.emails, &s.upns, &s.ip_addresses, &s.uris]
            .iter()
            .any(|l| l.as_ref().is_some_and(|l| !l.is_empty()))
    });
    if x509.subject.as_deref().is_none_or(str::is_empty) && !has_sans {
        return Err(ServiceError::BadParameter(
            "The certificate policy needs a subject or at least one subject alternative name.".into(),
        ));
    }
    policy.lifetime_actions.get_or_insert_with(|| {
        vec![CertLifetimeAction {
            trigger: CertTrigger { lifetime_percentage: Some(80), days_before_expiry: None },
            action: CertAction { action_type: "AutoRenew".into() },
        }]
    });
    let attrs = policy.attributes.get_or_insert_with(PolicyAttributes::default);
    attrs.enabled.get_or_insert(true);
    attrs.created.get_or_insert(now);
    attrs.updated = Some(now);
    Ok(policy)
}

fn key_spec(props: &KeyProps) -> Result<(String, KeySpec), ServiceError> {
    let kty = props.kty.clone().unwrap_or_else(|| "RSA".into());
    let spec = match kty.as_str() {
        "RSA" | "RSA-HSM" => KeySpec::Rsa(props.key_size.unwrap_or(2048)),
        "EC" | "EC-HSM" => {
            let name = props.crv.as_deref().unwrap_or("P-256");
            KeySpec::Ec(
                Curve::parse(name)
                    .ok_or_else(|| ServiceError::BadParameter(format!("Curve '{name}' is not valid.")))?,
            )
        }
        other => return Err(ServiceError::BadParameter(format!("Key type '{other}' cannot back a certificate."))),
    };
    Ok((kty, spec))
}

fn distinguished_name(subject: &str) -> Result<DistinguishedName, ServiceError> {
    let mut dn = DistinguishedName::new();
    for part in subject.split([',', ';']).map(str::trim).filter(|p| !p.is_empty()) {
        let (attr, value) = part.split_once('=').ok_or_else(|| {
            ServiceError::BadParameter(format!("The subject '{subject}' is not a distinguished name."))
        })?;
        let ty = match attr.trim().to_ascii_uppercase().as_str() {
            "CN" => DnType::CommonName,
            "O" => DnType::OrganizationName,
            "OU" => DnType::OrganizationalUnitName,
            "C" => DnType::CountryName,
            "L" => DnType::LocalityName,
            "ST" | "S" => DnType::StateOrProvinceName,
            other => {
                return Err(ServiceError::BadParameter(format!(
                    "Subject attribute '{other}' is not supported; use CN, O, OU, C, L or ST."
                )));
            }
        };
        dn.push(ty, value.trim());
    }
    Ok(dn)
}

fn sans(sans: Option<&Sans>) -> Result<Vec<SanType>, ServiceError> {
    let Some(sans) = sans else { return Ok(Vec::new()) };
    let bad = |what: &str, v: &str| ServiceError::BadParameter(format!("The {what} '{v}' is not valid."));
    let mut out = Vec::new();
    for name in sans.dns_names.iter().flatten() {
        out.push(SanType::DnsName(name.clone().try_into().map_err(|_| bad("DNS name", name))?));
    }
    for email in sans.emails.iter().flatten() {
        out.push(SanType::Rfc822Name(email.clone().try_into().map_err(|_| bad("email", email))?));
    }
    for uri in sans.uris.iter().flatten() {
        out.push(SanType::URI(uri.clone().try_into().map_err(|_| bad("URI", uri))?));
    }
    for ip in sans.ip_addresses.iter().flatten() {
        out.push(SanType::IpAddress(ip.parse::<IpAddr>().map_err(|_| bad("IP address", ip))?));
    }
    for upn in sans.upns.iter().flatten() {
        // Microsoft's UPN other-name OID.
        out.push(SanType::OtherName((vec![1, 3, 6, 1, 4, 1, 311, 20, 2, 3], OtherNameValue::Utf8String(upn.clone()))));
    }
    Ok(out)
}

fn key_usage(name: &str) -> Result<KeyUsagePurpose, ServiceError> {
    Ok(match name {
        "digitalSignature" => KeyUsagePurpose::DigitalSignature,
        "nonRepudiation" => KeyUsagePurpose::ContentCommitment,
        "keyEncipherment" => KeyUsagePurpose::KeyEncipherment,
        "dataEncipherment" => KeyUsagePurpose::DataEncipherment,
        "keyAgreement" => KeyUsagePurpose::KeyAgreement,
        "keyCertSign" => KeyUsagePurpose::KeyCertSign,
        "cRLSign" => KeyUsagePurpose::CrlSign,
        "encipherOnly" => KeyUsagePurpose::EncipherOnly,
        "decipherOnly" => KeyUsagePurpose::DecipherOnly,
        other => return Err(ServiceError::BadParameter(format!("Key usage '{other}' is not valid."))),
    })
}

fn eku(oid: &str) -> Result<ExtendedKeyUsagePurpose, ServiceError> {
    Ok(match oid {
        "1.3.6.1.5.5.7.3.1" => ExtendedKeyUsagePurpose::ServerAuth,
        "1.3.6.1.5.5.7.3.2" => ExtendedKeyUsagePurpose::ClientAuth,
        "1.3.6.1.5.5.7.3.3" => ExtendedKeyUsagePurpose::CodeSigning,
        "1.3.6.1.5.5.7.3.4" => ExtendedKeyUsagePurpose::EmailProtection,
        "1.3.6.1.5.5.7.3.8" => ExtendedKeyUsagePurpose::TimeStamping,
        "1.3.6.1.5.5.7.3.9" => ExtendedKeyUsagePurpose::OcspSigning,
        other => {
            let arcs: Option<Vec<u64>> = other.split('.').map(|a| a.parse().ok()).collect();
            ExtendedKeyUsagePurpose::Other(
                arcs.filter(|a| a.len() >= 2).ok_or_else(|| {
                    ServiceError::BadParameter(format!("Extended key usage '{other}' is not an OID."))
                })?,
            )
        }
    })
}

struct Issued {
    cert: CertData,
    csr: Vec<u8>,
    key: KeyMaterial,
    kty: String,
    secret_pem: String,
    not_before: i64,
    not_after: i64,
}

/// Generates a key and a self-signed certificate from a (normalised) policy, valid from `now`.
///
/// The backing secret is always PEM (private key, then certificate): producing PKCS#12 needs a PFX encoder
/// the workspace does not carry, so a policy asking for `application/x-pkcs12` gets a PEM secret whose
/// `contentType` says so honestly.
fn issue(policy: &CertificatePolicy, now: i64) -> Result<Issued, ServiceError> {
    let (kty, spec) = key_spec(policy.key_props.as_ref().unwrap_or(&KeyProps::default()))?;
    let key = KeyMaterial::generate(spec)?;
    let signing_key = key.rcgen_key_pair()?;
    let x509 = policy.x509_props.clone().unwrap_or_default();
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name(x509.subject.as_deref().unwrap_or(""))?;
    params.subject_alt_names = sans(x509.sans.as_ref())?;
    // The CSR carries the subject and names only (rcgen refuses validity and serial in a request).
    let mut csr_params = CertificateParams::default();
    csr_params.distinguished_name = params.distinguished_name.clone();
    csr_params.subject_alt_names = params.subject_alt_names.clone();
    params.key_usages = x509.key_usage.iter().flatten().map(|k| key_usage(k)).collect::<Result<_, _>>()?;
    params.extended_key_usages = x509.ekus.iter().flatten().map(|e| eku(e)).collect::<Result<_, _>>()?;
    let not_before = chrono::DateTime::from_timestamp(now, 0).unwrap_or_default();
    let months = x509.validity_months.unwrap_or(12);
    let not_after = not_before
        .checked_add_months(chrono::Months::new(months))
        .ok_or_else(|| ServiceError::BadParameter(format!("validity_months {months} is too large.")))?;
    let to_time = |t: chrono::DateTime<chrono::Utc>| {
        time::OffsetDateTime::from_unix_timestamp(t.timestamp())
            .map_err(|_| ServiceError::BadParameter("The certificate validity is out of range.".into()))
    };
    params.not_before = to_time(not_before)?;
    params.not_after = to_time(not_after)?;
    let mut serial = [0u8; 16];
    aws_lc_rs::rand::fill(&mut serial).map_err(|_| crypto::CryptoError::Generate("serial number"))?;
    // A positive INTEGER: clear the top bit.
    serial[0] &= 0x7f;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    let csr = csr_params.serialize_request(&signing_key).map_err(crypto::CryptoError::from)?.der().to_vec();
    let cert = params.self_signed(&signing_key).map_err(crypto::CryptoError::from)?;
    let der = cert.der().to_vec();
    let secret_pem = format!("{}{}", key.private_pem(), cert.pem());
    Ok(Issued {
        cert: CertData { x5t: crypto::sha1(&der), cer: der },
        csr,
        key,
        kty,
        secret_pem,
        not_before: not_before.timestamp(),
        not_after: not_after.timestamp(),
    })
}

/// `POST /certificates/{name}/create` body.
#[derive(Debug, Default, Deserialize)]
pub struct CreateCertificateBody {
    pub policy: Option<CertificatePolicy>,
    pub attributes: Option<AttributesIn>,
    pub tags: Option<BTreeMap<String, String>>,
}

/// `PATCH /certificates/{name}/{version}` body.
#[derive(Debug, Default, Deserialize)]
pub struct UpdateCertificateBody {
    pub attributes: Option<AttributesIn>,
    pub tags: Option<BTreeMap<String, String>>,
    pub policy: Option<CertificatePolicy>,
}

impl VaultStore {
    /// Starts issuing a new certificate version: with `policy`, or with the certificate's existing policy when
    /// `None`. Returns the pending operation.
    pub fn create_certificate(
        &self,
        vault: &str,
        name: &str,
        policy: Option<CertificatePolicy>,
        attributes: AttributeInput,
        tags: BTreeMap<String, String>,
    ) -> Result<(String, PendingCertificate), ServiceError> {
        check_name(name)?;
        check_tags(&tags)?;
        let vault_ref = self.vault(vault)?;
        let now = self.now();
        let policy = {
            let state = vault_ref.read();
            state.certificates.check_creatable(KIND, name)?;
            state.secrets.check_creatable(StoredKind::Secret, name)?;
            state.keys.check_creatable(StoredKind::Key, name)?;
            let existing = state.certificates.live.get(&name.to_ascii_lowercase());
            // A plain secret or key of the same name would collide with the certificate's backing objects.
            if existing.is_none()
                && (state.secrets.live.contains_key(&name.to_ascii_lowercase())
                    || state.keys.live.contains_key(&name.to_ascii_lowercase()))
            {
                return Err(ServiceError::AlreadyExists { kind: StoredKind::Secret, name: name.to_string() });
            }
            match (policy, existing) {
                (Some(policy), _) => policy,
                (None, Some(object)) => object.extra.policy.clone(),
                (None, None) => {
                    return Err(ServiceError::BadParameter(format!(
                        "Certificate {name} does not exist yet, so a policy is required to create it."
                    )));
                }
            }
        };
        let policy = normalise_policy(policy, now)?;
        let issued = issue(&policy, now)?;
        let enabled = attributes.enabled.unwrap_or(true);
        let pending = PendingCertificate {
            request_id: crate::identity::random_hex(16),
            completes_at: now + self.certificate_delay_secs(),
            completed: false,
            csr: issued.csr,
            issuer_name: "Self".into(),
            staged: Some(Staged {
                version: new_version_id(),
                cert: issued.cert,
                key: issued.key,
                kty: issued.kty,
                secret_pem: issued.secret_pem,
                attributes: Attributes {
                    enabled,
                    nbf: Some(issued.not_before),
                    exp: Some(issued.not_after),
                    created: now,
                    updated: now,
                },
                tags,
            }),
        };
        let object_name = {
            let mut state = vault_ref.write();
            let key = name.to_ascii_lowercase();
            let object = state.certificates.live.entry(key).or_insert_with(|| super::store::Object {
                name: name.to_string(),
                versions: Vec::new(),
                extra: CertExtra::default(),
            });
            object.extra.policy = policy;
            object.extra.operation = Some(pending.clone());
            object.name.clone()
        };
        tracing::info!(vault, name = %object_name, "certificate issuance started");
        self.mark_dirty();
        Ok((object_name, pending))
    }

    /// Completes every certificate operation of `vault` whose time has come.
    pub(crate) fn settle_certificates(&self, vault: &Vault) {
        let now = self.now();
        let due = {
            let state = vault.read();
            state
                .certificates
                .live
                .values()
                .any(|o| o.extra.operation.as_ref().is_some_and(|p| !p.completed && p.completes_at <= now))
        };
        if !due {
            return;
        }
        let mut published = Vec::new();
        {
            let mut state = vault.write();
            let state = &mut *state;
            for object in state.certificates.live.values_mut() {
                let Some(op) = object.extra.operation.as_mut() else { continue };
                if op.completed || op.completes_at > now {
                    continue;
                }
                op.completed = true;
                let Some(staged) = op.staged.take() else { continue };
                let name = object.name.clone();
                let managed_attrs = staged.attributes.clone();
                state.keys.push(
                    &name,
                    Version {
                        version: staged.version.clone(),
                        attributes: managed_attrs.clone(),
                        tags: staged.tags.clone(),
                        data: KeyData {
                            kty: staged.kty,
                            key_ops: vec!["sign".into(), "verify".into()],
                            material: staged.key,
                            managed: true,
                        },
                    },
                );
                state.secrets.push(
                    &name,
                    Version {
                        version: staged.version.clone(),
                        attributes: managed_attrs.clone(),
                        tags: staged.tags.clone(),
                        data: SecretData {
                            value: staged.secret_pem,
                            content_type: Some(PEM_CONTENT_TYPE.into()),
                            managed: true,
                        },
                    },
                );
                object.versions.push(Version {
                    version: staged.version.clone(),
                    attributes: staged.attributes,
                    tags: staged.tags,
                    data: staged.cert,
                });
                published.push((name, staged.version, managed_attrs));
            }
        }
        for (name, version, attrs) in published {
            tracing::info!(vault = %vault.name, %name, %version, "certificate issued");
            self.published(vault, StoredKind::Key, &name, &version, &attrs, true);
            self.published(vault, StoredKind::Secret, &name, &version, &attrs, true);
            self.published(vault, KIND, &name, &version, &attrs, false);
        }
    }

    /// The certificate's latest operation.
    pub fn certificate_operation(&self, vault: &str, name: &str) -> Result<(String, PendingCertificate), ServiceError> {
        let vault_ref = self.vault(vault)?;
        self.settle_certificates(vault_ref);
        let state = vault_ref.read();
        let object = state
            .certificates
            .live
            .get(&name.to_ascii_lowercase())
            .ok_or_else(|| ServiceError::PendingNotFound { name: name.to_string() })?;
        let op =
            object.extra.operation.clone().ok_or_else(|| ServiceError::PendingNotFound { name: name.to_string() })?;
        Ok((object.name.clone(), op))
    }

    /// A certificate version (latest when `version` is `None`). A certificate whose first version is still
    /// being issued does not exist yet.
    pub fn get_certificate(
        &self,
        vault: &str,
        name: &str,
        version: Option<&str>,
    ) -> Result<CertificateView, ServiceError> {
        let vault_ref = self.vault(vault)?;
        self.settle_certificates(vault_ref);
        let state = vault_ref.read();
        let (object, found) = state.certificates.version(KIND, name, version)?;
        Ok(CertificateView { name: object.name.clone(), version: found.clone(), policy: object.extra.policy.clone() })
    }

    /// The certificate's policy.
    pub fn get_certificate_policy(&self, vault: &str, name: &str) -> Result<(String, CertificatePolicy), ServiceError> {
        let vault_ref = self.vault(vault)?;
        let state = vault_ref.read();
        let object = state.certificates.object(KIND, name)?;
        Ok((object.name.clone(), object.extra.policy.clone()))
    }

    /// Replaces the sections of the policy that `patch` carries.
    pub fn update_certificate_policy(
        &self,
        vault: &str,
        name: &str,
        patch: CertificatePolicy,
    ) -> Result<(String, CertificatePolicy), ServiceError> {
        let vault_ref = self.vault(vault)?;
        let now = self.now();
        let out = {
            let mut state = vault_ref.write();
            let object = state.certificates.object_mut(KIND, name)?;
            let mut policy = object.extra.policy.clone();
            if patch.key_props.is_some() {
                policy.key_props = patch.key_props;
            }
            if patch.secret_props.is_some() {
                policy.secret_props = patch.secret_props;
            }
            if patch.x509_props.is_some() {
                policy.x509_props = patch.x509_props;
            }
            if patch.lifetime_actions.is_some() {
                policy.lifetime_actions = patch.lifetime_actions;
            }
            if patch.issuer.is_some() {
                policy.issuer = patch.issuer;
            }
            if let Some(enabled) = patch.attributes.and_then(|a| a.enabled) {
                policy.attributes.get_or_insert_with(PolicyAttributes::default).enabled = Some(enabled);
            }
            let policy = normalise_policy(policy, now)?;
            object.extra.policy = policy.clone();
            (object.name.clone(), policy)
        };
        self.mark_dirty();
        Ok(out)
    }

    /// Updates a certificate version's attributes and tags (and, optionally, the policy).
    pub fn update_certificate(
        &self,
        vault: &str,
        name: &str,
        version: Option<&str>,
        body: UpdateCertificateBody,
    ) -> Result<CertificateView, ServiceError> {
        if let Some(tags) = &body.tags {
            check_tags(tags)?;
        }
        if let Some(policy) = body.policy {
            self.update_certificate_policy(vault, name, policy)?;
        }
        let vault_ref = self.vault(vault)?;
        self.settle_certificates(vault_ref);
        let now = self.now();
        let input: AttributeInput = body.attributes.into();
        let view = {
            let mut state = vault_ref.write();
            let object = state.certificates.object(KIND, name)?;
            let (display, policy) = (object.name.clone(), object.extra.policy.clone());
            let found = state.certificates.version_mut(KIND, name, version)?;
            apply_attributes(&mut found.attributes, &input, now);
            if let Some(tags) = body.tags {
                found.tags = tags;
            }
            CertificateView { name: display, version: found.clone(), policy }
        };
        self.mark_dirty();
        Ok(view)
    }

    pub fn list_certificates(&self, vault: &str) -> Result<Vec<CertificateView>, ServiceError> {
        let vault_ref = self.vault(vault)?;
        self.settle_certificates(vault_ref);
        let state = vault_ref.read();
        Ok(state
            .certificates
            .live
            .values()
            .filter_map(|o| {
                o.latest().map(|v| CertificateView {
                    name: o.name.clone(),
                    version: v.clone(),
                    policy: o.extra.policy.clone(),
                })
            })
            .collect())
    }

    pub fn list_certificate_versions(&self, vault: &str, name: &str) -> Result<Vec<CertificateView>, ServiceError> {
        let vault_ref = self.vault(vault)?;
        self.settle_certificates(vault_ref);
        let state = vault_ref.read();
        let object = state.certificates.object(KIND, name)?;
        if object.versions.is_empty() {
            return Err(ServiceError::NotFound { kind: KIND, name: name.to_string(), version: None });
        }
        Ok(object
            .versions
            .iter()
            .map(|v| CertificateView {
                name: object.name.clone(),
                version: v.clone(),
                policy: object.extra.policy.clone(),
            })
            .collect())
    }

    /// Soft-deletes a certificate together with the key and secret behind it.
    pub fn delete_certificate(&self, vault: &str, name: &str) -> Result<Deleted<CertData, CertExtra>, ServiceError> {
        let vault_ref = self.vault(vault)?;
        self.settle_certificates(vault_ref);
        let now = self.now();
        let deleted = {
            let mut state = vault_ref.write();
            if state.certificates.object(KIND, name)?.versions.is_empty() {
                return Err(ServiceError::NotFound { kind: KIND, name: name.to_string(), version: None });
            }
            let deleted = state.certificates.delete(KIND, name, now)?;
            if state.keys.object(StoredKind::Key, name).is_ok_and(|o| o.latest().is_some_and(|v| v.data.managed)) {
                state.keys.delete(StoredKind::Key, name, now)?;
            }
            if state.secrets.object(StoredKind::Secret, name).is_ok_and(|o| o.latest().is_some_and(|v| v.data.managed))
            {
                state.secrets.delete(StoredKind::Secret, name, now)?;
            }
            deleted
        };
        self.mark_dirty();
        Ok(deleted)
    }

    pub fn get_deleted_certificate(
        &self,
        vault: &str,
        name: &str,
    ) -> Result<Deleted<CertData, CertExtra>, ServiceError> {
        let vault_ref = self.vault(vault)?;
        let now = self.now();
        let mut state = vault_ref.write();
        state.certificates.purge_due(now);
        Ok(state.certificates.deleted(KIND, name)?.clone())
    }

    pub fn list_deleted_certificates(&self, vault: &str) -> Result<Vec<Deleted<CertData, CertExtra>>, ServiceError> {
        let vault_ref = self.vault(vault)?;
        let now = self.now();
        let mut state = vault_ref.write();
        state.certificates.purge_due(now);
        Ok(state.certificates.deleted.values().cloned().collect())
    }

    /// Recovers a deleted certificate and the key and secret behind it.
    pub fn recover_certificate(&self, vault: &str, name: &str) -> Result<CertificateView, ServiceError> {
        let vault_ref = self.vault(vault)?;
        let view = {
            let mut state = vault_ref.write();
            let object = state.certificates.recover(KIND, name)?;
            let latest = object.latest().cloned().ok_or_else(|| ServiceError::NotFound {
                kind: KIND,
                name: name.to_string(),
                version: None,
            })?;
            let view =
                CertificateView { name: object.name.clone(), version: latest, policy: object.extra.policy.clone() };
            if state.keys.deleted(StoredKind::Key, name).is_ok() {
                state.keys.recover(StoredKind::Key, name)?;
            }
            if state.secrets.deleted(StoredKind::Secret, name).is_ok() {
                state.secrets.recover(StoredKind::Secret, name)?;
            }
            view
        };
        self.mark_dirty();
        Ok(view)
    }

    /// Purges a deleted certificate and the key and secret behind it.
    pub fn purge_certificate(&self, vault: &str, name: &str) -> Result<(), ServiceError> {
        let vault_ref = self.vault(vault)?;
        {
            let mut state = vault_ref.write();
            state.certificates.purge(KIND, name)?;
            // The backing objects were deleted with the certificate; purge them if they are still there.
            let _ = state.keys.purge(StoredKind::Key, name);
            let _ = state.secrets.purge(StoredKind::Secret, name);
        }
        self.mark_dirty();
        Ok(())
    }
}

/// The operation JSON (`/pending`).
pub fn operation_json(base: &str, name: &str, op: &PendingCertificate) -> serde_json::Value {
    let mut value = serde_json::json!({
        "id": format!("{base}/certificates/{name}/pending"),
        "issuer": { "name": op.issuer_name },
        "csr": crypto::b64std(&op.csr),
        "cancellation_requested": false,
        "status": if op.completed { "completed" } else { "inProgress" },
        "target": format!("{base}/certificates/{name}"),
        "request_id": op.request_id,
    });
    if !op.completed {
        value["status_details"] = serde_json::Value::from(
            "Pending certificate created. Certificate request is in progress. This may take some time based on the issuer provider. Please check again later.",
        );
    }
    value
}

/// The policy JSON with its id.
pub fn policy_json(base: &str, name: &str, policy: &CertificatePolicy) -> serde_json::Value {
    let mut value = serde_json::to_value(policy).unwrap_or_default();
    if let Some(map) = value.as_object_mut() {
        map.insert("id".into(), format!("{base}/certificates/{name}/policy").into());
    }
    value
}

/// A certificate bundle (with policy), a list item, or a deleted one.
pub fn certificate_json(base: &str, view: &CertificateView, shape: CertShape) -> serde_json::Value {
    let name = &view.name;
    let v = &view.version;
    let id = match shape {
        CertShape::ListItem => format!("{base}/certificates/{name}"),
        _ => format!("{base}/certificates/{name}/{}", v.version),
    };
    let mut value = serde_json::json!({
        "id": id,
        "x5t": crypto::b64url(&v.data.x5t),
        "attributes": WireAttributes::from(&v.attributes),
    });
    if !v.tags.is_empty() {
        value["tags"] = serde_json::to_value(&v.tags).unwrap_or_default();
    }
    if shape == CertShape::Full {
        value["kid"] = format!("{base}/keys/{name}/{}", v.version).into();
        value["sid"] = format!("{base}/secrets/{name}/{}", v.version).into();
        value["cer"] = crypto::b64std(&v.data.cer).into();
        value["policy"] = policy_json(base, name, &view.policy);
    }
    value
}

/// How much of a certificate to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertShape {
    Full,
    VersionItem,
    ListItem,
}

/// A deleted certificate's JSON.
pub fn deleted_certificate_json(
    base: &str,
    d: &Deleted<CertData, CertExtra>,
    list_item: bool,
) -> Option<serde_json::Value> {
    let latest = d.object.latest()?;
    let view =
        CertificateView { name: d.object.name.clone(), version: latest.clone(), policy: d.object.extra.policy.clone() };
    let shape = if list_item { CertShape::ListItem } else { CertShape::Full };
    let mut value = certificate_json(base, &view, shape);
    value["recoveryId"] = format!("{base}/deletedcertificates/{}", d.object.name).into();
    value["deletedDate"] = d.deleted_date.into();
    value["scheduledPurgeDate"] = d.scheduled_purge_date.into();
    Some(value)
}
