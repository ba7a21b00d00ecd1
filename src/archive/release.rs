//! `InRelease`: the OpenPGP signature checked in-process against the
//! manifest's keyring, then the signed body (and only it) parsed into the
//! list of index files with their sizes and SHA256 sums. Only this module
//! can make a [`Verified<Release>`].

use std::collections::HashMap;
use std::io::Read;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openpgp::cert::amalgamation::ValidAmalgamation;
use openpgp::cert::CertParser;
use openpgp::parse::stream::{
    MessageLayer, MessageStructure, VerificationError, VerificationHelper, VerifierBuilder,
};
use openpgp::parse::Parse;
use openpgp::policy::StandardPolicy;
use openpgp::{Cert, Fingerprint, KeyHandle};
use sequoia_openpgp as openpgp;

use super::deb822;
use super::hash::Sha256;

#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("keyring {origin}: {message}")]
    Keyring { origin: String, message: String },
    #[error("{url}: signature check failed: {message}\nhelp: the file was not signed by a key in {keyring}; if this is your own archive, pass its key with --keyring FILE")]
    Signature {
        url: String,
        keyring: String,
        message: String,
    },
    #[error("{url}: signature check failed: {message}\nhelp: the archive was signed by a key in {keyring} that is not valid (now or at the file's Date); if the archive has a new key, pass it with --keyring FILE, or check the system clock")]
    KeyNotValid {
        url: String,
        keyring: String,
        message: String,
    },
    #[error("{url}: {message}")]
    Invalid { url: String, message: String },
    #[error("{url}: the Release file expired at {valid_until} (Valid-Until); the mirror is stale or the clock is wrong\nhelp: use an up-to-date --mirror, or check the system clock")]
    Expired { url: String, valid_until: String },
    #[error("{url}: the Release file is dated {date}, in the future (now is {now}): the clock or the mirror is wrong\nhelp: check the system clock, or use another --mirror")]
    FutureDate {
        url: String,
        date: String,
        now: String,
    },
    #[error("{url}: asked for suite '{asked}' but the Release file is for Suite '{suite}', Codename '{codename}'")]
    WrongSuite {
        url: String,
        asked: String,
        suite: String,
        codename: String,
    },
}

/// A set of OpenPGP certificates that may sign Release files.
#[derive(Clone)]
pub struct Keyring {
    certs: Vec<Cert>,
    origin: String,
}

impl Keyring {
    /// Parses binary or ASCII-armoured certificates (concatenated).
    pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<Self, ReleaseError> {
        let err = |message: String| ReleaseError::Keyring {
            origin: origin.into(),
            message,
        };
        let mut certs = Vec::new();
        // A keyring may be several binary keyrings concatenated, or armoured blocks.
        for cert in CertParser::from_bytes(bytes).map_err(|e| err(e.to_string()))? {
            certs.push(cert.map_err(|e| err(e.to_string()))?);
        }
        if certs.is_empty() {
            return Err(err("no OpenPGP certificate in it".into()));
        }
        Ok(Keyring {
            certs,
            origin: origin.into(),
        })
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn fingerprints(&self) -> Vec<String> {
        self.certs
            .iter()
            .map(|c| c.fingerprint().to_hex())
            .collect()
    }
}

/// A file listed in a Release file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    pub size: u64,
    pub sha256: Sha256,
}

/// A parsed Release file.
#[derive(Debug, Clone)]
pub struct Release {
    /// `Origin` and `Label` (e.g. `Debian`, `Debian-Security`): with the
    /// signer and the suite, what names the archive's suite whatever host
    /// serves it (see [`super::dates`]).
    pub origin: String,
    pub label: String,
    pub suite: String,
    pub codename: String,
    pub date: SystemTime,
    pub valid_until: Option<SystemTime>,
    pub acquire_by_hash: bool,
    /// `No-Support-for-Architecture-all: Packages`: `all` packages are in
    /// each architecture's index, not in a `binary-all` one.
    pub no_support_arch_all: bool,
    pub architectures: Vec<String>,
    pub components: Vec<String>,
    /// By path relative to the suite's `dists/SUITE/` directory.
    pub files: HashMap<String, FileEntry>,
    /// Fingerprints of the keys whose good signatures were accepted.
    pub signers: Vec<String>,
    /// Fingerprints of their certificates (primary keys), each once.
    pub signer_certs: Vec<String>,
}

