//! The data that describes a root: releases (suites, mirrors, components,
//! keyring, package variants) and the architecture table, read from
//! `rootfs-manifests/` (embedded at build time, or a directory given at run
//! time). Pure: parsing and lookups only.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/manifests.rs"));
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("unknown release '{name}': known are {known}")]
    UnknownRelease { name: String, known: String },
    #[error("unknown architecture '{name}': known are {known}")]
    UnknownArch { name: String, known: String },
    #[error("unknown variant '{name}' of {release}: known are {known}")]
    UnknownVariant {
        name: String,
        release: String,
        known: String,
    },
    #[error("unknown suite '{name}' of {release}: known are {known}\nhelp: name the suites to use, or add one to the defaults with +SUITE (e.g. --suites +{release}-backports)")]
    UnknownSuite {
        name: String,
        release: String,
        known: String,
    },
    #[error("bad component '{0}': components are lowercase letters, digits and - (main, contrib, non-free, non-free-firmware)")]
    BadComponent(String),
    #[error("manifest file {path} is missing from {origin}")]
    MissingFile { path: String, origin: String },
    #[error("invalid manifest {path}: {message}")]
    Invalid { path: String, message: String },
    #[error("reading manifests from {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// All manifest files, by path relative to the manifests directory.
#[derive(Debug, Clone)]
pub struct Manifests {
    origin: String,
    files: BTreeMap<String, Vec<u8>>,
    /// Mirrors that replace the releases' own (see [`MirrorMap`]).
    mirrors: MirrorMap,
}

/// Mirrors that replace the releases' own, by role: the config file's
/// `mirror` and `security-mirror`, and `--security-mirror` (or a target's
/// `security-mirror`). `--mirror` is applied over it, to the archive role.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MirrorMap {
    pub archive: Option<String>,
    pub security: Option<String>,
}

impl MirrorMap {
    /// `release` with its sources' mirrors replaced as the map says.
    fn apply(&self, mut release: Release) -> Release {
        for s in &mut release.sources {
            let m = match s.role {
                Role::Archive => &self.archive,
                Role::Security => &self.security,
            };
            if let Some(m) = m {
                s.mirror = m.trim_end_matches('/').to_string();
            }
        }
        release
    }
}

/// Where a source's mirror comes from: `--mirror` replaces `archive` mirrors
/// only; the security archive keeps its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Archive,
    Security,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    pub role: Role,
    pub mirror: String,
    pub suite: String,
    pub components: Vec<String>,
    /// Used only when asked for (`--suites +SUITE`), e.g. backports; its
    /// packages are candidates only where no other suite has the package.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    /// Include every `Essential: yes` package.
    #[serde(default)]
    pub essential: bool,
    /// Include every package of these priorities.
    #[serde(default)]
    pub priorities: Vec<String>,
    /// Include these packages by name.
    #[serde(default)]
    pub packages: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Release {
    pub distribution: String,
    pub release: String,
    pub description: String,
    /// Keyring files, relative to the manifests directory.
    pub keyring: Vec<String>,
    pub sources: Vec<Source>,
    pub variants: BTreeMap<String, Variant>,
    pub qemu: QemuSource,
    pub kernel: KernelLayout,
}

/// How the release lays out kernels.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct KernelLayout {
    /// Where modules live, relative to `/` (`usr/lib/modules`).
    pub modules_dir: String,
}

/// Which package of the host's architecture carries qemu-user, and where.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QemuSource {
    pub package: String,
    /// Path inside the package; `{qemu}` stands for the qemu name.
    pub path: String,
}

