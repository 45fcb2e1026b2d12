//! sha256 digests: the [`Digest`] type every stage uses to name bytes (manifest, smoke
//! report, OCI blobs, repositories), and helpers that compute it from files and bytes.
//!
//! A digest is parsed once, from `sha256:<64 lowercase hex>`, and displayed one way, the
//! same form. Files that spell it as bare hex (manifest.json, the smoke report, repository
//! history, like SHA256SUMS) keep that spelling through the [`bare`] serde adapter, so their
//! bytes do not change. Nothing outside this module adds or strips the `sha256:` prefix.

use std::fmt;
use std::io::Write;
use std::path::Path;
use std::str::FromStr;

use anyhow::Context;
use sha2::{Digest as _, Sha256};

/// The prefix of the one spelling of a [`Digest`].
const PREFIX: &str = "sha256:";

/// A sha256 digest. Displays (and serialises) as `sha256:<64 lowercase hex>`; [`Digest::hex`]
/// is the bare form.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

/// Input that is not a sha256 digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not a sha256 digest: expected {expected}")]
pub struct DigestError {
    input: String,
    expected: &'static str,
}

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(Sha256::digest(bytes).into())
    }

    /// The digest of a file's bytes, streamed.
    pub fn of_file(path: &Path) -> anyhow::Result<Digest> {
        let mut f = std::fs::File::open(path)
            .with_context(|| format!("could not read `{}`", path.display()))?;
        let mut h = Sha256::new();
        std::io::copy(&mut f, &mut h)
            .with_context(|| format!("could not read `{}`", path.display()))?;
        Ok(Digest(h.finalize().into()))
    }

    /// Parses the bare form: exactly 64 lowercase hex digits.
    pub fn from_hex(s: &str) -> Result<Digest, DigestError> {
        let err = || DigestError {
            input: s.to_string(),
            expected: "64 lowercase hex digits",
        };
        if s.len() != 64
            || !s
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(err());
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| err())?;
        Ok(Digest(out))
    }

    /// Reads a digest a file spells as bare hex, as the readers always have: surrounding
    /// whitespace, a `sha256:` prefix and uppercase hex are accepted.
    pub fn parse_lenient(s: &str) -> Result<Digest, DigestError> {
        let t = s.trim();
        let t = t.strip_prefix(PREFIX).unwrap_or(t);
        Digest::from_hex(&t.to_ascii_lowercase()).map_err(|_| DigestError {
            input: s.to_string(),
            expected: "64 hex digits, optionally after `sha256:`",
        })
    }

    /// A digest from the 32 bytes a sha256 hasher finished with.
    pub fn from_bytes(bytes: [u8; 32]) -> Digest {
        Digest(bytes)
    }

    /// The bare form: 64 lowercase hex digits.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// `blobs/sha256/<hex>`: where an OCI layout keeps the blob.
    pub fn blob_path(&self) -> String {
        format!("blobs/sha256/{}", self.hex())
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    /// Parses `sha256:<64 lowercase hex>`, the one spelling.
    fn from_str(s: &str) -> Result<Digest, DigestError> {
        s.strip_prefix(PREFIX)
            .and_then(|h| Digest::from_hex(h).ok())
            .ok_or_else(|| DigestError {
                input: s.to_string(),
                expected: "`sha256:` followed by 64 lowercase hex digits",
            })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Serde adapter for fields stored as bare hex (`#[serde(with = "crate::digest::bare")]`):
/// writes 64 lowercase hex digits, reads them as [`Digest::parse_lenient`] does.
pub mod bare {
    use super::Digest;
    use serde::Deserialize as _;

    pub fn serialize<S: serde::Serializer>(d: &Digest, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&d.hex())
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Digest::parse_lenient(&s).map_err(serde::de::Error::custom)
    }
}

/// Lowercase hex sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> anyhow::Result<String> {
    Digest::of_file(path).map(|d| d.hex())
}

/// Lowercase hex sha256 of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Digest::of(bytes).hex()
}

/// A writer that hashes (sha256) and counts what passes through it, for archives whose
/// digest is needed as they are written (.deb files, OCI blobs, rootfs tars).
pub struct HashWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> HashWriter<W> {
    pub fn new(inner: W) -> Self {
        HashWriter {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// The wrapped writer, the digest of everything written, and its length.
    pub fn finish(self) -> (W, Digest, u64) {
        (
            self.inner,
            Digest(self.hasher.finalize().into()),
            self.count,
        )
    }
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    #[test]
    fn parses_and_displays_one_spelling() {
        let d = Digest::of(b"hello");
        assert_eq!(d.hex(), HELLO);
        assert_eq!(d.to_string(), format!("sha256:{HELLO}"));
        assert_eq!(format!("sha256:{HELLO}").parse::<Digest>().unwrap(), d);
        assert_eq!(Digest::from_hex(HELLO).unwrap(), d);
        assert_eq!(d.blob_path(), format!("blobs/sha256/{HELLO}"));
    }

    #[test]
    fn bad_input_is_a_clear_error() {
        for bad in [
            HELLO,
            "sha256:",
            "sha256:00",
            "sha512:00",
            &format!("sha256:{}", HELLO.to_uppercase()),
            &format!("sha256:{HELLO}0"),
            &format!("sha256: {HELLO}"),
        ] {
            let err = bad.parse::<Digest>().unwrap_err().to_string();
            assert!(
                err.contains("is not a sha256 digest") && err.contains("64 lowercase hex"),
                "{err}"
            );
        }
        assert!(Digest::from_hex("zz").is_err());
    }

    #[test]
    fn lenient_reading_accepts_what_readers_always_did() {
        let d = Digest::of(b"hello");
        for ok in [
            HELLO.to_string(),
            format!(" sha256:{HELLO}\n"),
            HELLO.to_uppercase(),
        ] {
            assert_eq!(Digest::parse_lenient(&ok).unwrap(), d, "{ok}");
        }
        assert!(Digest::parse_lenient("00").is_err());
    }

    #[test]
    fn serde_keeps_both_spellings_byte_for_byte() {
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct F {
            #[serde(with = "bare")]
            sha256: Digest,
            digest: Digest,
            id: Option<Digest>,
        }
        let d = Digest::of(b"hello");
        let text = format!(r#"{{"sha256":"{HELLO}","digest":"sha256:{HELLO}","id":null}}"#);
        let f: F = serde_json::from_str(&text).unwrap();
        assert_eq!(
            f,
            F {
                sha256: d,
                digest: d,
                id: None
            }
        );
        assert_eq!(serde_json::to_string(&f).unwrap(), text);
        let err = serde_json::from_str::<F>(r#"{"sha256":"x","digest":"y","id":null}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`x` is not a sha256 digest"), "{err}");
    }

    #[test]
    fn the_hash_writer_digests_what_passes() {
        let mut w = HashWriter::new(Vec::new());
        w.write_all(b"hello").unwrap();
        let (bytes, d, n) = w.finish();
        assert_eq!(
            (bytes.as_slice(), d, n),
            (&b"hello"[..], Digest::of(b"hello"), 5)
        );
    }
}
