//! Client secrets: generated with 256 bits of entropy, stored only as
//! HMAC-SHA-256 under a server-side pepper, compared in constant time.

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::Sha256;
use subtle::ConstantTimeEq as _;

/// What a stored hash of a secret is compared with even when the client is
/// unknown, so that "no such client" and "wrong secret" take the same time.
const DECOY: [u8; 32] = [0x5a; 32];

/// The key of the keyed hash. Never logged.
#[derive(Clone)]
pub struct Pepper(Vec<u8>);

impl std::fmt::Debug for Pepper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pepper(***)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("the system random source failed: {0}")]
    Randomness(String),
    #[error("cannot read credentials.pepper_file `{path}`: {reason}")]
    ReadPepper { path: String, reason: String },
    #[error("cannot create the generated pepper `{path}`: {reason}")]
    WritePepper { path: String, reason: String },
    #[error("credentials pepper file `{path}` holds fewer than 32 bytes")]
    ShortPepper { path: String },
}

impl Pepper {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }

    /// Reads the pepper from `path`; with `generate`, creates the file with
    /// a random pepper (owner-only permissions) if it does not exist.
    pub fn from_file(path: &Path, generate: bool) -> Result<Self, SecretError> {
        let shown = path.display().to_string();
        if generate && !path.exists() {
            let pepper = random_token(32)?;
            write_private(path, pepper.as_bytes()).map_err(|err| SecretError::WritePepper {
                path: shown.clone(),
                reason: err.to_string(),
            })?;
        }
        let bytes = std::fs::read(path).map_err(|err| SecretError::ReadPepper {
            path: shown.clone(),
            reason: err.to_string(),
        })?;
        let trimmed = bytes.trim_ascii().to_vec();
        if trimmed.len() < 32 {
            return Err(SecretError::ShortPepper { path: shown });
        }
        Ok(Self(trimmed))
    }

    /// HMAC-SHA-256 of `secret` under this pepper.
    pub fn hash(&self, secret: &str) -> [u8; 32] {
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.0) {
            Ok(mac) => mac,
            // HMAC takes keys of any length; this arm cannot be reached.
            Err(_) => return DECOY,
        };
        mac.update(secret.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Which of `stored` hashes `secret` matches, if any. Every candidate
    /// is compared in constant time, and an empty list costs the same as
    /// one entry, so timing tells nothing about which clients exist.
    pub fn find_match(&self, secret: &str, stored: &[&[u8]]) -> Option<usize> {
        let computed = self.hash(secret);
        if stored.is_empty() {
            let _ = bool::from(DECOY.ct_eq(&computed));
            return None;
        }
        let mut found = None;
        for (index, hash) in stored.iter().enumerate() {
            if bool::from(hash.ct_eq(&computed)) {
                found = Some(index);
            }
        }
        found
    }

    /// A value that identifies this pepper without revealing it, stored in
    /// the database so that a replica with a different pepper refuses to
    /// start instead of refusing every client.
    pub fn fingerprint(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.hash("agentsec pepper fingerprint v1"))
    }
}

/// `bytes` random bytes, base64url without padding (43 chars for 32 bytes).
pub fn random_token(bytes: usize) -> Result<String, SecretError> {
    let mut buffer = vec![0u8; bytes];
    getrandom::fill(&mut buffer).map_err(|err| SecretError::Randomness(err.to_string()))?;
    Ok(URL_SAFE_NO_PAD.encode(buffer))
}

fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options.open(path)?.write_all(contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_matches_only_its_own_hash_under_the_same_pepper() {
        let pepper = Pepper::new(b"0123456789abcdef0123456789abcdef".to_vec());
        let other = Pepper::new(b"fedcba9876543210fedcba9876543210".to_vec());
        let secret = random_token(32).unwrap();
        assert_eq!(secret.len(), 43);
        let stored = pepper.hash(&secret);
        let decoy = [0u8; 32];
        assert_eq!(pepper.find_match(&secret, &[&decoy, &stored]), Some(1));
        assert_eq!(pepper.find_match("wrong", &[&stored]), None);
        assert_eq!(other.find_match(&secret, &[&stored]), None);
        assert_eq!(pepper.find_match(&secret, &[]), None);
        assert_ne!(pepper.fingerprint(), other.fingerprint());
    }

    #[test]
    fn a_generated_pepper_file_is_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/pepper");
        let first = Pepper::from_file(&path, true).unwrap();
        let second = Pepper::from_file(&path, true).unwrap();
        assert_eq!(first.fingerprint(), second.fingerprint());
        assert!(Pepper::from_file(&dir.path().join("missing"), false).is_err());
    }
}
