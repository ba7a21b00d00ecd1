//! A real Debian-style archive made by the tests: .debs built with
//! zchroot's own writer (dpkg-deb accepts them), Packages indexes (plain, xz,
//! gz, by-hash), Release, and an InRelease cleartext-signed with an OpenPGP
//! key generated here. Plus a manifests directory that points zchroot at it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use openpgp::cert::prelude::*;
use openpgp::policy::StandardPolicy;
use openpgp::serialize::stream::{Message, Signer};
use openpgp::serialize::Serialize;
use sequoia_openpgp as openpgp;
use sha2::{Digest, Sha256};

use zchroot::archive::release::format_date;
use zchroot::deb::write::DebBuilder;

pub const ARCH: &str = "arm64";

/// One package of the test archive.
#[derive(Clone, Debug)]
pub struct Pkg {
    pub name: String,
    pub version: String,
    pub arch: String,
    pub fields: Vec<(String, String)>,
    /// Entries of data.tar besides the README (hostile ones included).
    pub entries: Vec<Entry>,
    /// Written in the index instead of the real SHA256 (a hostile index).
    pub index_sha256: Option<String>,
    /// The archive component that holds it (`main` unless set).
    pub component: String,
    /// A .deb made elsewhere (e.g. Debian's, repacked), published as it is.
    pub raw: Option<Vec<u8>>,
}

/// A data.tar entry of a test package.
#[derive(Clone, Debug)]
pub enum Entry {
    File(String, u32, Vec<u8>),
    Symlink(String, String),
    Dir(String, u32),
}

pub fn pkg(name: &str, version: &str) -> Pkg {
    Pkg {
        name: name.into(),
        version: version.into(),
        arch: ARCH.into(),
        fields: vec![],
        entries: vec![],
        index_sha256: None,
        component: "main".into(),
        raw: None,
    }
}

/// A .deb made elsewhere, published as it is: its index entry has the
/// control fields apt and zchroot read.
pub fn pkg_of_deb(path: &Path) -> Pkg {
    let control = zchroot::deb::read::read_control(path).unwrap();
    let field = |k: &str| {
        control
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{k}: ")))
            .map(String::from)
    };
    let mut p = pkg(&field("Package").unwrap(), &field("Version").unwrap());
    p.arch = field("Architecture").unwrap();
    for k in [
        "Source",
        "Depends",
        "Pre-Depends",
        "Provides",
        "Multi-Arch",
        "Installed-Size",
    ] {
        if let Some(v) = field(k) {
            p = p.field(k, &v);
        }
    }
    p.raw = Some(std::fs::read(path).unwrap());
    p
}

impl Pkg {
    pub fn field(mut self, k: &str, v: &str) -> Self {
        self.fields.push((k.into(), v.into()));
        self
    }
    pub fn depends(self, v: &str) -> Self {
        self.field("Depends", v)
    }
    pub fn provides(self, v: &str) -> Self {
        self.field("Provides", v)
    }
    pub fn essential(self) -> Self {
        self.field("Essential", "yes")
    }
    /// A regular file in the package's data.
    pub fn file(mut self, path: &str, mode: u32, contents: &[u8]) -> Self {
        self.entries
            .push(Entry::File(path.into(), mode, contents.to_vec()));
        self
    }
    /// A symlink in the package's data (`path -> target`).
    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        self.entries
            .push(Entry::Symlink(path.into(), target.into()));
        self
    }
    /// A directory in the package's data.
    pub fn dir(mut self, path: &str, mode: u32) -> Self {
        self.entries.push(Entry::Dir(path.into(), mode));
        self
    }
    /// The index names this (any text) as the package's SHA256.
    pub fn index_sha256(mut self, v: &str) -> Self {
        self.index_sha256 = Some(v.into());
        self
    }
    pub fn component(mut self, c: &str) -> Self {
        self.component = c.into();
        self
    }
    pub fn arch(mut self, a: &str) -> Self {
        self.arch = a.into();
        self
    }
    pub fn deb_name(&self) -> String {
        let v = self.version.replace(':', "%3a");
        format!("{}_{}_{}.deb", self.name, v, self.arch)
    }
}