/// Data that passed verification. Only the module that checks a thing can
/// make its `Verified` form.
#[derive(Debug, Clone)]
pub struct Verified<T>(T);

impl<T> Verified<T> {
    pub fn get(&self) -> &T {
        &self.0
    }
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl Release {
    /// Whether the archive keeps `all` packages in each architecture's index.
    pub fn no_arch_all_index(&self) -> bool {
        self.no_support_arch_all
    }
}

impl<T> std::ops::Deref for Verified<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// What a signature check found, by signature.
#[derive(Default)]
struct Outcome {
    good: Vec<GoodSignature>,
    unknown: Vec<String>,
    bad: Vec<String>,
}

struct Helper<'a> {
    keyring: &'a Keyring,
    outcome: Outcome,
}

impl VerificationHelper for Helper<'_> {
    fn get_certs(&mut self, _ids: &[KeyHandle]) -> openpgp::Result<Vec<Cert>> {
        Ok(self.keyring.certs.clone())
    }

    fn check(&mut self, structure: MessageStructure) -> openpgp::Result<()> {
        let mut groups = 0;
        for layer in structure.into_iter() {
            match layer {
                MessageLayer::SignatureGroup { results } => {
                    groups += 1;
                    for result in results {
                        match result {
                            Ok(good) => self
                                .outcome
                                .good
                                .push((good.ka.cert().fingerprint(), good.ka.key().fingerprint())),
                            Err(VerificationError::MissingKey { sig }) => {
                                let issuers = sig
                                    .get_issuers()
                                    .iter()
                                    .map(|i| i.to_hex())
                                    .collect::<Vec<_>>()
                                    .join(", ");
                                self.outcome.unknown.push(issuers)
                            }
                            Err(e) => self.outcome.bad.push(e.to_string()),
                        }
                    }
                }
                MessageLayer::Compression { .. } | MessageLayer::Encryption { .. } => {
                    self.outcome.bad.push(
                        "compressed or encrypted message, expected a cleartext signature".into(),
                    );
                }
            }
        }
        if groups == 0 {
            return Err(anyhow_msg("no signature"));
        }
        if !self.outcome.bad.is_empty() {
            return Err(anyhow_msg(&format!(
                "bad signature: {}",
                self.outcome.bad.join("; ")
            )));
        }
        if self.outcome.good.is_empty() {
            return Err(anyhow_msg(&format!(
                "no good signature; signed only by unknown keys {}",
                self.outcome.unknown.join(", ")
            )));
        }
        Ok(())
    }
}

fn anyhow_msg(m: &str) -> openpgp::anyhow::Error {
    openpgp::anyhow::anyhow!("{m}")
}

/// A good signature: (certificate, signing key).
type GoodSignature = (Fingerprint, Fingerprint);

