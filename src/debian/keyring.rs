//! OpenPGP keyrings and the verification of a clearsigned `InRelease`, as apt's `gpgv`
//! does it: the file is trusted when at least one of its signatures verifies against a key
//! (primary or subkey) of the configured keyring, made with a hash apt accepts (not MD5 or
//! SHA-1). The text that was signed, and only that text, is returned.

use std::path::PathBuf;

use crate::sign::{Cert, ClearsignedError};

/// The keys of one or more keyring files.
#[derive(Debug, Clone)]
pub struct Keyring {
    pub files: Vec<PathBuf>,
    keys: Vec<Cert>,
}

impl Keyring {
    /// Reads keyring files: binary (`.gpg`, as `debian-archive-keyring` ships them) or
    /// ASCII-armored (`.asc`). Every file must hold at least one public key.
    pub fn load(files: &[PathBuf]) -> anyhow::Result<Keyring> {
        let mut keys = Vec::new();
        for f in files {
            let bytes = std::fs::read(f).map_err(|e| {
                crate::error::environment(format!(
                    "could not read the keyring `{}`: {e}; install `debian-archive-keyring` or \
                     set `keyring` in archive.toml",
                    f.display()
                ))
            })?;
            let found = crate::sign::read_keyring(&bytes).map_err(|e| {
                crate::error::usage(format!(
                    "`{}` is not an OpenPGP keyring ({e:#}); give a .gpg or .asc file of public keys",
                    f.display()
                ))
            })?;
            if found.is_empty() {
                return Err(crate::error::usage(format!(
                    "the keyring `{}` holds no public key",
                    f.display()
                )));
            }
            keys.extend(found);
        }
        Ok(Keyring {
            files: files.to_vec(),
            keys,
        })
    }

    /// Verifies a clearsigned text; returns the signed text (LF line ends) and the
    /// fingerprint of the key that verified it. `what` names the file in errors.
    pub fn verify_clearsigned(&self, text: &str, what: &str) -> anyhow::Result<(String, String)> {
        let why = match crate::sign::verify_clearsigned_with(&self.keys, text) {
            Ok(found) => return Ok(found),
            Err(ClearsignedError::Malformed(e)) => {
                return Err(crate::error::failed(format!(
                    "{what} is not a clearsigned OpenPGP message ({e:#}); the mirror or a \
                     proxy changed it"
                )))
            }
            Err(ClearsignedError::NotVerified(why)) => why,
        };
        Err(crate::error::failed(format!(
            "{what}: the signature does not verify ({}) against the keyring {}; the file was \
             changed after it was signed, or it is signed by a key you do not trust",
            why.join("; "),
            self.files
                .iter()
                .map(|f| format!("`{}`", f.display()))
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }
}

/// The keyring apt uses for Debian's archive, when nothing else is configured.
pub(crate) fn default_keyring() -> PathBuf {
    PathBuf::from("/usr/share/keyrings/debian-archive-keyring.gpg")
}
