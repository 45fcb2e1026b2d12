//! Reading ELF headers, the dynamic section and symbol versions (object crate), bounded.

use super::*;

// ---------------------------------------------------------------------------------------------
// ELF
// ---------------------------------------------------------------------------------------------

/// What the kernel and ld.so read from an ELF file.
#[derive(Debug, Clone, Default)]
pub(super) struct ElfInfo {
    pub(super) class64: bool,
    pub(super) big_endian: bool,
    pub(super) machine: u16,
    pub(super) e_type: u16,
    pub(super) e_flags: u32,
    pub(super) interp: Option<String>,
    pub(super) needed: Vec<String>,
    pub(super) rpath: Option<String>,
    pub(super) runpath: Option<String>,
    pub(super) soname: Option<String>,
    pub(super) flags_1: u64,
    /// `DT_VERNEED`: for each file named there, the versions it must define.
    pub(super) verneed: Vec<(String, Vec<VersionNeed>)>,
    /// `DT_VERDEF`: the `(hash, name)` of each version defined; `None` without `DT_VERDEF`.
    pub(super) verdef: Option<Vec<(u32, String)>>,
}

/// One `Vernaux` record: a symbol version an object needs from another.
#[derive(Debug, Clone)]
pub(super) struct VersionNeed {
    pub(super) hash: u32,
    pub(super) name: String,
    /// `VER_FLG_WEAK`: a missing weak version only makes ld.so warn.
    pub(super) weak: bool,
}

pub(super) const VER_FLG_WEAK: u16 = 0x2;
/// Records followed in one version chain before the file is called corrupt.
pub(super) const MAX_VERSION_RECORDS: usize = 65536;

#[derive(Debug)]
pub(super) enum ElfError {
    /// No ELF magic.
    NotElf,
    /// Malformed; the text says how.
    Invalid(String),
    /// Needs the bytes up to this offset, beyond what was read (internal to [`read_elf`]).
    NeedMore(u64),
}

/// Parses an ELF file's headers from `data`, its first bytes; `complete` says `data` is the
/// whole file (so a range beyond it means a truncated file, not a short read).
pub(super) fn parse_elf(data: &[u8], complete: bool) -> Result<ElfInfo, ElfError> {
    if data.len() < 4 {
        return if complete {
            Err(ElfError::NotElf)
        } else {
            Err(ElfError::NeedMore(64))
        };
    }
    if data[..4] != elf::ELFMAG {
        return Err(ElfError::NotElf);
    }
    match data.get(4) {
        Some(&c) if c == elf::ELFCLASS32.0 => {
            parse_class::<FileHeader32<Endianness>>(data, complete)
        }
        Some(&c) if c == elf::ELFCLASS64.0 => {
            parse_class::<FileHeader64<Endianness>>(data, complete)
        }
        _ => Err(ElfError::Invalid("unknown ELF class".to_string())),
    }
}

/// `Ok` if `data` reaches `end`.
pub(super) fn need(data: &[u8], end: Option<u64>, complete: bool) -> Result<(), ElfError> {
    let Some(end) = end else {
        return Err(ElfError::Invalid("offset overflow".to_string()));
    };
    if end <= data.len() as u64 {
        Ok(())
    } else if complete {
        Err(ElfError::Invalid("file is truncated".to_string()))
    } else {
        Err(ElfError::NeedMore(end))
    }
}

pub(super) fn invalid(e: object::read::Error) -> ElfError {
    ElfError::Invalid(e.to_string())
}

