//! The last accepted `Date` of each archive's suite, kept between runs so
//! that an older (validly signed) InRelease cannot be replayed: a suite
//! without `Valid-Until` would otherwise accept any file its key ever
//! signed.
//!
//! A suite is named by what identifies it whatever host serves it
//! ([`SuiteId`]): the certificate whose key verified the InRelease, the
//! Release's `Origin` and `Label`, and the suite as asked for (its `Suite`
//! or `Codename`, as verification checked). Not by the mirror's URL: the
//! same archive under another spelling (`localhost` for `127.0.0.1`, an IP
//! address, a second mirror of it) would have no record and accept any
//! older file. An InRelease signed by several keys has a record for each.
//!
//! One small file per suite so named under `STATE/archive-dates/`,
//! `s-SUITE-HASH` (the suite made safe, and 16 hex digits of a hash of the
//! four), holding `Signer:`, `Origin:`, `Label:`, `Suite:`, `Date:` lines
//! and, for whoever reads it, the `Mirror:` it last came from. The records
//! of older zchroots, one per mirror and suite (`r-MIRROR_SUITE-HASH`), are
//! still read, never written: a file older than theirs is refused too, so
//! an upgrade opens no window. Written atomically: a temporary file with a
//! random name made with O_EXCL, then renamed over the old one, under a
//! lock so that two runs do not lower each other's record.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::hash::Sha256;
use super::release::{format_date, parse_date, Release};

#[derive(Debug, thiserror::Error)]
pub enum DatesError {
    #[error("{url}: the InRelease file is dated {date}, older than {seen} seen before: a mirror out of date or a replay\nhelp: use an up-to-date --mirror; if the archive really went back in time, remove {} to accept it", file.display())]
    Older {
        url: String,
        date: String,
        seen: String,
        file: PathBuf,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What names an archive's suite, whatever host it is fetched from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuiteId {
    /// The fingerprint of a certificate whose key verified the InRelease.
    pub signer: String,
    pub origin: String,
    pub label: String,
    /// The suite as asked for: the Release's `Suite` or `Codename`.
    pub suite: String,
}

impl SuiteId {
    /// The names of a verified `release` asked for as `suite`: one for each
    /// certificate that signed it.
    pub fn of(release: &Release, suite: &str) -> Vec<SuiteId> {
        release
            .signer_certs
            .iter()
            .map(|signer| SuiteId {
                signer: signer.clone(),
                origin: release.origin.clone(),
                label: release.label.clone(),
                suite: suite.to_string(),
            })
            .collect()
    }
}

/// Where the last accepted dates are kept.
#[derive(Debug, Clone)]
pub struct ReleaseDates {
    dir: PathBuf,
}

impl ReleaseDates {
    /// Dates kept in `dir` (`STATE/archive-dates`), made when first needed.
    pub fn new(dir: &Path) -> ReleaseDates {
        ReleaseDates { dir: dir.into() }
    }

    /// The record of the suite `id`.
    pub fn file_for(&self, id: &SuiteId) -> PathBuf {
        self.dir.join(record_name(id))
    }

    /// An older zchroot's record of `suite` at `mirror`.
    fn legacy_file(&self, mirror: &str, suite: &str) -> PathBuf {
        self.dir.join(legacy_record_name(mirror, suite))
    }

    /// The last accepted date of the suite `id`, if any.
    pub fn seen(&self, id: &SuiteId) -> Result<Option<SystemTime>, DatesError> {
        read_date(&self.file_for(id))
    }

