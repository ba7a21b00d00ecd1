//! Reproducible .deb writer (for the kernel-module packages zchroot builds):
//! the same inputs give byte-identical output, in the layout `dpkg-deb --build
//! --root-owner-group` produces, so dpkg accepts the result.
//!
//! Layout: an ar container with `debian-binary` (`2.0\n`), `control.tar.{xz,gz}`
//! and `data.tar.{xz,gz}`. Tar members are GNU-format headers with `./`-prefixed
//! names (directories end in `/`), sorted so that parents precede children, owned
//! by uid/gid 0 `root:root`, with the given modes and a single fixed mtime.

use std::collections::BTreeMap;
use std::io::{self, Write};

use super::ar::ArWriter;
use super::DebError;
use md5::{Digest, Md5};

/// Compression of the `control.tar` and `data.tar` members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// `.tar.xz`, xz preset 6 (what dpkg-deb uses by default).
    #[default]
    Xz,
    /// `.tar.gz`, deflate level 9 with a zero gzip timestamp.
    Gzip,
}

impl Compression {
    fn suffix(self) -> &'static str {
        match self {
            Compression::Xz => ".xz",
            Compression::Gzip => ".gz",
        }
    }
}

/// Control fields that must be present.
const REQUIRED_FIELDS: [&str; 3] = ["Package", "Version", "Architecture"];

/// One node of the data tree.
#[derive(Debug, Clone)]
enum Node {
    Dir { mode: u32 },
    File { mode: u32, contents: Vec<u8> },
    Symlink { target: String },
}

/// A control member besides `control` itself.
#[derive(Debug, Clone)]
struct ControlMember {
    mode: u32,
    contents: Vec<u8>,
}

/// Builder for a reproducible binary package.
///
/// Invalid paths given to the `add_*` methods are reported by [`DebBuilder::write_to`].
#[derive(Debug, Clone)]
pub struct DebBuilder {
    control: Vec<(String, String)>,
    mtime: u64,
    compression: Compression,
    /// Keyed by the normalized path: no leading `./` or `/`, no trailing `/`.
    entries: BTreeMap<String, Node>,
    control_members: BTreeMap<String, ControlMember>,
    /// Paths rejected by `add_*`, reported by `write_to`.
    invalid: Vec<(String, &'static str)>,
}

impl DebBuilder {
    /// A package with these control fields, in this order (Package, Version,
    /// Architecture, ...). `Installed-Size` is computed from the contents if
    /// absent. Multi-line values (Description) are given with `\n` between lines;
    /// continuation lines are indented and empty ones written as ` .` as needed.
    pub fn new(control: Vec<(String, String)>) -> Self {
        DebBuilder {
            control,
            mtime: 0,
            compression: Compression::default(),
            entries: BTreeMap::new(),
            control_members: BTreeMap::new(),
            invalid: Vec::new(),
        }
    }

    /// The timestamp of every tar entry and ar member (default 0).
    #[must_use]
    pub fn mtime(mut self, epoch_secs: u64) -> Self {
        self.mtime = epoch_secs;
        self
    }

    /// Compression of both tar members (default xz).
    #[must_use]
    pub fn compression(mut self, c: Compression) -> Self {
        self.compression = c;
        self
    }

    /// Adds a regular file at `path`, relative to the root of the installed
    /// system (for example `usr/lib/modules/6.1.0/extra/foo.ko`). Only the
    /// permission bits of `mode` (`0o7777`) are used.
    pub fn add_file(&mut self, path: &str, mode: u32, contents: Vec<u8>) {
        self.insert(
            path,
            Node::File {
                mode: mode & 0o7777,
                contents,
            },
        );
    }

    /// Adds a symbolic link at `path` pointing to `target` (kept verbatim).
    pub fn add_symlink(&mut self, path: &str, target: &str) {
        if target.is_empty() {
            self.invalid
                .push((path.to_string(), "empty symlink target"));
            return;
        }
        self.insert(
            path,
            Node::Symlink {
                target: target.to_string(),
            },
        );
    }

