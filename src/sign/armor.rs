//! ASCII armor (RFC 9580 §6): `-----BEGIN PGP …-----`, optional headers, base64 and the
//! CRC-24 line GnuPG 2.2 writes and later versions drop.

use anyhow::{bail, Context};
use base64::Engine as _;

/// Armor `body` as `-----BEGIN PGP {kind}-----`, with 64-column lines and a checksum.
pub(crate) fn encode(kind: &str, body: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(body);
    let mut out = format!("-----BEGIN PGP {kind}-----\n\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    let crc = crc24(body).to_be_bytes();
    out.push('=');
    out.push_str(&base64::engine::general_purpose::STANDARD.encode(&crc[1..]));
    out.push_str(&format!("\n-----END PGP {kind}-----\n"));
    out
}

/// One armored block.
pub(crate) struct Block {
    pub(crate) kind: String,
    pub(crate) body: Vec<u8>,
}

/// Every armored block in `text`, in order. Text around the blocks is ignored.
pub(crate) fn decode_all(text: &str) -> anyhow::Result<Vec<Block>> {
    let mut lines = text.lines().map(|l| l.trim_end());
    let mut out = Vec::new();
    while let Some(line) = lines.next() {
        let Some(kind) = begin_kind(line) else {
            continue;
        };
        out.push(decode_body(kind, &mut lines)?);
    }
    Ok(out)
}

/// `Some(kind)` for a `-----BEGIN PGP {kind}-----` line.
pub(crate) fn begin_kind(line: &str) -> Option<&str> {
    line.strip_prefix("-----BEGIN PGP ")?.strip_suffix("-----")
}

/// The rest of a block whose BEGIN line is read: headers, base64, checksum, END line.
pub(crate) fn decode_body<'a>(
    kind: &str,
    lines: &mut impl Iterator<Item = &'a str>,
) -> anyhow::Result<Block> {
    let end = format!("-----END PGP {kind}-----");
    let mut b64 = String::new();
    let mut crc = None;
    let mut in_headers = true;
    let mut ended = false;
    for line in lines.by_ref() {
        if line == end {
            ended = true;
            break;
        }
        if in_headers {
            in_headers = false;
            if line.is_empty() {
                continue;
            }
            if line.contains(": ") {
                // Headers (`Version: …`, `Comment: …`) until an empty line.
                in_headers = true;
                continue;
            }
        }
        if let Some(c) = line.strip_prefix('=').filter(|c| c.len() == 4) {
            crc = Some(c.to_string());
            continue;
        }
        b64.push_str(line.trim());
    }
    if !ended {
        bail!("the armored {kind} has no `{end}` line");
    }
    let body = base64::engine::general_purpose::STANDARD
        .decode(b64.as_bytes())
        .with_context(|| format!("the armored {kind} is not valid base64"))?;
    if let Some(c) = crc {
        let want = base64::engine::general_purpose::STANDARD
            .decode(c.as_bytes())
            .ok()
            .filter(|b| b.len() == 3)
            .context("the armor checksum line is not base64")?;
        let have = crc24(&body).to_be_bytes();
        if want != have[1..] {
            bail!("the armored {kind} is damaged: its checksum does not match");
        }
    }
    Ok(Block {
        kind: kind.to_string(),
        body,
    })
}

/// RFC 9580 §6.1.1's CRC-24.
fn crc24(data: &[u8]) -> u32 {
    let mut crc: u32 = 0x00b7_04ce;
    for b in data {
        crc ^= u32::from(*b) << 16;
        for _ in 0..8 {
            crc <<= 1;
            if crc & 0x0100_0000 != 0 {
                crc ^= 0x0186_4cfb;
            }
        }
    }
    crc & 0x00ff_ffff
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_checks_the_checksum() {
        let body: Vec<u8> = (0..200u8).collect();
        let text = encode("SIGNATURE", &body);
        assert!(text.starts_with("-----BEGIN PGP SIGNATURE-----\n\n"));
        assert!(text
            .lines()
            .all(|l| l.len() <= 64 || l.starts_with("-----")));
        let blocks = decode_all(&format!("junk\n{text}\r\n{text}")).unwrap();
        assert_eq!(blocks.len(), 2);
        assert_eq!(
            (blocks[0].kind.as_str(), &blocks[0].body),
            ("SIGNATURE", &body)
        );
        // One base64 character changed: the checksum catches it.
        let damaged = text.replacen("AAEC", "AAED", 1);
        let err = decode_all(&damaged).err().map(|e| e.to_string()).unwrap();
        assert!(err.contains("checksum"), "{err}");
        assert!(decode_all("-----BEGIN PGP SIGNATURE-----\n\nAAAA\n").is_err());
    }

    #[test]
    fn headers_and_a_missing_checksum_are_accepted() {
        let text = "-----BEGIN PGP PUBLIC KEY BLOCK-----\nComment: x\nVersion: y\n\n\
                    aGk=\n-----END PGP PUBLIC KEY BLOCK-----\n";
        assert_eq!(decode_all(text).unwrap()[0].body, b"hi");
    }

    #[test]
    fn crc24_matches_the_rfc_value() {
        // RFC 4880's CRC-24 of "123456789".
        assert_eq!(crc24(b"123456789"), 0x21cf02);
    }
}