    /// Refuses `date` when it is older than the last one accepted for any
    /// of `ids` (the names of one InRelease), or than an older zchroot's
    /// record of its suite at `mirror`; otherwise records it for each of
    /// `ids`. Equal dates are fine.
    pub fn check_and_record(
        &self,
        ids: &[SuiteId],
        mirror: &str,
        url: &str,
        date: SystemTime,
    ) -> Result<(), DatesError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| DatesError::Io { path, source }
        };
        crate::paths::create_private_dir_all(&self.dir).map_err(io(&self.dir))?;
        let lock_path = self.dir.join(".lock");
        let lock = crate::paths::open_lock(&lock_path).map_err(io(&lock_path))?;
        let _lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| io(&lock_path)(std::io::Error::from(e)))?;
        let mut stale = Vec::new();
        let legacy = ids
            .iter()
            .map(|id| (None, self.legacy_file(mirror, &id.suite)));
        let own = ids.iter().map(|id| (Some(id), self.file_for(id)));
        for (id, file) in own.chain(legacy) {
            match read_date(&file)? {
                Some(seen) if date < seen => {
                    return Err(DatesError::Older {
                        url: url.into(),
                        date: format_date(date),
                        seen: format_date(seen),
                        file,
                    })
                }
                Some(seen) if date == seen => {}
                _ => stale.extend(id.map(|id| (id, file))),
            }
        }
        for (id, file) in stale {
            let mut tmp = tempfile::Builder::new()
                .prefix(".tmp-")
                .tempfile_in(&self.dir)
                .map_err(io(&self.dir))?;
            let text = format!(
                "Signer: {}\nOrigin: {}\nLabel: {}\nSuite: {}\nDate: {}\nMirror: {}\n",
                one_line(&id.signer),
                one_line(&id.origin),
                one_line(&id.label),
                one_line(&id.suite),
                format_date(date),
                one_line(mirror),
            );
            tmp.write_all(text.as_bytes())
                .and_then(|()| tmp.as_file().sync_all())
                .map_err(io(tmp.path()))?;
            tmp.persist(&file).map_err(|e| DatesError::Io {
                path: file.clone(),
                source: e.error,
            })?;
        }
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

