//! Version 4 keys and certificates (RFC 9580 §5.5, §10.1): a primary key with its user IDs,
//! subkeys and the signatures that bind them, read from keyrings and secret key files, and
//! judged the way `gpgv` judges them before it trusts a data signature: self-signatures and
//! subkey bindings that verify, revocations, expiry, the signing flag.

use anyhow::{bail, Context};
use sha1::Digest as _;

use super::packet::{self, Packet, Reader};
use super::signature::{self as sig, Signature};

const OID_ED25519: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0xda, 0x47, 0x0f, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
/// How far in the future a signature's creation time may be (clocks differ), in seconds.
pub(crate) const CLOCK_SKEW: u64 = 300;
/// EdDSA over Ed25519 in the encoding GnuPG 2.2 makes and reads (RFC 9580's "legacy").
pub(crate) const ALGO_EDDSA_LEGACY: u8 = 22;

/// What a public key can verify with.
#[derive(Debug, Clone)]
pub(crate) enum Material {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    EdDsa([u8; 32]),
    Ed25519([u8; 32]),
    Ecdsa {
        p384: bool,
        point: Vec<u8>,
    },
    /// DSA, ElGamal, ECDH, other curves: read, fingerprinted, never used.
    Unsupported,
}

/// A version 4 public key (primary or subkey).
#[derive(Debug, Clone)]
pub(crate) struct PublicKey {
    pub(crate) algo: u8,
    pub(crate) created: u32,
    pub(crate) material: Material,
    /// The public key packet body, as fingerprints and key signatures hash it.
    body: Vec<u8>,
}

impl PublicKey {
    /// Reads the public part of a key packet body; returns it and how many bytes it took.
    fn parse(body: &[u8]) -> anyhow::Result<(PublicKey, usize)> {
        let mut r = Reader::new(body);
        let version = r.u8()?;
        if version != 4 {
            bail!("a version {version} key (builder reads version 4)");
        }
        let created = r.u32()?;
        let algo = r.u8()?;
        let material = match algo {
            1..=3 => Material::Rsa {
                n: r.mpi()?.to_vec(),
                e: r.mpi()?.to_vec(),
            },
            16 | 17 => {
                for _ in 0..(if algo == 16 { 3 } else { 4 }) {
                    r.mpi()?;
                }
                Material::Unsupported
            }
            18 => {
                oid(&mut r)?;
                r.mpi()?;
                let kdf = usize::from(r.u8()?);
                r.take(kdf)?;
                Material::Unsupported
            }
            19 => {
                let curve = oid(&mut r)?;
                let point = r.mpi()?.to_vec();
                match curve {
                    OID_P256 => Material::Ecdsa { p384: false, point },
                    OID_P384 => Material::Ecdsa { p384: true, point },
                    _ => Material::Unsupported,
                }
            }
            ALGO_EDDSA_LEGACY => {
                let curve = oid(&mut r)?;
                match (curve, r.mpi()?) {
                    (OID_ED25519, [0x40, point @ ..]) if point.len() == 32 => {
                        Material::EdDsa(point.try_into().unwrap_or([0; 32]))
                    }
                    _ => Material::Unsupported,
                }
            }
            25 => {
                r.take(32)?;
                Material::Unsupported
            }
            26 => {
                r.take(56)?;
                Material::Unsupported
            }
            27 => Material::Ed25519(r.take(32)?.try_into().unwrap_or([0; 32])),
            28 => {
                r.take(57)?;
                Material::Unsupported
            }
            // An unknown algorithm: its fields cannot be told apart, the body is all of it.
            _ => {
                r.rest();
                Material::Unsupported
            }
        };
        let len = r.pos();
        if len > usize::from(u16::MAX) {
            bail!("a key of {len} bytes");
        }
        let key = PublicKey {
            algo,
            created,
            material,
            body: body[..len].to_vec(),
        };
        Ok((key, len))
    }

