//! The JWT key set: one key signs, every key (the signer's included) verifies, each known
//! by its `kid`. Rotating: add a new key pair, make it the signer, keep the old public key
//! until the last token it signed has expired. Nobody is logged out.

use std::collections::HashMap;
use std::path::Path;

use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};

use crate::config::ApiConfig;
use crate::idempotency::FingerprintKey;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("key {kid}: {source}")]
    Invalid {
        kid: String,
        source: jsonwebtoken::errors::Error,
    },
    #[error(
        "no signing key: put one `<kid>.key.pem` in {0} (`command-api generate-keys`) or set CHRONICLE_JWT_SIGNING_KEY"
    )]
    NoSigningKey(String),
    #[error("{0} holds several `*.key.pem` files; exactly one key signs")]
    SeveralSigningKeys(String),
    #[error("the public key of signing key {0} cannot be derived: is it a PKCS#8 Ed25519 key?")]
    SignerNotVerifiable(String),
    #[error(
        "unsupported CHRONICLE_JWT_ALGORITHM `{0}` (EdDSA, or HS256 with CHRONICLE_JWT_HS256_SECRET)"
    )]
    Algorithm(String),
    #[error("HS256 needs CHRONICLE_JWT_HS256_SECRET of at least 32 bytes")]
    WeakSecret,
}

pub struct KeySet {
    algorithm: Algorithm,
    signing_kid: String,
    signing: EncodingKey,
    verification: HashMap<String, DecodingKey>,
    /// A key for request fingerprints, derived from the signing key when none is configured.
    fingerprints: FingerprintKey,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut kids: Vec<&String> = self.verification.keys().collect();
        kids.sort();
        f.debug_struct("KeySet")
            .field("algorithm", &self.algorithm)
            .field("signing_kid", &self.signing_kid)
            .field("verification_kids", &kids)
            .finish()
    }
}

impl KeySet {
    pub fn from_config(config: &ApiConfig) -> Result<Self, KeyError> {
        match config.jwt_algorithm.as_str() {
            "EdDSA" => Self::ed25519_from_config(config),
            "HS256" => {
                let secret = config
                    .jwt_hs256_secret
                    .as_ref()
                    .ok_or(KeyError::WeakSecret)?;
                let kid = config
                    .jwt_signing_kid
                    .clone()
                    .unwrap_or_else(|| "hs256".to_owned());
                Self::hs256(&kid, secret.expose().as_bytes())
            }
            other => Err(KeyError::Algorithm(other.to_owned())),
        }
    }