/// The `Date:` of a record. A record that does not parse counts as none
/// (only zchroot writes there).
fn read_date(path: &Path) -> Result<Option<SystemTime>, DatesError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(text
            .lines()
            .find_map(|l| l.strip_prefix("Date:"))
            .and_then(parse_date)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(DatesError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// The safe characters of `s`: ASCII letters, digits, `-` and `.`; others
/// become `_`.
fn safe(s: impl Iterator<Item = char>) -> String {
    s.map(|c| {
        if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
            c
        } else {
            '_'
        }
    })
    .take(100)
    .collect()
}

/// A file name for a suite: its safe characters, cut to a sane length, and
/// 16 hex digits of the hash of the four fields (each on a line of its own,
/// so that no two ids share one).
fn record_name(id: &SuiteId) -> String {
    let hash = Sha256::digest(
        format!(
            "{}\n{}\n{}\n{}",
            one_line(&id.signer),
            one_line(&id.origin),
            one_line(&id.label),
            one_line(&id.suite)
        )
        .as_bytes(),
    )
    .to_hex();
    // Never `.` or `..` or a hidden name: it starts with a letter.
    format!("s-{}-{}", safe(id.suite.chars()), &hash[..16])
}

/// The file name an older zchroot gave a mirror and suite: the safe
/// characters of both, cut to a sane length, and 16 hex digits of their
/// hash.
fn legacy_record_name(mirror: &str, suite: &str) -> String {
    let base = safe(
        mirror
            .strip_prefix("http://")
            .unwrap_or(mirror)
            .chars()
            .chain(std::iter::once('_'))
            .chain(suite.chars()),
    );
    let hash = Sha256::digest(format!("{mirror}\n{suite}").as_bytes()).to_hex();
    format!("r-{base}-{}", &hash[..16])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn id(signer: &str, suite: &str) -> SuiteId {
        SuiteId {
            signer: signer.into(),
            origin: "Debian".into(),
            label: "Debian".into(),
            suite: suite.into(),
        }
    }

    #[test]
    fn names_are_one_safe_component() {
        for (m, s) in [
            ("http://deb.debian.org/debian", "trixie"),
            ("http://x/../..", "../../etc"),
            ("http://[::1]:80/a b", "s/u\nite"),
        ] {
            for n in [record_name(&id("AB", s)), legacy_record_name(m, s)] {
                assert!(
                    !n.contains('/') && !n.contains('\n') && !n.starts_with('.'),
                    "{n}"
                );
                assert!(n.len() < 140, "{n}");
            }
        }
        let n = record_name(&id("AB", "trixie"));
        assert!(n.starts_with("s-trixie-"), "{n}");
        assert_eq!(n.len(), "s-trixie-".len() + 16, "{n}");
        // Each field counts, and none runs into the next.
        let base = id("AB", "trixie");
        for other in [
            id("AC", "trixie"),
            SuiteId {
                origin: "Ubuntu".into(),
                ..base.clone()
            },
            SuiteId {
                label: "Debian-Security".into(),
                ..base.clone()
            },
            id("AB", "trixie-security"),
            SuiteId {
                origin: "Debian\nDebian".into(),
                label: "".into(),
                ..base.clone()
            },
        ] {
            assert_ne!(record_name(&base), record_name(&other), "{other:?}");
        }
        let n = legacy_record_name("http://deb.debian.org/debian", "trixie");
        assert!(n.starts_with("r-deb.debian.org_debian_trixie-"), "{n}");
    }

    #[test]
    fn an_older_date_is_refused_and_a_newer_one_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let d = ReleaseDates::new(&dir.path().join("archive-dates"));
        let t = std::time::UNIX_EPOCH + Duration::from_secs(1_795_252_544);
        let s = id("AB", "stable");
        assert_eq!(d.seen(&s).unwrap(), None);
        d.check_and_record(std::slice::from_ref(&s), "http://m/debian", "u", t)
            .unwrap();
        assert_eq!(d.seen(&s).unwrap(), Some(t));
        // The same file again is fine.
        d.check_and_record(std::slice::from_ref(&s), "http://m/debian", "u", t)
            .unwrap();
        // From another mirror, or the same under another name, an older
        // file is refused all the same.
        for mirror in ["http://m/debian", "http://other/debian"] {
            let e = d
                .check_and_record(
                    std::slice::from_ref(&s),
                    mirror,
                    "http://m/debian/dists/stable/InRelease",
                    t - Duration::from_secs(1),
                )
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with("http://m/debian/dists/stable/InRelease: the InRelease file is dated Sat, 21 Nov 2026 09:15:43 UTC, older than Sat, 21 Nov 2026 09:15:44 UTC seen before"),
                "{e}"
            );
            assert!(
                e.contains(&format!("remove {} to accept it", d.file_for(&s).display())),
                "{e}"
            );
            assert!(e.contains("\nhelp: "), "{e}");
        }
        assert_eq!(d.seen(&s).unwrap(), Some(t));
        // Another suite or signer is its own record.
        let older = t - Duration::from_secs(9);
        d.check_and_record(&[id("AB", "testing")], "m", "u", older)
            .unwrap();
        d.check_and_record(&[id("CD", "stable")], "m", "u", older)
            .unwrap();
        // A file signed by both keys must be older than neither record,
        // and is recorded for both.
        let e = d
            .check_and_record(&[id("CD", "stable"), s.clone()], "m", "u", older)
            .unwrap_err();
        assert!(matches!(e, DatesError::Older { .. }), "{e}");
        let t2 = t + Duration::from_secs(3600);
        d.check_and_record(&[id("CD", "stable"), s.clone()], "m", "u", t2)
            .unwrap();
        assert_eq!(d.seen(&s).unwrap(), Some(t2));
        assert_eq!(d.seen(&id("CD", "stable")).unwrap(), Some(t2));
        let text = fs::read_to_string(d.file_for(&s)).unwrap();
        assert_eq!(
            text,
            "Signer: AB\nOrigin: Debian\nLabel: Debian\nSuite: stable\nDate: Sat, 21 Nov 2026 10:15:44 UTC\nMirror: m\n"
        );
        // No temporary file is left behind.
        let names: Vec<String> = fs::read_dir(dir.path().join("archive-dates"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".tmp"))
            .collect();
        assert!(names.is_empty(), "{names:?}");
    }

    #[test]
    fn an_older_zchroot_s_record_of_the_mirror_still_counts() {
        let dir = tempfile::tempdir().unwrap();
        let d = ReleaseDates::new(&dir.path().join("archive-dates"));
        let t = std::time::UNIX_EPOCH + Duration::from_secs(1_795_252_544);
        let mirror = "http://m/debian";
        let legacy = d.legacy_file(mirror, "stable");
        fs::create_dir_all(legacy.parent().unwrap()).unwrap();
        fs::write(
            &legacy,
            format!(
                "Mirror: {mirror}\nSuite: stable\nDate: {}\n",
                format_date(t)
            ),
        )
        .unwrap();
        let s = id("AB", "stable");
        let e = d
            .check_and_record(
                std::slice::from_ref(&s),
                mirror,
                "u",
                t - Duration::from_secs(1),
            )
            .unwrap_err();
        match e {
            DatesError::Older { file, .. } => assert_eq!(file, legacy),
            e => panic!("{e}"),
        }
        assert_eq!(d.seen(&s).unwrap(), None);
        d.check_and_record(std::slice::from_ref(&s), mirror, "u", t)
            .unwrap();
        assert_eq!(d.seen(&s).unwrap(), Some(t));
        // Read, never written.
        let t2 = t + Duration::from_secs(60);
        d.check_and_record(std::slice::from_ref(&s), mirror, "u", t2)
            .unwrap();
        assert!(fs::read_to_string(&legacy)
            .unwrap()
            .contains(&format_date(t)));
    }
}
