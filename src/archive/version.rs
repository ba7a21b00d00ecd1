//! Debian version order, exactly as dpkg computes it, so that resolution picks what apt would.
//!
//! The algorithm is dpkg's `dpkg_version_compare` / `verrevcmp` / `order()`
//! from `lib/dpkg/version.c`, and the syntax rules follow `parseversion()` in
//! `lib/dpkg/parsehelp.c`. A version is `[epoch:]upstream[-revision]`:
//!
//! * the epoch is the digits before the first `:` (0 when there is no colon);
//! * the revision is everything after the *last* `-` (empty when there is
//!   none; an empty revision compares equal to `0`, so `1.0 == 1.0-0`);
//! * upstream and revision are compared piecewise: a run of non-digits, then
//!   a run of digits, and so on. Non-digit runs are compared character by
//!   character where `~` sorts before everything (even the end of the
//!   string), then the end of the string, then letters (ASCII order), then
//!   every other character (ASCII order). Digit runs compare numerically, of
//!   any length, ignoring leading zeros.
//!
//! [`compare`] never allocates and never fails: it gives some consistent
//! order to strings that are not valid versions too. [`validate`] says
//! whether a string is a valid version.

use std::cmp::Ordering;

/// Compares two Debian versions the way `dpkg --compare-versions` does.
///
/// Leading and trailing blanks (spaces and tabs) are ignored, as dpkg does.
/// The inputs are not validated; an invalid version still gets a
/// deterministic place in the order (a prefix before the first `:` that is
/// not all digits is then treated as part of the upstream version).
pub fn compare(a: &str, b: &str) -> Ordering {
    let a = Parts::split(a.as_bytes());
    let b = Parts::split(b.as_bytes());
    compare_epochs(a.epoch, b.epoch)
        .then_with(|| verrevcmp(a.upstream, b.upstream))
        .then_with(|| verrevcmp(a.revision, b.revision))
}

/// The three parts of a version, borrowed from the input.
struct Parts<'a> {
    /// ASCII digits only; empty means 0.
    epoch: &'a [u8],
    upstream: &'a [u8],
    revision: &'a [u8],
}

impl<'a> Parts<'a> {
    fn split(v: &'a [u8]) -> Self {
        let v = trim_blanks(v);
        let (epoch, rest) = match v.iter().position(|&c| c == b':') {
            Some(i) if i > 0 && v[..i].iter().all(u8::is_ascii_digit) => (&v[..i], &v[i + 1..]),
            _ => (&v[..0], v),
        };
        let (upstream, revision) = match rest.iter().rposition(|&c| c == b'-') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        Parts {
            epoch,
            upstream,
            revision,
        }
    }
}

/// dpkg's `c_isblank`: space or tab.
fn is_blank(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

fn trim_blanks(mut v: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = v {
        if !is_blank(*first) {
            break;
        }
        v = rest;
    }
    while let [rest @ .., last] = v {
        if !is_blank(*last) {
            break;
        }
        v = rest;
    }
    v
}

/// Compares two digit strings numerically without converting them, so any
/// length works.
fn compare_epochs(a: &[u8], b: &[u8]) -> Ordering {
    let a = strip_leading_zeros(a);
    let b = strip_leading_zeros(b);
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

fn strip_leading_zeros(mut v: &[u8]) -> &[u8] {
    while let [b'0', rest @ ..] = v {
        v = rest;
    }
    v
}

/// dpkg's `order()`: the weight of one character in a non-digit run. `None`
/// is the end of the string. Digits weigh 0 like the end of the string, but
/// the caller never compares a digit against a non-digit that weighs 0.
///
/// Unlike C, a Rust string may contain NUL; it is weighed like any other
/// punctuation character so that the comparison always terminates.
#[inline]
fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(b'~') => -1,
        Some(c) => i32::from(c) + 256,
    }
}

#[inline]
fn is_digit_at(s: &[u8], i: usize) -> bool {
    s.get(i).is_some_and(u8::is_ascii_digit)
}

