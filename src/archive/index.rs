//! `Packages` indexes: choosing which file of a verified Release to fetch
//! (xz before gz, by-hash when offered), decompressing it, and parsing its
//! stanzas into package records with a zero-copy scanner that keeps only
//! the fields zchroot needs.

use std::io::Read;
use std::sync::Arc;

use super::hash::Sha256;
use super::release::{FileEntry, Release};

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("{suite}: the Release file lists no Packages index for {component}/binary-{arch} (components: {components}; architectures: {architectures})")]
    Missing {
        suite: String,
        component: String,
        arch: String,
        components: String,
        architectures: String,
    },
    #[error("{origin}: decompressing: {source}")]
    Decompress {
        origin: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}: {message}")]
    Parse { origin: String, message: String },
}

/// Where a package record came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    /// The mirror's base URL (`http://deb.debian.org/debian`).
    pub mirror: String,
    pub suite: String,
    pub component: String,
}

/// `Multi-Arch` as in Debian Policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MultiArch {
    #[default]
    No,
    Same,
    Foreign,
    Allowed,
}

/// One binary package from an index. Relationship fields are kept as text
/// and parsed when the resolver visits the package.
#[derive(Debug, Clone)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub arch: String,
    pub multi_arch: MultiArch,
    pub essential: bool,
    pub priority: String,
    pub pre_depends: String,
    pub depends: String,
    pub provides: String,
    pub conflicts: String,
    pub breaks: String,
    pub filename: String,
    pub size: u64,
    pub sha256: Sha256,
    /// `Installed-Size` in KiB, when the index gives it: what unpacking the
    /// package may write is bounded by it.
    pub installed_size: Option<u64>,
    pub origin: Arc<Origin>,
}

impl Package {
    /// A record for unit tests: `name` `version` for `arch` in `suite`,
    /// with `depends`, everything else empty.
    #[cfg(test)]
    pub fn for_test(name: &str, version: &str, arch: &str, suite: &str, depends: &str) -> Package {
        Package {
            name: name.into(),
            version: version.into(),
            arch: arch.into(),
            multi_arch: MultiArch::No,
            essential: false,
            priority: "optional".into(),
            pre_depends: String::new(),
            depends: depends.into(),
            provides: String::new(),
            conflicts: String::new(),
            breaks: String::new(),
            filename: "pool/x.deb".into(),
            size: 1,
            sha256: Sha256::from([0; 32]),
            installed_size: None,
            origin: Arc::new(Origin {
                mirror: "m".into(),
                suite: suite.into(),
                component: "main".into(),
            }),
        }
    }

    /// The URL of the .deb.
    pub fn url(&self) -> String {
        format!("{}/{}", self.origin.mirror, self.filename)
    }

    /// What unpacking the package may write, as its index declares.
    pub fn extract_limit(&self) -> crate::deb::ExtractLimit {
        crate::deb::ExtractLimit {
            package: self.name.clone(),
            installed_size_kib: self.installed_size,
        }
    }
}

/// The index file chosen from a Release file, and where to get it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexFile {
    /// Path under `dists/SUITE/` as listed in the Release file.
    pub path: String,
    /// Path to fetch under `dists/SUITE/` (the by-hash path when offered).
    pub fetch_path: String,
    pub entry: FileEntry,
    pub compression: Compression,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Xz,
    Gz,
    None,
}

/// Picks the Packages file for `component`/`arch`: `.xz`, else `.gz`, else
/// plain; through `by-hash/SHA256/` when the Release says `Acquire-By-Hash`.
/// `Ok(None)` when the Release lists the component and architecture but no
/// such index (an empty component, e.g. contrib for a rare architecture).
pub fn choose_index(
    release: &Release,
    component: &str,
    arch: &str,
) -> Result<Option<IndexFile>, IndexError> {
    let dir = format!("{component}/binary-{arch}");
    for (name, compression) in [
        ("Packages.xz", Compression::Xz),
        ("Packages.gz", Compression::Gz),
        ("Packages", Compression::None),
    ] {
        let path = format!("{dir}/{name}");
        if let Some(entry) = release.files.get(&path) {
            let fetch_path = if release.acquire_by_hash {
                format!("{dir}/by-hash/SHA256/{}", entry.sha256)
            } else {
                path.clone()
            };
            return Ok(Some(IndexFile {
                path,
                fetch_path,
                entry: entry.clone(),
                compression,
            }));
        }
    }
    let listed = (release.components.is_empty()
        || release
            .components
            .iter()
            // The security archive names its components `updates/main`.
            .any(|c| c == component || c.rsplit('/').next() == Some(component)))
        && (release.architectures.is_empty() || release.architectures.iter().any(|a| a == arch));
    if listed {
        return Ok(None);
    }
    Err(IndexError::Missing {
        suite: release.codename.clone(),
        component: component.into(),
        arch: arch.into(),
        components: release.components.join(" "),
        architectures: release.architectures.join(" "),
    })
}