/// A suite to write.
pub struct SuiteSpec {
    pub suite: String,
    pub codename: String,
    pub packages: Vec<Pkg>,
    pub by_hash: bool,
    pub date: SystemTime,
    /// When the InRelease signature is made (default: at `date`).
    pub signed_at: Option<SystemTime>,
    pub valid_until: Option<SystemTime>,
}

pub fn suite(name: &str, packages: Vec<Pkg>) -> SuiteSpec {
    SuiteSpec {
        suite: name.into(),
        codename: name.into(),
        packages,
        by_hash: true,
        date: SystemTime::now() - Duration::from_secs(3600),
        signed_at: None,
        valid_until: Some(SystemTime::now() + Duration::from_secs(7 * 86400)),
    }
}

/// An OpenPGP key that signs archives.
pub struct Key {
    pub cert: Cert,
}

impl Key {
    pub fn generate(name: &str) -> Key {
        // Made a month ago, so that Release files dated in the past verify.
        let (cert, _) = CertBuilder::new()
            .set_creation_time(SystemTime::now() - Duration::from_secs(30 * 86400))
            .add_userid(format!("{name} <archive@example.invalid>"))
            .add_signing_subkey()
            .generate()
            .expect("generate key");
        Key { cert }
    }

    /// A key that was created two years ago and expired a year ago.
    pub fn generate_expired(name: &str) -> Key {
        let created = SystemTime::now() - Duration::from_secs(2 * 365 * 86400);
        let (cert, _) = CertBuilder::new()
            .set_creation_time(created)
            .set_validity_period(Duration::from_secs(365 * 86400))
            .add_userid(format!("{name} <archive@example.invalid>"))
            .add_signing_subkey()
            .generate()
            .expect("generate key");
        Key { cert }
    }

    pub fn public_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.cert.serialize(&mut out).unwrap();
        out
    }

    /// Cleartext-signs `body` as Debian's InRelease files are, with the
    /// signature made at `when`.
    pub fn clearsign(&self, body: &[u8], when: SystemTime) -> Vec<u8> {
        let p = StandardPolicy::new();
        let keypair = self
            .cert
            .keys()
            .with_policy(&p, when)
            .supported()
            .secret()
            .for_signing()
            .next()
            .expect("a signing key valid then")
            .key()
            .clone()
            .into_keypair()
            .unwrap();
        let mut sink = Vec::new();
        {
            let message = Message::new(&mut sink);
            let mut signer = Signer::new(message, keypair)
                .unwrap()
                .creation_time(when)
                .cleartext()
                .build()
                .unwrap();
            signer.write_all(body).unwrap();
            signer.finalize().unwrap();
        }
        sink
    }
}

pub fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

pub struct Archive {
    pub dir: tempfile::TempDir,
}

