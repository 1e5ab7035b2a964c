//! Reader for glibc's `/etc/ld.so.cache` ("glibc-ld.so.cache1.1" format, optionally behind
//! the old "ld.so-1.7.0" table that `ldconfig -c compat` writes first).
//!
//! Layout (glibc `sysdeps/generic/dl-cache.h`), native byte order:
//! header (48 bytes): magic+version[20], nlibs u32, len_strings u32, flags u8, pad[3],
//! extension_offset u32, unused[3] u32; then nlibs entries (24 bytes): flags i32, key u32,
//! value u32, osversion u32, hwcap u64. key/value are offsets of NUL-terminated strings,
//! counted from the start of this header.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

const OLD_MAGIC: &[u8] = b"ld.so-1.7.0";
const NEW_MAGIC: &[u8] = b"glibc-ld.so.cache1.1";
const OLD_HEADER_LEN: usize = 16;
const OLD_ENTRY_LEN: usize = 12;
const NEW_HEADER_LEN: usize = 48;
const NEW_ENTRY_LEN: usize = 24;
/// Entries flagged plain ELF (no libc/ABI information) suit any binary, as in glibc.
const FLAG_ELF: i32 = 1;
const ENDIAN_UNSET: u8 = 0;
const ENDIAN_LITTLE: u8 = 2;
const ENDIAN_BIG: u8 = 3;

pub(crate) const SYSTEM_CACHE: &str = "/etc/ld.so.cache";

/// One library the cache maps: its soname and where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheEntry {
    /// ABI tag: low byte the libc kind, next byte the architecture (0x0303 = libc6,x86-64).
    pub flags: i32,
    /// Non-zero for hardware-capability variants (glibc-hwcaps subfolders).
    pub hwcap: u64,
    pub name: OsString,
    pub path: PathBuf,
}

/// Parses a whole cache file; the error says what is malformed. Public for the fuzz
/// targets (`fuzz/`): the file is binary, and nothing it says is trusted.
pub fn parse(data: &[u8]) -> Result<Vec<CacheEntry>, String> {
    let new = if data.starts_with(NEW_MAGIC) {
        data
    } else if data.starts_with(OLD_MAGIC) {
        let old_count = read_u32(data, OLD_MAGIC.len() + 1).ok_or("old header is truncated")?;
        // glibc aligns the new section to the new header's alignment (8 bytes).
        let offset = (OLD_HEADER_LEN + old_count as usize * OLD_ENTRY_LEN).next_multiple_of(8);
        data.get(offset..)
            .filter(|rest| rest.starts_with(NEW_MAGIC))
            .ok_or("old-format cache without the glibc-ld.so.cache1.1 section")?
    } else {
        return Err("unknown header (neither glibc-ld.so.cache1.1 nor ld.so-1.7.0)".to_owned());
    };

    let native = if cfg!(target_endian = "big") {
        ENDIAN_BIG
    } else {
        ENDIAN_LITTLE
    };
    let endian = *new.get(28).ok_or("header is truncated")?;
    if endian != ENDIAN_UNSET && endian != native {
        return Err(format!("written for another byte order (flag {endian})"));
    }
    let count = read_u32(new, 20).ok_or("header is truncated")? as usize;
    (0..count)
        .map(|index| {
            let at = NEW_HEADER_LEN + index * NEW_ENTRY_LEN;
            let truncated = || format!("entry {index} is truncated");
            let flags = read_u32(new, at).ok_or_else(truncated)? as i32;
            let key = read_u32(new, at + 4).ok_or_else(truncated)?;
            let value = read_u32(new, at + 8).ok_or_else(truncated)?;
            let hwcap = new
                .get(at + 16..at + 24)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_ne_bytes)
                .ok_or_else(truncated)?;
            Ok(CacheEntry {
                flags,
                hwcap,
                name: read_string(new, key)
                    .ok_or_else(|| format!("entry {index}: bad name offset {key}"))?
                    .to_owned(),
                path: PathBuf::from(
                    read_string(new, value)
                        .ok_or_else(|| format!("entry {index}: bad path offset {value}"))?,
                ),
            })
        })
        .collect()
}

