//! The cleartext signature framework (RFC 9580 §7) that `InRelease` uses: the text,
//! dash-escaped, between `-----BEGIN PGP SIGNED MESSAGE-----` and an armored signature.
//!
//! What is signed is the text with trailing spaces and tabs cut from every line, lines joined
//! with CR LF, and no line end after the last line. The text handed back is exactly that, with
//! LF line ends and a final LF: nothing the signature does not cover.

use anyhow::{bail, Context};

use super::armor;
use super::signature::{Hash, Signature};

const BEGIN: &str = "-----BEGIN PGP SIGNED MESSAGE-----";
/// What GnuPG cuts from the end of every line before it hashes it.
const BLANKS: [char; 3] = [' ', '\t', '\r'];

/// The lines of `text` (a final line end does not make an empty line). Trailing blanks,
/// CRs among them, are cut where the lines are used, as GnuPG cuts them.
fn lines(text: &str) -> Vec<&str> {
    let text = text.strip_suffix('\n').unwrap_or(text);
    if text.is_empty() {
        return Vec::new();
    }
    text.split('\n').collect()
}

/// What a text signature over `text` hashes.
pub(crate) fn canonical(text: &str) -> Vec<u8> {
    lines(text)
        .iter()
        .map(|l| l.trim_end_matches(BLANKS))
        .collect::<Vec<_>>()
        .join("\r\n")
        .into_bytes()
}

/// The clearsigned form of `text` with `sig` (a text signature over [`canonical`]).
pub(crate) fn emit(text: &str, hash: Hash, sig: &Signature) -> String {
    let mut out = format!("{BEGIN}\nHash: {}\n\n", hash.name());
    for line in lines(text) {
        if line.starts_with('-') {
            out.push_str("- ");
        }
        out.push_str(line.trim_end_matches(BLANKS));
        out.push('\n');
    }
    let mut packets = Vec::new();
    sig.write(&mut packets);
    out.push_str(&armor::encode("SIGNATURE", &packets));
    out
}

/// A read clearsigned message.
pub(crate) struct Cleartext {
    /// The signed text: LF line ends, a final LF.
    pub(crate) text: String,
    /// What its signatures hash.
    pub(crate) canonical: Vec<u8>,
    pub(crate) signatures: Vec<Signature>,
    /// Signature packets builder cannot read (other versions), left out of `signatures`.
    pub(crate) unreadable: usize,
    /// The hashes the `Hash:` header names (empty when it names none).
    pub(crate) hashes: Vec<String>,
}

/// Reads a clearsigned message. Anything before its first line or after its signature block
/// (besides blank lines) is an error, as it is for apt: such text would not be signed.
pub(crate) fn parse(input: &str) -> anyhow::Result<Cleartext> {
    let mut it = input
        .split('\n')
        .map(|l| l.trim_end_matches(BLANKS))
        .skip_while(|l| l.is_empty());
    if it.next() != Some(BEGIN) {
        bail!("it does not start with `{BEGIN}`");
    }
    let mut hashes = Vec::new();
    for line in it.by_ref() {
        if line.is_empty() {
            break;
        }
        // Only `Hash:` belongs here (RFC 9580 §7); gpgv refuses other headers too, and
        // names in another case ("invalid clearsig header").
        let Some(names) = line.strip_prefix("Hash:") else {
            bail!("an unexpected armor header `{line}` (only `Hash:` belongs there)");
        };
        hashes.extend(
            names
                .split(',')
                .map(|n| n.trim_matches([' ', '\t']).to_string()),
        );
    }
    let mut text = Vec::new();
    let mut found = false;
    for line in it.by_ref() {
        if armor::begin_kind(line) == Some("SIGNATURE") {
            found = true;
            break;
        }
        match line.strip_prefix("- ") {
            Some(rest) => text.push(rest),
            None if line.starts_with('-') => {
                bail!("the line `{line}` starts with a dash but is not dash-escaped")
            }
            None => text.push(line),
        }
    }
    if !found {
        bail!("it has no `-----BEGIN PGP SIGNATURE-----` block");
    }
    let block = armor::decode_body("SIGNATURE", &mut it)?;
    if it.any(|l| !l.trim().is_empty()) {
        bail!("text follows the signature block; it would not be signed");
    }
    let (signatures, unreadable) =
        super::signature::read_block(&block.body).context("the signature block")?;
    let mut out = text.join("\n");
    if !text.is_empty() {
        out.push('\n');
    }
    Ok(Cleartext {
        canonical: text.join("\r\n").into_bytes(),
        text: out,
        signatures,
        unreadable,
        hashes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_text_cuts_trailing_blanks_and_the_last_line_end() {
        assert_eq!(canonical("a \nb\t\r\n\n"), b"a\r\nb\r\n");
        // GnuPG cuts CRs as blanks too: `a\r \n` is signed as `a`.
        assert_eq!(canonical("a\r \nb\r\r\n"), b"a\r\nb");
        assert_eq!(canonical("a\nb"), b"a\r\nb");
        assert_eq!(canonical(""), b"");
    }

    #[test]
    fn malformed_messages_are_errors() {
        let sig = "-----BEGIN PGP SIGNATURE-----\n\nwsA=\n-----END PGP SIGNATURE-----\n";
        for (bad, why) in [
            (format!("junk\n{BEGIN}\n\nx\n{sig}"), "does not start"),
            (
                format!("{BEGIN}\nHash SHA256\n\nx\n{sig}"),
                "unexpected armor header",
            ),
            (format!("{BEGIN}\nComment: x\n\nx\n{sig}"), "only `Hash:`"),
            (format!("{BEGIN}\n\n-x\n{sig}"), "not dash-escaped"),
            (
                format!("{BEGIN}\n\nx\n"),
                "no `-----BEGIN PGP SIGNATURE-----`",
            ),
            (format!("{BEGIN}\n\nx\n{sig}extra\n"), "text follows"),
        ] {
            let err = parse(&bad).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }
}
