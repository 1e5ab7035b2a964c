//! The ustar header block and PAX records: field layout, number encodings and the
//! checksum, shared by the writer and the reader.

use std::ops::Range;

pub(super) const BLOCK: usize = 512;

pub(super) const NAME: Range<usize> = 0..100;
pub(super) const MODE: Range<usize> = 100..108;
pub(super) const UID: Range<usize> = 108..116;
pub(super) const GID: Range<usize> = 116..124;
pub(super) const SIZE: Range<usize> = 124..136;
pub(super) const MTIME: Range<usize> = 136..148;
pub(super) const CHECKSUM: Range<usize> = 148..156;
pub(super) const TYPEFLAG: usize = 156;
pub(super) const LINKNAME: Range<usize> = 157..257;
pub(super) const MAGIC: Range<usize> = 257..263;
pub(super) const VERSION: Range<usize> = 263..265;
pub(super) const DEVMAJOR: Range<usize> = 329..337;
pub(super) const DEVMINOR: Range<usize> = 337..345;
pub(super) const PREFIX: Range<usize> = 345..500;

/// POSIX ustar magic; GNU tar writes `ustar  \0` and uses the prefix area for
/// other things, so the reader only honours `prefix` after this magic.
pub(super) const USTAR_MAGIC: &[u8; 6] = b"ustar\0";

pub(super) const TYPE_FILE: u8 = b'0';
pub(super) const TYPE_HARD_LINK: u8 = b'1';
pub(super) const TYPE_SYMLINK: u8 = b'2';
pub(super) const TYPE_DIRECTORY: u8 = b'5';
pub(super) const TYPE_PAX: u8 = b'x';

/// The largest value an octal field of `field_len` bytes holds: all digits but
/// the terminating NUL.
pub(super) fn octal_max(field_len: usize) -> u64 {
    (1u64 << (3 * (field_len as u32 - 1))) - 1
}

/// The values of one header; names and link targets longer than their fields are
/// cut, and the caller puts the whole value in a PAX record.
pub(super) struct Header<'a> {
    pub name: &'a [u8],
    pub link: &'a [u8],
    pub typeflag: u8,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime: u64,
}

impl Header<'_> {
    /// The 512-byte block. Numbers too large for octal are written base-256 (the
    /// GNU extension that Go, GNU tar and libarchive read) so that even a reader
    /// that ignores PAX gets sizes right and stays in step with the stream.
    pub(super) fn encode(&self) -> [u8; BLOCK] {
        let mut block = [0u8; BLOCK];
        put_bytes(&mut block[NAME], self.name);
        put_number(&mut block[MODE], u64::from(self.mode));
        put_number(&mut block[UID], u64::from(self.uid));
        put_number(&mut block[GID], u64::from(self.gid));
        put_number(&mut block[SIZE], self.size);
        put_number(&mut block[MTIME], self.mtime);
        block[TYPEFLAG] = self.typeflag;
        put_bytes(&mut block[LINKNAME], self.link);
        block[MAGIC].copy_from_slice(USTAR_MAGIC);
        block[VERSION].copy_from_slice(b"00");
        put_number(&mut block[DEVMAJOR], 0);
        put_number(&mut block[DEVMINOR], 0);
        let sum = checksum(&block);
        // Six octal digits, NUL, space: the layout every tar writes.
        let digits = format!("{sum:06o}\0 ");
        block[CHECKSUM].copy_from_slice(digits.as_bytes());
        block
    }
}

fn put_bytes(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
}

fn put_number(field: &mut [u8], value: u64) {
    let len = field.len();
    if value <= octal_max(len) {
        let mut v = value;
        for byte in field[..len - 1].iter_mut().rev() {
            *byte = b'0' + (v & 7) as u8;
            v >>= 3;
        }
        field[len - 1] = 0;
    } else {
        field.fill(0);
        let be = value.to_be_bytes();
        let n = be.len().min(len - 1);
        field[len - n..].copy_from_slice(&be[be.len() - n..]);
        field[0] |= 0x80;
    }
}

/// The unsigned sum of the block with the checksum field counted as spaces.
pub(super) fn checksum(block: &[u8; BLOCK]) -> u32 {
    let spaces = CHECKSUM.len() as u32 * u32::from(b' ');
    block
        .iter()
        .enumerate()
        .filter(|(i, _)| !CHECKSUM.contains(i))
        .map(|(_, &b)| u32::from(b))
        .sum::<u32>()
        + spaces
}

/// Appends one PAX record, `"<len> <key>=<value>\n"`, where `len` counts the
/// whole record including its own digits.
pub(super) fn push_pax_record(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    let body = 1 + key.len() + 1 + value.len() + 1;
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key.as_bytes());
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_length_counts_its_own_digits() {
        let mut out = Vec::new();
        push_pax_record(&mut out, "path", b"a");
        assert_eq!(out, b"9 path=a\n");
        // 99 bytes besides the length, which then needs three digits: 102 in all.
        let mut out = Vec::new();
        push_pax_record(&mut out, "path", &[b'x'; 92]);
        assert!(
            out.starts_with(b"102 path="),
            "{:?}",
            String::from_utf8_lossy(&out)
        );
        assert_eq!(out.len(), 102);
    }

    #[test]
    fn numbers_use_octal_until_they_do_not_fit_then_base_256() {
        let mut field = [0u8; 12];
        put_number(&mut field, 0o755);
        assert_eq!(&field, b"00000000755\0");
        put_number(&mut field, octal_max(12) + 1);
        assert_eq!(field[0], 0x80);
        assert_eq!(&field[1..7], &[0; 6]);
        assert_eq!(&field[7..], &[2, 0, 0, 0, 0]); // 8^11 = 2^33
    }
}