/// Checks the cleartext signature of an InRelease file and returns the
/// signed body. Every signature must be good or by a key outside the
/// keyring, and at least one must be good; anything else is an error.
fn verify_signature(
    inrelease: &[u8],
    keyring: &Keyring,
    url: &str,
    now: SystemTime,
) -> Result<(Vec<u8>, Vec<GoodSignature>), ReleaseError> {
    let err = |message: String| ReleaseError::Signature {
        url: url.into(),
        keyring: keyring.origin.clone(),
        message,
    };
    if !inrelease.starts_with(b"-----BEGIN PGP SIGNED MESSAGE-----") {
        return Err(err(
            "not a cleartext-signed file (no signature at all)".into()
        ));
    }
    let policy = StandardPolicy::new();
    let helper = Helper {
        keyring,
        outcome: Outcome::default(),
    };
    let mut verifier = VerifierBuilder::from_bytes(inrelease)
        .and_then(|b| b.with_policy(&policy, Some(now), helper))
        .map_err(|e| err(error_chain(&e)))?;
    let mut body = Vec::new();
    verifier
        .read_to_end(&mut body)
        .map_err(|e| err(e.to_string()))?;
    if !verifier.message_processed() {
        return Err(err("the signed message was not read to its end".into()));
    }
    let good = verifier.into_helper().outcome.good;
    Ok((body, good))
}

fn error_chain(e: &openpgp::anyhow::Error) -> String {
    e.chain()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(": ")
}

/// Verifies an InRelease file and parses its body.
///
/// `suite` is the suite asked for: it must equal the file's `Suite` or
/// `Codename`. `now` is the time against which `Valid-Until` is checked; the
/// file's `Date` may not be more than [`MAX_FUTURE`] after it. A signing key
/// must be valid (alive, not revoked) both at the file's `Date` and at `now`.
/// That the file is not older than one seen before is checked by the caller
/// ([`super::dates`]).
pub fn verify_inrelease(
    inrelease: &[u8],
    keyring: &Keyring,
    suite: &str,
    url: &str,
    now: SystemTime,
) -> Result<Verified<Release>, ReleaseError> {
    let (body, good) = verify_signature(inrelease, keyring, url, now)?;
    let invalid = |message: String| ReleaseError::Invalid {
        url: url.into(),
        message,
    };
    let text =
        std::str::from_utf8(&body).map_err(|_| invalid("signed body is not UTF-8".into()))?;
    let mut release = parse_release(text, url)?;

    // Dated in the future: the clock or the mirror is wrong (apt's
    // Acquire::Max-FutureTime, 10 s by default).
    if release.date > now + MAX_FUTURE {
        return Err(ReleaseError::FutureDate {
            url: url.into(),
            date: format_date(release.date),
            now: format_date(now),
        });
    }

    // A signing key (and its certificate) must have been valid when the
    // archive says it made the file, and must still be valid now: as gpgv,
    // which apt runs, a key that has since expired or been revoked fails
    // (EXPKEYSIG, REVKEYSIG).
    let policy = StandardPolicy::new();
    let mut signers = Vec::new();
    let mut signer_certs: Vec<String> = Vec::new();
    let mut at_date = Vec::new();
    let mut since = Vec::new();
    for (cert_fpr, key_fpr) in &good {
        let Some(cert) = keyring.certs.iter().find(|c| &c.fingerprint() == cert_fpr) else {
            continue;
        };
        if let Err(why) = key_valid_at(cert, key_fpr, &policy, release.date) {
            at_date.push(format!("key {key_fpr}: {why}"));
        } else if let Err(why) = key_valid_at(cert, key_fpr, &policy, now) {
            since.push(format!("key {key_fpr}: {why}"));
        } else {
            signers.push(key_fpr.to_hex());
            if !signer_certs.contains(&cert_fpr.to_hex()) {
                signer_certs.push(cert_fpr.to_hex());
            }
        }
    }
    if signers.is_empty() {
        let message = if since.is_empty() {
            format!(
                "no signing key was valid at the file's Date ({}): expired or revoked ({})",
                format_date(release.date),
                at_date.join("; ")
            )
        } else {
            format!(
                "the signing key has expired or been revoked since it signed the file (checked at {}): {}",
                format_date(now),
                since.join("; ")
            )
        };
        return Err(ReleaseError::KeyNotValid {
            url: url.into(),
            keyring: keyring.origin.clone(),
            message,
        });
    }
    release.signers = signers;
    release.signer_certs = signer_certs;

    if release.suite != suite && release.codename != suite {
        return Err(ReleaseError::WrongSuite {
            url: url.into(),
            asked: suite.into(),
            suite: release.suite,
            codename: release.codename,
        });
    }
    if let Some(until) = release.valid_until {
        if until < now {
            return Err(ReleaseError::Expired {
                url: url.into(),
                valid_until: format_date(until),
            });
        }
    }
    Ok(Verified(release))
}

