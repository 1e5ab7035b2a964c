//! Nix's printed hashes (`sha256:<nix base32>`, `sha256:<hex>`, or SRI
//! `sha256-<base64>`) as lowercase hex, the form SPDX checksums take.

/// Nix's base32 alphabet: digits and lowercase letters without e, o, u and t.
const NIX_BASE32: &[u8; 32] = b"0123456789abcdfghijklmnpqrsvwxyz";
const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const SHA256_BYTES: usize = 32;

/// The SHA-256 in `printed` as 64 lowercase hex digits, or `None` when it is
/// not a SHA-256 in one of the forms Nix prints.
pub fn sha256_hex(printed: &str) -> Option<String> {
    let bytes = if let Some(text) = printed.strip_prefix("sha256:") {
        match text.len() {
            64 => hex::decode(text).ok()?,
            _ => decode_nix_base32(text)?,
        }
    } else {
        decode_base64(printed.strip_prefix("sha256-")?)?
    };
    (bytes.len() == SHA256_BYTES).then(|| hex::encode(bytes))
}

/// Decodes Nix's base32, which is not RFC 4648: the last character holds the
/// lowest bits of the first byte (libutil's `Hash::parseAnyPrefixed`).
fn decode_nix_base32(text: &str) -> Option<Vec<u8>> {
    let len = text.len() * 5 / 8;
    if text.len() != (len * 8).div_ceil(5) || len == 0 {
        return None;
    }
    let mut bytes = vec![0u8; len];
    for (n, c) in text.bytes().rev().enumerate() {
        let digit = NIX_BASE32.iter().position(|&d| d == c)? as u16;
        let bit = n * 5;
        let (i, j) = (bit / 8, bit % 8);
        let spread = digit << j;
        bytes[i] |= (spread & 0xff) as u8;
        let high = (spread >> 8) as u8;
        match bytes.get_mut(i + 1) {
            Some(next) => *next |= high,
            None if high != 0 => return None,
            None => {}
        }
    }
    Some(bytes)
}

/// Decodes padded standard base64, as SRI hashes are written.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    if text.len() % 4 != 0 {
        return None;
    }
    let body = text.trim_end_matches('=');
    if text.len() - body.len() > 2 {
        return None;
    }
    let mut bytes = Vec::with_capacity(body.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in body.bytes() {
        acc = (acc << 6) | BASE64.iter().position(|&d| d == c)? as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            bytes.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real NAR hash from `nix path-info --json` and the same hash from
    /// `nix-store -q --hash`; the hex is `nix-hash --type sha256 --to-base16`'s.
    const SRI: &str = "sha256-Mw0RFMl3ysoUoSShO3w1Vpf0zQITqe1lHj5875pIg/M=";
    const BASE32: &str = "sha256:1ww392dfyz1y3rjyva8k0b6z95sn6my3p894l4acmjkpr4a1239k";
    const HEX: &str = "330d1114c977caca14a124a13b7c355697f4cd0213a9ed651e3e7cef9a4883f3";

    #[test]
    fn converts_every_form_nix_prints_to_the_same_hex() {
        assert_eq!(sha256_hex(BASE32).as_deref(), Some(HEX));
        assert_eq!(sha256_hex(SRI).as_deref(), Some(HEX));
        assert_eq!(sha256_hex(&format!("sha256:{HEX}")).as_deref(), Some(HEX));
    }

    #[test]
    fn converts_sha256_of_abc() {
        // `nix-hash --type sha256 --to-base16 1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s`
        assert_eq!(
            sha256_hex("sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s").as_deref(),
            Some("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
    }

    #[test]
    fn rejects_what_is_not_a_sha256() {
        let bad = [
            "",
            "md5:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s",
            // `e` is not in Nix's alphabet.
            "sha256:eb8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s",
            // The first character would carry bits past the 32nd byte.
            "sha256:zb8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s",
            "sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5",
            "sha256-Mw0RFMl3ysoUoSShO3w1Vpf0zQITqe1lHj5875pIg/M",
            "sha256-Mw0RFMl3ysoUoSShO3w1Vpf0zQITqe1lHj5875pIg/M=AAAA",
            "sha256-Mw0R!Ml3ysoUoSShO3w1Vpf0zQITqe1lHj5875pIg/M=",
        ];
        for printed in bad {
            assert_eq!(sha256_hex(printed), None, "{printed}");
        }
    }
}