impl QemuSource {
    pub fn path_for(&self, arch: &Arch) -> String {
        self.path.replace("{qemu}", &arch.qemu)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct RawArch {
    uname: String,
    qemu: String,
    kernel_arch: String,
    triplet: String,
    kernel_flavour: String,
    elf_magic: String,
    elf_mask: String,
}

/// One row of the architecture table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arch {
    /// Debian's name (`arm64`).
    pub name: String,
    /// What `uname -m` prints (`aarch64`).
    pub uname: String,
    /// qemu-user's name (`aarch64`).
    pub qemu: String,
    /// The kernel's `ARCH=` (`arm64`).
    pub kernel_arch: String,
    /// GNU triplet (`aarch64-linux-gnu`).
    pub triplet: String,
    /// Debian's plain kernel flavour (`arm64`, `armmp`).
    pub kernel_flavour: String,
    pub elf_magic: Vec<u8>,
    pub elf_mask: Vec<u8>,
}

impl Manifests {
    /// The manifests built into this binary.
    pub fn embedded() -> Self {
        Manifests {
            origin: "the manifests built into zchroot".into(),
            files: embedded::EMBEDDED
                .iter()
                .map(|(p, b)| (p.to_string(), b.to_vec()))
                .collect(),
            mirrors: MirrorMap::default(),
        }
    }

    /// The same manifests with their releases' mirrors replaced by `mirrors`.
    pub fn with_mirrors(mut self, mirrors: MirrorMap) -> Self {
        self.mirrors = mirrors;
        self
    }

    /// The mirrors that replace the releases' own.
    pub fn mirrors(&self) -> &MirrorMap {
        &self.mirrors
    }

    /// Manifests read from a directory laid out like `rootfs-manifests/`.
    pub fn from_dir(dir: &Path) -> Result<Self, ManifestError> {
        fn walk(
            dir: &Path,
            base: &Path,
            files: &mut BTreeMap<String, Vec<u8>>,
        ) -> std::io::Result<()> {
            for entry in std::fs::read_dir(dir)? {
                let path = entry?.path();
                if path.is_dir() {
                    walk(&path, base, files)?;
                } else {
                    let rel = path.strip_prefix(base).unwrap_or(&path);
                    files.insert(rel.to_string_lossy().into_owned(), std::fs::read(&path)?);
                }
            }
            Ok(())
        }
        let mut files = BTreeMap::new();
        walk(dir, dir, &mut files).map_err(|source| ManifestError::Read {
            path: dir.to_owned(),
            source,
        })?;
        Ok(Manifests {
            origin: dir.display().to_string(),
            files,
            mirrors: MirrorMap::default(),
        })
    }

    pub fn file(&self, path: &str) -> Result<&[u8], ManifestError> {
        self.files
            .get(path)
            .map(|v| v.as_slice())
            .ok_or_else(|| ManifestError::MissingFile {
                path: path.into(),
                origin: self.origin.clone(),
            })
    }

    fn text(&self, path: &str) -> Result<&str, ManifestError> {
        std::str::from_utf8(self.file(path)?).map_err(|_| ManifestError::Invalid {
            path: path.into(),
            message: "not UTF-8".into(),
        })
    }

    /// Release names: every top-level `NAME.toml` except the architecture table.
    pub fn releases(&self) -> Vec<String> {
        self.files
            .keys()
            .filter(|p| !p.contains('/') && p.ends_with(".toml") && *p != "architectures.toml")
            .map(|p| p.trim_end_matches(".toml").to_string())
            .collect()
    }

    pub fn release(&self, name: &str) -> Result<Release, ManifestError> {
        let path = format!("{name}.toml");
        if name.contains('/') || name == "architectures" || !self.files.contains_key(&path) {
            return Err(ManifestError::UnknownRelease {
                name: name.into(),
                known: self.releases().join(", "),
            });
        }
        let release: Release =
            toml::from_str(self.text(&path)?).map_err(|e| ManifestError::Invalid {
                path: path.clone(),
                message: e.to_string(),
            })?;
        let invalid = |message: String| ManifestError::Invalid {
            path: path.clone(),
            message,
        };
        if release.release != name {
            return Err(invalid(format!(
                "release = {:?} does not match the file name",
                release.release
            )));
        }
        if release.sources.is_empty() {
            return Err(invalid("no [[sources]]".into()));
        }
        if release.keyring.is_empty() {
            return Err(invalid("empty keyring".into()));
        }
        for key in &release.keyring {
            self.file(key)?;
        }
        Ok(self.mirrors.apply(release))
    }

