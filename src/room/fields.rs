//! What a client's fields must look like: room codes (made and read back), tags, `drop`
//! spans and abort reasons. Pure checks on values: no room state, no replies.

/// Crockford's base32: no I, L, O or U, so a code read aloud is typed right.
const CODE_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const CODE_LEN: usize = 10;

/// A room code from 50 random bits, as `ABCDE-FGHJK`.
pub fn make_code(random: &mut dyn FnMut(&mut [u8])) -> String {
    let mut b = [0u8; 8];
    random(&mut b);
    let mut x = u64::from_le_bytes(b);
    let mut s = String::with_capacity(CODE_LEN + 1);
    for k in 0..CODE_LEN {
        if k == 5 {
            s.push('-');
        }
        s.push(CODE_ALPHABET[(x & 31) as usize] as char);
        x >>= 5;
    }
    s
}

/// Reads a code as a person might type it: any case, with or without the dash or spaces,
/// O for 0 and I or L for 1. `None` if it cannot be a code.
pub fn normalize_code(input: &str) -> Option<String> {
    let mut s = String::with_capacity(CODE_LEN + 1);
    let mut n = 0;
    for ch in input.chars() {
        let c = match ch.to_ascii_uppercase() {
            '-' | ' ' => continue,
            'O' => '0',
            'I' | 'L' => '1',
            c if CODE_ALPHABET.contains(&(c as u8)) && c.is_ascii() => c,
            _ => return None,
        };
        if n == 5 {
            s.push('-');
        }
        if n == CODE_LEN {
            return None;
        }
        s.push(c);
        n += 1;
    }
    (n == CODE_LEN).then_some(s)
}

/// A tag is `tag_bits / 4` hex digits.
pub(super) fn valid_tag(tag: &str, tag_bits: u32) -> bool {
    tag.len() == (tag_bits / 4) as usize && tag.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Most spans in one `drop` (a poster with more unmatched posts is out of sync anyway).
pub const MAX_SPANS: usize = 64;

/// `drop {spans}`: 1 to [`MAX_SPANS`] spans `[from, to]` with `from ≤ to`, inside
/// `[t_start, t_end]`, ascending and disjoint.
pub(super) fn valid_spans(spans: &[[i64; 2]], t_start: i64, t_end: i64) -> Result<(), String> {
    if spans.is_empty() || spans.len() > MAX_SPANS {
        return Err(format!("`spans` must hold 1 to {MAX_SPANS} spans, not {}", spans.len()));
    }
    for (k, s) in spans.iter().enumerate() {
        if s[0] > s[1] {
            return Err(format!("span {k} ends before it starts"));
        }
        if s[0] < t_start || s[1] > t_end {
            return Err(format!("span {k} is not inside the round's window [{t_start}, {t_end}]"));
        }
        if k > 0 && s[0] <= spans[k - 1][1] {
            return Err(format!("span {k} starts before span {} ends: spans must be ascending and disjoint", k - 1));
        }
    }
    Ok(())
}

/// Abort reasons are short snake_case words, relayed as they are.
pub(super) fn valid_reason(r: &str) -> bool {
    (1..=32).contains(&r.len()) && r.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// tests/vectors/codes/codes.json: the same codes as client/js/codes.js draws and reads.
    #[test]
    fn codes_match_the_shared_vectors() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/codes/codes.json")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        for case in v["make"].as_array().unwrap() {
            let bytes: Vec<u8> = case["bytes"].as_array().unwrap().iter().map(|b| b.as_u64().unwrap() as u8).collect();
            let code = make_code(&mut |buf: &mut [u8]| buf.copy_from_slice(&bytes));
            assert_eq!(code, case["code"].as_str().unwrap(), "{bytes:?}");
        }
        for case in v["normalize"].as_array().unwrap() {
            let input = case["input"].as_str().unwrap();
            assert_eq!(normalize_code(input).as_deref(), case["code"].as_str(), "{input:?}");
        }
    }
}
