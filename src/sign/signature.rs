//! Version 4 signature packets (RFC 9580 §5.2): reading, hashing, making and checking them
//! with RSA (PKCS #1 v1.5), EdDSA over Ed25519 (legacy and native encodings) and ECDSA over
//! P-256/P-384, through *ring*.

use anyhow::{anyhow, bail};
use ring::signature as rs;
use sha2::Digest as _;

use super::key::{Material, PublicKey, Secret};
use super::packet::{self, Reader};

pub(crate) const TYPE_BINARY: u8 = 0x00;
pub(crate) const TYPE_TEXT: u8 = 0x01;
pub(crate) const TYPE_POSITIVE_CERT: u8 = 0x13;
pub(crate) const TYPE_SUBKEY_BINDING: u8 = 0x18;
pub(crate) const TYPE_PRIMARY_BINDING: u8 = 0x19;
pub(crate) const TYPE_DIRECT_KEY: u8 = 0x1f;
pub(crate) const TYPE_KEY_REVOCATION: u8 = 0x20;
pub(crate) const TYPE_SUBKEY_REVOCATION: u8 = 0x28;

const SUB_CREATED: u8 = 2;
const SUB_EXPIRES: u8 = 3;
const SUB_KEY_EXPIRES: u8 = 9;
const SUB_PREFERRED_SYMMETRIC: u8 = 11;
const SUB_ISSUER: u8 = 16;
const SUB_PREFERRED_HASH: u8 = 21;
const SUB_KEY_FLAGS: u8 = 27;
const SUB_FEATURES: u8 = 30;
const SUB_ISSUER_FINGERPRINT: u8 = 33;
const SUB_NOTATION: u8 = 20;
const SUB_EMBEDDED: u8 = 32;

/// Key flags (subpacket 27).
pub(crate) const FLAG_CERTIFY: u8 = 0x01;
pub(crate) const FLAG_SIGN: u8 = 0x02;

/// A hash algorithm by its OpenPGP number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hash {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
    Sha224,
    /// MD5, RIPEMD-160, SHA-3 or an unknown number: never accepted.
    Other(u8),
}

impl Hash {
    fn from_id(id: u8) -> Hash {
        match id {
            2 => Hash::Sha1,
            8 => Hash::Sha256,
            9 => Hash::Sha384,
            10 => Hash::Sha512,
            11 => Hash::Sha224,
            n => Hash::Other(n),
        }
    }

    fn id(self) -> u8 {
        match self {
            Hash::Sha1 => 2,
            Hash::Sha256 => 8,
            Hash::Sha384 => 9,
            Hash::Sha512 => 10,
            Hash::Sha224 => 11,
            Hash::Other(n) => n,
        }
    }

    /// The name GnuPG prints and the cleartext `Hash:` header carries.
    pub(crate) fn name(self) -> String {
        match self {
            Hash::Sha1 => "SHA1".into(),
            Hash::Sha256 => "SHA256".into(),
            Hash::Sha384 => "SHA384".into(),
            Hash::Sha512 => "SHA512".into(),
            Hash::Sha224 => "SHA224".into(),
            Hash::Other(1) => "MD5".into(),
            Hash::Other(3) => "RIPEMD160".into(),
            Hash::Other(n) => format!("hash algorithm {n}"),
        }
    }

    /// What apt refuses for repository metadata: MD5, SHA-1, RIPEMD-160.
    pub(crate) fn is_weak(self) -> bool {
        matches!(self, Hash::Sha1 | Hash::Other(1) | Hash::Other(3))
    }

    fn digest(self, data: &[u8]) -> Option<Vec<u8>> {
        Some(match self {
            Hash::Sha1 => {
                use sha1::Digest as _;
                sha1::Sha1::digest(data).to_vec()
            }
            Hash::Sha256 => sha2::Sha256::digest(data).to_vec(),
            Hash::Sha384 => sha2::Sha384::digest(data).to_vec(),
            Hash::Sha512 => sha2::Sha512::digest(data).to_vec(),
            Hash::Sha224 => sha2::Sha224::digest(data).to_vec(),
            Hash::Other(_) => return None,
        })
    }
}