    /// What key signatures hash for this key: 0x99, a two-byte length, the body.
    pub(crate) fn hash_prefix(&self) -> Vec<u8> {
        let mut out = vec![0x99];
        out.extend_from_slice(&(self.body.len() as u16).to_be_bytes());
        out.extend_from_slice(&self.body);
        out
    }

    /// The version 4 fingerprint: SHA-1 over [`Self::hash_prefix`].
    pub(crate) fn fingerprint(&self) -> [u8; 20] {
        sha1::Sha1::digest(self.hash_prefix()).into()
    }

    pub(crate) fn fingerprint_hex(&self) -> String {
        hex::encode_upper(self.fingerprint())
    }

    fn write(&self, out: &mut Vec<u8>, tag: u8) {
        packet::write(out, tag, &self.body);
    }
}

fn oid<'a>(r: &mut Reader<'a>) -> anyhow::Result<&'a [u8]> {
    let len = r.u8()?;
    if len == 0 || len == 0xff {
        bail!("a reserved curve OID length");
    }
    r.take(usize::from(len))
}

/// A secret key ready to sign.
pub(crate) enum Secret {
    Rsa(ring::rsa::KeyPair),
    Ed25519(ring::signature::Ed25519KeyPair),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// What a secret key packet holds besides the public part.
#[derive(Debug, Clone)]
enum SecretState {
    /// A public key packet: no secret here.
    Absent,
    /// Encrypted with a passphrase, or a GnuPG stub for a key kept elsewhere (a card).
    Locked,
    Ready(std::sync::Arc<Secret>),
}

/// Reads the secret part that follows the public part of a secret key packet.
fn parse_secret(key: &PublicKey, rest: &[u8]) -> anyhow::Result<SecretState> {
    let mut r = Reader::new(rest);
    if r.u8()? != 0 {
        return Ok(SecretState::Locked);
    }
    let start = r.pos();
    let secret = match &key.material {
        Material::Rsa { n, e } => {
            let (d, p, q, u) = (r.mpi()?, r.mpi()?, r.mpi()?, r.mpi()?);
            // OpenPGP keeps p < q and u = p⁻¹ mod q; ring wants p > q and qInv = q⁻¹ mod p,
            // so the primes swap roles and u is ring's qInv.
            let components = ring::rsa::KeyPairComponents {
                public_key: ring::rsa::PublicKeyComponents {
                    n: n.as_slice(),
                    e: e.as_slice(),
                },
                d,
                p: q,
                q: p,
                dP: &big_mod(d, &minus_one(q))[..],
                dQ: &big_mod(d, &minus_one(p))[..],
                qInv: u,
            };
            let pair = ring::rsa::KeyPair::from_components(&components)
                .map_err(|e| anyhow::anyhow!("the RSA secret key is not usable: {e}"))?;
            Some(Secret::Rsa(pair))
        }
        Material::EdDsa(public) | Material::Ed25519(public) => {
            let seed = if key.algo == 27 {
                r.take(32)?
            } else {
                r.mpi()?
            };
            let seed = left_pad32(seed).context("an Ed25519 secret longer than 32 bytes")?;
            let pair = ring::signature::Ed25519KeyPair::from_seed_and_public_key(&seed, public)
                .map_err(|e| anyhow::anyhow!("the Ed25519 secret does not match its key: {e}"))?;
            Some(Secret::Ed25519(pair))
        }
        _ => None,
    };
    let Some(secret) = secret else {
        return Ok(SecretState::Absent);
    };
    let sum = checksum(&rest[start..r.pos()]);
    if r.u16()? != sum {
        bail!("the secret key's checksum does not match: the key file is damaged");
    }
    Ok(SecretState::Ready(std::sync::Arc::new(secret)))
}

/// The two-byte checksum after an unprotected secret key: the sum of its bytes.
fn checksum(secret: &[u8]) -> u16 {
    secret
        .iter()
        .fold(0u16, |s, b| s.wrapping_add(u16::from(*b)))
}

fn left_pad32(v: &[u8]) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    out.get_mut(32usize.checked_sub(v.len())?..)?
        .copy_from_slice(v);
    Some(out)
}