    /// Adds a directory. Parents of every added path are added automatically
    /// with mode 0755; this sets an explicit mode.
    pub fn add_dir(&mut self, path: &str, mode: u32) {
        self.insert(
            path,
            Node::Dir {
                mode: mode & 0o7777,
            },
        );
    }

    /// Adds a control member such as `postinst`, `conffiles` or `triggers`.
    /// `md5sums` is generated from the regular files unless given here;
    /// `control` is always generated from the fields.
    pub fn add_control_file(&mut self, name: &str, mode: u32, contents: Vec<u8>) {
        self.control_members.insert(
            name.to_string(),
            ControlMember {
                mode: mode & 0o7777,
                contents,
            },
        );
    }

    fn insert(&mut self, path: &str, node: Node) {
        let key = match normalize(path) {
            Ok(key) => key,
            Err(reason) => {
                self.invalid.push((path.to_string(), reason));
                return;
            }
        };
        let mut parent = key.as_str();
        while let Some((up, _)) = parent.rsplit_once('/') {
            self.entries
                .entry(up.to_string())
                .or_insert(Node::Dir { mode: 0o755 });
            parent = up;
        }
        self.entries.insert(key, node);
    }

    /// Writes the package.
    pub fn write_to(&self, mut out: impl Write) -> Result<(), DebError> {
        if let Some((path, reason)) = self.invalid.first() {
            return Err(DebError::InvalidPath {
                path: path.clone(),
                reason,
            });
        }
        self.check_tree()?;
        let control_tar = self.control_tar()?;
        let data_tar = self.data_tar()?;
        let suffix = self.compression.suffix();
        let control_name = format!("control.tar{suffix}");
        let data_name = format!("data.tar{suffix}");
        let control = self.compress(control_tar, "control.tar")?;
        let data = self.compress(data_tar, "data.tar")?;

        let mut write = || -> Result<(), super::ar::ArError> {
            let mut ar = ArWriter::new(&mut out, self.mtime)?;
            ar.append("debian-binary", b"2.0\n")?;
            ar.append(&control_name, &control)?;
            ar.append(&data_name, &data)?;
            ar.into_inner()?;
            Ok(())
        };
        write().map_err(|source| DebError::Write { source })
    }

    /// Every parent of an entry must be a directory.
    fn check_tree(&self) -> Result<(), DebError> {
        for key in self.entries.keys() {
            if let Some((parent, _)) = key.rsplit_once('/') {
                if !matches!(self.entries.get(parent), Some(Node::Dir { .. })) {
                    return Err(DebError::InvalidPath {
                        path: key.clone(),
                        reason: "a parent directory was also added as a file or symlink",
                    });
                }
            }
        }
        Ok(())
    }

    /// The `control` file text.
    fn control_text(&self) -> Result<String, DebError> {
        for required in REQUIRED_FIELDS {
            if !self
                .control
                .iter()
                .any(|(name, _)| name.eq_ignore_ascii_case(required))
            {
                return Err(DebError::MissingField { field: required });
            }
        }
        let mut fields: Vec<(String, String)> = self.control.clone();
        if !fields
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("Installed-Size"))
        {
            let at = ["Maintainer", "Architecture", "Version", "Package"]
                .iter()
                .find_map(|anchor| {
                    fields
                        .iter()
                        .position(|(name, _)| name.eq_ignore_ascii_case(anchor))
                })
                .map_or(fields.len(), |i| i + 1);
            fields.insert(
                at,
                (
                    "Installed-Size".to_string(),
                    self.installed_size().to_string(),
                ),
            );
        }
        let mut text = String::new();
        for (name, value) in &fields {
            validate_field_name(name)?;
            text.push_str(name);
            text.push(':');
            let mut lines = value.split('\n');
            let first = lines.next().unwrap_or("").trim();
            if !first.is_empty() {
                text.push(' ');
                text.push_str(first);
            }
            let mut has_text = !first.is_empty();
            for line in lines {
                let line = line.trim_end();
                if line.trim_start().is_empty() {
                    text.push_str("\n .");
                } else if line.starts_with([' ', '\t']) {
                    text.push('\n');
                    text.push_str(line);
                    has_text = true;
                } else {
                    text.push_str("\n ");
                    text.push_str(line);
                    has_text = true;
                }
            }
            if !has_text {
                return Err(DebError::InvalidField {
                    field: name.clone(),
                    reason: "empty value",
                });
            }
            text.push('\n');
        }
        Ok(text)
    }