/// A version 4 signature packet.
#[derive(Debug, Clone)]
pub(crate) struct Signature {
    pub(crate) sig_type: u8,
    pk_algo: u8,
    pub(crate) hash: Hash,
    /// The hashed subpacket area, as the signature hashes it.
    hashed_area: Vec<u8>,
    left16: [u8; 2],
    /// The algorithm's values: MPI magnitudes, or the 64 native bytes of algorithm 27.
    values: Vec<Vec<u8>>,
    pub(crate) created: Option<u32>,
    expires_after: Option<u32>,
    pub(crate) key_expires_after: Option<u32>,
    pub(crate) key_flags: Option<u8>,
    issuer_fingerprints: Vec<Vec<u8>>,
    issuer_ids: Vec<[u8; 8]>,
    unknown_critical: Option<u8>,
    /// Embedded signatures (subpacket 32), hashed area first: a signing subkey's
    /// back-signature is one of them.
    pub(crate) embedded: Vec<Vec<u8>>,
    /// The packet body, written back unchanged.
    raw: Vec<u8>,
}

impl Signature {
    pub(crate) fn parse(body: &[u8]) -> anyhow::Result<Signature> {
        let mut r = Reader::new(body);
        let version = r.u8()?;
        if version != 4 {
            bail!("a version {version} signature (builder reads version 4)");
        }
        let sig_type = r.u8()?;
        let pk_algo = r.u8()?;
        let hash = Hash::from_id(r.u8()?);
        let hashed_len = usize::from(r.u16()?);
        let hashed_area = r.take(hashed_len)?.to_vec();
        let unhashed_len = usize::from(r.u16()?);
        let unhashed_area = r.take(unhashed_len)?;
        let l = r.take(2)?;
        let left16 = [l[0], l[1]];
        let values = match pk_algo {
            27 => vec![r.take(64)?.to_vec()],
            _ => {
                let mut v = Vec::new();
                while !r.is_empty() {
                    v.push(r.mpi()?.to_vec());
                }
                v
            }
        };
        let mut sig = Signature {
            sig_type,
            pk_algo,
            hash,
            hashed_area,
            left16,
            values,
            created: None,
            expires_after: None,
            key_expires_after: None,
            key_flags: None,
            issuer_fingerprints: Vec::new(),
            issuer_ids: Vec::new(),
            unknown_critical: None,
            embedded: Vec::new(),
            raw: body.to_vec(),
        };
        let hashed = sig.hashed_area.clone();
        for sp in packet::subpackets(&hashed)? {
            let u32_of = |d: &[u8]| <[u8; 4]>::try_from(d).ok().map(u32::from_be_bytes);
            match sp.kind {
                SUB_CREATED => sig.created = u32_of(sp.data),
                SUB_EXPIRES => sig.expires_after = u32_of(sp.data),
                SUB_KEY_EXPIRES => sig.key_expires_after = u32_of(sp.data),
                SUB_KEY_FLAGS => sig.key_flags = sp.data.first().copied(),
                SUB_ISSUER | SUB_ISSUER_FINGERPRINT => sig.note_issuer(sp.kind, sp.data),
                SUB_EMBEDDED => sig.embedded.push(sp.data.to_vec()),
                // A critical notation is one builder cannot honour (RFC 9580 §5.2.3.24).
                SUB_NOTATION if sp.critical => sig.unknown_critical = Some(sp.kind),
                // Known and harmless to ignore (preferences, policy, trust, revocation
                // reasons, features, …).
                4..=8 | 10..=15 | 20..=26 | 28..=31 | 34..=39 => {}
                k if sp.critical => sig.unknown_critical = Some(k),
                _ => {}
            }
        }
        for sp in packet::subpackets(unhashed_area)? {
            match sp.kind {
                SUB_ISSUER | SUB_ISSUER_FINGERPRINT => sig.note_issuer(sp.kind, sp.data),
                // GnuPG puts the back-signature in the hashed area; older versions in the
                // unhashed one. It is a signature of its own either way.
                SUB_EMBEDDED => sig.embedded.push(sp.data.to_vec()),
                _ => {}
            }
        }
        Ok(sig)
    }

    fn note_issuer(&mut self, kind: u8, data: &[u8]) {
        match (kind, data) {
            (SUB_ISSUER, d) if d.len() == 8 => {
                let mut id = [0u8; 8];
                id.copy_from_slice(d);
                self.issuer_ids.push(id);
            }
            (SUB_ISSUER_FINGERPRINT, [4, fpr @ ..]) if fpr.len() == 20 => {
                self.issuer_fingerprints.push(fpr.to_vec())
            }
            _ => {}
        }
    }