/// `x - 1` for a big-endian magnitude `x > 0`.
fn minus_one(x: &[u8]) -> Vec<u8> {
    let mut out = x.to_vec();
    for b in out.iter_mut().rev() {
        let (v, borrow) = b.overflowing_sub(1);
        *b = v;
        if !borrow {
            break;
        }
    }
    out
}

/// `a mod m` for big-endian magnitudes, by shifting `a` in bit by bit (RSA's CRT exponents,
/// computed once per key load).
fn big_mod(a: &[u8], m: &[u8]) -> Vec<u8> {
    let limbs = |x: &[u8]| -> Vec<u32> {
        let mut v: Vec<u32> = x
            .rchunks(4)
            .map(|c| c.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)))
            .collect();
        v.push(0);
        v
    };
    let m = limbs(m);
    let mut r = vec![0u32; m.len()];
    let ge = |r: &[u32]| {
        for i in (0..r.len()).rev() {
            if r[i] != m[i] {
                return r[i] > m[i];
            }
        }
        true
    };
    for byte in a {
        for bit in (0..8).rev() {
            let mut carry = u32::from((byte >> bit) & 1);
            for limb in r.iter_mut() {
                let next = *limb >> 31;
                *limb = (*limb << 1) | carry;
                carry = next;
            }
            if ge(&r) {
                let mut borrow = 0u64;
                for (x, y) in r.iter_mut().zip(&m) {
                    let d = u64::from(*x).wrapping_sub(u64::from(*y) + borrow);
                    *x = d as u32;
                    borrow = (d >> 63) & 1;
                }
            }
        }
    }
    let out: Vec<u8> = r.iter().rev().flat_map(|l| l.to_be_bytes()).collect();
    let zeros = out.iter().take_while(|b| **b == 0).count();
    out[zeros..].to_vec()
}

/// A key of a certificate with the signatures on it.
#[derive(Debug, Clone)]
struct Component {
    key: PublicKey,
    secret: SecretState,
    sigs: Vec<Signature>,
}

/// A primary key with its user IDs and subkeys (a "transferable" key).
#[derive(Debug, Clone)]
pub(crate) struct Cert {
    primary: Component,
    users: Vec<(Vec<u8>, Vec<Signature>)>,
    subkeys: Vec<Component>,
}

/// Why a key of a certificate may not make data signatures at a given time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unusable {
    NoSelfSignature,
    /// A signing subkey whose binding lacks the subkey's back-signature.
    NoBackSignature,
    Revoked,
    Expired(u64),
    NotForSigning,
}

impl std::fmt::Display for Unusable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unusable::NoSelfSignature => f.write_str("it has no valid self-signature or binding"),
            Unusable::NoBackSignature => {
                f.write_str("its binding lacks the subkey's back-signature (cross-certification)")
            }
            Unusable::Revoked => f.write_str("it is revoked"),
            Unusable::Expired(t) => {
                write!(
                    f,
                    "it expired on {}",
                    crate::timefmt::rfc3339_secs(*t as i64)
                )
            }
            Unusable::NotForSigning => f.write_str("it is not flagged for signing"),
        }
    }
}

/// A key of a certificate as judged at one time.
pub(crate) struct Judged<'a> {
    pub(crate) key: &'a PublicKey,
    secret: Option<&'a Secret>,
    locked: bool,
    pub(crate) unusable: Option<Unusable>,
}