/// Decompresses a verified index file.
pub fn decompress(
    data: &[u8],
    compression: Compression,
    origin: &str,
) -> Result<String, IndexError> {
    let mut out = Vec::with_capacity(data.len() * 6);
    let r = match compression {
        Compression::Xz => liblzma::read::XzDecoder::new(data).read_to_end(&mut out),
        Compression::Gz => flate2::read::GzDecoder::new(data).read_to_end(&mut out),
        Compression::None => {
            out.extend_from_slice(data);
            Ok(0)
        }
    };
    r.map_err(|source| IndexError::Decompress {
        origin: origin.into(),
        source,
    })?;
    String::from_utf8(out).map_err(|e| IndexError::Parse {
        origin: origin.into(),
        message: format!("not UTF-8 at byte {}", e.utf8_error().valid_up_to()),
    })
}

/// The fields of a package stanza the resolver and the fetcher need, in
/// the order of [`Fields::get`]'s slots.
const FIELDS: [&str; 15] = [
    "Package",
    "Version",
    "Architecture",
    "Multi-Arch",
    "Essential",
    "Priority",
    "Pre-Depends",
    "Depends",
    "Provides",
    "Conflicts",
    "Breaks",
    "Filename",
    "Size",
    "SHA256",
    "Installed-Size",
];

/// A field of [`FIELDS`], by its slot.
#[derive(Debug, Clone, Copy)]
enum F {
    Package,
    Version,
    Architecture,
    MultiArch,
    Essential,
    Priority,
    PreDepends,
    Depends,
    Provides,
    Conflicts,
    Breaks,
    Filename,
    Size,
    Sha256,
    InstalledSize,
}

/// One stanza of a Packages index, seen through the fields in [`FIELDS`]:
/// slices of the index text (zero-copy), the first occurrence of each.
#[derive(Debug, Default, PartialEq, Eq)]
struct Fields<'a> {
    values: [Option<&'a str>; FIELDS.len()],
    /// 1-based line of the stanza's first field.
    line: usize,
}

impl<'a> Fields<'a> {
    fn get(&self, field: F) -> Option<&'a str> {
        self.values[field as usize]
    }
}

/// The slot of a field name in [`FIELDS`] (names are case-insensitive).
fn slot_of(name: &[u8]) -> Option<usize> {
    // Most fields of an index are not needed: their length says so at once.
    if !matches!(name.len(), 4 | 6..=12 | 14) {
        return None;
    }
    FIELDS
        .iter()
        .position(|f| f.len() == name.len() && f.as_bytes().eq_ignore_ascii_case(name))
}

/// A stanza scanner for Packages indexes: the deb822 syntax of
/// [`deb822::stanzas`] (blank lines between stanzas, `#` comments before
/// one, folded continuation lines, a `\r` before a newline ignored, the
/// last newline optional), but it keeps only the fields in [`FIELDS`] and
/// allocates nothing: a full index is scanned at memchr speed.
struct Scanner<'a> {
    text: &'a str,
    pos: usize,
    line: usize,
}

impl<'a> Scanner<'a> {
    fn new(text: &'a str) -> Self {
        Scanner {
            text,
            pos: 0,
            line: 0,
        }
    }

    /// The next line (without its newline) and the offset it starts at.
    fn next_line(&mut self) -> Option<(&'a str, usize)> {
        let start = self.pos;
        let rest = self
            .text
            .as_bytes()
            .get(start..)
            .filter(|r| !r.is_empty())?;
        let (len, advance) = match memchr::memchr(b'\n', rest) {
            Some(i) => (i, i + 1),
            None => (rest.len(), rest.len()),
        };
        self.pos += advance;
        self.line += 1;
        Some((&self.text[start..start + len], start))
    }

