//! OpenPGP packet framing (RFC 9580 §4, §5.2.3.7): packet headers in both the old and the
//! new format, multiprecision integers, and signature subpackets.
//!
//! Owns: splitting bytes into packets and writing them back, bounded by the input: every
//! length is checked against what is left, so hostile input ends in an error, never in a
//! panic or an allocation larger than the input.

use anyhow::{bail, Context};

pub(crate) const TAG_SIGNATURE: u8 = 2;
pub(crate) const TAG_SECRET_KEY: u8 = 5;
pub(crate) const TAG_PUBLIC_KEY: u8 = 6;
pub(crate) const TAG_SECRET_SUBKEY: u8 = 7;
pub(crate) const TAG_TRUST: u8 = 12;
pub(crate) const TAG_USER_ID: u8 = 13;
pub(crate) const TAG_PUBLIC_SUBKEY: u8 = 14;
pub(crate) const TAG_USER_ATTRIBUTE: u8 = 17;

/// One packet: its tag and its body (partial lengths joined).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Packet {
    pub(crate) tag: u8,
    pub(crate) body: Vec<u8>,
}

/// A cursor over bytes whose every read is bounds-checked.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub(crate) fn take(&mut self, n: usize) -> anyhow::Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.buf.len());
        let Some(end) = end else {
            bail!(
                "truncated: {n} bytes needed at offset {}, {} left",
                self.pos,
                self.buf.len() - self.pos
            );
        };
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let out = &self.buf[self.pos.min(self.buf.len())..];
        self.pos = self.buf.len();
        out
    }

    pub(crate) fn u8(&mut self) -> anyhow::Result<u8> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u16(&mut self) -> anyhow::Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn u32(&mut self) -> anyhow::Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A multiprecision integer: its big-endian magnitude without leading zero bytes.
    pub(crate) fn mpi(&mut self) -> anyhow::Result<&'a [u8]> {
        let bits = usize::from(self.u16()?);
        let bytes = self.take(bits.div_ceil(8))?;
        let zeros = bytes.iter().take_while(|b| **b == 0).count();
        Ok(&bytes[zeros..])
    }
}

/// Splits `input` into packets. Trust packets (GnuPG's keyring bookkeeping) are dropped.
pub(crate) fn parse(input: &[u8]) -> anyhow::Result<Vec<Packet>> {
    let mut r = Reader::new(input);
    let mut out = Vec::new();
    while !r.is_empty() {
        let at = r.pos();
        let packet = parse_one(&mut r).with_context(|| format!("packet at byte {at}"))?;
        if packet.tag != TAG_TRUST {
            out.push(packet);
        }
    }
    Ok(out)
}

fn parse_one(r: &mut Reader<'_>) -> anyhow::Result<Packet> {
    let first = r.u8()?;
    if first & 0x80 == 0 {
        bail!("byte {first:#04x} is not an OpenPGP packet header");
    }
    if first & 0x40 == 0 {
        // Old format: tag in bits 5..2, length type in bits 1..0.
        let tag = (first >> 2) & 0x0f;
        let len = match first & 3 {
            0 => usize::from(r.u8()?),
            1 => usize::from(r.u16()?),
            2 => r.u32()? as usize,
            _ => {
                return Ok(Packet {
                    tag,
                    body: r.rest().to_vec(),
                })
            }
        };
        return Ok(Packet {
            tag,
            body: r.take(len)?.to_vec(),
        });
    }
    let tag = first & 0x3f;
    let mut body = Vec::new();
    loop {
        let b0 = r.u8()?;
        match b0 {
            0..=191 => {
                body.extend_from_slice(r.take(usize::from(b0))?);
                break;
            }
            192..=223 => {
                let len = ((usize::from(b0) - 192) << 8) + usize::from(r.u8()?) + 192;
                body.extend_from_slice(r.take(len)?);
                break;
            }
            255 => {
                let len = r.u32()? as usize;
                body.extend_from_slice(r.take(len)?);
                break;
            }
            // A partial body length: this chunk, then another length.
            _ => body.extend_from_slice(r.take(1 << (b0 & 0x1f))?),
        }
    }
    Ok(Packet { tag, body })
}

