//! The local stack's own certificate authority.
//!
//! The Azure SDK refuses to send a bearer token over plain http, so the Key Vault emulator speaks TLS. A CA is
//! generated at start, its PEM is written to a file clients are told to trust (`SSL_CERT_FILE`, Python's
//! `connection_verify`, or a reqwest client with an extra root), and it signs one leaf certificate whose
//! names cover every way a client may address a local vault: 127.0.0.1, ::1, localhost and
//! `<vault>.vault.azure.net` (for a client that resolves that name to 127.0.0.1 and keeps the SDK's
//! challenge-resource verification on).

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What can go wrong while creating or using the local CA.
#[derive(Debug, thiserror::Error)]
pub enum LocalCaError {
    #[error("generating the local CA or its leaf certificate failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("writing the CA certificate to {path} failed: {source}")]
    WriteCa { path: PathBuf, source: std::io::Error },
    #[error("building the TLS server configuration failed: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("'{0}' is not a valid DNS name for the vault certificate")]
    BadName(String),
}

/// A CA generated for this run, and the leaf it issued for the local listeners.
pub struct LocalCa {
    ca_pem: String,
    ca_pem_path: PathBuf,
    leaf_pem: String,
    // The leaf's private key (PKCS#8 PEM), kept for servers outside this process (Azurite) that need it as a file.
    leaf_key_pem: String,
    server_config: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for LocalCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCa").field("ca_pem_path", &self.ca_pem_path).field("leaf_key_pem", &"****").finish()
    }
}

/// The CA of an HTTPS emulator beside the Key Vault's (ARM, Graph): written to the directory given, or to a new one
/// under the temp dir, which goes away with it.
#[derive(Debug)]
pub struct EmulatorCa {
    ca: LocalCa,
    owned_dir: Option<PathBuf>,
}

/// Why an emulator's CA could not be made.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorCaError {
    #[error("creating the CA directory {path}: {source}")]
    Dir { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Tls(#[from] LocalCaError),
}

impl EmulatorCa {
    /// A CA for loopback in `dir`, or in a new `<prefix>-<random>` directory under the temp dir.
    pub fn create(dir: Option<PathBuf>, prefix: &str) -> Result<Self, EmulatorCaError> {
        let (dir, owned) = match dir {
            Some(dir) => (dir, false),
            None => (std::env::temp_dir().join(format!("{prefix}-{}", crate::identity::random_hex(8))), true),
        };
        std::fs::create_dir_all(&dir).map_err(|source| EmulatorCaError::Dir { path: dir.clone(), source })?;
        let ca = LocalCa::generate(&dir, &[])?;
        Ok(Self { ca, owned_dir: owned.then_some(dir) })
    }

    /// A TLS acceptor serving the CA's loopback leaf.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.ca.server_config())
    }

    /// The CA certificate (PEM) clients must trust.
    pub fn ca_pem(&self) -> &str {
        self.ca.ca_pem()
    }
}

impl Drop for EmulatorCa {
    fn drop(&mut self) {
        if let Some(dir) = self.owned_dir.take() {
            // Best effort: a leftover directory in the temp dir harms nothing.
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl LocalCa {
    /// Generates a CA and a leaf for loopback plus `<vault>.vault.azure.net` for each of `vault_names`,
    /// and writes the CA certificate to `dir/keyturn-local-ca.pem`.
    pub fn generate(dir: &Path, vault_names: &[String]) -> Result<Self, LocalCaError> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::default();
        let mut ca_name = DistinguishedName::new();
        ca_name.push(DnType::CommonName, "keyturn local CA");
        ca_name.push(DnType::OrganizationName, "keyturn local stack");
        ca_params.distinguished_name = ca_name;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let ca_pem = ca_cert.pem();
        let issuer = Issuer::new(ca_params, ca_key);

        let leaf_key = KeyPair::generate()?;
        let mut leaf_params = CertificateParams::default();
        let mut leaf_name = DistinguishedName::new();
        leaf_name.push(DnType::CommonName, "localhost");
        leaf_params.distinguished_name = leaf_name;
        let mut sans = vec![
            SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            dns("localhost")?,
        ];
        for vault in vault_names {
            sans.push(dns(&format!("{vault}.vault.azure.net"))?);
        }
        leaf_params.subject_alt_names = sans;
        leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let leaf_cert = leaf_params.signed_by(&leaf_key, &issuer)?;

        let leaf_pem = leaf_cert.pem();
        let leaf_key_pem = leaf_key.serialize_pem();
        let chain = vec![leaf_cert.der().clone(), CertificateDer::from(ca_cert.der().to_vec())];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        // HTTP/1.1 only: every Key Vault client (Rust reqwest, Python requests) speaks it, and one protocol
        // keeps the server simple.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];

        let ca_pem_path = dir.join("keyturn-local-ca.pem");
        std::fs::write(&ca_pem_path, &ca_pem)
            .map_err(|source| LocalCaError::WriteCa { path: ca_pem_path.clone(), source })?;
        Ok(Self { ca_pem, ca_pem_path, leaf_pem, leaf_key_pem, server_config: Arc::new(config) })
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Where the CA certificate was written.
    pub fn ca_pem_path(&self) -> &Path {
        &self.ca_pem_path
    }

    /// The leaf certificate (for 127.0.0.1, ::1, localhost and the vault names), PEM.
    pub fn leaf_pem(&self) -> &str {
        &self.leaf_pem
    }

    /// The leaf's private key, PKCS#8 PEM: for a server in another process (Azurite's `--key`).
    pub fn leaf_key_pem(&self) -> &str {
        &self.leaf_key_pem
    }

    /// The rustls configuration serving the leaf certificate.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        Arc::clone(&self.server_config)
    }
}

fn dns(name: &str) -> Result<SanType, LocalCaError> {
    name.to_string().try_into().map(SanType::DnsName).map_err(|_| LocalCaError::BadName(name.to_string()))
}
