//! Key material and self-signed certificates, generated with aws-lc-rs (through rcgen for X.509).
//!
//! Private keys stay inside the emulator: responses carry the public JWK only (a certificate's backing
//! secret carries its PEM, as the real service does for exportable keys).

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair as _};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};

/// A key type and size/curve the emulator can generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeySpec {
    Rsa(u32),
    Ec(Curve),
}

/// Elliptic curves, by their Key Vault names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Curve {
    #[serde(rename = "P-256")]
    P256,
    #[serde(rename = "P-256K")]
    P256K,
    #[serde(rename = "P-384")]
    P384,
    #[serde(rename = "P-521")]
    P521,
}

impl Curve {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "P-256" => Some(Self::P256),
            "P-256K" => Some(Self::P256K),
            "P-384" => Some(Self::P384),
            "P-521" => Some(Self::P521),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::P256 => "P-256",
            Self::P256K => "P-256K",
            Self::P384 => "P-384",
            Self::P521 => "P-521",
        }
    }

    fn signing(self) -> &'static signature::EcdsaSigningAlgorithm {
        match self {
            Self::P256 => &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            Self::P256K => &signature::ECDSA_P256K1_SHA256_ASN1_SIGNING,
            Self::P384 => &signature::ECDSA_P384_SHA384_ASN1_SIGNING,
            Self::P521 => &signature::ECDSA_P521_SHA512_ASN1_SIGNING,
        }
    }
}

/// Failures generating key material or certificates.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("RSA key size {0} is not supported (use 2048, 3072 or 4096)")]
    RsaSize(u32),
    #[error("generating {0} key material failed")]
    Generate(&'static str),
    #[error("building the certificate failed: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("the curve {0} cannot sign X.509 certificates here (use P-256, P-384 or P-521)")]
    CertificateCurve(&'static str),
}

/// Generated key material: the private key (PKCS#8 DER) and its public JWK parts. Debug hides the private key.
#[derive(Clone, Serialize, Deserialize)]
pub struct KeyMaterial {
    pub spec: KeySpec,
    #[serde(with = "b64")]
    pub pkcs8: Vec<u8>,
    pub public: PublicJwk,
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyMaterial")
            .field("spec", &self.spec)
            .field("pkcs8", &"****")
            .field("public", &self.public)
            .finish()
    }
}

/// The public half of a key in JWK terms, big-endian bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kty")]
pub enum PublicJwk {
    #[serde(rename = "RSA")]
    Rsa {
        #[serde(with = "b64")]
        n: Vec<u8>,
        #[serde(with = "b64")]
        e: Vec<u8>,
    },
    #[serde(rename = "EC")]
    Ec {
        crv: Curve,
        #[serde(with = "b64")]
        x: Vec<u8>,
        #[serde(with = "b64")]
        y: Vec<u8>,
    },
}

impl KeyMaterial {
    /// Generates fresh key material for `spec`.
    pub fn generate(spec: KeySpec) -> Result<Self, CryptoError> {
        match spec {
            KeySpec::Rsa(bits) => {
                let size = match bits {
                    2048 => KeySize::Rsa2048,
                    3072 => KeySize::Rsa3072,
                    4096 => KeySize::Rsa4096,
                    other => return Err(CryptoError::RsaSize(other)),
                };
                let pair = aws_lc_rs::rsa::KeyPair::generate(size).map_err(|_| CryptoError::Generate("RSA"))?;
                let pkcs8 = pair.as_der().map_err(|_| CryptoError::Generate("RSA"))?.as_ref().to_vec();
                let public = pair.public_key();
                Ok(Self {
                    spec,
                    pkcs8,
                    public: PublicJwk::Rsa {
                        n: public.modulus().big_endian_without_leading_zero().to_vec(),
                        e: public.exponent().big_endian_without_leading_zero().to_vec(),
                    },
                })
            }
            KeySpec::Ec(curve) => {
                let rng = SystemRandom::new();
                let doc = EcdsaKeyPair::generate_pkcs8(curve.signing(), &rng)
                    .map_err(|_| CryptoError::Generate(curve.name()))?;
                let pair = EcdsaKeyPair::from_pkcs8(curve.signing(), doc.as_ref())
                    .map_err(|_| CryptoError::Generate(curve.name()))?;
                // Uncompressed SEC1 point: 0x04 || x || y, coordinates of equal length.
                let point = pair.public_key().as_ref();
                let coord = (point.len().saturating_sub(1)) / 2;
                let (x, y) = point.get(1..).unwrap_or_default().split_at(coord);
                Ok(Self {
                    spec,
                    pkcs8: doc.as_ref().to_vec(),
                    public: PublicJwk::Ec { crv: curve, x: x.to_vec(), y: y.to_vec() },
                })
            }
        }
    }

    /// The private key as PEM (`PRIVATE KEY`, PKCS#8).
    pub fn private_pem(&self) -> String {
        pem_block("PRIVATE KEY", &self.pkcs8)
    }

    /// The rcgen signing algorithm matching this key, for self-signing a certificate.
    pub fn rcgen_key_pair(&self) -> Result<rcgen::KeyPair, CryptoError> {
        let alg = match self.spec {
            KeySpec::Rsa(_) => &rcgen::PKCS_RSA_SHA256,
            KeySpec::Ec(Curve::P256) => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeySpec::Ec(Curve::P384) => &rcgen::PKCS_ECDSA_P384_SHA384,
            KeySpec::Ec(Curve::P521) => &rcgen::PKCS_ECDSA_P521_SHA512,
            KeySpec::Ec(Curve::P256K) => return Err(CryptoError::CertificateCurve("P-256K")),
        };
        let der = rustls::pki_types::PrivatePkcs8KeyDer::from(self.pkcs8.as_slice());
        Ok(rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&der, alg)?)
    }
}

/// SHA-1 of `der`: the certificate thumbprint Key Vault reports as `x5t`.
pub fn sha1(der: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, der).as_ref().to_vec()
}

/// `der` as a PEM block with the given label, 64-character lines.
pub fn pem_block(label: &str, der: &[u8]) -> String {
    let encoded = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in encoded.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// base64url without padding (JWK members, `x5t`).
pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Standard base64 (the certificate's `cer`).
pub fn b64std(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Serde adapter storing bytes as standard base64 in the persistence file.
pub(crate) mod b64 {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rsa_and_ec_material_have_jwk_parts_of_the_right_size() {
        let rsa = KeyMaterial::generate(KeySpec::Rsa(2048)).unwrap();
        match &rsa.public {
            PublicJwk::Rsa { n, e } => {
                assert_eq!(n.len(), 256);
                assert_eq!(e, &vec![1, 0, 1]);
            }
            other => panic!("{other:?}"),
        }
        let ec = KeyMaterial::generate(KeySpec::Ec(Curve::P384)).unwrap();
        match &ec.public {
            PublicJwk::Ec { crv, x, y } => {
                assert_eq!(*crv, Curve::P384);
                assert_eq!((x.len(), y.len()), (48, 48));
            }
            other => panic!("{other:?}"),
        }
        assert!(ec.rcgen_key_pair().is_ok());
        assert!(matches!(KeyMaterial::generate(KeySpec::Rsa(1024)), Err(CryptoError::RsaSize(1024))));
    }
}