impl Archive {
    pub fn new() -> Archive {
        Archive {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("debian")
    }

    /// Builds the .deb of a package (a file under /usr/share/doc).
    pub fn build_deb(p: &Pkg) -> Vec<u8> {
        let mut control = vec![
            ("Package".to_string(), p.name.clone()),
            ("Version".to_string(), p.version.clone()),
            ("Architecture".to_string(), p.arch.clone()),
            (
                "Maintainer".to_string(),
                "Test <t@example.invalid>".to_string(),
            ),
        ];
        control.extend(p.fields.iter().cloned());
        control.push(("Description".into(), format!("test package {}", p.name)));
        let mut b = DebBuilder::new(control);
        b.add_file(
            &format!("usr/share/doc/{}/README", p.name),
            0o644,
            format!("{} {}\n", p.name, p.version).into_bytes(),
        );
        for e in &p.entries {
            match e {
                Entry::File(path, mode, data) => b.add_file(path, *mode, data.clone()),
                Entry::Symlink(path, target) => b.add_symlink(path, target),
                Entry::Dir(path, mode) => b.add_dir(path, *mode),
            }
        }
        let mut out = Vec::new();
        b.write_to(&mut out).unwrap();
        out
    }

    /// Writes a suite: pool files, indexes, Release and InRelease signed by `key`.
    pub fn add_suite(&self, key: &Key, s: &SuiteSpec) {
        self.add_suite_for(key, s, ARCH)
    }

    /// The same, with the index for architecture `arch`.
    pub fn add_suite_for(&self, key: &Key, s: &SuiteSpec, arch: &str) {
        let root = self.root();
        let dists = root.join("dists").join(&s.suite);
        // Every component a package names, `main` always.
        let mut components = vec!["main".to_string()];
        for p in &s.packages {
            if !components.contains(&p.component) {
                components.push(p.component.clone());
            }
        }
        let mut sums = String::new();
        for component in &components {
            let mut packages = String::new();
            for p in s.packages.iter().filter(|p| &p.component == component) {
                let deb = p.raw.clone().unwrap_or_else(|| Self::build_deb(p));
                let first = &p.name[..1];
                let rel = format!("pool/{component}/{first}/{}/{}", p.name, p.deb_name());
                let path = root.join(&rel);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, &deb).unwrap();
                packages.push_str(&format!(
                    "Package: {}\nVersion: {}\nArchitecture: {}\nMaintainer: Test <t@example.invalid>\n",
                    p.name, p.version, p.arch
                ));
                for (k, v) in &p.fields {
                    packages.push_str(&format!("{k}: {v}\n"));
                }
                packages.push_str(&format!(
                    "Description: test package {}\nFilename: {rel}\nSize: {}\nSHA256: {}\n\n",
                    p.name,
                    deb.len(),
                    p.index_sha256.clone().unwrap_or_else(|| sha256_hex(&deb))
                ));
            }
            sums.push_str(&Self::write_index(
                &dists, component, arch, &packages, s.by_hash,
            ));
        }
        let mut release = format!(
            "Origin: Test\nLabel: Test\nSuite: {}\nCodename: {}\nDate: {}\n",
            s.suite,
            s.codename,
            format_date(s.date)
        );
        if let Some(v) = s.valid_until {
            release.push_str(&format!("Valid-Until: {}\n", format_date(v)));
        }
        if s.by_hash {
            release.push_str("Acquire-By-Hash: yes\n");
        }
        release.push_str(&format!(
            "No-Support-for-Architecture-all: Packages\nArchitectures: {arch}\nComponents: {}\nSHA256:\n{sums}",
            components.join(" ")
        ));
        std::fs::write(dists.join("Release"), &release).unwrap();
        std::fs::write(
            dists.join("InRelease"),
            key.clearsign(release.as_bytes(), s.signed_at.unwrap_or(s.date)),
        )
        .unwrap();
    }

    /// Writes one component's Packages indexes (plain, xz, gz, by-hash)
    /// and returns their Release SHA256 lines.
    fn write_index(
        dists: &Path,
        component: &str,
        arch: &str,
        packages: &str,
        by_hash: bool,
    ) -> String {
        let bin = dists.join(format!("{component}/binary-{arch}"));
        std::fs::create_dir_all(bin.join("by-hash/SHA256")).unwrap();
        let mut xz = Vec::new();
        {
            let mut enc = liblzma::write::XzEncoder::new(&mut xz, 6);
            enc.write_all(packages.as_bytes()).unwrap();
            enc.finish().unwrap();
        }
        let mut gz = Vec::new();
        {
            let mut enc = flate2::write::GzEncoder::new(&mut gz, flate2::Compression::default());
            enc.write_all(packages.as_bytes()).unwrap();
            enc.finish().unwrap();
        }
        let mut sums = String::new();
        for (name, data) in [
            ("Packages", packages.as_bytes()),
            ("Packages.xz", &xz[..]),
            ("Packages.gz", &gz[..]),
        ] {
            let hash = sha256_hex(data);
            std::fs::write(bin.join(name), data).unwrap();
            if by_hash {
                std::fs::write(bin.join("by-hash/SHA256").join(&hash), data).unwrap();
            }
            sums.push_str(&format!(
                " {hash} {} {component}/binary-{arch}/{name}\n",
                data.len()
            ));
        }
        sums
    }