impl Cert {
    /// The certificates in a packet sequence, in order. Components builder cannot read (other
    /// key versions, unknown signatures) are skipped, as GnuPG skips them.
    pub(crate) fn parse_all(packets: Vec<Packet>) -> anyhow::Result<Vec<Cert>> {
        let mut certs: Vec<Cert> = Vec::new();
        // Where the next signature belongs: 0 primary, 1 the last user ID, 2 the last subkey,
        // 3 nowhere (a component that was skipped). `skipping`: the whole certificate is.
        let mut target = 3u8;
        let mut skipping = false;
        for p in packets {
            let primary = matches!(p.tag, packet::TAG_PUBLIC_KEY | packet::TAG_SECRET_KEY);
            if primary {
                skipping = true;
                target = 3;
                if let Some(c) = component(&p)? {
                    certs.push(Cert {
                        primary: c,
                        users: Vec::new(),
                        subkeys: Vec::new(),
                    });
                    skipping = false;
                    target = 0;
                }
                continue;
            }
            if skipping {
                continue;
            }
            let Some(cert) = certs.last_mut() else {
                bail!("the data does not start with a key (packet tag {})", p.tag);
            };
            match p.tag {
                packet::TAG_PUBLIC_SUBKEY | packet::TAG_SECRET_SUBKEY => {
                    target = 3;
                    if let Some(c) = component(&p)? {
                        cert.subkeys.push(c);
                        target = 2;
                    }
                }
                packet::TAG_USER_ID => {
                    cert.users.push((p.body, Vec::new()));
                    target = 1;
                }
                packet::TAG_USER_ATTRIBUTE => target = 3,
                packet::TAG_SIGNATURE => {
                    let Ok(s) = Signature::parse(&p.body) else {
                        continue;
                    };
                    match target {
                        0 => cert.primary.sigs.push(s),
                        1 => {
                            if let Some(u) = cert.users.last_mut() {
                                u.1.push(s)
                            }
                        }
                        2 => {
                            if let Some(k) = cert.subkeys.last_mut() {
                                k.sigs.push(s)
                            }
                        }
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        Ok(certs)
    }

    pub(crate) fn primary(&self) -> &PublicKey {
        &self.primary.key
    }

    /// The primary key and its subkeys, as read (not judged).
    pub(crate) fn keys(&self) -> impl Iterator<Item = &PublicKey> {
        std::iter::once(&self.primary.key).chain(self.subkeys.iter().map(|c| &c.key))
    }

    /// Every key of the certificate, primary first, as judged at `now` (Unix seconds).
    pub(crate) fn judge(&self, now: u64) -> Vec<Judged<'_>> {
        let primary = &self.primary.key;
        let prefix = primary.hash_prefix();
        // A self-signature counts when it verifies, is not expired and is not from the future
        // (GnuPG drops such self-signatures too).
        let verified = |s: &&Signature, data: &[u8]| {
            s.names(primary) != Some(false)
                && s.expires_at().is_none_or(|t| t > now)
                && s.created.is_none_or(|c| u64::from(c) <= now + CLOCK_SKEW)
                && s.verify(primary, data).is_ok()
        };
        // The primary key: its newest self-signature (over a user ID, or directly on it).
        let mut selfsigs: Vec<&Signature> = Vec::new();
        for (uid, sigs) in &self.users {
            let data = certification_data(primary, uid);
            selfsigs.extend(
                sigs.iter()
                    .filter(|s| (0x10..=0x13).contains(&s.sig_type))
                    .filter(|s| verified(s, &data)),
            );
        }
        let direct = self.primary.sigs.iter();
        selfsigs.extend(
            direct
                .clone()
                .filter(|s| s.sig_type == sig::TYPE_DIRECT_KEY)
                .filter(|s| verified(s, &prefix)),
        );
        let revoked = direct
            .filter(|s| s.sig_type == sig::TYPE_KEY_REVOCATION)
            .any(|s| verified(&s, &prefix));
        let primary_state = state(primary, &selfsigs, revoked, now);
        let mut out = vec![judged(&self.primary, primary_state.clone())];
        for sub in &self.subkeys {
            let mut data = prefix.clone();
            data.extend_from_slice(&sub.key.hash_prefix());
            // A binding that lets the subkey sign (its flags say so, or it has none: then the
            // algorithm decides, and every one builder reads signs) needs the subkey's own
            // back-signature (0x19, embedded): without it any certificate could claim another's
            // signing subkey. GnuPG requires it the same way, and judges by the newest binding.
            let backsigned = |b: &Signature| {
                b.key_flags.is_some_and(|f| f & sig::FLAG_SIGN == 0)
                    || b.embedded.iter().any(|raw| {
                        Signature::parse(raw).is_ok_and(|back| {
                            back.sig_type == sig::TYPE_PRIMARY_BINDING
                                && back.verify(&sub.key, &data).is_ok()
                        })
                    })
            };
            let bindings: Vec<&Signature> = sub
                .sigs
                .iter()
                .filter(|s| s.sig_type == sig::TYPE_SUBKEY_BINDING)
                .filter(|s| verified(s, &data))
                .collect();
            let newest = bindings.iter().max_by_key(|s| s.created.unwrap_or(0));
            let cross_certified = newest.is_none_or(|b| backsigned(b));
            let revoked = sub
                .sigs
                .iter()
                .filter(|s| s.sig_type == sig::TYPE_SUBKEY_REVOCATION)
                .any(|s| verified(&s, &data));
            // A subkey is no better than its primary key.
            let st = match &primary_state {
                Some(Unusable::NotForSigning) | None if !cross_certified => {
                    Some(Unusable::NoBackSignature)
                }
                Some(Unusable::NotForSigning) | None => state(&sub.key, &bindings, revoked, now),
                bad => bad.clone(),
            };
            out.push(judged(sub, st));
        }
        out
    }

    /// The key that makes data signatures: the first usable key with its secret, primary
    /// first. The error says why there is none.
    pub(crate) fn signing_key(&self, now: u64) -> anyhow::Result<(&PublicKey, &Secret)> {
        let judged = self.judge(now);
        let mut why = Vec::new();
        for j in &judged {
            match (&j.unusable, j.secret, j.locked) {
                (None, Some(secret), _) => return Ok((j.key, secret)),
                (None, None, true) => why.push(format!(
                    "{} is passphrase-protected or kept on a card (builder needs an \
                     unprotected key: `gpg --passwd` to remove the passphrase, then export it)",
                    j.key.fingerprint_hex()
                )),
                (None, None, false) => why.push(format!(
                    "{} has no secret part here (public key only, or an algorithm builder \
                     does not sign with: RSA or Ed25519 sign)",
                    j.key.fingerprint_hex()
                )),
                (Some(u), ..) => why.push(format!("{}: {u}", j.key.fingerprint_hex())),
            }
        }
        bail!("no key in it can sign: {}", why.join("; "))
    }

    /// The public certificate as packets (a binary keyring of one key).
    pub(crate) fn public_packets(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.primary.key.write(&mut out, packet::TAG_PUBLIC_KEY);
        self.primary.sigs.iter().for_each(|s| s.write(&mut out));
        for (uid, sigs) in &self.users {
            packet::write(&mut out, packet::TAG_USER_ID, uid);
            sigs.iter().for_each(|s| s.write(&mut out));
        }
        for sub in &self.subkeys {
            sub.key.write(&mut out, packet::TAG_PUBLIC_SUBKEY);
            sub.sigs.iter().for_each(|s| s.write(&mut out));
        }
        out
    }
}

/// A key packet as a component: `None` for a key version builder does not read (skipped,
/// as GnuPG skips it); an error for a damaged packet.
fn component(p: &Packet) -> anyhow::Result<Option<Component>> {
    if p.body.first().is_some_and(|v| *v != 4) {
        return Ok(None);
    }
    let (key, len) = PublicKey::parse(&p.body)?;
    let secret = match p.tag {
        packet::TAG_SECRET_KEY | packet::TAG_SECRET_SUBKEY => parse_secret(&key, &p.body[len..])
            .with_context(|| format!("secret key {}", key.fingerprint_hex()))?,
        _ => SecretState::Absent,
    };
    Ok(Some(Component {
        key,
        secret,
        sigs: Vec::new(),
    }))
}

fn judged(c: &Component, unusable: Option<Unusable>) -> Judged<'_> {
    Judged {
        key: &c.key,
        secret: match &c.secret {
            SecretState::Ready(s) => Some(s),
            _ => None,
        },
        locked: matches!(c.secret, SecretState::Locked),
        unusable,
    }
}

/// A key's state from its verified self-signatures (the newest one counts).
fn state(key: &PublicKey, selfsigs: &[&Signature], revoked: bool, now: u64) -> Option<Unusable> {
    if revoked {
        return Some(Unusable::Revoked);
    }
    let Some(newest) = selfsigs.iter().max_by_key(|s| s.created.unwrap_or(0)) else {
        return Some(Unusable::NoSelfSignature);
    };
    if let Some(after) = newest.key_expires_after.filter(|a| *a != 0) {
        let at = u64::from(key.created) + u64::from(after);
        if now >= at {
            return Some(Unusable::Expired(at));
        }
    }
    if newest.key_flags.is_some_and(|f| f & sig::FLAG_SIGN == 0) {
        return Some(Unusable::NotForSigning);
    }
    None
}

/// Reads certificates from binary packets or ASCII armor (one or more blocks).
pub(crate) fn read_certs(bytes: &[u8]) -> anyhow::Result<Vec<Cert>> {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(0);
    if bytes[start..].starts_with(b"-----BEGIN") {
        let text = std::str::from_utf8(bytes).context("armored text that is not UTF-8")?;
        let mut out = Vec::new();
        for block in super::armor::decode_all(text)? {
            out.extend(Cert::parse_all(packet::parse(&block.body)?)?);
        }
        return Ok(out);
    }
    if bytes.starts_with(b"\0\0\0\x20\x01\x01") || bytes.get(8..12) == Some(b"KBXf") {
        bail!("a GnuPG keybox (.kbx), not a keyring: export it with `gpg --export KEY > FILE.gpg`");
    }
    Cert::parse_all(packet::parse(bytes)?)
}

/// What a certification of `uid` on `key` hashes: the key, then 0xb4, a four-byte length
/// and the user ID.
fn certification_data(key: &PublicKey, uid: &[u8]) -> Vec<u8> {
    let mut data = key.hash_prefix();
    data.push(0xb4);
    data.extend_from_slice(&(uid.len() as u32).to_be_bytes());
    data.extend_from_slice(uid);
    data
}

/// The body of a version 4 legacy EdDSA public key packet for `pair`, created at `created`.
fn eddsa_body(created: u32, pair: &ring::signature::Ed25519KeyPair) -> Vec<u8> {
    use ring::signature::KeyPair as _;
    let mut body = vec![4];
    body.extend_from_slice(&created.to_be_bytes());
    body.push(ALGO_EDDSA_LEGACY);
    body.push(OID_ED25519.len() as u8);
    body.extend_from_slice(OID_ED25519);
    packet::write_mpi(
        &mut body,
        &[&[0x40u8][..], pair.public_key().as_ref()].concat(),
    );
    body
}

/// A new Ed25519 (legacy EdDSA) key that certifies and signs, self-signed over `user_id`,
/// created at `now`. Returns `(secret key packets, public key packets)`.
pub(crate) fn generate(user_id: &str, now: u32) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    use ring::rand::SecureRandom as _;
    let mut seed = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut seed)
        .map_err(|_| anyhow::anyhow!("the system's random source failed"))?;
    let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(&seed)
        .map_err(|e| anyhow::anyhow!("could not make an Ed25519 key: {e}"))?;
    let body = eddsa_body(now, &pair);
    let (key, _) = PublicKey::parse(&body)?;
    let data = certification_data(&key, user_id.as_bytes());
    let extra = sig::Extra {
        key_flags: Some(sig::FLAG_CERTIFY | sig::FLAG_SIGN),
        preferences: true,
        embedded: None,
    };
    let secret = Secret::Ed25519(pair);
    let selfsig = sig::sign(
        &key,
        &secret,
        sig::TYPE_POSITIVE_CERT,
        sig::Hash::Sha512,
        &data,
        now,
        &extra,
    )?;
    let mut secret_part = vec![0u8];
    let mut mpi = Vec::new();
    packet::write_mpi(&mut mpi, &seed);
    secret_part.extend_from_slice(&mpi);
    secret_part.extend_from_slice(&checksum(&mpi).to_be_bytes());
    let mut rest = Vec::new();
    packet::write(&mut rest, packet::TAG_USER_ID, user_id.as_bytes());
    selfsig.write(&mut rest);
    let mut secret_packets = Vec::new();
    packet::write(
        &mut secret_packets,
        packet::TAG_SECRET_KEY,
        &[body.as_slice(), &secret_part].concat(),
    );
    secret_packets.extend_from_slice(&rest);
    let mut public_packets = Vec::new();
    key.write(&mut public_packets, packet::TAG_PUBLIC_KEY);
    public_packets.extend_from_slice(&rest);
    Ok((secret_packets, public_packets))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_mod_matches_small_numbers() {
        for (a, m) in [
            (1_000_003u64, 97u64),
            (u64::MAX, 65_537),
            (5, 7),
            (7, 7),
            (0, 3),
        ] {
            let got = big_mod(&a.to_be_bytes(), &m.to_be_bytes());
            let got = got.iter().fold(0u128, |acc, b| (acc << 8) | u128::from(*b));
            assert_eq!(got, u128::from(a % m), "{a} mod {m}");
        }
        assert_eq!(minus_one(&[1, 0, 0]), [0, 0xff, 0xff]);
    }

