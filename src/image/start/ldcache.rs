//! `/etc/ld.so.cache` (new, old and combined formats).

use super::*;

// ---------------------------------------------------------------------------------------------
// ld.so.cache
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub(super) struct CacheEntry {
    pub(super) flags: i32,
    pub(super) key: String,
    pub(super) value: String,
    pub(super) hwcap: u64,
}

/// Parses `/etc/ld.so.cache` (new format, or old with or without the new one appended) for
/// an ld.so of this byte order; `None` if ld.so would ignore the file. Entries with bad
/// string offsets are dropped, as ld.so skips them.
pub(super) fn parse_ld_cache(data: &[u8], big_endian: bool) -> Option<Vec<CacheEntry>> {
    const OLD: &[u8] = b"ld.so-1.7.0";
    const NEW: &[u8] = b"glibc-ld.so.cache1.1";
    let u32_at = |d: &[u8], o: usize| -> Option<u32> {
        let b: [u8; 4] = d.get(o..o.checked_add(4)?)?.try_into().ok()?;
        Some(if big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    };
    let str_at = |strings: &[u8], off: u32| -> Option<String> {
        let tail = strings.get(off as usize..)?;
        let n = tail.iter().position(|&c| c == 0)?;
        Some(String::from_utf8_lossy(&tail[..n]).into_owned())
    };
    let parse_new = |d: &[u8]| -> Option<Vec<CacheEntry>> {
        if d.len() <= 48 || !d.starts_with(NEW) {
            return None;
        }
        let flags = d[28];
        let want = if big_endian { 3 } else { 2 };
        if flags != 0 && flags & 3 != want {
            return None;
        }
        let nlibs = u32_at(d, 20)? as usize;
        let end = nlibs.checked_mul(24)?.checked_add(48)?;
        if end > d.len() {
            return None;
        }
        let mut out = Vec::with_capacity(nlibs);
        for i in 0..nlibs {
            let at = 48 + i * 24;
            let lo = u64::from(u32_at(d, at + 16)?);
            let hi = u64::from(u32_at(d, at + 20)?);
            let hwcap = if big_endian {
                (lo << 32) | hi
            } else {
                (hi << 32) | lo
            };
            // String offsets are relative to the start of the new-format header.
            let (Some(key), Some(value)) =
                (str_at(d, u32_at(d, at + 4)?), str_at(d, u32_at(d, at + 8)?))
            else {
                continue;
            };
            out.push(CacheEntry {
                flags: u32_at(d, at)? as i32,
                key,
                value,
                hwcap,
            });
        }
        Some(out)
    };
    if data.starts_with(NEW) {
        return parse_new(data);
    }
    if !data.starts_with(OLD) {
        return None;
    }
    let nlibs = u32_at(data, 12)? as usize;
    let end = nlibs.checked_mul(12)?.checked_add(16)?;
    if end > data.len() {
        return None;
    }
    // The new format may follow the old table, aligned like `struct cache_file_new`
    // (8 bytes on 64-bit ABIs, 4 on i386).
    for align in [8, 4] {
        let at = end.div_ceil(align) * align;
        if let Some(v) = data.get(at..).and_then(parse_new) {
            return Some(v);
        }
    }
    // Old format alone: strings are relative to the end of the entry table.
    let strings = &data[end..];
    let mut out = Vec::with_capacity(nlibs);
    for i in 0..nlibs {
        let at = 16 + i * 12;
        let (Some(key), Some(value)) = (
            str_at(strings, u32_at(data, at + 4)?),
            str_at(strings, u32_at(data, at + 8)?),
        ) else {
            continue;
        };
        out.push(CacheEntry {
            flags: u32_at(data, at)? as i32,
            key,
            value,
            hwcap: 0,
        });
    }
    Some(out)
}

/// The cache's path for `name`, as `_dl_load_cache_lookup` picks it: among entries for that
/// name with acceptable flags, the first with the preferred flags, else the first. Entries
/// that need a hardware capability are not used (see the module docs).
pub(super) fn cache_lookup<'c>(
    entries: &'c [CacheEntry],
    name: &str,
    abi: &Abi,
) -> Option<&'c str> {
    let usable = || {
        entries
            .iter()
            .filter(|e| e.key == name && e.hwcap == 0 && abi.cache_flags_ok(e.flags))
    };
    usable()
        .find(|e| e.flags == abi.cache_id)
        .or_else(|| usable().next())
        .map(|e| e.value.as_str())
}