/// A length as packets (new format) and subpackets write it.
fn push_len(out: &mut Vec<u8>, len: usize) {
    if len < 192 {
        out.push(len as u8);
    } else if len < 8384 {
        let l = len - 192;
        out.push(((l >> 8) + 192) as u8);
        out.push((l & 0xff) as u8);
    } else {
        out.push(255);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
}

/// A packet in the new format.
pub(crate) fn write(out: &mut Vec<u8>, tag: u8, body: &[u8]) {
    out.push(0xc0 | tag);
    push_len(out, body.len());
    out.extend_from_slice(body);
}

/// A multiprecision integer from a big-endian magnitude (leading zeros are dropped).
pub(crate) fn write_mpi(out: &mut Vec<u8>, value: &[u8]) {
    let zeros = value.iter().take_while(|b| **b == 0).count();
    let value = &value[zeros..];
    let bits = match value.first() {
        None => 0,
        Some(b) => (value.len() - 1) * 8 + (8 - b.leading_zeros() as usize),
    };
    out.extend_from_slice(&(bits as u16).to_be_bytes());
    out.extend_from_slice(value);
}

/// One subpacket: its type (without the critical bit), whether it is critical, its data.
pub(crate) struct Subpacket<'a> {
    pub(crate) kind: u8,
    pub(crate) critical: bool,
    pub(crate) data: &'a [u8],
}

/// The subpackets of a hashed or unhashed area.
pub(crate) fn subpackets(area: &[u8]) -> anyhow::Result<Vec<Subpacket<'_>>> {
    let mut r = Reader::new(area);
    let mut out = Vec::new();
    while !r.is_empty() {
        let b0 = r.u8()?;
        let len = match b0 {
            0..=191 => usize::from(b0),
            192..=254 => ((usize::from(b0) - 192) << 8) + usize::from(r.u8()?) + 192,
            255 => r.u32()? as usize,
        };
        let all = r.take(len)?;
        let Some((&kind, data)) = all.split_first() else {
            bail!("an empty signature subpacket");
        };
        out.push(Subpacket {
            kind: kind & 0x7f,
            critical: kind & 0x80 != 0,
            data,
        });
    }
    Ok(out)
}

/// Appends one subpacket.
pub(crate) fn write_subpacket(out: &mut Vec<u8>, kind: u8, data: &[u8]) {
    push_len(out, data.len() + 1);
    out.push(kind);
    out.extend_from_slice(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_round_trip_in_every_length_form() {
        for len in [0, 1, 191, 192, 8383, 8384, 70_000] {
            let body: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut out = Vec::new();
            write(&mut out, TAG_USER_ID, &body);
            let p = parse(&out).unwrap();
            assert_eq!(
                p,
                vec![Packet {
                    tag: TAG_USER_ID,
                    body
                }],
                "length {len}"
            );
        }
    }

    #[test]
    fn old_format_and_partial_lengths_are_read() {
        // Old format, tag 13, one-byte length.
        let old = [0x80 | (13 << 2), 2, b'h', b'i'];
        assert_eq!(parse(&old).unwrap()[0].body, b"hi");
        // New format, tag 11, a partial chunk of 2 bytes (0xe1), then the last 1 byte.
        let partial = [0xc0 | 11, 0xe1, b'a', b'b', 1, b'c'];
        let p = parse(&partial).unwrap();
        assert_eq!((p[0].tag, p[0].body.as_slice()), (11, &b"abc"[..]));
    }

    #[test]
    fn hostile_lengths_are_errors() {
        for bad in [
            &[0x00][..],
            &[0xc0 | 13, 5, b'a'],
            &[0xc0 | 13, 255, 0xff, 0xff, 0xff, 0xff],
            &[0x80 | (13 << 2) | 1, 0xff],
            &[0xc0 | 13, 0xe5],
        ] {
            let err = parse(bad).unwrap_err();
            assert!(format!("{err:#}").contains("packet at byte 0"), "{err:#}");
        }
        assert!(subpackets(&[5, 2, 0]).is_err());
        assert!(subpackets(&[0]).is_err());
    }

    #[test]
    fn mpis_drop_leading_zeros_and_count_bits() {
        let mut out = Vec::new();
        write_mpi(&mut out, &[0, 0, 0x01, 0xff]);
        assert_eq!(out, [0, 9, 0x01, 0xff]);
        assert_eq!(Reader::new(&out).mpi().unwrap(), [0x01, 0xff]);
        let mut zero = Vec::new();
        write_mpi(&mut zero, &[0]);
        assert_eq!(zero, [0, 0]);
    }
}