    #[test]
    fn a_generated_key_is_self_signed_and_can_sign() {
        let (secret, public) = generate("T <t@example.com>", 1_700_000_000).unwrap();
        let certs = read_certs(&secret).unwrap();
        assert_eq!(certs.len(), 1);
        let (key, _) = certs[0].signing_key(1_800_000_000).unwrap();
        assert_eq!(key.fingerprint(), certs[0].primary().fingerprint());
        let public = read_certs(&public).unwrap();
        assert!(public[0].judge(1_800_000_000)[0].unusable.is_none());
        let err = public[0]
            .signing_key(1_800_000_000)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no secret part"), "{err}");
        // A changed user ID breaks the self-signature.
        let mut tampered = public[0].public_packets();
        let at = tampered.windows(3).position(|w| w == b"t@e").unwrap();
        tampered[at] = b'u';
        let judged = &read_certs(&tampered).unwrap()[0];
        assert_eq!(
            judged.judge(1_800_000_000)[0].unusable,
            Some(Unusable::NoSelfSignature)
        );
    }

    /// A subkey bound by the primary key signs only with its own back-signature in the
    /// binding; a binding without key flags is no way around that.
    #[test]
    fn a_signing_subkey_needs_its_back_signature() {
        let now = 1_700_000_000u32;
        let (secret, public) = generate("P <p@example.com>", now).unwrap();
        let owner = &read_certs(&secret).unwrap()[0];
        let (primary, primary_secret) = owner.signing_key(u64::from(now)).unwrap();
        let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(&[7; 32]).unwrap();
        let (sub, _) = PublicKey::parse(&eddsa_body(now, &pair)).unwrap();
        let sub_secret = Secret::Ed25519(pair);
        let mut data = primary.hash_prefix();
        data.extend_from_slice(&sub.hash_prefix());
        let judge_sub = |flags: Option<u8>, back: bool| {
            let embedded = back.then(|| {
                let b = sig::sign(
                    &sub,
                    &sub_secret,
                    sig::TYPE_PRIMARY_BINDING,
                    sig::Hash::Sha256,
                    &data,
                    now,
                    &sig::Extra::default(),
                )
                .unwrap();
                let mut p = Vec::new();
                b.write(&mut p);
                packet::parse(&p).unwrap().remove(0).body
            });
            let extra = sig::Extra {
                key_flags: flags,
                preferences: false,
                embedded,
            };
            let binding = sig::sign(
                primary,
                primary_secret,
                sig::TYPE_SUBKEY_BINDING,
                sig::Hash::Sha256,
                &data,
                now,
                &extra,
            )
            .unwrap();
            let mut packets = public.clone();
            sub.write(&mut packets, packet::TAG_PUBLIC_SUBKEY);
            binding.write(&mut packets);
            let certs = read_certs(&packets).unwrap();
            certs[0].judge(u64::from(now) + 10)[1].unusable.clone()
        };
        assert_eq!(judge_sub(Some(sig::FLAG_SIGN), true), None);
        assert_eq!(
            judge_sub(Some(sig::FLAG_SIGN), false),
            Some(Unusable::NoBackSignature)
        );
        assert_eq!(judge_sub(None, false), Some(Unusable::NoBackSignature));
        assert_eq!(judge_sub(None, true), None);
        assert_eq!(judge_sub(Some(0x0c), false), Some(Unusable::NotForSigning));
    }