#[inline]
fn is_non_digit_at(s: &[u8], i: usize) -> bool {
    s.get(i).is_some_and(|c| !c.is_ascii_digit())
}

/// dpkg's `verrevcmp()`, over byte slices instead of NUL-terminated strings.
fn verrevcmp(a: &[u8], b: &[u8]) -> Ordering {
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        // The non-digit run. Equal weights imply both sides hold the same
        // non-digit character, so both indexes stay in bounds.
        while is_non_digit_at(a, i) || is_non_digit_at(b, j) {
            let wa = order(a.get(i).copied());
            let wb = order(b.get(j).copied());
            if wa != wb {
                return wa.cmp(&wb);
            }
            i += 1;
            j += 1;
        }
        // The digit run, compared numerically: skip leading zeros, then the
        // longer run wins, else the first differing digit decides.
        while a.get(i) == Some(&b'0') {
            i += 1;
        }
        while b.get(j) == Some(&b'0') {
            j += 1;
        }
        let mut first_diff = Ordering::Equal;
        while is_digit_at(a, i) && is_digit_at(b, j) {
            if first_diff == Ordering::Equal {
                first_diff = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        if is_digit_at(a, i) {
            return Ordering::Greater;
        }
        if is_digit_at(b, j) {
            return Ordering::Less;
        }
        if first_diff != Ordering::Equal {
            return first_diff;
        }
    }
    Ordering::Equal
}

/// Why a string is not a valid Debian version.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    #[error("version string is empty")]
    Empty,
    #[error("version {version:?} contains whitespace")]
    Whitespace { version: String },
    #[error("version {version:?} has an empty epoch before ':'")]
    EmptyEpoch { version: String },
    #[error("version {version:?} has an epoch that is not a number")]
    EpochNotNumber { version: String },
    #[error("version {version:?} has an epoch larger than 2147483647")]
    EpochTooBig { version: String },
    #[error("version {version:?} has nothing after the epoch colon")]
    NothingAfterColon { version: String },
    #[error("version {version:?} has an empty upstream version")]
    EmptyUpstream { version: String },
    #[error("version {version:?} has an empty revision after the last '-'")]
    EmptyRevision { version: String },
    #[error("version {version:?} has invalid character {ch:?} in its {part}")]
    InvalidChar {
        version: String,
        ch: char,
        /// `"upstream version"` or `"revision"`.
        part: &'static str,
    },
}