    /// A manifests directory with one release, `test`, whose sources are
    /// the given suites of this archive at `base_url`, and `key` as keyring.
    pub fn manifests(&self, base_url: &str, suites: &[&str], key: &Key) -> PathBuf {
        let dir = self.dir.path().join("manifests");
        std::fs::create_dir_all(dir.join("keys")).unwrap();
        std::fs::write(dir.join("keys/test.pgp"), key.public_bytes()).unwrap();
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("rootfs-manifests/architectures.toml"),
            dir.join("architectures.toml"),
        )
        .unwrap();
        let mut toml = String::from(
            "distribution = \"test\"\nrelease = \"test\"\ndescription = \"test archive\"\nkeyring = [\"keys/test.pgp\"]\n",
        );
        for s in suites {
            toml.push_str(&format!(
                "[[sources]]\nrole = \"archive\"\nmirror = \"{base_url}/debian\"\nsuite = \"{s}\"\ncomponents = [\"main\"]\n"
            ));
        }
        toml.push_str(
            "[variants.minbase]\nessential = true\npriorities = [\"required\"]\npackages = []\n\
             [qemu]\npackage = \"qemu-user\"\npath = \"usr/bin/qemu-{qemu}\"\n\
             [kernel]\nmodules-dir = \"usr/lib/modules\"\n",
        );
        std::fs::write(dir.join("test.toml"), toml).unwrap();
        dir
    }
}

impl Key {
    /// A key made at `created` that expires `validity` later (its signing
    /// subkey with it): e.g. valid an hour ago, expired now.
    pub fn generate_expiring(name: &str, created: SystemTime, validity: Duration) -> Key {
        let (cert, _) = CertBuilder::new()
            .set_creation_time(created)
            .set_validity_period(validity)
            .add_userid(format!("{name} <archive@example.invalid>"))
            .add_signing_subkey()
            .generate()
            .expect("generate key");
        Key { cert }
    }

    /// This key's certificate, revoked now as superseded (a soft
    /// revocation: signatures made before it stay valid at their time).
    pub fn revoked_now(&self) -> Key {
        use openpgp::types::ReasonForRevocation;
        let mut keypair = self
            .cert
            .primary_key()
            .key()
            .clone()
            .parts_into_secret()
            .unwrap()
            .into_keypair()
            .unwrap();
        let rev = self
            .cert
            .revoke(
                &mut keypair,
                ReasonForRevocation::KeySuperseded,
                b"superseded",
            )
            .unwrap();
        let (cert, _) = self.cert.clone().insert_packets(rev).unwrap();
        Key { cert }
    }
}

/// A signed test archive with one amd64 (native) suite, `test`, served on
/// 127.0.0.1, and the manifests directory that trusts its key: what the
/// tests that drive `create amd64 --suite test` against hostile or broken
/// packages start from.
pub struct NativeArchive {
    pub archive: Archive,
    /// The key the suite is signed with (to publish it again, changed).
    pub key: Key,
    /// Serves until dropped.
    _server: crate::server::Server,
    pub manifests: PathBuf,
}

impl NativeArchive {
    /// Serves `packages` (made amd64) in suite `test`, signed by a new key.
    pub fn serve(key_name: &str, packages: Vec<Pkg>) -> NativeArchive {
        let key = Key::generate(key_name);
        let archive = Archive::new();
        let mut s = suite("test", packages);
        s.packages.iter_mut().for_each(|p| p.arch = "amd64".into());
        archive.add_suite_for(&key, &s, "amd64");
        let server = crate::server::Server::start(archive.dir.path().to_owned());
        let manifests = archive.manifests(&server.base, &["test"], &key);
        NativeArchive {
            archive,
            key,
            _server: server,
            manifests,
        }
    }
}