pub(super) fn parse_class<H: FileHeader<Endian = Endianness>>(
    data: &[u8],
    complete: bool,
) -> Result<ElfInfo, ElfError> {
    need(data, Some(std::mem::size_of::<H>() as u64), complete)?;
    let h = H::parse(data).map_err(invalid)?;
    let e = h.endian().map_err(invalid)?;
    let mut info = ElfInfo {
        class64: h.is_type_64(),
        big_endian: e.is_big_endian(),
        machine: h.e_machine(e).0,
        e_type: h.e_type(e).0,
        e_flags: h.e_flags(e).0,
        ..ElfInfo::default()
    };

    let phoff: u64 = h.e_phoff(e).into();
    let phsize = u64::from(h.e_phnum(e)).checked_mul(u64::from(h.e_phentsize(e)));
    if phoff != 0 {
        need(data, phsize.and_then(|s| s.checked_add(phoff)), complete)?;
    }
    let phdrs = h.program_headers(e, data).map_err(invalid)?;

    let range = |ph: &H::ProgramHeader| -> Option<(u64, u64)> {
        let off: u64 = ph.p_offset(e).into();
        let size: u64 = ph.p_filesz(e).into();
        Some((off, off.checked_add(size)?))
    };
    let loads: Vec<(u64, u64, u64)> = phdrs
        .iter()
        .filter(|ph| ph.p_type(e) == elf::PT_LOAD)
        .map(|ph| {
            (
                ph.p_vaddr(e).into(),
                ph.p_offset(e).into(),
                ph.p_filesz(e).into(),
            )
        })
        .collect();
    if complete {
        // ld.so maps every PT_LOAD; one beyond the end of the file crashes the program.
        for &(_, off, size) in &loads {
            need(data, off.checked_add(size), true)?;
        }
    }

    // The kernel uses the first PT_INTERP and insists on a NUL-terminated path.
    if let Some(ph) = phdrs.iter().find(|ph| ph.p_type(e) == elf::PT_INTERP) {
        let (off, end) = range(ph).ok_or_else(|| ElfError::Invalid("bad PT_INTERP".into()))?;
        need(data, Some(end), complete)?;
        let bytes = &data[off as usize..end as usize];
        if bytes.len() < 2 || bytes.len() > 4096 || bytes.last() != Some(&0) {
            return Err(ElfError::Invalid("malformed PT_INTERP".to_string()));
        }
        let len = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        info.interp = Some(String::from_utf8_lossy(&bytes[..len]).into_owned());
    }

    let Some(dynph) = phdrs.iter().find(|ph| ph.p_type(e) == elf::PT_DYNAMIC) else {
        return Ok(info);
    };
    let (_, dyn_end) = range(dynph).ok_or_else(|| ElfError::Invalid("bad PT_DYNAMIC".into()))?;
    need(data, Some(dyn_end), complete)?;
    let dynamic = dynph.dynamic(e, data).map_err(invalid)?.unwrap_or(&[]);

    // Later entries of a kind override earlier ones, as in ld.so's `l_info`.
    let (mut strtab, mut strsz) = (None, None);
    let (mut needed, mut rpath, mut runpath, mut soname) = (Vec::new(), None, None, None);
    let (mut verneed, mut verdef) = (None, None);
    for d in dynamic {
        let tag = d.tag(e);
        let val = d.val(e);
        if tag == elf::DT_NULL {
            break;
        } else if tag == elf::DT_NEEDED {
            needed.push(val);
        } else if tag == elf::DT_STRTAB {
            strtab = Some(val);
        } else if tag == elf::DT_STRSZ {
            strsz = Some(val);
        } else if tag == elf::DT_RPATH {
            rpath = Some(val);
        } else if tag == elf::DT_RUNPATH {
            runpath = Some(val);
        } else if tag == elf::DT_SONAME {
            soname = Some(val);
        } else if tag == elf::DT_FLAGS_1 {
            info.flags_1 = val;
        } else if tag == elf::DT_VERNEED {
            verneed = Some(val);
        } else if tag == elf::DT_VERDEF {
            verdef = Some(val);
        }
    }
    if needed.is_empty()
        && rpath.is_none()
        && runpath.is_none()
        && soname.is_none()
        && verneed.is_none()
        && verdef.is_none()
    {
        return Ok(info);
    }

    // DT_STRTAB is an address: find the file bytes through the PT_LOAD that maps it.
    let addr = strtab.ok_or_else(|| ElfError::Invalid("no DT_STRTAB".to_string()))?;
    let (vaddr, off, size) = loads
        .iter()
        .copied()
        .find(|&(v, _, s)| addr >= v && addr - v < s)
        .ok_or_else(|| ElfError::Invalid("DT_STRTAB outside the loaded segments".into()))?;
    let start = off
        .checked_add(addr - vaddr)
        .ok_or_else(|| ElfError::Invalid("offset overflow".to_string()))?;
    let mut len = size - (addr - vaddr);
    if let Some(sz) = strsz {
        len = len.min(sz);
    }
    let end = start.checked_add(len);
    need(data, end, complete)?;
    let table = &data[start as usize..(start + len) as usize];
    let string = |at: u64| -> Result<String, ElfError> {
        let tail = usize::try_from(at)
            .ok()
            .and_then(|at| table.get(at..))
            .ok_or_else(|| ElfError::Invalid("string offset out of range".to_string()))?;
        let n = tail
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| ElfError::Invalid("unterminated string".to_string()))?;
        Ok(String::from_utf8_lossy(&tail[..n]).into_owned())
    };
    info.needed = needed.into_iter().map(string).collect::<Result<_, _>>()?;
    info.rpath = rpath.map(string).transpose()?;
    info.runpath = runpath.map(string).transpose()?;
    info.soname = soname.map(string).transpose()?;

    // Symbol versions (glibc's dl-version.c): records linked by relative offsets, read
    // through the same address mapping; each field read is bounds-checked.
    let big = info.big_endian;
    let bytes = |off: u64, n: u64| -> Result<&[u8], ElfError> {
        need(data, off.checked_add(n), complete)?;
        Ok(&data[off as usize..(off + n) as usize])
    };
    let u16_at = |off: u64| -> Result<u16, ElfError> {
        let b: [u8; 2] = bytes(off, 2)?.try_into().unwrap_or_default();
        Ok(if big {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        })
    };
    let u32_at = |off: u64| -> Result<u64, ElfError> {
        let b: [u8; 4] = bytes(off, 4)?.try_into().unwrap_or_default();
        Ok(u64::from(if big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }))
    };
    let overflow = || ElfError::Invalid("version record offset overflow".to_string());
    let file_offset = |addr: u64, what: &str| -> Result<u64, ElfError> {
        loads
            .iter()
            .find(|&&(v, _, s)| addr >= v && addr - v < s)
            .and_then(|&(v, off, _)| off.checked_add(addr - v))
            .ok_or_else(|| ElfError::Invalid(format!("{what} outside the loaded segments")))
    };
    if let Some(addr) = verneed {
        let mut at = file_offset(addr, "DT_VERNEED")?;
        for _ in 0..MAX_VERSION_RECORDS {
            if u16_at(at)? != 1 {
                return Err(ElfError::Invalid(
                    "unsupported version of Verneed record".into(),
                ));
            }
            let file = string(u32_at(at + 4)?)?;
            let mut versions = Vec::new();
            let mut aux = at.checked_add(u32_at(at + 8)?).ok_or_else(overflow)?;
            for _ in 0..MAX_VERSION_RECORDS {
                versions.push(VersionNeed {
                    hash: u32_at(aux)? as u32,
                    name: string(u32_at(aux + 8)?)?,
                    weak: u16_at(aux + 4)? & VER_FLG_WEAK != 0,
                });
                match u32_at(aux + 12)? {
                    0 => break,
                    next => aux = aux.checked_add(next).ok_or_else(overflow)?,
                }
            }
            info.verneed.push((file, versions));
            match u32_at(at + 12)? {
                0 => break,
                next => at = at.checked_add(next).ok_or_else(overflow)?,
            }
        }
    }
    if let Some(addr) = verdef {
        let mut defs = Vec::new();
        let mut at = file_offset(addr, "DT_VERDEF")?;
        for _ in 0..MAX_VERSION_RECORDS {
            // ld.so stops matching at a record of an unknown version (and then fails).
            if u16_at(at)? != 1 {
                break;
            }
            let name_at = at.checked_add(u32_at(at + 12)?).ok_or_else(overflow)?;
            defs.push((u32_at(at + 8)? as u32, string(u32_at(name_at)?)?));
            match u32_at(at + 16)? {
                0 => break,
                next => at = at.checked_add(next).ok_or_else(overflow)?,
            }
        }
        info.verdef = Some(defs);
    }
    Ok(info)
}

