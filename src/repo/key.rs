//! The repository's signing key: an OpenPGP key zchroot makes on first use
//! (in-process, sequoia), kept with its secret in the state directory
//! (mode 0600, never in the published tree), and the cleartext signature
//! of `InRelease` made with it.

use std::io::Write;
use std::path::Path;
use std::time::SystemTime;

use openpgp::cert::prelude::*;
use openpgp::parse::Parse;
use openpgp::policy::StandardPolicy;
use openpgp::serialize::stream::{Message, Signer};
use openpgp::serialize::SerializeInto;
use sequoia_openpgp as openpgp;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{}: {source}", path.display())]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the repository key {}: {message}\nhelp: remove it to have a new one made (boards then need the new public key)", path.display())]
    Bad {
        path: std::path::PathBuf,
        message: String,
    },
    #[error("OpenPGP: {0}")]
    Pgp(String),
}

/// A repository key with its secret.
pub struct RepoKey {
    cert: Cert,
}

impl RepoKey {
    /// Makes a new key for repository `name`.
    pub fn generate(name: &str) -> Result<RepoKey, KeyError> {
        let (cert, _) = CertBuilder::new()
            .add_userid(format!("zchroot repository {name}"))
            .add_signing_subkey()
            .generate()
            .map_err(|e| KeyError::Pgp(e.to_string()))?;
        Ok(RepoKey { cert })
    }

    /// Loads the key at `path`, making it there (0600) on first use.
    pub fn load_or_generate(path: &Path, name: &str) -> Result<RepoKey, KeyError> {
        let io = |source| KeyError::Io {
            path: path.into(),
            source,
        };
        if path.exists() {
            let cert = Cert::from_file(path).map_err(|e| KeyError::Bad {
                path: path.into(),
                message: e.to_string(),
            })?;
            if !cert.is_tsk() {
                return Err(KeyError::Bad {
                    path: path.into(),
                    message: "it holds no secret key".into(),
                });
            }
            return Ok(RepoKey { cert });
        }
        let key = RepoKey::generate(name)?;
        let armored = key
            .cert
            .as_tsk()
            .armored()
            .to_vec()
            .map_err(|e| KeyError::Pgp(e.to_string()))?;
        if let Some(dir) = path.parent() {
            crate::paths::create_private_dir_all(dir).map_err(io)?;
        }
        // Mode 0600 from the first byte, under a fresh random name: a
        // leftover or planted file is never reused.
        crate::atomic::write_atomic(path, &armored, 0o600).map_err(io)?;
        Ok(key)
    }

    /// The public key, ASCII-armored (what a board puts in
    /// `/etc/apt/keyrings/`).
    pub fn public_armored(&self) -> Result<Vec<u8>, KeyError> {
        self.cert
            .armored()
            .to_vec()
            .map_err(|e| KeyError::Pgp(e.to_string()))
    }

    pub fn fingerprint(&self) -> String {
        self.cert.fingerprint().to_hex()
    }

    /// `body` cleartext-signed, as an `InRelease` file.
    pub fn clearsign(&self, body: &[u8], when: SystemTime) -> Result<Vec<u8>, KeyError> {
        let pgp = |e: anyhow::Error| KeyError::Pgp(e.to_string());
        let p = StandardPolicy::new();
        let keypair = self
            .cert
            .keys()
            .with_policy(&p, when)
            .supported()
            .secret()
            .for_signing()
            .next()
            .ok_or_else(|| KeyError::Pgp("the key has no signing subkey valid now".into()))?
            .key()
            .clone()
            .into_keypair()
            .map_err(pgp)?;
        let mut sink = Vec::new();
        {
            let message = Message::new(&mut sink);
            let mut signer = Signer::new(message, keypair)
                .map_err(pgp)?
                .creation_time(when)
                .cleartext()
                .build()
                .map_err(pgp)?;
            signer
                .write_all(body)
                .map_err(|e| KeyError::Pgp(e.to_string()))?;
            signer.finalize().map_err(pgp)?;
        }
        Ok(sink)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_made_once_and_kept_private() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("keys/board.key");
        let k = RepoKey::load_or_generate(&path, "board").unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let again = RepoKey::load_or_generate(&path, "board").unwrap();
        assert_eq!(k.fingerprint(), again.fingerprint(), "made once");
        let text = String::from_utf8(k.public_armored().unwrap()).unwrap();
        assert!(text.starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----"));
        assert!(!text.contains("PRIVATE"));
        let signed = k.clearsign(b"Suite: trixie\n", SystemTime::now()).unwrap();
        assert!(signed.starts_with(b"-----BEGIN PGP SIGNED MESSAGE-----\n"));
        // A public key alone cannot sign: refused on load.
        std::fs::write(&path, k.public_armored().unwrap()).unwrap();
        assert!(matches!(
            RepoKey::load_or_generate(&path, "board"),
            Err(KeyError::Bad { .. })
        ));
    }
}