    /// The value between `start` and `end`, trimmed as deb822 values are.
    fn value(&self, start: usize, end: usize) -> &'a str {
        self.text[start..end]
            .trim_start_matches([' ', '\t'])
            .trim_end_matches([' ', '\t', '\r'])
    }

    /// The next stanza; `Err((line, message))` on a syntax error.
    fn next_stanza(&mut self) -> Option<Result<Fields<'a>, (usize, String)>> {
        let mut fields = Fields::default();
        let mut started = false;
        // The current field: its slot (None: not kept), value start, end.
        let mut current: Option<(Option<usize>, usize, usize)> = None;
        while let Some((line, line_start)) = self.next_line() {
            let bytes = line.as_bytes();
            let first = bytes.first().copied().unwrap_or(b'\n');
            if first.is_ascii_whitespace() && line.trim().is_empty() {
                if started {
                    break;
                }
                continue; // blank lines between stanzas
            }
            match first {
                b'#' if !started => continue,
                b' ' | b'\t' => {
                    let Some((_, _, end)) = current.as_mut() else {
                        return Some(Err((self.line, "continuation line without a field".into())));
                    };
                    *end = line_start + line.len();
                }
                _ => {
                    let Some(colon) = memchr::memchr(b':', bytes) else {
                        return Some(Err((
                            self.line,
                            format!("expected 'Field: value', found {:?}", truncate(line)),
                        )));
                    };
                    let name = &line[..colon];
                    if name.is_empty() || !plain_name(name) {
                        return Some(Err((
                            self.line,
                            format!("bad field name {:?}", truncate(name)),
                        )));
                    }
                    if !started {
                        fields.line = self.line;
                        started = true;
                    }
                    self.keep(&mut fields, current.take());
                    let slot = slot_of(name.as_bytes());
                    current = Some((slot, line_start + colon + 1, line_start + line.len()));
                }
            }
        }
        self.keep(&mut fields, current.take());
        started.then_some(Ok(fields))
    }

    fn keep(&self, fields: &mut Fields<'a>, field: Option<(Option<usize>, usize, usize)>) {
        if let Some((Some(slot), start, end)) = field {
            if fields.values[slot].is_none() {
                fields.values[slot] = Some(self.value(start, end));
            }
        }
    }
}