    /// Appends the packet.
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        packet::write(out, packet::TAG_SIGNATURE, &self.raw);
    }

    /// Whether the signature names `key` as its issuer: `None` when it names no key.
    /// The key is the one the signature names first (its issuer fingerprint, else its
    /// issuer key ID), as gpgv looks a key up: a signature listing many issuers is not
    /// checked against many keys.
    pub(crate) fn names(&self, key: &PublicKey) -> Option<bool> {
        let fpr = key.fingerprint();
        if let Some(f) = self.issuer_fingerprints.first() {
            return Some(f[..] == fpr[..]);
        }
        self.issuer_ids.first().map(|id| id[..] == fpr[12..])
    }

    /// The keys it names, fingerprints first, as uppercase hex.
    pub(crate) fn issuers(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .issuer_fingerprints
            .iter()
            .map(hex::encode_upper)
            .collect();
        for id in &self.issuer_ids {
            let id = hex::encode_upper(id);
            if !out.iter().any(|f| f.ends_with(&id)) {
                out.push(id);
            }
        }
        out
    }

    /// When the signature itself stops being valid (subpacket 3), as Unix seconds.
    pub(crate) fn expires_at(&self) -> Option<u64> {
        match (self.created, self.expires_after) {
            (Some(c), Some(e)) if e != 0 => Some(u64::from(c) + u64::from(e)),
            _ => None,
        }
    }

    /// What the signature hashes: `data` (the document, or the key material a key signature
    /// covers), then its own hashed part and the version 4 trailer.
    fn hashed_input(&self, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len() + self.hashed_area.len() + 12);
        out.extend_from_slice(data);
        out.extend_from_slice(&[4, self.sig_type, self.pk_algo, self.hash.id()]);
        out.extend_from_slice(&(self.hashed_area.len() as u16).to_be_bytes());
        out.extend_from_slice(&self.hashed_area);
        out.extend_from_slice(&[4, 0xff]);
        out.extend_from_slice(&((self.hashed_area.len() + 6) as u32).to_be_bytes());
        out
    }

    /// Checks the signature over `data` against `key`. The error says why it does not hold.
    pub(crate) fn verify(&self, key: &PublicKey, data: &[u8]) -> anyhow::Result<()> {
        if let Some(k) = self.unknown_critical {
            bail!("it carries critical subpacket {k}, which builder does not know");
        }
        // What costs nothing first: whether the key and the signature can match at all. The
        // document is hashed only then (it may be a 64 MiB InRelease).
        let value = |i: usize| self.values.get(i).map(Vec::as_slice).unwrap_or_default();
        let mismatch = || anyhow!("it does not match the data");
        match (&key.material, key.algo, self.pk_algo) {
            (Material::Rsa { n, .. }, 1 | 3, 1 | 3) => {
                let bits = n.len() * 8 - n.first().map_or(8, |b| b.leading_zeros() as usize);
                if bits < 2048 {
                    bail!("the RSA key has {bits} bits; builder needs at least 2048");
                }
                if value(0).len() > n.len() {
                    return Err(mismatch());
                }
            }
            (Material::EdDsa(_), _, 22) | (Material::Ed25519(_), _, 27) => {}
            (Material::Ecdsa { .. }, _, 19) => {}
            (Material::Unsupported, ..) => bail!(
                "the key uses public-key algorithm {}, which builder cannot verify",
                key.algo
            ),
            _ => bail!(
                "it was made with public-key algorithm {}, not the key's ({})",
                self.pk_algo,
                key.algo
            ),
        }
        let message = self.hashed_input(data);
        let digest = self.hash.digest(&message).ok_or_else(|| {
            anyhow!(
                "it uses {}, which builder does not accept",
                self.hash.name()
            )
        })?;
        if digest[..2] != self.left16 {
            return Err(mismatch());
        }
        match &key.material {
            Material::Rsa { n, e } => {
                let params: &rs::RsaParameters = match self.hash {
                    Hash::Sha256 => &rs::RSA_PKCS1_2048_8192_SHA256,
                    Hash::Sha384 => &rs::RSA_PKCS1_2048_8192_SHA384,
                    Hash::Sha512 => &rs::RSA_PKCS1_2048_8192_SHA512,
                    Hash::Sha1 => &rs::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
                    h => bail!("RSA with {} is not supported", h.name()),
                };
                let sig = left_pad(value(0), n.len()).ok_or_else(mismatch)?;
                rs::RsaPublicKeyComponents { n, e }
                    .verify(params, &message, &sig)
                    .map_err(|_| mismatch())
            }
            Material::EdDsa(point) => {
                let r = left_pad(value(0), 32).ok_or_else(mismatch)?;
                let s = left_pad(value(1), 32).ok_or_else(mismatch)?;
                rs::UnparsedPublicKey::new(&rs::ED25519, point)
                    .verify(&digest, &[r, s].concat())
                    .map_err(|_| mismatch())
            }
            Material::Ed25519(point) => rs::UnparsedPublicKey::new(&rs::ED25519, point)
                .verify(&digest, value(0))
                .map_err(|_| mismatch()),
            Material::Ecdsa { p384, point } => {
                let (alg, size): (&rs::EcdsaVerificationAlgorithm, usize) = match (p384, self.hash)
                {
                    (false, Hash::Sha256) => (&rs::ECDSA_P256_SHA256_FIXED, 32),
                    (true, Hash::Sha384) => (&rs::ECDSA_P384_SHA384_FIXED, 48),
                    (_, h) => bail!("ECDSA with {} is not supported", h.name()),
                };
                let r = left_pad(value(0), size).ok_or_else(mismatch)?;
                let s = left_pad(value(1), size).ok_or_else(mismatch)?;
                rs::UnparsedPublicKey::new(alg, point)
                    .verify(&message, &[r, s].concat())
                    .map_err(|_| mismatch())
            }
            Material::Unsupported => Err(mismatch()),
        }
    }
}

