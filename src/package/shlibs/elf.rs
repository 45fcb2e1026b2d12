//! What dpkg-shlibdeps reads of a packaged ELF file with `objdump -w -f -p -T -R`: its
//! machine and class, the `DT_NEEDED` sonames and the undefined dynamic symbols with the
//! version each needs (`puts@GLIBC_2.2.5`; `name@Base` when unversioned, as
//! `Dpkg::Shlibs::Objdump` names them).
//!
//! Read through the section headers (`.dynamic`, `.dynsym`, `.gnu.version`,
//! `.gnu.version_r`), as objdump does, from the file on disk without loading it whole. Every
//! section read is bounded by [`MAX_SECTION`]; malformed input is an error, never a panic.

use std::fs::File;
use std::path::Path;

use object::elf;
use object::read::elf::{Dyn as _, ElfFile, FileHeader, SectionHeader as _, Sym as _};
use object::read::ReadRef;
use object::{Endian as _, Endianness, ReadCache};

/// The largest dynamic section, symbol table, string table or version table read.
const MAX_SECTION: u64 = 256 << 20;
/// The most `DT_NEEDED` entries taken from one file.
const MAX_NEEDED: usize = 4096;

/// What a packaged ELF file needs from shared libraries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ElfNeeds {
    pub machine: u16,
    pub class64: bool,
    pub big_endian: bool,
    /// `DT_NEEDED`, in order.
    pub needed: Vec<String>,
    /// Undefined dynamic symbols as `name@VERSION` or `name@Base`.
    pub undefined: Vec<String>,
}

/// Whether `head` (the first bytes of a file) starts an ELF file.
pub(crate) fn is_elf(head: &[u8]) -> bool {
    head.starts_with(&elf::ELFMAG)
}

/// Reads an ELF file on disk; `None` when it is neither an executable nor a shared object
/// (relocatable objects and core files need nothing at run time).
pub(crate) fn read_path(path: &Path) -> Result<Option<ElfNeeds>, String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    let cache = ReadCache::new(file);
    read(&cache)
}

/// [`read_path`] for a file held in memory.
pub(crate) fn read_bytes(data: &[u8]) -> Result<Option<ElfNeeds>, String> {
    read(data)
}

fn read<'data, R: ReadRef<'data>>(data: R) -> Result<Option<ElfNeeds>, String> {
    let ident = data
        .read_bytes_at(0, 16)
        .map_err(|_| "it is shorter than an ELF header".to_string())?;
    // e_ident[EI_CLASS]
    match ident.get(4) {
        Some(&c) if c == elf::ELFCLASS64.0 => read_class::<elf::FileHeader64<Endianness>, R>(data),
        Some(&c) if c == elf::ELFCLASS32.0 => read_class::<elf::FileHeader32<Endianness>, R>(data),
        _ => Err("it has an unknown ELF class".to_string()),
    }
}

fn read_class<'data, H, R>(data: R) -> Result<Option<ElfNeeds>, String>
where
    H: FileHeader<Endian = Endianness>,
    R: ReadRef<'data>,
{
    let bad = |e: object::read::Error| e.to_string();
    let file = ElfFile::<H, R>::parse(data).map_err(bad)?;
    let e = file.endian();
    let header = file.elf_header();
    let kind = header.e_type(e);
    if kind != elf::ET_EXEC && kind != elf::ET_DYN {
        return Ok(None);
    }
    let sections = file.elf_section_table();
    for s in sections.iter() {
        let t = s.sh_type(e);
        let read_here = [
            elf::SHT_DYNAMIC,
            elf::SHT_DYNSYM,
            elf::SHT_STRTAB,
            elf::SHT_GNU_VERSYM,
            elf::SHT_GNU_VERNEED,
            elf::SHT_GNU_VERDEF,
        ];
        let size: u64 = s.sh_size(e).into();
        if read_here.contains(&t) && t != elf::SHT_NOBITS && size > MAX_SECTION {
            return Err(format!(
                "it has a dynamic section or table of {size} bytes; builder reads at most {MAX_SECTION}"
            ));
        }
    }
    let mut needs = ElfNeeds {
        machine: header.e_machine(e).0,
        class64: header.is_type_64(),
        big_endian: e.is_big_endian(),
        ..ElfNeeds::default()
    };
    if let Some((dynamic, strtab_index)) = sections.dynamic(e, data).map_err(bad)? {
        let strings = sections.strings(e, data, strtab_index).map_err(bad)?;
        for d in dynamic {
            let tag = d.tag(e);
            if tag == elf::DT_NULL {
                break;
            }
            if tag == elf::DT_NEEDED {
                if needs.needed.len() == MAX_NEEDED {
                    return Err(format!("it has more than {MAX_NEEDED} DT_NEEDED entries"));
                }
                let name = d.string(e, strings).map_err(bad)?;
                needs
                    .needed
                    .push(String::from_utf8_lossy(name).into_owned());
            }
        }
    }
    let symbols = sections.symbols(e, data, elf::SHT_DYNSYM).map_err(bad)?;
    let versions = sections.versions(e, data).map_err(bad)?;
    for (index, sym) in symbols.enumerate() {
        if !sym.is_undefined(e) {
            continue;
        }
        let name = symbols.symbol_name(e, sym).map_err(bad)?;
        if name.is_empty() {
            continue;
        }
        let version = match &versions {
            Some(v) => v
                .version(v.version_index(e, index).index())
                .map_err(bad)?
                .map(|v| String::from_utf8_lossy(v.name()).into_owned()),
            None => None,
        };
        needs.undefined.push(format!(
            "{}@{}",
            String::from_utf8_lossy(name),
            version.as_deref().unwrap_or("Base")
        ));
    }
    Ok(Some(needs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_a_real_program_needs() {
        // The test binary itself: dynamically linked against libc on every Debian host.
        let me = std::env::current_exe().unwrap();
        let needs = read_path(&me).unwrap().unwrap();
        assert!(
            needs.needed.iter().any(|n| n.starts_with("libc.so")),
            "{needs:?}"
        );
        assert!(
            needs.undefined.iter().any(|s| s.contains("@GLIBC_")),
            "{:?}",
            &needs.undefined[..needs.undefined.len().min(10)]
        );
        assert_eq!(
            read_bytes(&std::fs::read(&me).unwrap()).unwrap(),
            Some(needs)
        );
    }

    #[test]
    fn hostile_elf_input_is_an_error_not_a_panic() {
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        // truncations and byte flips in the headers
        for cut in [0, 3, 4, 16, 52, 63, 64, 200, 4096] {
            let _ = read_bytes(&me[..cut.min(me.len())]);
        }
        let mut state = 0x2545_f491_u32;
        for _ in 0..300 {
            let mut m = me[..me.len().min(1 << 16)].to_vec();
            for _ in 0..8 {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                let i = state as usize % m.len();
                m[i] ^= (state >> 8) as u8;
            }
            let _ = read_bytes(&m);
        }
        assert!(read_bytes(b"\x7fELF\x09").is_err());
        assert!(!is_elf(b"#!/bin/sh"));
    }
}