/// Checks that `v` is a valid Debian version, following dpkg's
/// `parseversion()`.
///
/// Like dpkg, leading and trailing blanks are allowed and an upstream version
/// that does not start with a digit is accepted (dpkg only warns). Stricter
/// than dpkg: characters outside Policy §5.6.12 (upstream: alphanumerics and
/// `.+~-:`, revision: alphanumerics and `.+~`) are errors here where dpkg
/// only warns, and the epoch must be plain digits (dpkg's `strtol` would also
/// take a sign).
pub fn validate(v: &str) -> Result<(), VersionError> {
    let trimmed = trim_blanks(v.as_bytes());
    let err_version = || v.to_owned();
    if trimmed.is_empty() {
        return Err(VersionError::Empty);
    }
    if trimmed.iter().any(u8::is_ascii_whitespace) {
        return Err(VersionError::Whitespace {
            version: err_version(),
        });
    }
    let rest = match trimmed.iter().position(|&c| c == b':') {
        Some(i) => {
            let epoch = &trimmed[..i];
            if epoch.is_empty() {
                return Err(VersionError::EmptyEpoch {
                    version: err_version(),
                });
            }
            if !epoch.iter().all(u8::is_ascii_digit) {
                return Err(VersionError::EpochNotNumber {
                    version: err_version(),
                });
            }
            if compare_epochs(epoch, b"2147483647") == Ordering::Greater {
                return Err(VersionError::EpochTooBig {
                    version: err_version(),
                });
            }
            let rest = &trimmed[i + 1..];
            if rest.is_empty() {
                return Err(VersionError::NothingAfterColon {
                    version: err_version(),
                });
            }
            rest
        }
        None => trimmed,
    };
    let (upstream, revision) = match rest.iter().rposition(|&c| c == b'-') {
        Some(i) => {
            let revision = &rest[i + 1..];
            if revision.is_empty() {
                return Err(VersionError::EmptyRevision {
                    version: err_version(),
                });
            }
            (&rest[..i], revision)
        }
        None => (rest, &rest[rest.len()..]),
    };
    if upstream.is_empty() {
        return Err(VersionError::EmptyUpstream {
            version: err_version(),
        });
    }
    // Both parts were split off at ASCII bytes, so they are valid UTF-8 and
    // the offending character can be reported whole.
    let find_invalid = |part: &[u8], extra: &[u8]| {
        std::str::from_utf8(part).ok().and_then(|s| {
            s.chars().find(|&c| {
                !(c.is_ascii_alphanumeric() || (c.is_ascii() && extra.contains(&(c as u8))))
            })
        })
    };
    if let Some(ch) = find_invalid(upstream, b".+~-:") {
        return Err(VersionError::InvalidChar {
            version: err_version(),
            ch,
            part: "upstream version",
        });
    }
    if let Some(ch) = find_invalid(revision, b".+~") {
        return Err(VersionError::InvalidChar {
            version: err_version(),
            ch,
            part: "revision",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering::{Equal, Greater, Less};

    fn check(a: &str, b: &str, expected: Ordering) {
        assert_eq!(compare(a, b), expected, "compare({a:?}, {b:?})");
        assert_eq!(
            compare(b, a),
            expected.reverse(),
            "compare({b:?}, {a:?}) (reversed)"
        );
    }

    #[test]
    fn classic_cases() {
        check("1.0~rc1", "1.0", Less);
        check("1:0.1", "2.0", Greater);
        check("1.0a", "1.0+", Less);
        check("1.0-1", "1.0-1.1", Less);
        check("2.30-1~bpo", "2.30-1", Less);
        check("2.30-1~bpo12+1", "2.30-1", Less);
        check("2.36-9+deb12u4", "2.36-9", Greater);
        check("1.0", "1.0", Equal);
        check("1.0", "1.1", Less);
        check("1.10", "1.9", Greater);
        check("1.0~~", "1.0~", Less);
        check("1.0~", "1.0", Less);
        check("1.0", "1.0.0", Less);
        check("1.0", "1.0a", Less);
        check("1.0a", "1.0b", Less);
        check("1.0Z", "1.0a", Less);
        check("1.0+", "1.0.", Less);
        check("1.0.", "1.0~", Greater);
        check("2.0", "10.0", Less);
        check("1:1.0", "2:0.1", Less);
    }

    #[test]
    fn missing_parts() {
        // An empty revision is compared like "0"; a missing epoch is 0.
        check("1.0", "1.0-0", Equal);
        check("1.0", "0:1.0", Equal);
        check("1.0", "00:1.0-0", Equal);
        check("1.0-", "1.0", Equal);
        check("", "", Equal);
        check("", "0", Equal);
        check("", "~", Greater);
    }

    #[test]
    fn digit_runs() {
        check("1.001", "1.1", Equal);
        check("1.0010", "1.10", Equal);
        check("1.000", "1.0", Equal);
        check("1.00a", "1.0a", Equal);
        // "." is compared with ".a" before any digits are seen.
        check("1.00a", "1.a", Less);
        // Longer than any integer type.
        check(
            "1.123456789012345678901234567890",
            "1.123456789012345678901234567891",
            Less,
        );
        check("1.000000000000000000000000000000000000009", "1.9", Equal);
        check(
            "1.99999999999999999999999999999999",
            "1.100000000000000000000000000000000",
            Less,
        );
        check("99999999999999999999:1", "100000000000000000000:0", Less);
    }

    #[test]
    fn hyphens_and_colons() {
        // The revision starts after the last hyphen.
        check("1.0-2-1", "1.0-10-0", Less);
        check("1.0-2-1", "1.0-2-0", Greater);
        // Colons after the first belong to the upstream version.
        check("1:1:2", "1:1:10", Less);
        check("1:1.0:2", "1:1.0.2", Greater);
    }

    #[test]
    fn blanks_are_trimmed() {
        check(" 1.0 ", "1.0", Equal);
        check("\t1:2-3", "1:2-3\t", Equal);
    }

    #[test]
    fn invalid_input_does_not_panic() {
        for v in ["a:b", ":", "-", "1:-", "\0", "1\0", "é:1", "ü-ü", "~~~~"] {
            let _ = compare(v, "1.0");
            let _ = compare("1.0", v);
            assert_eq!(compare(v, v), Equal, "{v:?}");
        }
        check("1\0", "1", Greater);
    }

    #[test]
    fn sort_matches_expected_order() {
        let mut v = vec![
            "1.0", "1:0.1", "1.0~rc1", "1.0-1", "1.0+dfsg", "1.0a", "0.9", "1.0~~", "1.0-1.1",
        ];
        v.sort_by(|a, b| compare(a, b));
        assert_eq!(
            v,
            ["0.9", "1.0~~", "1.0~rc1", "1.0", "1.0-1", "1.0-1.1", "1.0a", "1.0+dfsg", "1:0.1"]
        );
    }

    #[test]
    fn validate_accepts_valid() {
        for v in [
            "1.0",
            "1:2.36-9+deb12u4",
            "2.30-1~bpo12+1",
            "0",
            "1.0-2-3",
            "1:1:2",
            "5.10.0-1+b1",
            "20240101.0~git1.abcdef",
            " 1.0 ",
            "a1.0", // dpkg only warns when upstream does not start with a digit
            "2147483647:1",
        ] {
            assert_eq!(validate(v), Ok(()), "{v:?}");
        }
    }

    #[test]
    fn validate_rejects_invalid() {
        let cases: &[(&str, VersionError)] = &[
            ("", VersionError::Empty),
            ("  ", VersionError::Empty),
            (
                "1.0 a",
                VersionError::Whitespace {
                    version: "1.0 a".into(),
                },
            ),
            (
                ":1.0",
                VersionError::EmptyEpoch {
                    version: ":1.0".into(),
                },
            ),
            (
                "a:1.0",
                VersionError::EpochNotNumber {
                    version: "a:1.0".into(),
                },
            ),
            (
                "-1:1.0",
                VersionError::EpochNotNumber {
                    version: "-1:1.0".into(),
                },
            ),
            (
                "2147483648:1",
                VersionError::EpochTooBig {
                    version: "2147483648:1".into(),
                },
            ),
            (
                "1:",
                VersionError::NothingAfterColon {
                    version: "1:".into(),
                },
            ),
            (
                "1.0-",
                VersionError::EmptyRevision {
                    version: "1.0-".into(),
                },
            ),
            (
                "-1",
                VersionError::EmptyUpstream {
                    version: "-1".into(),
                },
            ),
            (
                "1:-1",
                VersionError::EmptyUpstream {
                    version: "1:-1".into(),
                },
            ),
            (
                "1.0_1",
                VersionError::InvalidChar {
                    version: "1.0_1".into(),
                    ch: '_',
                    part: "upstream version",
                },
            ),
            (
                "1:1.0-1:2",
                VersionError::InvalidChar {
                    version: "1:1.0-1:2".into(),
                    ch: ':',
                    part: "revision",
                },
            ),
            (
                "1.0-1é",
                VersionError::InvalidChar {
                    version: "1.0-1é".into(),
                    ch: 'é',
                    part: "revision",
                },
            ),
        ];
        for (v, expected) in cases {
            assert_eq!(validate(v).as_ref(), Err(expected), "{v:?}");
        }
    }

    #[test]
    fn error_messages() {
        let e = validate("1.0_1").unwrap_err().to_string();
        assert_eq!(
            e,
            "version \"1.0_1\" has invalid character '_' in its upstream version"
        );
        assert_eq!(
            validate("").unwrap_err().to_string(),
            "version string is empty"
        );
        let e = validate("x:1").unwrap_err().to_string();
        assert!(e.contains("\"x:1\""), "{e}");
    }
}