/// A field name without whitespace (ASCII checked bytewise, the rare
/// non-ASCII name as Unicode).
fn plain_name(name: &str) -> bool {
    if name.is_ascii() {
        !name.bytes().any(|b| b.is_ascii_whitespace())
    } else {
        !name.contains(char::is_whitespace)
    }
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(60) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Parses the stanzas of a Packages index into records.
pub fn parse_packages(
    text: &str,
    origin: Arc<Origin>,
    name: &str,
) -> Result<Vec<Package>, IndexError> {
    let mut out = Vec::with_capacity(text.len() / 800);
    let mut scanner = Scanner::new(text);
    while let Some(stanza) = scanner.next_stanza() {
        let stanza = stanza.map_err(|(line, message)| IndexError::Parse {
            origin: name.into(),
            message: format!("line {line}: {message}"),
        })?;
        out.push(package(&stanza, &origin, name)?);
    }
    Ok(out)
}

/// The record of one stanza; errors name the index and the line.
fn package(stanza: &Fields<'_>, origin: &Arc<Origin>, name: &str) -> Result<Package, IndexError> {
    let bad = |message: String| IndexError::Parse {
        origin: name.into(),
        message: format!("line {}: {message}", stanza.line),
    };
    let need = |field: F| {
        stanza
            .get(field)
            .ok_or_else(|| bad(format!("package stanza without {}", FIELDS[field as usize])))
    };
    let get = |field: F| stanza.get(field).unwrap_or("").to_string();
    let size = need(F::Size)?;
    let size = size
        .parse()
        .map_err(|_| bad(format!("bad Size {size:?}")))?;
    let package = need(F::Package)?;
    // As apt: a malformed hash is an error for the package; here for the
    // whole (signed, so broken or hostile) index, naming the package.
    let sha256 =
        Sha256::parse(need(F::Sha256)?).map_err(|e| bad(format!("package {package}: {e}")))?;
    let installed_size = match stanza.get(F::InstalledSize) {
        None => None,
        Some(v) => Some(
            v.parse::<u64>()
                .map_err(|_| bad(format!("package {package}: bad Installed-Size {v:?}")))?,
        ),
    };
    let multi_arch = match stanza.get(F::MultiArch) {
        None | Some("no") => MultiArch::No,
        Some("same") => MultiArch::Same,
        Some("foreign") => MultiArch::Foreign,
        Some("allowed") => MultiArch::Allowed,
        Some(other) => return Err(bad(format!("bad Multi-Arch {other:?}"))),
    };
    Ok(Package {
        name: package.to_string(),
        version: need(F::Version)?.to_string(),
        arch: need(F::Architecture)?.to_string(),
        multi_arch,
        essential: stanza.get(F::Essential) == Some("yes"),
        priority: get(F::Priority),
        pre_depends: get(F::PreDepends),
        depends: get(F::Depends),
        provides: get(F::Provides),
        conflicts: get(F::Conflicts),
        breaks: get(F::Breaks),
        filename: need(F::Filename)?.to_string(),
        size,
        sha256,
        installed_size,
        origin: origin.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn release(by_hash: bool, files: &[&str]) -> Release {
        Release {
            origin: "Debian".into(),
            label: "Debian".into(),
            suite: "stable".into(),
            codename: "trixie".into(),
            date: std::time::UNIX_EPOCH,
            valid_until: None,
            acquire_by_hash: by_hash,
            no_support_arch_all: true,
            architectures: vec!["arm64".into()],
            components: vec!["main".into(), "contrib".into()],
            files: files
                .iter()
                .map(|f| {
                    (
                        f.to_string(),
                        FileEntry {
                            size: 1,
                            sha256: Sha256::parse(&"ab".repeat(32)).unwrap(),
                        },
                    )
                })
                .collect::<HashMap<_, _>>(),
            signers: vec![],
            signer_certs: vec![],
        }
    }

    #[test]
    fn prefers_xz_then_gz_and_uses_by_hash() {
        let r = release(
            true,
            &[
                "main/binary-arm64/Packages.gz",
                "main/binary-arm64/Packages.xz",
            ],
        );
        let f = choose_index(&r, "main", "arm64").unwrap().unwrap();
        assert_eq!(f.compression, Compression::Xz);
        assert_eq!(
            f.fetch_path,
            format!("main/binary-arm64/by-hash/SHA256/{}", "ab".repeat(32))
        );
        let r = release(false, &["main/binary-arm64/Packages.gz"]);
        let f = choose_index(&r, "main", "arm64").unwrap().unwrap();
        assert_eq!(f.compression, Compression::Gz);
        assert_eq!(f.fetch_path, "main/binary-arm64/Packages.gz");
        assert!(choose_index(&r, "contrib", "arm64").unwrap().is_none());
        let e = choose_index(&r, "main", "s390x").unwrap_err().to_string();
        assert!(e.contains("no Packages index for main/binary-s390x"), "{e}");
    }

    #[test]
    fn parses_package_records() {
        let origin = Arc::new(Origin {
            mirror: "http://m/debian".into(),
            suite: "trixie".into(),
            component: "main".into(),
        });
        let text = "Package: a\nVersion: 1\nArchitecture: arm64\nMulti-Arch: same\nEssential: yes\n\
                    Depends: b (>= 2),\n c\nFilename: pool/main/a/a_1_arm64.deb\nSize: 10\nInstalled-Size: 7\nSHA256: {}\n";
        let text = text.replace("{}", &"AB".repeat(32));
        let p = parse_packages(&text, origin.clone(), "P").unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].multi_arch, MultiArch::Same);
        assert!(p[0].essential);
        assert_eq!(p[0].sha256.to_string(), "ab".repeat(32));
        assert_eq!(p[0].installed_size, Some(7));
        assert_eq!(p[0].url(), "http://m/debian/pool/main/a/a_1_arm64.deb");
        let e = parse_packages("Package: a\nVersion: 1\n", origin.clone(), "P").unwrap_err();
        assert!(e.to_string().contains("package stanza without"), "{e}");
    }

    #[test]
    fn a_hash_that_is_not_64_hex_digits_rejects_the_index() {
        let origin = Arc::new(Origin {
            mirror: "http://m/debian".into(),
            suite: "trixie".into(),
            component: "main".into(),
        });
        for bad in ["../../../victim/x", "ab", &"a".repeat(65)] {
            let text = format!(
                "Package: ok\nVersion: 1\nArchitecture: arm64\nFilename: pool/o.deb\nSize: 1\nSHA256: {}\n\n\
                 Package: evil\nVersion: 1\nArchitecture: arm64\nFilename: pool/e.deb\nSize: 1\nSHA256: {bad}\n",
                "0".repeat(64)
            );
            let e = parse_packages(&text, origin.clone(), "http://m/P.xz")
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with("http://m/P.xz: line 8: package evil: bad SHA256"),
                "{e}"
            );
        }
        let text = format!(
            "Package: big\nVersion: 1\nArchitecture: arm64\nFilename: pool/b.deb\nSize: 1\nInstalled-Size: lots\nSHA256: {}\n",
            "0".repeat(64)
        );
        let e = parse_packages(&text, origin, "P").unwrap_err().to_string();
        assert!(
            e.contains("package big: bad Installed-Size \"lots\""),
            "{e}"
        );
    }

    fn origin() -> Arc<Origin> {
        Arc::new(Origin {
            mirror: "http://m/debian".into(),
            suite: "trixie".into(),
            component: "main".into(),
        })
    }

    fn stanza(name: &str, extra: &str) -> String {
        format!(
            "Package: {name}\nVersion: 1\nArchitecture: arm64\n{extra}Filename: pool/{name}.deb\nSize: 1\nSHA256: {}\n",
            "0".repeat(64)
        )
    }

    #[test]
    fn the_scanner_sees_what_the_deb822_parser_sees() {
        let text = format!(
            "# a comment before the first stanza\n\n{}\n \t\n\n{}\n{}",
            stanza(
                "a",
                "Description: x\n more\n .\nDepends: b,\n c (>= 1),\n\td\n"
            ),
            stanza(
                "b",
                "depends: lower-case name\nDepends: a second one\nProvides:   spaced  \n"
            ),
            stanza("c", "Multi-Arch: foreign\nTag: x\n")
        );
        let all = crate::archive::deb822::parse(&text, "P").unwrap();
        let mut scanner = Scanner::new(&text);
        for want in &all {
            let got = scanner.next_stanza().unwrap().unwrap();
            assert_eq!(got.line, want.line);
            for (slot, field) in FIELDS.iter().enumerate() {
                assert_eq!(got.values[slot], want.get(field), "{field}");
            }
        }
        assert!(scanner.next_stanza().is_none());
        let p = parse_packages(&text, origin(), "P").unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].depends, "b,\n c (>= 1),\n\td");
        assert_eq!(p[1].depends, "lower-case name");
        assert_eq!(p[1].provides, "spaced");
        assert_eq!(p[2].multi_arch, MultiArch::Foreign);
    }

    #[test]
    fn crlf_lines_and_a_missing_final_newline_are_read() {
        let text = stanza("a", "Depends: b\n").replace('\n', "\r\n")
            + "\r\n"
            + stanza("b", "Essential: yes\n").trim_end();
        let p = parse_packages(&text, origin(), "P").unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].depends, "b");
        assert_eq!(p[0].version, "1");
        assert_eq!(p[0].sha256.to_string(), "0".repeat(64));
        assert!(p[1].essential);
        assert_eq!(p[1].sha256.to_string(), "0".repeat(64));
        assert!(parse_packages("", origin(), "P").unwrap().is_empty());
        assert!(parse_packages("\n\n# only a comment\n", origin(), "P")
            .unwrap()
            .is_empty());
    }

    #[test]
    fn syntax_errors_name_the_index_and_the_line() {
        for (text, want) in [
            (" folded\n", "P: line 1: continuation line without a field"),
            (
                "Package: a\nno colon here\n",
                "P: line 2: expected 'Field: value', found \"no colon here\"",
            ),
            (
                "\nPackage: a\nbad name: x\n",
                "P: line 3: bad field name \"bad name\"",
            ),
            ("Package: a\n: x\n", "P: line 2: bad field name \"\""),
        ] {
            let e = parse_packages(text, origin(), "P").unwrap_err().to_string();
            assert_eq!(e, want);
        }
        let text = format!(
            "{}\n{}",
            stanza("a", ""),
            stanza("b", "Multi-Arch: maybe\n")
        );
        let e = parse_packages(&text, origin(), "P")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "P: line 8: bad Multi-Arch \"maybe\"");
    }
}