/// Why an ELF file cannot be used.
#[derive(Debug)]
pub(super) enum ElfFail {
    /// No ELF magic.
    NotElf,
    /// Malformed; the text says how.
    Invalid(String),
}

/// Parses the ELF at `real`, starting from `head` (its first [`HEAD_READ`] bytes) and
/// reading further only when the headers point beyond.
pub(super) fn read_elf(view: &dyn FsView, real: &str, head: Vec<u8>) -> Result<ElfInfo, ElfFail> {
    let mut limit = HEAD_READ;
    let mut data = head;
    loop {
        let complete = (data.len() as u64) < limit;
        match parse_elf(&data, complete) {
            Err(ElfError::NeedMore(n)) if limit < MAX_ELF_READ => {
                limit = n.max(limit.saturating_mul(2)).min(MAX_ELF_READ);
                data = view
                    .read(real, limit)
                    .ok_or_else(|| ElfFail::Invalid("cannot read file data".to_string()))?;
            }
            Err(ElfError::NeedMore(_)) => {
                return Err(ElfFail::Invalid(format!(
                    "headers lie beyond the first {} MiB",
                    MAX_ELF_READ >> 20
                )))
            }
            Err(ElfError::NotElf) => return Err(ElfFail::NotElf),
            Err(ElfError::Invalid(why)) => return Err(ElfFail::Invalid(why)),
            Ok(info) => return Ok(info),
        }
    }
}

