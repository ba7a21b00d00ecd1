//! The last accepted `Date` of each suite, kept between runs so that an
//! older (validly signed) InRelease cannot be replayed: a suite without
//! `Valid-Until` would otherwise accept any file its key ever signed.
//!
//! One small file per mirror and suite under `STATE/archive-dates/`, named
//! from the mirror and suite made safe (plus a hash of both, so that two
//! names that are made safe alike stay apart), holding
//! `Mirror:`, `Suite:` and `Date:` lines. Written atomically: a temporary
//! file with a random name made with O_EXCL, then renamed over the old one,
//! under a lock so that two runs do not lower each other's record.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::hash::Sha256;
use super::release::{format_date, parse_date};

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

    /// The record of `suite` at `mirror`.
    pub fn file_for(&self, mirror: &str, suite: &str) -> PathBuf {
        self.dir.join(record_name(mirror, suite))
    }

    /// The last accepted date of `suite` at `mirror`, if any. A record that
    /// does not parse counts as none (only zchroot writes there).
    pub fn seen(&self, mirror: &str, suite: &str) -> Result<Option<SystemTime>, DatesError> {
        let path = self.file_for(mirror, suite);
        match fs::read_to_string(&path) {
            Ok(text) => Ok(text
                .lines()
                .find_map(|l| l.strip_prefix("Date:"))
                .and_then(parse_date)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(DatesError::Io { path, source }),
        }
    }

    /// Refuses `date` when it is older than the last one accepted for
    /// `suite` at `mirror`; otherwise records it. Equal dates are fine.
    pub fn check_and_record(
        &self,
        mirror: &str,
        suite: &str,
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
        let file = self.file_for(mirror, suite);
        match self.seen(mirror, suite)? {
            Some(seen) if date < seen => {
                return Err(DatesError::Older {
                    url: url.into(),
                    date: format_date(date),
                    seen: format_date(seen),
                    file,
                })
            }
            Some(seen) if date == seen => return Ok(()),
            _ => {}
        }
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&self.dir)
            .map_err(io(&self.dir))?;
        let text = format!(
            "Mirror: {}\nSuite: {}\nDate: {}\n",
            one_line(mirror),
            one_line(suite),
            format_date(date)
        );
        tmp.write_all(text.as_bytes())
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(io(tmp.path()))?;
        tmp.persist(&file).map_err(|e| DatesError::Io {
            path: file.clone(),
            source: e.error,
        })?;
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// A file name for a mirror and suite: the safe characters of both, cut to
/// a sane length, and 16 hex digits of their hash.
fn record_name(mirror: &str, suite: &str) -> String {
    let base = mirror
        .strip_prefix("http://")
        .unwrap_or(mirror)
        .chars()
        .chain(std::iter::once('_'))
        .chain(suite.chars())
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect::<String>();
    let hash = Sha256::digest(format!("{mirror}\n{suite}").as_bytes()).to_hex();
    // Never `.` or `..` or a hidden name: it starts with a letter or digit.
    format!("r-{base}-{}", &hash[..16])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn names_are_one_safe_component() {
        for (m, s) in [
            ("http://deb.debian.org/debian", "trixie"),
            ("http://x/../..", "../../etc"),
            ("http://[::1]:80/a b", "s/u\nite"),
        ] {
            let n = record_name(m, s);
            assert!(
                !n.contains('/') && !n.contains('\n') && n.starts_with("r-"),
                "{n}"
            );
            assert!(n.len() < 140, "{n}");
        }
        let n = record_name("http://deb.debian.org/debian", "trixie");
        assert!(n.starts_with("r-deb.debian.org_debian_trixie-"), "{n}");
        assert_eq!(n.len(), "r-deb.debian.org_debian_trixie-".len() + 16, "{n}");
        assert_ne!(
            record_name("http://a/b", "c_d"),
            record_name("http://a/b_c", "d")
        );
    }

    #[test]
    fn an_older_date_is_refused_and_a_newer_one_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let d = ReleaseDates::new(&dir.path().join("archive-dates"));
        let t = std::time::UNIX_EPOCH + Duration::from_secs(1_795_252_544);
        let (m, s) = ("http://m/debian", "stable");
        assert_eq!(d.seen(m, s).unwrap(), None);
        d.check_and_record(m, s, "u", t).unwrap();
        assert_eq!(d.seen(m, s).unwrap(), Some(t));
        // The same file again is fine.
        d.check_and_record(m, s, "u", t).unwrap();
        let e = d
            .check_and_record(
                m,
                s,
                "http://m/debian/dists/stable/InRelease",
                t - Duration::from_secs(1),
            )
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("http://m/debian/dists/stable/InRelease: the InRelease file is dated Sat, 21 Nov 2026 09:15:43 UTC, older than Sat, 21 Nov 2026 09:15:44 UTC seen before"),
            "{e}"
        );
        assert!(e.contains("\nhelp: "), "{e}");
        assert_eq!(d.seen(m, s).unwrap(), Some(t));
        // Another suite or mirror is its own record.
        d.check_and_record(m, "testing", "u", t - Duration::from_secs(9))
            .unwrap();
        d.check_and_record("http://n/debian", s, "u", t - Duration::from_secs(9))
            .unwrap();
        let t2 = t + Duration::from_secs(3600);
        d.check_and_record(m, s, "u", t2).unwrap();
        assert_eq!(d.seen(m, s).unwrap(), Some(t2));
        // No temporary file is left behind.
        let names: Vec<String> = fs::read_dir(dir.path().join("archive-dates"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".tmp"))
            .collect();
        assert!(names.is_empty(), "{names:?}");
    }
}