    /// Installed-Size in KiB, computed like dpkg-gencontrol: content bytes of
    /// files and symlinks, plus 1 KiB for every other object, rounded up.
    fn installed_size(&self) -> u64 {
        let mut bytes: u64 = 1024; // the root directory itself
        for node in self.entries.values() {
            bytes += match node {
                Node::File { contents, .. } => contents.len() as u64,
                Node::Symlink { target } => target.len() as u64,
                Node::Dir { .. } => 1024,
            };
        }
        bytes.div_ceil(1024)
    }

    fn md5sums(&self) -> Vec<u8> {
        let mut text = String::new();
        for (path, node) in &self.entries {
            if let Node::File { contents, .. } = node {
                text.push_str(&hex::encode(Md5::digest(contents)));
                text.push_str("  ");
                text.push_str(path);
                text.push('\n');
            }
        }
        text.into_bytes()
    }

    fn control_tar(&self) -> Result<Vec<u8>, DebError> {
        let mut members: BTreeMap<String, (u32, Vec<u8>)> = BTreeMap::new();
        for (name, member) in &self.control_members {
            validate_control_name(name)?;
            members.insert(name.clone(), (member.mode, member.contents.clone()));
        }
        members.insert(
            "control".to_string(),
            (0o644, self.control_text()?.into_bytes()),
        );
        if !members.contains_key("md5sums") {
            let sums = self.md5sums();
            if !sums.is_empty() {
                members.insert("md5sums".to_string(), (0o644, sums));
            }
        }
        let build = || -> io::Result<Vec<u8>> {
            let mut tar = TarWriter::new(self.mtime);
            tar.dir("./", 0o755)?;
            for (name, (mode, contents)) in &members {
                tar.file(&format!("./{name}"), *mode, contents)?;
            }
            tar.finish()
        };
        build().map_err(|source| DebError::Build {
            member: "control.tar",
            source,
        })
    }

    fn data_tar(&self) -> Result<Vec<u8>, DebError> {
        let build = || -> io::Result<Vec<u8>> {
            let mut tar = TarWriter::new(self.mtime);
            tar.dir("./", 0o755)?;
            for (path, node) in &self.entries {
                match node {
                    Node::Dir { mode } => tar.dir(&format!("./{path}/"), *mode)?,
                    Node::File { mode, contents } => {
                        tar.file(&format!("./{path}"), *mode, contents)?
                    }
                    Node::Symlink { target } => tar.symlink(&format!("./{path}"), target)?,
                }
            }
            tar.finish()
        };
        build().map_err(|source| DebError::Build {
            member: "data.tar",
            source,
        })
    }

    fn compress(&self, tar: Vec<u8>, member: &'static str) -> Result<Vec<u8>, DebError> {
        let run = || -> io::Result<Vec<u8>> {
            match self.compression {
                Compression::Xz => {
                    let mut enc = liblzma::write::XzEncoder::new(Vec::new(), 6);
                    enc.write_all(&tar)?;
                    enc.finish()
                }
                Compression::Gzip => {
                    let mut enc = flate2::GzBuilder::new()
                        .mtime(0)
                        .operating_system(3) // Unix, as gzip(1) writes
                        .write(Vec::new(), flate2::Compression::best());
                    enc.write_all(&tar)?;
                    enc.finish()
                }
            }
        };
        run().map_err(|source| DebError::Build { member, source })
    }
}