/// The most signatures a signature block may carry: an InRelease has one to three. Each is
/// checked over the whole document, so the bound bounds the work a hostile mirror can cause.
const MAX_SIGNATURES: usize = 16;

/// The signatures of an armored signature block (cleartext or detached), and how many of
/// its signature packets builder cannot read (other versions). Any other packet, or more
/// than [`MAX_SIGNATURES`], is an error.
pub(crate) fn read_block(body: &[u8]) -> anyhow::Result<(Vec<Signature>, usize)> {
    let mut signatures = Vec::new();
    let mut unreadable = 0;
    for p in packet::parse(body)? {
        if p.tag != packet::TAG_SIGNATURE {
            bail!(
                "the signature block holds a packet of tag {}, not a signature",
                p.tag
            );
        }
        match Signature::parse(&p.body) {
            Ok(s) => signatures.push(s),
            Err(_) => unreadable += 1,
        }
        if signatures.len() + unreadable > MAX_SIGNATURES {
            bail!("it carries more than {MAX_SIGNATURES} signatures");
        }
    }
    Ok((signatures, unreadable))
}

/// `value` as exactly `len` big-endian bytes; `None` when it is longer.
fn left_pad(value: &[u8], len: usize) -> Option<Vec<u8>> {
    let pad = len.checked_sub(value.len())?;
    let mut out = vec![0u8; pad];
    out.extend_from_slice(value);
    Some(out)
}

/// What a new signature says besides its issuer and time.
#[derive(Default)]
pub(crate) struct Extra {
    /// Key flags, for self-signatures.
    pub(crate) key_flags: Option<u8>,
    /// Preferred hashes, ciphers and the features byte, for self-signatures.
    pub(crate) preferences: bool,
    /// A signature packet body to embed (a signing subkey's back-signature).
    pub(crate) embedded: Option<Vec<u8>>,
}