/// How far in the future a Release file's `Date` may be (apt's
/// `Acquire::Max-FutureTime` default).
pub const MAX_FUTURE: Duration = Duration::from_secs(10);

/// Whether the certificate and its key `key_fpr` are valid at `t`: the
/// certificate and the key alive and not revoked under `policy`.
fn key_valid_at(
    cert: &Cert,
    key_fpr: &Fingerprint,
    policy: &StandardPolicy,
    t: SystemTime,
) -> Result<(), String> {
    use openpgp::types::RevocationStatus;
    let vc = cert.with_policy(policy, t).map_err(|e| {
        format!(
            "the certificate is not valid at {}: {}",
            format_date(t),
            error_chain(&e)
        )
    })?;
    if !matches!(vc.revocation_status(), RevocationStatus::NotAsFarAsWeKnow) {
        return Err(format!("the certificate is revoked at {}", format_date(t)));
    }
    vc.alive().map_err(|e| {
        format!(
            "the certificate is not alive at {}: {}",
            format_date(t),
            error_chain(&e)
        )
    })?;
    let ka = vc
        .keys()
        .key_handle(key_fpr.clone())
        .next()
        .ok_or_else(|| format!("the key is not valid at {}", format_date(t)))?;
    if !matches!(ka.revocation_status(), RevocationStatus::NotAsFarAsWeKnow) {
        return Err(format!("the key is revoked at {}", format_date(t)));
    }
    ka.alive().map_err(|e| {
        format!(
            "the key is not alive at {}: {}",
            format_date(t),
            error_chain(&e)
        )
    })
}

