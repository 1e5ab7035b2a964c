//! Reads the few ELF facts the dynamic loader acts on: class, byte order and machine, the
//! `PT_INTERP` path, and the `DT_NEEDED`/`DT_SONAME`/`DT_RPATH`/`DT_RUNPATH`/`DT_FLAGS_1`
//! entries of the dynamic segment. Only headers and the string table are read (through
//! `ReadCache`), so multi-gigabyte CUDA libraries cost a few kilobytes of I/O.
//!
//! This is the workspace's one ELF reader: other crates that need a library's soname (the CDI
//! spec in `gpubox-cdi`) go through [`soname`] rather than parsing ELF themselves.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use object::elf;
use object::read::elf::{Dyn, FileHeader, ProgramHeader};
use object::{Endian, Endianness, ReadCache, ReadRef};

use crate::HostBinError;

/// `e_ident` length and the offset of its class byte (ELFCLASS32/ELFCLASS64).
const IDENT_LEN: u64 = 16;
const CLASS_INDEX: usize = 4;

/// What the loader compares before accepting a file: ELF class, byte order and machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Abi {
    pub class64: bool,
    pub big_endian: bool,
    pub machine: u16,
}

impl std::fmt::Display for Abi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let machine = machine_name(self.machine);
        let bits = if self.class64 { 64 } else { 32 };
        let order = if self.big_endian { "big" } else { "little" };
        write!(f, "{bits}-bit {order}-endian {machine}")
    }
}

/// An ELF machine as `uname -m` names the CPU (`x86_64`, `aarch64`), or
/// "ELF machine N" for one this crate has no name for.
fn machine_name(machine: u16) -> String {
    match machine {
        elf::EM_X86_64 => "x86_64".to_owned(),
        elf::EM_AARCH64 => "aarch64".to_owned(),
        elf::EM_386 => "i386".to_owned(),
        elf::EM_ARM => "arm".to_owned(),
        elf::EM_RISCV => "riscv".to_owned(),
        elf::EM_PPC64 => "ppc64".to_owned(),
        elf::EM_S390 => "s390".to_owned(),
        other => format!("ELF machine {other}"),
    }
}

/// The loader-relevant contents of one ELF file.
#[derive(Debug)]
pub(crate) struct ElfObject {
    pub abi: Abi,
    pub elf_type: u16,
    pub interpreter: Option<PathBuf>,
    pub soname: Option<OsString>,
    pub needed: Vec<OsString>,
    /// `DT_RPATH`, already dropped when `DT_RUNPATH` is present (glibc ignores it then).
    pub rpath: Option<OsString>,
    pub runpath: Option<OsString>,
    /// `DF_1_NODEFLIB`: skip ld.so.cache and the default folders for this object's needs.
    pub nodeflib: bool,
}

impl ElfObject {
    /// Whether the loader may map this file at all (ld.so: "only ET_DYN and ET_EXEC can be loaded").
    pub fn is_loadable(&self) -> bool {
        self.elf_type == elf::ET_DYN || self.elf_type == elf::ET_EXEC
    }
}

/// The `DT_SONAME` of the ELF file at `path` (32- or 64-bit, either byte order), read from its
/// dynamic segment as the loader reads it. `Ok(None)` when the file is not ELF (a script, a
/// placeholder) or has no soname (an executable, a library linked without `-soname`).
pub fn soname(path: &Path) -> Result<Option<OsString>, HostBinError> {
    Ok(read(path)?.and_then(|object| object.soname))
}

/// The CPU the ELF file at `path` is built for, as `uname -m` names it (`x86_64`,
/// `aarch64`, `i386`; otherwise "ELF machine N"). `Ok(None)` when it is not ELF.
pub fn machine(path: &Path) -> Result<Option<String>, HostBinError> {
    Ok(read(path)?.map(|object| machine_name(object.abi.machine)))
}

/// Reads `path`; `Ok(None)` when the file does not start with the ELF magic (a script, text).
pub(crate) fn read(path: &Path) -> Result<Option<ElfObject>, HostBinError> {
    let file = File::open(path).map_err(|source| HostBinError::Io {
        path: path.to_owned(),
        source,
    })?;
    read_from(&ReadCache::new(file), path)
}

/// [`read`] of a file's bytes already in memory; `path` names it in errors.
pub(crate) fn read_bytes(bytes: &[u8], path: &Path) -> Result<Option<ElfObject>, HostBinError> {
    read_from(bytes, path)
}