    #[test]
    fn hostile_key_files_are_errors_not_panics() {
        assert!(read_certs(b"").unwrap().is_empty());
        assert!(read_certs(&[0xc0 | 13, 1, b'x']).is_err());
        for len in 0..12 {
            let mut p = Vec::new();
            packet::write(
                &mut p,
                packet::TAG_SECRET_KEY,
                &[4, 0, 0, 0, 0, 1, 0, 9, 1][..len.min(9)],
            );
            let _ = read_certs(&p);
        }
    }
}

#[cfg(test)]
mod debian_keyring {
    use super::*;

    /// Debian's own keyring, where the machine has it: RSA 4096 and Ed25519 primary keys,
    /// signing subkeys bound with SHA-512, expiry dates. At a time inside bookworm's key
    /// validity, its archive key and signing subkey are usable and bullseye's have expired
    /// by 2030.
    #[test]
    fn debian_archive_keys_are_judged_as_gpgv_judges_them() {
        let path = "/usr/share/keyrings/debian-archive-keyring.gpg";
        let Ok(bytes) = std::fs::read(path) else {
            return;
        };
        let certs = read_certs(&bytes).unwrap();
        let find = |fpr: &str| {
            certs
                .iter()
                .find(|c| c.primary().fingerprint_hex() == fpr)
                .unwrap_or_else(|| panic!("{fpr} is not in {path}"))
        };
        let bookworm = find("B8B80B5B623EAB6AD8775C45B7C5D7D6350947F8");
        let at_2026 = bookworm.judge(1_780_000_000);
        assert_eq!(at_2026.len(), 2, "a primary key and its signing subkey");
        assert!(at_2026.iter().all(|j| j.unusable.is_none()));
        assert!(matches!(
            bookworm.judge(1_950_000_000)[1].unusable,
            Some(Unusable::Expired(_))
        ));
        let release = find("4D64FEC119C2029067D6E791F8D2585B8783D481");
        assert!(matches!(release.primary().material, Material::EdDsa(_)));
        assert!(release.judge(1_780_000_000)[0].unusable.is_none());
        // Bound subkeys only: a binding signature with one byte changed no longer binds.
        let mut packets = bookworm.public_packets();
        let last = packets.len() - 1;
        packets[last] ^= 1;
        let broken = &read_certs(&packets).unwrap()[0];
        assert_eq!(
            broken.judge(1_780_000_000)[1].unusable,
            Some(Unusable::NoSelfSignature)
        );
    }
}