    pub fn architectures(&self) -> Result<Vec<Arch>, ManifestError> {
        let path = "architectures.toml";
        let raw: BTreeMap<String, RawArch> =
            toml::from_str(self.text(path)?).map_err(|e| ManifestError::Invalid {
                path: path.into(),
                message: e.to_string(),
            })?;
        raw.into_iter()
            .map(|(name, r)| {
                let bytes = |field: &str, s: &str| {
                    hex::decode(s).map_err(|e| ManifestError::Invalid {
                        path: path.into(),
                        message: format!("{name}.{field}: {e}"),
                    })
                };
                let elf_magic = bytes("elf-magic", &r.elf_magic)?;
                let elf_mask = bytes("elf-mask", &r.elf_mask)?;
                if elf_magic.len() != elf_mask.len() {
                    return Err(ManifestError::Invalid {
                        path: path.into(),
                        message: format!("{name}: elf-magic and elf-mask differ in length"),
                    });
                }
                Ok(Arch {
                    name,
                    uname: r.uname,
                    qemu: r.qemu,
                    kernel_arch: r.kernel_arch,
                    triplet: r.triplet,
                    kernel_flavour: r.kernel_flavour,
                    elf_magic,
                    elf_mask,
                })
            })
            .collect()
    }

    pub fn arch(&self, name: &str) -> Result<Arch, ManifestError> {
        let all = self.architectures()?;
        let known = all
            .iter()
            .map(|a| a.name.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        all.iter()
            .find(|a| a.name == name)
            .cloned()
            .ok_or(ManifestError::UnknownArch {
                name: name.into(),
                known,
            })
    }

    /// The concatenated keyring of a release.
    pub fn keyring(&self, release: &Release) -> Result<Vec<u8>, ManifestError> {
        let mut out = Vec::new();
        for key in &release.keyring {
            out.extend_from_slice(self.file(key)?);
        }
        Ok(out)
    }
}

impl Release {
    pub fn variant(&self, name: &str) -> Result<&Variant, ManifestError> {
        self.variants
            .get(name)
            .ok_or_else(|| ManifestError::UnknownVariant {
                name: name.into(),
                release: self.release.clone(),
                known: self.variants.keys().cloned().collect::<Vec<_>>().join(", "),
            })
    }