/// The path the loader takes from the cache for `name`, given the binary's ABI flags.
///
/// Like glibc, the first acceptable entry wins and entries must carry exactly the ABI flags of
/// the binary (or plain `FLAG_ELF`). Hardware-capability variants are skipped: they are chosen
/// by the build machine's CPU, while the image runs on another one, so the baseline build is
/// the one to ship.
pub(crate) fn lookup<'a>(
    entries: &'a [CacheEntry],
    name: &OsStr,
    abi_flags: i32,
) -> Option<&'a Path> {
    entries
        .iter()
        .find(|e| e.name == name && e.hwcap == 0 && (e.flags == FLAG_ELF || e.flags == abi_flags))
        .map(|e| e.path.as_path())
}

fn read_u32(data: &[u8], at: usize) -> Option<u32> {
    data.get(at..at + 4)?
        .try_into()
        .ok()
        .map(u32::from_ne_bytes)
}

fn read_string(data: &[u8], offset: u32) -> Option<&OsStr> {
    let rest = data.get(offset as usize..)?;
    let end = rest.iter().position(|&b| b == 0)?;
    Some(OsStr::from_bytes(&rest[..end]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::process::Command;

    /// `(name, path)` of every `libc6,x86-64` line `ldconfig -p` prints for `cache`.
    fn ldconfig_x86_64_entries(cache: &Path) -> BTreeSet<(OsString, PathBuf)> {
        let output = Command::new("ldconfig")
            .arg("-p")
            .arg("-C")
            .arg(cache)
            .output()
            .expect("ldconfig runs");
        assert!(output.status.success(), "ldconfig -p failed: {output:?}");
        let text = String::from_utf8(output.stdout).expect("ldconfig -p prints UTF-8");
        text.lines()
            .filter_map(|line| {
                let (left, path) = line.trim().split_once(" => ")?;
                let (name, tags) = left.split_once(" (")?;
                tags.starts_with("libc6,x86-64")
                    .then(|| (OsString::from(name), PathBuf::from(path)))
            })
            .collect()
    }

    fn parsed_x86_64_entries(cache: &Path) -> BTreeSet<(OsString, PathBuf)> {
        let data = std::fs::read(cache).expect("cache is readable");
        parse(&data)
            .expect("cache parses")
            .into_iter()
            .filter(|e| e.flags == 0x0303)
            .map(|e| (e.name, e.path))
            .collect()
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn system_cache_matches_ldconfig() {
        let cache = Path::new(SYSTEM_CACHE);
        let expected = ldconfig_x86_64_entries(cache);
        assert!(
            !expected.is_empty(),
            "ldconfig -p listed no libc6,x86-64 entries"
        );
        assert_eq!(parsed_x86_64_entries(cache), expected);

        let data = std::fs::read(cache).expect("cache is readable");
        let entries = parse(&data).expect("cache parses");
        let libc = lookup(&entries, OsStr::new("libc.so.6"), 0x0303).expect("libc.so.6 is cached");
        assert!(libc.is_file(), "{} is not a file", libc.display());
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn compat_format_cache_matches_ldconfig() {
        let dir = tempfile::tempdir().expect("temp dir");
        let cache = dir.path().join("ld.so.cache");
        let status = Command::new("ldconfig")
            .args(["-X", "-i", "-c", "compat", "-C"])
            .arg(&cache)
            .status()
            .expect("ldconfig runs");
        assert!(status.success(), "ldconfig -c compat failed");
        let data = std::fs::read(&cache).expect("cache is readable");
        assert!(
            data.starts_with(OLD_MAGIC),
            "ldconfig -c compat wrote no old header"
        );

        let expected = ldconfig_x86_64_entries(&cache);
        assert!(
            !expected.is_empty(),
            "ldconfig -p listed no libc6,x86-64 entries"
        );
        assert_eq!(parsed_x86_64_entries(&cache), expected);
    }

    #[test]
    fn garbage_is_rejected() {
        assert!(parse(b"not a cache at all, just some bytes").is_err());
        assert!(parse(b"glibc-ld.so.cache1.1").is_err());
    }
}