    fn ed25519_from_config(config: &ApiConfig) -> Result<Self, KeyError> {
        let dir = &config.jwt_keys_dir;
        let mut private = Vec::new();
        let mut public = Vec::new();
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if let Some(kid) = name.strip_suffix(".key.pem") {
                    private.push((kid.to_owned(), read(&entry.path())?));
                } else if let Some(kid) = name.strip_suffix(".pub.pem") {
                    public.push((kid.to_owned(), read(&entry.path())?));
                }
            }
        }
        let (signing_kid, signing_pem) = match (&config.jwt_signing_key, &config.jwt_signing_kid) {
            (Some(pem), Some(kid)) => (kid.clone(), pem.expose().as_bytes().to_vec()),
            _ => match private.len() {
                0 => return Err(KeyError::NoSigningKey(dir.display().to_string())),
                1 => private.remove(0),
                _ => return Err(KeyError::SeveralSigningKeys(dir.display().to_string())),
            },
        };
        Self::ed25519(&signing_kid, &signing_pem, &public)
    }

    /// An Ed25519 key set from PEM: a PKCS#8 private key and SPKI public keys.
    pub fn ed25519(
        signing_kid: &str,
        private_pem: &[u8],
        public_pems: &[(String, Vec<u8>)],
    ) -> Result<Self, KeyError> {
        let invalid = |kid: &str, source| KeyError::Invalid {
            kid: kid.to_owned(),
            source,
        };
        let signing = EncodingKey::from_ed_pem(private_pem).map_err(|e| invalid(signing_kid, e))?;
        let verification = public_pems
            .iter()
            .map(|(kid, pem)| {
                Ok((
                    kid.clone(),
                    DecodingKey::from_ed_pem(pem).map_err(|e| invalid(kid, e))?,
                ))
            })
            .collect::<Result<HashMap<_, _>, KeyError>>()?;
        let mut verification = verification;
        if !verification.contains_key(signing_kid) {
            // The signer's public half is derived, so a signing key alone (from the
            // environment, say) is a complete key set.
            let public = public_pem_of(private_pem)
                .ok_or_else(|| KeyError::SignerNotVerifiable(signing_kid.to_owned()))?;
            verification.insert(
                signing_kid.to_owned(),
                DecodingKey::from_ed_pem(public.as_bytes()).map_err(|e| invalid(signing_kid, e))?,
            );
        }
        Ok(Self {
            algorithm: Algorithm::EdDSA,
            signing_kid: signing_kid.to_owned(),
            signing,
            verification,
            fingerprints: FingerprintKey::derived_from(private_pem),
        })
    }

    /// A shared-secret key set. Only when configured explicitly: anyone who can verify can sign.
    pub fn hs256(kid: &str, secret: &[u8]) -> Result<Self, KeyError> {
        if secret.len() < 32 {
            return Err(KeyError::WeakSecret);
        }
        Ok(Self {
            algorithm: Algorithm::HS256,
            signing_kid: kid.to_owned(),
            signing: EncodingKey::from_secret(secret),
            verification: HashMap::from([(kid.to_owned(), DecodingKey::from_secret(secret))]),
            fingerprints: FingerprintKey::derived_from(secret),
        })
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub fn signing(&self) -> (&str, &EncodingKey) {
        (&self.signing_kid, &self.signing)
    }

    pub fn verification(&self, kid: &str) -> Option<&DecodingKey> {
        self.verification.get(kid)
    }

    /// The fingerprint key derived from the signing key.
    pub fn derived_fingerprint_key(&self) -> FingerprintKey {
        self.fingerprints.clone()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, KeyError> {
    std::fs::read(path).map_err(|source| KeyError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// The SPKI public key PEM of a PKCS#8 Ed25519 private key PEM.
fn public_pem_of(private_pem: &[u8]) -> Option<String> {
    use ed25519_dalek::pkcs8::DecodePrivateKey;
    let signing = SigningKey::from_pkcs8_pem(std::str::from_utf8(private_pem).ok()?).ok()?;
    signing
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .ok()
}

/// A fresh Ed25519 key pair as PEM: (PKCS#8 private key, SPKI public key).
pub fn generate_ed25519() -> (String, String) {
    let signing = SigningKey::generate(&mut rand_core::OsRng);
    let private = signing
        .to_pkcs8_pem(LineEnding::LF)
        .expect("an Ed25519 key encodes as PKCS#8")
        .to_string();
    let public = signing
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .expect("an Ed25519 key encodes as SPKI");
    (private, public)
}

/// Writes a new key pair as `<kid>.key.pem` (mode 0600) and `<kid>.pub.pem` into `dir`.
pub fn write_key_pair(dir: &Path, kid: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(dir)?;
    let (private, public) = generate_ed25519();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dir.join(format!("{kid}.key.pem")))?;
    file.write_all(private.as_bytes())?;
    std::fs::write(dir.join(format!("{kid}.pub.pem")), public)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signing_key_alone_verifies_its_own_tokens_and_rotation_keeps_old_ones() {
        let (old_private, old_public) = generate_ed25519();
        let (new_private, _) = generate_ed25519();
        let old_only = KeySet::ed25519("old", old_private.as_bytes(), &[]).unwrap();
        assert!(
            old_only.verification("old").is_some(),
            "the signer's public key is derived"
        );

        // After rotation the new key signs and the old one still verifies.
        let rotated = KeySet::ed25519(
            "new",
            new_private.as_bytes(),
            &[("old".to_owned(), old_public.into_bytes())],
        )
        .unwrap();
        assert_eq!(rotated.signing().0, "new");
        assert!(rotated.verification("old").is_some() && rotated.verification("new").is_some());
    }

    #[test]
    fn shared_secrets_must_be_long() {
        assert!(matches!(
            KeySet::hs256("k", b"short"),
            Err(KeyError::WeakSecret)
        ));
        assert!(KeySet::hs256("k", &[7u8; 32]).is_ok());
    }
}
