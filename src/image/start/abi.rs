//! The ABI of the program being checked: ELF class, machine, and what ld.so accepts for it.

use super::*;

// ---------------------------------------------------------------------------------------------
// Architectures
// ---------------------------------------------------------------------------------------------

/// What ld.so of one Debian architecture assumes.
#[derive(Debug, Clone, Copy)]
pub(super) struct Abi {
    /// Multiarch triplet: system directories `/lib/T`, `/usr/lib/T`, then `/lib`, `/usr/lib`.
    pub(super) triplet: Option<&'static str>,
    /// `$LIB`.
    pub(super) lib: Option<&'static str>,
    /// `$PLATFORM` (`AT_PLATFORM` from the kernel); `None` where it depends on the CPU.
    pub(super) platform: Option<&'static str>,
    /// The ld.so.cache flags ld.so prefers (`_DL_CACHE_DEFAULT_ID`)…
    pub(super) cache_id: i32,
    /// …and another it also accepts (`_dl_cache_check_flags`).
    pub(super) cache_also: Option<i32>,
}

pub(super) const FLAG_ELF_LIBC6: i32 = 0x0003;
pub(super) const EF_ARM_ABI_FLOAT_HARD: u32 = 0x400;

impl Abi {
    /// The ABI of an executable. Sources: glibc's `sysdeps/.../dl-cache.h` for the cache
    /// flags; Debian 12's `ld.so` binaries for the directories (see the module docs).
    pub(super) fn of(info: &ElfInfo) -> Abi {
        let abi = |triplet: &'static str, lib: &'static str, platform, cache_id, cache_also| Abi {
            triplet: Some(triplet),
            lib: Some(lib),
            platform,
            cache_id,
            cache_also,
        };
        match (info.machine, info.class64) {
            (m, true) if m == elf::EM_X86_64.0 => abi(
                "x86_64-linux-gnu",
                "lib/x86_64-linux-gnu",
                Some("x86_64"),
                0x0303,
                None,
            ),
            (m, false) if m == elf::EM_386.0 => abi(
                "i386-linux-gnu",
                "lib/i386-linux-gnu",
                Some("i686"),
                FLAG_ELF_LIBC6,
                Some(0x0001),
            ),
            (m, true) if m == elf::EM_AARCH64.0 => abi(
                "aarch64-linux-gnu",
                "lib/aarch64-linux-gnu",
                Some("aarch64"),
                0x0a03,
                None,
            ),
            (m, false) if m == elf::EM_ARM.0 && info.e_flags & EF_ARM_ABI_FLOAT_HARD != 0 => abi(
                "arm-linux-gnueabihf",
                "lib/arm-linux-gnueabihf",
                None,
                0x0903,
                Some(FLAG_ELF_LIBC6),
            ),
            (m, false) if m == elf::EM_ARM.0 => abi(
                "arm-linux-gnueabi",
                "lib/arm-linux-gnueabi",
                None,
                0x0b03,
                Some(FLAG_ELF_LIBC6),
            ),
            (m, true) if m == elf::EM_PPC64.0 && !info.big_endian => abi(
                "powerpc64le-linux-gnu",
                "lib/powerpc64le-linux-gnu",
                None,
                0x0503,
                None,
            ),
            (m, true) if m == elf::EM_S390.0 => {
                abi("s390x-linux-gnu", "lib/s390x-linux-gnu", None, 0x0403, None)
            }
            (m, true) if m == elf::EM_RISCV.0 => abi(
                "riscv64-linux-gnu",
                "lib/riscv64-linux-gnu",
                None,
                0x1003,
                None,
            ),
            // Anything else: glibc's generic defaults.
            _ => Abi {
                triplet: None,
                lib: Some("lib"),
                platform: None,
                cache_id: FLAG_ELF_LIBC6,
                cache_also: Some(0x0001),
            },
        }
    }

    /// ld.so's default search directories (`system_dirs`).
    pub(super) fn system_dirs(&self) -> Vec<String> {
        let mut dirs = Vec::new();
        if let Some(t) = self.triplet {
            dirs.push(format!("/lib/{t}"));
            dirs.push(format!("/usr/lib/{t}"));
        }
        dirs.push("/lib".to_string());
        dirs.push("/usr/lib".to_string());
        dirs
    }

    pub(super) fn cache_flags_ok(&self, flags: i32) -> bool {
        flags == self.cache_id || Some(flags) == self.cache_also
    }
}

/// The class, byte order and machine every loaded object must share with the executable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Target {
    pub(super) class64: bool,
    pub(super) big_endian: bool,
    pub(super) machine: u16,
}

impl Target {
    pub(super) fn of(info: &ElfInfo) -> Target {
        Target {
            class64: info.class64,
            big_endian: info.big_endian,
            machine: info.machine,
        }
    }
}