fn read_from<'d, R: ReadRef<'d>>(data: R, path: &Path) -> Result<Option<ElfObject>, HostBinError> {
    let ident = match data.read_bytes_at(0, IDENT_LEN) {
        Ok(ident) if ident.starts_with(&elf::ELFMAG) => ident,
        _ => return Ok(None),
    };
    match ident[CLASS_INDEX] {
        elf::ELFCLASS32 => parse::<elf::FileHeader32<Endianness>, R>(data, path).map(Some),
        elf::ELFCLASS64 => parse::<elf::FileHeader64<Endianness>, R>(data, path).map(Some),
        class => Err(HostBinError::BadElf {
            path: path.to_owned(),
            detail: format!("unknown ELF class {class}"),
        }),
    }
}

fn parse<'d, Elf: FileHeader<Endian = Endianness>, R: ReadRef<'d>>(
    data: R,
    path: &Path,
) -> Result<ElfObject, HostBinError> {
    let bad = |detail: String| HostBinError::BadElf {
        path: path.to_owned(),
        detail,
    };
    let header = Elf::parse(data).map_err(|e| bad(e.to_string()))?;
    let endian = header.endian().map_err(|e| bad(e.to_string()))?;
    let segments = header
        .program_headers(endian, data)
        .map_err(|e| bad(e.to_string()))?;

    let mut interpreter = None;
    let mut dynamic = None;
    for segment in segments {
        if let Some(interp) = segment
            .interpreter(endian, data)
            .map_err(|e| bad(e.to_string()))?
        {
            interpreter = Some(PathBuf::from(OsStr::from_bytes(interp)));
        }
        if let Some(entries) = segment
            .dynamic(endian, data)
            .map_err(|e| bad(e.to_string()))?
        {
            dynamic = Some(entries);
        }
    }

    let mut strtab_address = None;
    let mut strtab_size = None;
    let mut needed = Vec::new();
    let mut soname = None;
    let mut rpath = None;
    let mut runpath = None;
    let mut flags_1 = 0u64;
    for entry in dynamic.unwrap_or_default() {
        let tag: u64 = entry.d_tag(endian).into();
        let value: u64 = entry.d_val(endian).into();
        match u32::try_from(tag) {
            Ok(elf::DT_NULL) => break,
            Ok(elf::DT_STRTAB) => strtab_address = Some(value),
            Ok(elf::DT_STRSZ) => strtab_size = Some(value),
            Ok(elf::DT_NEEDED) => needed.push(value),
            Ok(elf::DT_SONAME) => soname = Some(value),
            Ok(elf::DT_RPATH) => rpath = Some(value),
            Ok(elf::DT_RUNPATH) => runpath = Some(value),
            Ok(elf::DT_FLAGS_1) => flags_1 = value,
            _ => {}
        }
    }

    let uses_strings =
        !needed.is_empty() || soname.is_some() || rpath.is_some() || runpath.is_some();
    let strings = match (strtab_address, strtab_size) {
        (Some(address), Some(size)) if uses_strings => {
            // DT_STRTAB is a virtual address; the PT_LOAD segment covering it gives the file offset.
            let offset = segments
                .iter()
                .filter(|s| s.p_type(endian) == elf::PT_LOAD)
                .find_map(|s| {
                    let start: u64 = s.p_vaddr(endian).into();
                    let file_size: u64 = s.p_filesz(endian).into();
                    let file_offset: u64 = s.p_offset(endian).into();
                    (start..start.saturating_add(file_size))
                        .contains(&address)
                        .then(|| file_offset.checked_add(address - start))
                        .flatten()
                })
                .ok_or_else(|| {
                    bad(format!(
                        "DT_STRTAB address {address:#x} is not in any loaded segment"
                    ))
                })?;
            Some((offset, size))
        }
        _ if uses_strings => {
            return Err(bad("dynamic section has no DT_STRTAB/DT_STRSZ".to_owned()))
        }
        _ => None,
    };
    let string = |index: u64| -> Result<OsString, HostBinError> {
        let (offset, size) = strings.ok_or_else(|| bad("no dynamic string table".to_owned()))?;
        if index >= size {
            return Err(bad(format!(
                "dynamic string offset {index} is past DT_STRSZ {size}"
            )));
        }
        let range = offset
            .checked_add(index)
            .zip(offset.checked_add(size))
            .ok_or_else(|| {
                bad(format!(
                    "dynamic string table at {offset:#x} (size {size}) is past any file's end"
                ))
            })?;
        let bytes = data
            .read_bytes_at_until(range.0..range.1, 0)
            .map_err(|()| {
                bad(format!(
                    "dynamic string at offset {index} is not NUL-terminated within DT_STRSZ"
                ))
            })?;
        Ok(OsStr::from_bytes(bytes).to_owned())
    };

    let runpath = runpath.map(string).transpose()?;
    Ok(ElfObject {
        abi: Abi {
            class64: header.is_class_64(),
            big_endian: endian.is_big_endian(),
            machine: header.e_machine(endian),
        },
        elf_type: header.e_type(endian),
        interpreter,
        soname: soname.map(string).transpose()?,
        needed: needed.into_iter().map(string).collect::<Result<_, _>>()?,
        rpath: if runpath.is_some() {
            None
        } else {
            rpath.map(string).transpose()?
        },
        runpath,
        nodeflib: flags_1 & u64::from(elf::DF_1_NODEFLIB) != 0,
    })
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::process::Command;

    use super::*;

    fn gcc_shared(dir: &Path, soname: Option<&str>) -> PathBuf {
        let source = dir.join("lib.c");
        fs::write(&source, "int marker(void) { return 1; }\n").expect("write C");
        let library = dir.join("libmarker.so.1.2.3");
        let mut command = Command::new("gcc");
        command
            .args(["-shared", "-fPIC", "-o"])
            .arg(&library)
            .arg(&source);
        if let Some(soname) = soname {
            command.arg(format!("-Wl,-soname,{soname}"));
        }
        assert!(command.status().expect("run gcc").success(), "gcc failed");
        library
    }

    #[test]
    fn soname_is_read_from_the_dynamic_segment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let library = gcc_shared(dir.path(), Some("libmarker.so.1"));
        assert_eq!(
            soname(&library).expect("read"),
            Some(OsString::from("libmarker.so.1"))
        );
    }

    #[test]
    fn library_without_soname_has_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        let library = gcc_shared(dir.path(), None);
        assert_eq!(soname(&library).expect("read"), None);
    }

    #[test]
    fn non_elf_file_has_no_soname_and_missing_file_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = dir.path().join("libfake.so.1");
        fs::write(&text, "fake library\n").expect("write");
        assert_eq!(soname(&text).expect("read"), None);
        let missing = dir.path().join("missing.so");
        assert!(matches!(soname(&missing), Err(HostBinError::Io { path, .. }) if path == missing));
    }

    /// A copy of the 64-bit little-endian `library`, named `name`, whose `PT_LOAD` segments'
    /// file offsets are `offset(distance)`, where `distance` is how far `DT_STRTAB` lies into
    /// the segment that holds it, as a damaged or hostile file might say.
    fn with_load_offsets(library: &Path, name: &str, offset: impl Fn(u64) -> u64) -> PathBuf {
        use object::read::elf::ElfFile64;
        let mut bytes = fs::read(library).expect("read library");
        let (strtab, loads) = {
            let file = ElfFile64::<object::LittleEndian>::parse(&bytes[..]).expect("ELF");
            let endian = file.endian();
            let headers = file.elf_program_headers();
            let strtab: u64 = headers
                .iter()
                .find_map(|h| h.dynamic(endian, &bytes[..]).ok().flatten())
                .and_then(|entries| {
                    entries
                        .iter()
                        .find(|e| e.d_tag(endian) == u64::from(elf::DT_STRTAB))
                        .map(|e| e.d_val(endian))
                })
                .expect("DT_STRTAB");
            let loads: Vec<(usize, u64)> = (0..headers.len())
                .filter(|&i| headers[i].p_type(endian) == elf::PT_LOAD)
                .map(|i| (i, headers[i].p_vaddr(endian)))
                .collect();
            (strtab, loads)
        };
        let phoff = u64::from_le_bytes(bytes[0x20..0x28].try_into().unwrap()) as usize;
        for (index, vaddr) in loads {
            let field = phoff + index * 56 + 8;
            let distance = strtab.wrapping_sub(vaddr);
            bytes[field..field + 8].copy_from_slice(&offset(distance).to_le_bytes());
        }
        let damaged = library.with_file_name(name);
        fs::write(&damaged, bytes).expect("write damaged library");
        damaged
    }

    /// Found by `fuzz/run elf`: offsets near 2^64 overflowed (a panic in debug builds, a
    /// read at a wrapped offset in release ones). Each is now an error naming the file.
    #[test]
    fn offsets_past_the_end_of_any_file_are_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let library = gcc_shared(dir.path(), Some("libmarker.so.1"));
        // The segment's file offset plus the string table's distance into it overflows...
        let segment_overflow = with_load_offsets(&library, "segment-overflow.so", |_| u64::MAX);
        // ...or the string table starts at 2^64 - 1 and its strings lie past it.
        let strings_overflow = with_load_offsets(&library, "strings-overflow.so", |distance| {
            u64::MAX - distance
        });
        for damaged in [segment_overflow, strings_overflow] {
            match soname(&damaged) {
                Err(HostBinError::BadElf { path, detail }) => {
                    assert_eq!(path, damaged);
                    assert!(
                        detail.contains("DT_STRTAB") || detail.contains("past any file's end"),
                        "{detail}"
                    );
                }
                other => panic!("{}: {other:?}", damaged.display()),
            }
        }
    }
}