    /// The default sources (not the optional ones) with `--mirror` applied
    /// to the archive-role ones.
    pub fn sources_with_mirror(&self, mirror: Option<&str>) -> Vec<Source> {
        self.sources
            .iter()
            .filter(|s| !s.optional)
            .map(|s| match (mirror, s.role) {
                (Some(m), Role::Archive) => Source {
                    mirror: m.trim_end_matches('/').to_string(),
                    ..s.clone()
                },
                _ => s.clone(),
            })
            .collect()
    }
}

/// What `--suites` and `--components` ask for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceChoice {
    /// Suites as given: `NAME` picks exactly the named suites, `+NAME` adds
    /// one to the defaults (or to the named ones); empty: the defaults.
    pub suites: Vec<String>,
    /// Components for every suite; empty: each suite's own from the manifest.
    pub components: Vec<String>,
}

/// A component's form (`main`, `non-free-firmware`).
pub fn valid_component(c: &str) -> bool {
    !c.is_empty()
        && c.as_bytes()[0].is_ascii_lowercase()
        && c.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl Release {
    /// The sources a choice of suites and components selects, in the
    /// manifest's order, with `--mirror` applied.
    pub fn select_sources(
        &self,
        mirror: Option<&str>,
        choice: &SourceChoice,
    ) -> Result<Vec<Source>, ManifestError> {
        for c in &choice.components {
            if !valid_component(c) {
                return Err(ManifestError::BadComponent(c.clone()));
            }
        }
        let names: Vec<&str> = choice.suites.iter().map(|s| s.as_str()).collect();
        for n in &names {
            let bare = n.strip_prefix('+').unwrap_or(n);
            if !self.sources.iter().any(|s| s.suite == bare) {
                return Err(ManifestError::UnknownSuite {
                    name: bare.into(),
                    release: self.release.clone(),
                    known: self.suite_names().join(", "),
                });
            }
        }
        let exact = names.iter().any(|n| !n.starts_with('+'));
        let wanted = |s: &Source| {
            names.contains(&s.suite.as_str())
                || names.contains(&format!("+{}", s.suite).as_str())
                || (!exact && !s.optional)
        };
        Ok(self
            .sources
            .iter()
            .filter(|s| wanted(s))
            .map(|s| Source {
                mirror: match (mirror, s.role) {
                    (Some(m), Role::Archive) => m.trim_end_matches('/').to_string(),
                    _ => s.mirror.clone(),
                },
                components: if choice.components.is_empty() {
                    s.components.clone()
                } else {
                    choice.components.clone()
                },
                ..s.clone()
            })
            .collect())
    }

    /// Every suite of the release, optional ones as `+SUITE (opt-in)`.
    fn suite_names(&self) -> Vec<String> {
        self.sources
            .iter()
            .map(|s| {
                if s.optional {
                    format!("+{} (opt-in)", s.suite)
                } else {
                    s.suite.clone()
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suites_and_components_are_chosen_from_the_release() {
        let r = Manifests::embedded().release("trixie").unwrap();
        let pick = |suites: &[&str], components: &[&str]| {
            r.select_sources(
                Some("http://m/debian/"),
                &SourceChoice {
                    suites: suites.iter().map(|s| s.to_string()).collect(),
                    components: components.iter().map(|s| s.to_string()).collect(),
                },
            )
            .map(|v| {
                v.iter()
                    .map(|s| format!("{} {} {}", s.mirror, s.suite, s.components.join(",")))
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(
            pick(&[], &[]).unwrap(),
            [
                "http://m/debian trixie main,contrib",
                "http://m/debian trixie-updates main,contrib",
                "http://deb.debian.org/debian-security trixie-security main,contrib"
            ]
        );
        let with_bpo = pick(&["+trixie-backports"], &["main", "non-free-firmware"]).unwrap();
        assert_eq!(with_bpo.len(), 4);
        assert_eq!(
            with_bpo[3],
            "http://m/debian trixie-backports main,non-free-firmware"
        );
        assert_eq!(
            pick(&["trixie", "+trixie-backports"], &[]).unwrap(),
            [
                "http://m/debian trixie main,contrib",
                "http://m/debian trixie-backports main,contrib"
            ]
        );
        let e = pick(&["+trixie-backport"], &[]).unwrap_err().to_string();
        assert!(
            e.starts_with("unknown suite 'trixie-backport' of trixie: known are trixie, trixie-updates, trixie-security, +trixie-backports (opt-in)\nhelp: "),
            "{e}"
        );
        let e = pick(&[], &["Non Free"]).unwrap_err().to_string();
        assert!(e.starts_with("bad component 'Non Free'"), "{e}");
    }

    #[test]
    fn embedded_releases_parse_and_name_their_suites() {
        let m = Manifests::embedded();
        let releases = m.releases();
        assert!(releases.contains(&"trixie".to_string()), "{releases:?}");
        assert!(releases.contains(&"bookworm".to_string()), "{releases:?}");
        for name in &releases {
            let r = m.release(name).unwrap();
            let suites: Vec<_> = r
                .sources_with_mirror(None)
                .iter()
                .map(|s| s.suite.clone())
                .collect();
            assert_eq!(
                suites,
                [
                    name.clone(),
                    format!("{name}-updates"),
                    format!("{name}-security")
                ]
            );
            let optional: Vec<_> = r.sources.iter().filter(|s| s.optional).collect();
            assert_eq!(optional.len(), 1);
            assert_eq!(optional[0].suite, format!("{name}-backports"));
            for s in &r.sources {
                assert_eq!(s.components, ["main", "contrib"]);
            }
            assert!(r.variant("minbase").unwrap().essential);
            assert!(r
                .variant("buildd")
                .unwrap()
                .packages
                .contains(&"build-essential".to_string()));
            assert!(!m.keyring(&r).unwrap().is_empty());
        }
    }

    #[test]
    fn unknown_names_list_what_exists() {
        let m = Manifests::embedded();
        let e = m.arch("arm46").unwrap_err().to_string();
        assert_eq!(
            e,
            "unknown architecture 'arm46': known are amd64, arm64, armhf, riscv64"
        );
        let e = m.release("sid2").unwrap_err().to_string();
        assert!(e.starts_with("unknown release 'sid2': known are "), "{e}");
        assert!(e.contains("bookworm") && e.contains("trixie"), "{e}");
        let e = m.release("architectures").unwrap_err().to_string();
        assert!(e.starts_with("unknown release"), "{e}");
        let r = m.release("trixie").unwrap();
        let e = r.variant("maxbase").unwrap_err().to_string();
        assert_eq!(
            e,
            "unknown variant 'maxbase' of trixie: known are buildd, minbase"
        );
    }

    #[test]
    fn architecture_table_matches_qemu_binfmt_data() {
        let m = Manifests::embedded();
        let a = m.arch("arm64").unwrap();
        assert_eq!((a.uname.as_str(), a.qemu.as_str()), ("aarch64", "aarch64"));
        assert_eq!(a.elf_magic.len(), 20);
        // e_machine EM_AARCH64 = 183 = 0xb7, little endian at offset 18.
        assert_eq!(a.elf_magic[18], 0xb7);
        for arch in m.architectures().unwrap() {
            assert_eq!(&arch.elf_magic[..4], b"\x7fELF", "{}", arch.name);
            // "\x7fELF", the class and e_machine must be compared exactly.
            assert_eq!(
                &arch.elf_mask[..5],
                b"\xff\xff\xff\xff\xff",
                "{}",
                arch.name
            );
            assert_eq!(&arch.elf_mask[18..20], b"\xff\xff", "{}", arch.name);
        }
    }

    #[test]
    fn a_mirror_map_replaces_each_role_and_mirror_wins_for_the_archive() {
        let m = Manifests::embedded().with_mirrors(MirrorMap {
            archive: Some("http://cache:3142/debian/".into()),
            security: Some("https://sec.example/debian-security".into()),
        });
        let r = m.release("trixie").unwrap();
        let mirrors: Vec<_> = r.sources.iter().map(|s| s.mirror.as_str()).collect();
        assert_eq!(
            mirrors,
            [
                "http://cache:3142/debian",
                "http://cache:3142/debian",
                "https://sec.example/debian-security",
                // trixie-backports, opt-in, from the main archive
                "http://cache:3142/debian"
            ]
        );
        let s = r.sources_with_mirror(Some("http://given/debian"));
        assert_eq!(s[0].mirror, "http://given/debian");
        assert_eq!(s[2].mirror, "https://sec.example/debian-security");
    }

    #[test]
    fn mirror_override_keeps_security_archive() {
        let r = Manifests::embedded().release("trixie").unwrap();
        let s = r.sources_with_mirror(Some("http://127.0.0.1:8080/debian/"));
        assert_eq!(s[0].mirror, "http://127.0.0.1:8080/debian");
        assert_eq!(s[1].mirror, "http://127.0.0.1:8080/debian");
        assert_eq!(s[2].mirror, "http://deb.debian.org/debian-security");
    }

    #[test]
    fn a_directory_of_manifests_adds_a_release_without_code() {
        let dir = tempfile::tempdir().unwrap();
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("rootfs-manifests");
        std::fs::create_dir(dir.path().join("keys")).unwrap();
        std::fs::copy(
            src.join("architectures.toml"),
            dir.path().join("architectures.toml"),
        )
        .unwrap();
        std::fs::copy(
            src.join("keys/debian-archive-trixie-automatic.pgp"),
            dir.path().join("keys/k.pgp"),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("forky.toml"),
            r#"distribution = "debian"
release = "forky"
description = "test"
keyring = ["keys/k.pgp"]
[[sources]]
role = "archive"
mirror = "http://example.invalid/debian"
suite = "forky"
components = ["main"]
[variants.minbase]
essential = true
[qemu]
package = "qemu-user"
path = "usr/bin/qemu-{qemu}"
[kernel]
modules-dir = "usr/lib/modules"
"#,
        )
        .unwrap();
        let m = Manifests::from_dir(dir.path()).unwrap();
        assert_eq!(m.releases(), ["forky"]);
        assert_eq!(m.release("forky").unwrap().sources[0].suite, "forky");
    }
}