/// Normalizes a package path: strips leading `/` and `./`, collapses `.` and
/// empty components, and rejects `..` and the root itself.
fn normalize(path: &str) -> Result<String, &'static str> {
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err("'..' components are not allowed"),
            _ => parts.push(part),
        }
    }
    if parts.is_empty() {
        return Err("names the root directory");
    }
    if path.contains('\0') {
        return Err("contains a NUL byte");
    }
    if path.contains('\n') {
        // A newline would corrupt md5sums and dpkg's file lists.
        return Err("contains a newline");
    }
    Ok(parts.join("/"))
}

fn validate_field_name(name: &str) -> Result<(), DebError> {
    let reason = if name.is_empty() {
        Some("empty name")
    } else if name.starts_with(['#', '-']) {
        Some("a field name cannot start with '#' or '-'")
    } else if !name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
        Some("a field name is printable ASCII without ':' or spaces")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(DebError::InvalidField {
            field: name.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

fn validate_control_name(name: &str) -> Result<(), DebError> {
    let reason = if name == "control" {
        Some("control is generated from the fields given to DebBuilder::new")
    } else if name.is_empty() || name == "." || name == ".." {
        Some("not a file name")
    } else if !name.bytes().all(|b| b.is_ascii_graphic() && b != b'/') {
        Some("a control member name is printable ASCII without '/'")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(DebError::InvalidControlName {
            name: name.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Writes GNU tar headers with names exactly as given (the tar crate's path
/// setters would drop the `./` prefix dpkg-deb writes).
struct TarWriter {
    builder: tar::Builder<Vec<u8>>,
    mtime: u64,
}

impl TarWriter {
    fn new(mtime: u64) -> Self {
        TarWriter {
            builder: tar::Builder::new(Vec::new()),
            mtime,
        }
    }

    fn dir(&mut self, name: &str, mode: u32) -> io::Result<()> {
        self.entry(name, tar::EntryType::Directory, mode, None, &[])
    }

    fn file(&mut self, name: &str, mode: u32, contents: &[u8]) -> io::Result<()> {
        self.entry(name, tar::EntryType::Regular, mode, None, contents)
    }

    fn symlink(&mut self, name: &str, target: &str) -> io::Result<()> {
        self.entry(name, tar::EntryType::Symlink, 0o777, Some(target), &[])
    }

    fn entry(
        &mut self,
        name: &str,
        kind: tar::EntryType,
        mode: u32,
        link: Option<&str>,
        contents: &[u8],
    ) -> io::Result<()> {
        let mut header = self.header(kind, mode, contents.len() as u64)?;
        if name.len() > 100 {
            self.long_name(tar::EntryType::GNULongName, name)?;
        }
        set_field(&mut header.as_old_mut().name, name);
        if let Some(link) = link {
            if link.len() > 100 {
                self.long_name(tar::EntryType::GNULongLink, link)?;
            }
            set_field(&mut header.as_old_mut().linkname, link);
        }
        header.set_cksum();
        self.builder.append(&header, contents)
    }

    /// A GNU `././@LongLink` pseudo-entry carrying a name longer than 100 bytes.
    fn long_name(&mut self, kind: tar::EntryType, name: &str) -> io::Result<()> {
        let mut data = name.as_bytes().to_vec();
        data.push(0);
        let mut header = self.header(kind, 0o644, data.len() as u64)?;
        header.set_mtime(0);
        set_field(&mut header.as_old_mut().name, "././@LongLink");
        header.set_cksum();
        self.builder.append(&header, &data[..])
    }

    fn header(&self, kind: tar::EntryType, mode: u32, size: u64) -> io::Result<tar::Header> {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_username("root")?;
        header.set_groupname("root")?;
        header.set_mtime(self.mtime);
        header.set_size(size);
        Ok(header)
    }

    fn finish(self) -> io::Result<Vec<u8>> {
        self.builder.into_inner()
    }
}

/// Copies `value` into a NUL-padded header field, truncating it (long values
/// are carried by a preceding GNU long-name entry).
fn set_field(field: &mut [u8], value: &str) {
    field.fill(0);
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value.as_bytes()[..n]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builder() -> DebBuilder {
        DebBuilder::new(vec![
            ("Package".into(), "foo".into()),
            ("Version".into(), "1.0".into()),
            ("Architecture".into(), "arm64".into()),
            ("Maintainer".into(), "Someone <a@b.c>".into()),
            (
                "Description".into(),
                "short\nlong line one\n\n indented".into(),
            ),
        ])
    }

    #[test]
    fn control_text_formatting() {
        let mut b = builder();
        b.add_file("usr/bin/foo", 0o755, vec![0; 2000]);
        b.add_symlink("usr/bin/bar", "foo");
        let text = b.control_text().unwrap();
        // root, usr, usr/bin = 3 KiB; 2000 + 3 bytes of content.
        assert_eq!(
            text,
            "Package: foo\nVersion: 1.0\nArchitecture: arm64\nMaintainer: Someone <a@b.c>\n\
             Installed-Size: 5\nDescription: short\n long line one\n .\n indented\n"
        );
    }

    #[test]
    fn normalize_paths() {
        assert_eq!(normalize("./usr//bin/").unwrap(), "usr/bin");
        assert_eq!(normalize("/etc/x").unwrap(), "etc/x");
        assert!(normalize("usr/../etc").is_err());
        assert!(normalize("./").is_err());
        assert!(normalize("a\nb").is_err());
    }

    #[test]
    fn rejects_bad_input() {
        let mut b = builder();
        b.add_file("../x", 0o644, vec![]);
        assert!(matches!(
            b.write_to(Vec::new()),
            Err(DebError::InvalidPath { .. })
        ));

        let mut b = builder();
        b.add_file("a", 0o644, vec![]);
        b.add_file("a/b", 0o644, vec![]);
        b.add_file("a", 0o644, vec![]);
        assert!(matches!(
            b.write_to(Vec::new()),
            Err(DebError::InvalidPath { .. })
        ));

        let b = DebBuilder::new(vec![("Package".into(), "foo".into())]);
        assert!(matches!(
            b.write_to(Vec::new()),
            Err(DebError::MissingField { field: "Version" })
        ));
        let mut b = builder();
        b.add_control_file("../postinst", 0o755, vec![]);
        assert!(matches!(
            b.write_to(Vec::new()),
            Err(DebError::InvalidControlName { .. })
        ));

        let mut b = builder();
        b.add_control_file("control", 0o644, vec![]);
        assert!(matches!(
            b.write_to(Vec::new()),
            Err(DebError::InvalidControlName { .. })
        ));
    }

    #[test]
    fn long_names_round_trip_through_tar() {
        let long = format!("usr/share/{}/file", "d".repeat(120));
        let target = "t".repeat(150);
        let mut b = builder();
        b.add_file(&long, 0o644, b"x".to_vec());
        b.add_symlink("usr/link", &target);
        let data = b.data_tar().unwrap();
        let mut archive = tar::Archive::new(&data[..]);
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let entry = entry.unwrap();
            let name = String::from_utf8(entry.path_bytes().into_owned()).unwrap();
            let link = entry
                .link_name_bytes()
                .map(|l| String::from_utf8(l.into_owned()).unwrap());
            seen.push((name, link));
        }
        assert!(seen.contains(&(format!("./{long}"), None)));
        assert!(seen.contains(&("./usr/link".to_string(), Some(target))));
        assert_eq!(seen[0].0, "./");
    }
}
