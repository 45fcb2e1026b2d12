//! OpenPGP keyrings and the verification of a clearsigned `InRelease`, as apt's `gpgv`
//! does it: the file is trusted when at least one of its signatures verifies against a key
//! (primary or subkey) of the configured keyring, made with a hash apt accepts (not MD5 or
//! SHA-1). The text that was signed, and only that text, is returned.

use std::path::PathBuf;

use pgp::composed::{CleartextSignedMessage, Deserializable, SignedPublicKey};
use pgp::crypto::hash::HashAlgorithm;
use pgp::types::KeyDetails;

/// The keys of one or more keyring files.
#[derive(Debug, Clone)]
pub(crate) struct Keyring {
    pub files: Vec<PathBuf>,
    keys: Vec<SignedPublicKey>,
}

impl Keyring {
    /// Reads keyring files: binary (`.gpg`, as `debian-archive-keyring` ships them) or
    /// ASCII-armored (`.asc`). Every file must hold at least one public key.
    pub(crate) fn load(files: &[PathBuf]) -> anyhow::Result<Keyring> {
        let mut keys = Vec::new();
        for f in files {
            let bytes = std::fs::read(f).map_err(|e| {
                crate::error::environment(format!(
                    "could not read the keyring `{}`: {e}; install `debian-archive-keyring` or \
                     set `keyring` in archive.toml",
                    f.display()
                ))
            })?;
            let found = parse_keys(&bytes).map_err(|e| {
                crate::error::usage(format!(
                    "`{}` is not an OpenPGP keyring ({e}); give a .gpg or .asc file of public keys",
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
    pub(crate) fn verify_clearsigned(
        &self,
        text: &str,
        what: &str,
    ) -> anyhow::Result<(String, String)> {
        let (msg, _) = CleartextSignedMessage::from_string(text).map_err(|e| {
            crate::error::failed(format!(
                "{what} is not a clearsigned OpenPGP message ({e}); the mirror or a proxy \
                 changed it"
            ))
        })?;
        let signed = msg.signed_text();
        let mut why = Vec::new();
        for sig in msg.signatures() {
            match sig.hash_alg() {
                Some(HashAlgorithm::Md5 | HashAlgorithm::Sha1) | None => {
                    why.push("a signature made with a weak hash (MD5 or SHA-1)".to_string());
                    continue;
                }
                _ => {}
            }
            for key in &self.keys {
                if sig.verify(&key.primary_key, signed.as_bytes()).is_ok() {
                    return Ok((
                        signed.replace("\r\n", "\n"),
                        hex::encode_upper(key.primary_key.fingerprint().as_bytes()),
                    ));
                }
                for sub in &key.public_subkeys {
                    if sig.verify(&sub.key, signed.as_bytes()).is_ok() {
                        return Ok((
                            signed.replace("\r\n", "\n"),
                            hex::encode_upper(key.primary_key.fingerprint().as_bytes()),
                        ));
                    }
                }
            }
            let issuers: Vec<String> = sig
                .issuer_fingerprint()
                .iter()
                .map(|f| hex::encode_upper(f.as_bytes()))
                .chain(sig.issuer().iter().map(|k| hex::encode_upper(k.as_ref())))
                .collect();
            why.push(format!(
                "a signature by {} that no key of the keyring verifies",
                if issuers.is_empty() {
                    "an unnamed key".to_string()
                } else {
                    issuers.join("/")
                }
            ));
        }
        if msg.signatures().is_empty() {
            why.push("no signature".to_string());
        }
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

/// Reads public keys from binary or armored bytes.
fn parse_keys(bytes: &[u8]) -> anyhow::Result<Vec<SignedPublicKey>> {
    let armored = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .is_some_and(|i| bytes[i..].starts_with(b"-----BEGIN"));
    let mut out = Vec::new();
    if armored {
        let (iter, _) = SignedPublicKey::from_armor_many(bytes)?;
        for k in iter {
            out.push(k?);
        }
    } else {
        for k in SignedPublicKey::from_bytes_many(bytes)? {
            out.push(k?);
        }
    }
    Ok(out)
}

/// The keyring apt uses for Debian's archive, when nothing else is configured.
pub(crate) fn default_keyring() -> PathBuf {
    PathBuf::from("/usr/share/keyrings/debian-archive-keyring.gpg")
}