/// Verdict on one candidate file in a library search.
pub(super) enum Probe {
    /// Usable: its real path and headers.
    Found(String, ElfInfo),
    /// An ELF of another class or machine: skipped.
    Other,
    /// `ENOENT` (or `EACCES`): try the next directory.
    Absent,
    /// Another error opening it (`ENOTDIR`, `ELOOP`): ld.so gives up this search list.
    Abandon,
    /// ld.so stops with this error.
    Fatal(String),
}

/// ld.so's `open_verify` for a library candidate at `path`.
pub(super) fn probe(view: &dyn FsView, path: &str, target: Target) -> Probe {
    let real = match resolve(view, path) {
        Ok(r) => r,
        Err(Lookup::NotFound(_)) => return Probe::Absent,
        Err(_) => return Probe::Abandon,
    };
    match view.node(&real) {
        Some(Node::File { .. }) => {}
        // open(O_RDONLY) of a directory succeeds and the read fails with EISDIR.
        Some(Node::Dir) => return Probe::Fatal("cannot read file data: Is a directory".into()),
        _ => return Probe::Absent,
    }
    let Some(head) = view.read(&real, HEAD_READ) else {
        return Probe::Fatal("cannot read file data".to_string());
    };
    let ehdr = if target.class64 { 64 } else { 52 };
    if head.len() < ehdr {
        return Probe::Fatal("file too short".to_string());
    }
    if head[..4] != elf::ELFMAG {
        return Probe::Fatal("invalid ELF header".to_string());
    }
    let class64 = head[4] == elf::ELFCLASS64.0;
    if head[4] != elf::ELFCLASS32.0 && !class64 {
        return Probe::Fatal("invalid ELF header".to_string());
    }
    if class64 != target.class64 {
        return Probe::Other;
    }
    let big = head[5] == elf::ELFDATA2MSB.0;
    if (head[5] != elf::ELFDATA2LSB.0 && !big) || big != target.big_endian {
        let want = if target.big_endian { "big" } else { "little" };
        return Probe::Fatal(format!("ELF file data encoding not {want}-endian"));
    }
    if head[6] != elf::EV_CURRENT.0 {
        return Probe::Fatal("ELF file version ident does not match current one".to_string());
    }
    let (osabi, abiversion) = (head[7], head[8]);
    if osabi != elf::ELFOSABI_SYSV.0 && osabi != elf::ELFOSABI_GNU.0 {
        return Probe::Fatal("ELF file OS ABI invalid".to_string());
    }
    // glibc 2.36 knows GNU ABI versions below LIBC_ABI_MAX (3).
    if abiversion != 0 && !(osabi == elf::ELFOSABI_GNU.0 && abiversion < 3) {
        return Probe::Fatal("ELF file ABI version invalid".to_string());
    }
    if head[9..16].iter().any(|&b| b != 0) {
        return Probe::Fatal("nonzero padding in e_ident".to_string());
    }
    let u16_at = |o: usize| {
        let b = [head[o], head[o + 1]];
        if big {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        }
    };
    let e_version = {
        let b = [head[20], head[21], head[22], head[23]];
        if big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    };
    if e_version != u32::from(elf::EV_CURRENT.0) {
        return Probe::Fatal("ELF file version does not match current one".to_string());
    }
    if u16_at(18) != target.machine {
        return Probe::Other;
    }
    let e_type = u16_at(16);
    if e_type != elf::ET_DYN.0 && e_type != elf::ET_EXEC.0 {
        return Probe::Fatal("only ET_DYN and ET_EXEC can be loaded".to_string());
    }
    let (phentsize_at, phentsize) = if class64 { (54, 56) } else { (42, 32) };
    if u16_at(phentsize_at) != phentsize {
        return Probe::Fatal("ELF file's phentsize not the expected size".to_string());
    }
    let info = match read_elf(view, &real, head) {
        Ok(i) => i,
        Err(ElfFail::NotElf) => return Probe::Fatal("invalid ELF header".to_string()),
        Err(ElfFail::Invalid(why)) => return Probe::Fatal(format!("cannot read file data: {why}")),
    };
    if info.e_type == elf::ET_EXEC.0 {
        return Probe::Fatal("cannot dynamically load executable".to_string());
    }
    if info.flags_1 & elf::DF_1_PIE.0 != 0 {
        return Probe::Fatal("cannot dynamically load position-independent executable".into());
    }
    Probe::Found(real, info)
}