/// Parses a Release file body (already verified).
fn parse_release(text: &str, url: &str) -> Result<Release, ReleaseError> {
    let invalid = |message: String| ReleaseError::Invalid {
        url: url.into(),
        message,
    };
    let stanzas = deb822::parse(text, url).map_err(|e| invalid(e.to_string()))?;
    let [stanza] = stanzas.as_slice() else {
        return Err(invalid(format!(
            "expected one stanza in the Release file, found {}",
            stanzas.len()
        )));
    };
    let field = |name: &str| stanza.get(name).unwrap_or("").to_string();
    let date_str = stanza
        .get("Date")
        .ok_or_else(|| invalid("no Date field".into()))?;
    let date = parse_date(date_str).ok_or_else(|| invalid(format!("bad Date {date_str:?}")))?;
    let valid_until = match stanza.get("Valid-Until") {
        Some(v) => Some(parse_date(v).ok_or_else(|| invalid(format!("bad Valid-Until {v:?}")))?),
        None => None,
    };
    let mut files = HashMap::new();
    for line in stanza.lines("SHA256") {
        let mut parts = line.split_ascii_whitespace();
        let (Some(hash), Some(size), Some(path), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid(format!("bad SHA256 line {line:?}")));
        };
        let size: u64 = size
            .parse()
            .map_err(|_| invalid(format!("bad size in SHA256 line {line:?}")))?;
        let sha256 = Sha256::parse(hash)
            .map_err(|_| invalid(format!("bad hash in SHA256 line {line:?}")))?;
        files.insert(path.to_string(), FileEntry { size, sha256 });
    }
    if files.is_empty() {
        return Err(invalid(
            "no SHA256 file list: zchroot accepts only SHA256-listed archives".into(),
        ));
    }
    let words = |s: String| s.split_ascii_whitespace().map(String::from).collect();
    Ok(Release {
        origin: field("Origin"),
        label: field("Label"),
        suite: field("Suite"),
        codename: field("Codename"),
        date,
        valid_until,
        acquire_by_hash: field("Acquire-By-Hash").eq_ignore_ascii_case("yes"),
        no_support_arch_all: field("No-Support-for-Architecture-all") == "Packages",
        architectures: words(field("Architectures")),
        components: words(field("Components")),
        files,
        signers: Vec::new(),
        signer_certs: Vec::new(),
    })
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Parses RFC 2822 dates as Release files use them:
/// `Sat, 21 Nov 2026 09:15:44 UTC` (also `GMT`, `+0000`, `-0130`, no weekday).
pub fn parse_date(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    let s = match s.find(',') {
        Some(i) => s[i + 1..].trim_start(),
        None => s,
    };
    let mut it = s.split_ascii_whitespace();
    let day: u32 = it.next()?.parse().ok()?;
    let month_name = it.next()?.get(..3)?;
    let month = MONTHS.iter().position(|m| *m == month_name)? as u32 + 1;
    let year: i64 = it.next()?.parse().ok()?;
    let mut hms = it.next()?.split(':');
    let h: i64 = hms.next()?.parse().ok()?;
    let m: i64 = hms.next()?.parse().ok()?;
    let sec: i64 = hms.next().unwrap_or("0").parse().ok()?;
    let offset = match it.next().unwrap_or("UTC") {
        "UTC" | "GMT" | "Z" | "UT" => 0,
        z if z.len() == 5 && (z.starts_with('+') || z.starts_with('-')) => {
            let hh: i64 = z[1..3].parse().ok()?;
            let mm: i64 = z[3..5].parse().ok()?;
            let v = hh * 3600 + mm * 60;
            if z.starts_with('-') {
                -v
            } else {
                v
            }
        }
        _ => return None,
    };
    if !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    let secs = days_from_civil(year, month, day) * 86400 + h * 3600 + m * 60 + sec - offset;
    if secs < 0 {
        return None;
    }
    Some(UNIX_EPOCH + Duration::from_secs(secs as u64))
}

/// Formats a time as Release files do: `Sat, 21 Nov 2026 09:15:44 UTC`.
pub fn format_date(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    let (y, mo, d) = civil_from_days(days);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} UTC",
        WEEKDAYS[days.rem_euclid(7) as usize],
        d,
        MONTHS[mo as usize - 1],
        y,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

// Howard Hinnant's civil calendar algorithms.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        let t = parse_date("Sat, 21 Nov 2026 09:15:44 UTC").unwrap();
        assert_eq!(format_date(t), "Sat, 21 Nov 2026 09:15:44 UTC");
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap().as_secs(),
            1_795_252_544
        );
        assert_eq!(parse_date("21 Nov 2026 10:15:44 +0100"), Some(t));
        assert_eq!(
            parse_date("Thu, 01 Jan 1970 00:00:00 GMT"),
            Some(UNIX_EPOCH)
        );
        assert_eq!(parse_date("Thu, 01 Foo 1970 00:00:00 GMT"), None);
        assert_eq!(parse_date("garbage"), None);
    }

    #[test]
    fn release_body_parses_files_and_flags() {
        let body = "Suite: stable\nCodename: trixie\nDate: Sat, 21 Nov 2026 09:15:44 UTC\n\
                    Acquire-By-Hash: yes\nArchitectures: amd64 arm64\nComponents: main contrib\n\
                    SHA256:\n 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef 42 main/binary-arm64/Packages.xz\n";
        let r = parse_release(body, "u").unwrap();
        assert!(r.acquire_by_hash);
        assert_eq!(r.codename, "trixie");
        assert_eq!(r.components, ["main", "contrib"]);
        assert_eq!(r.files["main/binary-arm64/Packages.xz"].size, 42);
        let e = parse_release("Suite: s\nDate: x\n", "u")
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad Date"), "{e}");
    }
}