/// Signs `data` (already in the form `sig_type` hashes) with `key`.
pub(crate) fn sign(
    key: &PublicKey,
    secret: &Secret,
    sig_type: u8,
    hash: Hash,
    data: &[u8],
    created: u32,
    extra: &Extra,
) -> anyhow::Result<Signature> {
    let fpr = key.fingerprint();
    let mut hashed = Vec::new();
    packet::write_subpacket(
        &mut hashed,
        SUB_ISSUER_FINGERPRINT,
        &[&[4u8][..], &fpr].concat(),
    );
    packet::write_subpacket(&mut hashed, SUB_CREATED, &created.to_be_bytes());
    if let Some(flags) = extra.key_flags {
        packet::write_subpacket(&mut hashed, SUB_KEY_FLAGS, &[flags]);
    }
    if extra.preferences {
        packet::write_subpacket(&mut hashed, SUB_PREFERRED_SYMMETRIC, &[9, 7]);
        packet::write_subpacket(&mut hashed, SUB_PREFERRED_HASH, &[10, 9, 8]);
        packet::write_subpacket(&mut hashed, SUB_FEATURES, &[0x01]);
    }
    if let Some(body) = &extra.embedded {
        packet::write_subpacket(&mut hashed, SUB_EMBEDDED, body);
    }
    let mut unhashed = Vec::new();
    packet::write_subpacket(&mut unhashed, SUB_ISSUER, &fpr[12..]);
    let draft = Signature {
        sig_type,
        pk_algo: key.algo,
        hash,
        hashed_area: hashed,
        left16: [0, 0],
        values: Vec::new(),
        created: Some(created),
        expires_after: None,
        key_expires_after: None,
        key_flags: extra.key_flags,
        issuer_fingerprints: Vec::new(),
        issuer_ids: Vec::new(),
        unknown_critical: None,
        embedded: Vec::new(),
        raw: Vec::new(),
    };
    let message = draft.hashed_input(data);
    let digest = hash
        .digest(&message)
        .ok_or_else(|| anyhow!("builder does not sign with {}", hash.name()))?;
    let values: Vec<u8> = match (secret, &key.material) {
        (Secret::Rsa(pair), Material::Rsa { .. }) => {
            let padding: &'static dyn ring::signature::RsaEncoding = match hash {
                Hash::Sha256 => &rs::RSA_PKCS1_SHA256,
                Hash::Sha384 => &rs::RSA_PKCS1_SHA384,
                Hash::Sha512 => &rs::RSA_PKCS1_SHA512,
                h => bail!("builder does not sign with RSA and {}", h.name()),
            };
            let mut sig = vec![0u8; pair.public().modulus_len()];
            pair.sign(
                padding,
                &ring::rand::SystemRandom::new(),
                &message,
                &mut sig,
            )
            .map_err(|_| anyhow!("the RSA key could not sign"))?;
            let mut out = Vec::new();
            packet::write_mpi(&mut out, &sig);
            out
        }
        (Secret::Ed25519(pair), Material::EdDsa(_)) => {
            let sig = pair.sign(&digest);
            let (r, s) = sig.as_ref().split_at(32);
            let mut out = Vec::new();
            packet::write_mpi(&mut out, r);
            packet::write_mpi(&mut out, s);
            out
        }
        (Secret::Ed25519(pair), Material::Ed25519(_)) => pair.sign(&digest).as_ref().to_vec(),
        _ => bail!("builder cannot sign with public-key algorithm {}", key.algo),
    };
    let mut body = message[data.len()..message.len() - 6].to_vec();
    body.extend_from_slice(&(unhashed.len() as u16).to_be_bytes());
    body.extend_from_slice(&unhashed);
    body.extend_from_slice(&digest[..2]);
    body.extend_from_slice(&values);
    Signature::parse(&body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_hashes_are_the_ones_apt_refuses() {
        assert!(Hash::from_id(1).is_weak() && Hash::from_id(2).is_weak());
        assert!(Hash::from_id(3).is_weak());
        assert!(!Hash::from_id(8).is_weak() && !Hash::from_id(10).is_weak());
        assert_eq!(Hash::from_id(14).name(), "hash algorithm 14");
    }

    #[test]
    fn hostile_signature_packets_are_errors() {
        for bad in [
            &[][..],
            &[3, 0, 1, 8],
            &[4, 0, 1, 8, 0xff, 0xff],
            &[4, 0, 22, 8, 0, 0, 0, 0, 1],
            &[4, 0, 27, 8, 0, 0, 0, 0, 1, 2, 3],
            &[4, 0, 1, 8, 0, 2, 0, 2, 0, 0, 1, 2, 0, 9, 1],
        ] {
            assert!(Signature::parse(bad).is_err(), "{bad:?}");
        }
    }
}
