//! OpenPGP signing for apt repositories, in pure Rust (rPGP).
//!
//! Owns: making a signing key (`builder key generate`), loading the secret key from a path or
//! the environment, and producing the two signatures apt reads: the clearsigned `InRelease`
//! and the detached, armored `Release.gpg`.
//!
//! Key choice: a v4 Ed25519 (EdDSA, "legacy" encoding) primary key that can certify and sign.
//! GnuPG 2.2's `gpgv`, which apt on Debian bookworm uses to verify, accepts it; it is small,
//! fast, and deterministic to sign with. InRelease uses SHA-256, Release.gpg SHA-512 (apt
//! refuses SHA-1).
//!
//! Must not: write keys anywhere but where the caller says, or print.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use pgp::composed::{
    ArmorOptions, CleartextSignedMessage, Deserializable, DetachedSignature, KeyType,
    SecretKeyParamsBuilder, SignedPublicKey, SignedSecretKey,
};
use pgp::crypto::hash::HashAlgorithm;
use pgp::ser::Serialize;
use pgp::types::{KeyDetails, Password};

/// Environment variable holding an armored secret key.
pub const ENV_KEY: &str = "BUILDER_SIGNING_KEY";
/// Environment variable holding the path of an armored secret key.
pub const ENV_KEY_FILE: &str = "BUILDER_SIGNING_KEY_FILE";

/// Makes a new signing key for `user_id` (`Name <email>`).
/// Returns `(secret key armored, public key armored)`.
pub fn generate_key(user_id: &str) -> anyhow::Result<(String, String)> {
    let secret = generate_signed(user_id)?;
    let public = secret.signed_public_key();
    let secret_armored = secret
        .to_armored_string(ArmorOptions::default())
        .context("could not armor the secret key")?;
    let public_armored = public
        .to_armored_string(ArmorOptions::default())
        .context("could not armor the public key")?;
    Ok((secret_armored, public_armored))
}

fn generate_signed(user_id: &str) -> anyhow::Result<SignedSecretKey> {
    let mut params = SecretKeyParamsBuilder::default();
    params
        .key_type(KeyType::Ed25519Legacy)
        .can_certify(true)
        .can_sign(true)
        .can_encrypt(false)
        .primary_user_id(user_id.to_string())
        .preferred_hash_algorithms(vec![HashAlgorithm::Sha512, HashAlgorithm::Sha256].into());
    let params = params
        .build()
        .map_err(|e| anyhow!("could not set up key parameters: {e}"))?;
    let mut rng = rand::thread_rng();
    let key = params
        .generate(&mut rng)
        .map_err(|e| anyhow!("could not generate the key: {e}"))?;
    key.sign(&mut rng, &Password::empty())
        .map_err(|e| anyhow!("could not self-sign the key: {e}"))
}

/// A loaded secret key that signs repository metadata.
pub struct Signer {
    key: SignedSecretKey,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({})", self.fingerprint())
    }
}

impl Signer {
    /// Loads the key from `path` when given, else from `BUILDER_SIGNING_KEY` (armored text),
    /// else from the file named by `BUILDER_SIGNING_KEY_FILE`.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        if let Some(p) = path {
            return Self::from_file(p);
        }
        if let Ok(text) = std::env::var(ENV_KEY) {
            if !text.trim().is_empty() {
                return Self::from_armored(&text).map_err(|e| {
                    crate::error::usage(format!("could not use the key in `{ENV_KEY}`: {e:#}"))
                });
            }
        }
        if let Ok(p) = std::env::var(ENV_KEY_FILE) {
            if !p.is_empty() {
                return Self::from_file(&PathBuf::from(p));
            }
        }
        Err(crate::error::usage(format!(
            "no signing key: pass `--signing-key PATH`, or set `{ENV_KEY}` (armored key) or \
             `{ENV_KEY_FILE}` (a path); make one with `builder key generate --out PATH`"
        )))
    }

    /// Loads an armored secret key file.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        // A missing or unusable key is a configuration error (exit 2), not a refused stage.
        let text = std::fs::read_to_string(path).map_err(|e| {
            crate::error::usage(format!(
                "could not read signing key `{}`: {e}; pass the path of an armored secret key \
                 (`builder key generate --out PATH` makes one)",
                path.display()
            ))
        })?;
        Self::from_armored(&text).map_err(|e| {
            crate::error::usage(format!(
                "could not use signing key `{}`: {e:#}",
                path.display()
            ))
        })
    }

    /// Parses an armored, unprotected secret key.
    pub fn from_armored(text: &str) -> anyhow::Result<Self> {
        let (key, _) = SignedSecretKey::from_string(text).map_err(|e| {
            anyhow!("not an armored OpenPGP secret key ({e}): make one with `builder key generate`")
        })?;
        key.verify()
            .map_err(|e| anyhow!("the key's self-signatures do not verify: {e}"))?;
        let signer = Signer { key };
        // Fail now, not in the middle of a publish, if the key is locked or cannot sign.
        signer.detached_sign(b"probe").context(
            "the key cannot sign (is it passphrase-protected? builder needs an unprotected key)",
        )?;
        Ok(signer)
    }

    /// Hex fingerprint of the signing key, uppercase.
    pub fn fingerprint(&self) -> String {
        hex::encode_upper(self.key.fingerprint().as_bytes())
    }

    /// `InRelease`: the text, clearsigned.
    pub fn clearsign(&self, text: &[u8]) -> anyhow::Result<Vec<u8>> {
        let text = std::str::from_utf8(text).context("the text to clearsign is not UTF-8")?;
        let msg = CleartextSignedMessage::sign(
            rand::thread_rng(),
            text,
            &self.key.primary_key,
            &Password::empty(),
        )
        .map_err(|e| anyhow!("could not clearsign: {e}"))?;
        msg.to_armored_bytes(ArmorOptions::default())
            .map_err(|e| anyhow!("could not armor the clearsigned text: {e}"))
    }

    /// `Release.gpg`: an armored detached signature over `data`.
    pub fn detached_sign(&self, data: &[u8]) -> anyhow::Result<Vec<u8>> {
        let sig = DetachedSignature::sign_binary_data(
            rand::thread_rng(),
            &self.key.primary_key,
            &Password::empty(),
            HashAlgorithm::Sha512,
            data,
        )
        .map_err(|e| anyhow!("could not sign: {e}"))?;
        sig.to_armored_bytes(ArmorOptions::default())
            .map_err(|e| anyhow!("could not armor the signature: {e}"))
    }

    fn public(&self) -> SignedPublicKey {
        self.key.signed_public_key()
    }

    /// The public key, armored (`.asc`).
    pub fn public_key_armored(&self) -> String {
        self.public()
            .to_armored_string(ArmorOptions::default())
            .unwrap_or_default()
    }

    /// The public key as a binary keyring, usable as apt `signed-by` (`.gpg`).
    pub fn public_key_binary(&self) -> Vec<u8> {
        self.public().to_bytes().unwrap_or_default()
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename,
/// with `mode` set before any byte is written. Refuses to replace an existing file unless
/// `overwrite`.
pub fn write_file_atomic(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    overwrite: bool,
) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if !overwrite && path.exists() {
        return Err(crate::error::usage(format!(
            "`{}` already exists: choose another path or pass `--force` to replace it",
            path.display()
        )));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("could not create directory `{}`", dir.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "key".into());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .with_context(|| format!("could not create `{}`", tmp.display()))?;
        f.write_all(bytes)
            .and_then(|_| f.sync_all())
            .with_context(|| format!("could not write `{}`", tmp.display()))?;
        std::fs::rename(&tmp, path)
            .with_context(|| format!("could not move key into place at `{}`", path.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_round_trips_and_signs() {
        let (secret, public) = generate_key("Test <t@example.com>").unwrap();
        assert!(secret.starts_with("-----BEGIN PGP PRIVATE KEY BLOCK-----"));
        assert!(public.starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----"));
        let signer = Signer::from_armored(&secret).unwrap();
        let text = b"Origin: x\nSuite: dev\n- dash line\n";
        let signed = String::from_utf8(signer.clearsign(text).unwrap()).unwrap();
        assert!(
            signed.starts_with("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n"),
            "{signed}"
        );
        let (msg, _) = CleartextSignedMessage::from_string(&signed).unwrap();
        msg.verify(&signer.public()).unwrap();
        assert!(Signer::from_armored(&public).is_err());
    }

    #[test]
    fn rejects_garbage() {
        let err = Signer::from_armored("hello").unwrap_err().to_string();
        assert!(err.contains("builder key generate"), "{err}");
    }
}
