//! The apt repository a board follows: module packages under `pool/`,
//! `dists/SUITE/main/binary-ARCH/Packages(.xz)`, `Release` and an
//! `InRelease` signed with the repository's own key ([`key`]), all static
//! files ([`serve`] or any web server can hand them out). Planning the
//! index texts is pure; [`publish`] writes them.

pub mod key;
pub mod serve;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use md5::Md5;
use sha2::{Digest, Sha256};

use crate::archive::release::format_date;
use key::{KeyError, RepoKey};

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Deb(#[from] crate::deb::DebError),
    #[error(transparent)]
    Key(#[from] KeyError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RepoError + '_ {
    move |source| RepoError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Where a repository lives: `dir` is what is published.
#[derive(Debug, Clone)]
pub struct Repo {
    pub name: String,
    pub dir: PathBuf,
    pub suite: String,
    pub arch: String,
    /// The secret key, outside the published tree.
    pub key_path: PathBuf,
}

impl Repo {
    pub fn pool(&self) -> PathBuf {
        self.dir.join("pool/main")
    }

    fn binary_dir(&self) -> String {
        format!("main/binary-{}", self.arch)
    }

    /// The .deb files of the pool, sorted.
    pub fn debs(&self) -> Result<Vec<PathBuf>, RepoError> {
        let pool = self.pool();
        let mut v = Vec::new();
        match std::fs::read_dir(&pool) {
            Ok(rd) => {
                for e in rd {
                    let p = e.map_err(io(&pool))?.path();
                    if p.extension().is_some_and(|x| x == "deb") {
                        v.push(p);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&pool)(e)),
        }
        v.sort();
        Ok(v)
    }
}

/// One package of the index: its control paragraph and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    pub control: String,
    /// Relative to the repository's top.
    pub filename: String,
    pub size: u64,
    pub md5: String,
    pub sha256: String,
}

/// The `Packages` text.
pub fn packages_text(entries: &[IndexEntry]) -> String {
    let mut s = String::new();
    for e in entries {
        s.push_str(e.control.trim_end_matches('\n'));
        s.push_str(&format!(
            "\nFilename: {}\nSize: {}\nMD5sum: {}\nSHA256: {}\n\n",
            e.filename, e.size, e.md5, e.sha256
        ));
    }
    s
}

/// A file the Release lists: (path under dists/SUITE/, bytes).
pub fn release_text(repo: &Repo, date: SystemTime, files: &[(String, Vec<u8>)]) -> String {
    let mut s = format!(
        "Origin: zchroot\nLabel: zchroot {name}\nSuite: {suite}\nCodename: {suite}\nDate: {date}\nArchitectures: {arch}\nComponents: main\nDescription: kernel modules built by zchroot for {name}\n",
        name = repo.name,
        suite = repo.suite,
        arch = repo.arch,
        date = format_date(date),
    );
    s.push_str("MD5Sum:\n");
    for (p, b) in files {
        s.push_str(&format!(
            " {} {} {p}\n",
            hex::encode(Md5::digest(b)),
            b.len()
        ));
    }
    s.push_str("SHA256:\n");
    for (p, b) in files {
        s.push_str(&format!(
            " {} {} {p}\n",
            hex::encode(Sha256::digest(b)),
            b.len()
        ));
    }
    s
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), RepoError> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(io(d))?;
    }
    crate::atomic::write_atomic(path, bytes, 0o644).map_err(io(path))
}

/// Writes the indexes of what is in the pool, signed. Returns the number
/// of packages.
pub fn publish(repo: &Repo, now: SystemTime) -> Result<usize, RepoError> {
    let key = RepoKey::load_or_generate(&repo.key_path, &repo.name)?;
    let mut entries = Vec::new();
    for deb in repo.debs()? {
        let bytes = std::fs::read(&deb).map_err(io(&deb))?;
        let control = crate::deb::read::read_control(&deb)?;
        let rel = deb.strip_prefix(&repo.dir).unwrap_or(&deb);
        entries.push(IndexEntry {
            control,
            filename: rel.display().to_string(),
            size: bytes.len() as u64,
            md5: hex::encode(Md5::digest(&bytes)),
            sha256: hex::encode(Sha256::digest(&bytes)),
        });
    }
    let packages = packages_text(&entries).into_bytes();
    let mut xz = Vec::new();
    {
        let mut enc = liblzma::write::XzEncoder::new(&mut xz, 6);
        enc.write_all(&packages).map_err(io(&repo.dir))?;
        enc.finish().map_err(io(&repo.dir))?;
    }
    let dists = repo.dir.join("dists").join(&repo.suite);
    let bin = repo.binary_dir();
    let files = vec![
        (format!("{bin}/Packages"), packages),
        (format!("{bin}/Packages.xz"), xz),
    ];
    for (p, b) in &files {
        write_atomic(&dists.join(p), b)?;
    }
    let release = release_text(repo, now, &files);
    let inrelease = key.clearsign(release.as_bytes(), now)?;
    write_atomic(&dists.join("Release"), release.as_bytes())?;
    write_atomic(&dists.join("InRelease"), &inrelease)?;
    write_atomic(
        &repo.dir.join(format!("zchroot-{}.asc", repo.name)),
        &key.public_armored()?,
    )?;
    Ok(entries.len())
}

/// The board's one line that fetches the repository's public key (the
/// `zchroot-NAME.asc` [`publish`] puts at the top of the repository) from
/// `url` to where the sources entry of [`board_lines`] expects it.
pub fn key_fetch_line(repo: &Repo, url: &str) -> String {
    let (keyfile, _) = board_lines(repo, url);
    format!(
        "curl -fsSL {}/zchroot-{}.asc -o {keyfile}",
        url.trim_end_matches('/'),
        repo.name
    )
}

/// What a board needs: the key file's path and the deb822 sources entry.
pub fn board_lines(repo: &Repo, url: &str) -> (String, String) {
    let keyfile = format!("/etc/apt/keyrings/zchroot-{}.asc", repo.name);
    let sources = format!(
        "Types: deb\nURIs: {url}\nSuites: {}\nComponents: main\nArchitectures: {}\nSigned-By: {keyfile}\n",
        repo.suite, repo.arch
    );
    (keyfile, sources)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::release::{verify_inrelease, Keyring};
    use crate::deb::write::DebBuilder;

    fn repo(dir: &Path) -> Repo {
        Repo {
            name: "board".into(),
            dir: dir.join("public"),
            suite: "trixie".into(),
            arch: "arm64".into(),
            key_path: dir.join("secret/board.key"),
        }
    }

    #[test]
    fn published_indexes_are_signed_and_list_the_pool() {
        let d = tempfile::tempdir().unwrap();
        let r = repo(d.path());
        std::fs::create_dir_all(r.pool()).unwrap();
        let deb = DebBuilder::new(vec![
            ("Package".into(), "hello-modules-6.12.1".into()),
            ("Version".into(), "0.1".into()),
            ("Architecture".into(), "arm64".into()),
            ("Maintainer".into(), "z <z@localhost>".into()),
            ("Description".into(), "x\n y".into()),
        ]);
        let mut bytes = Vec::new();
        deb.write_to(&mut bytes).unwrap();
        std::fs::write(r.pool().join("hello-modules-6.12.1_0.1_arm64.deb"), &bytes).unwrap();
        let now = SystemTime::now() - std::time::Duration::from_secs(5);
        assert_eq!(publish(&r, now).unwrap(), 1);

        let dists = r.dir.join("dists/trixie");
        let packages = std::fs::read_to_string(dists.join("main/binary-arm64/Packages")).unwrap();
        assert!(
            packages.starts_with("Package: hello-modules-6.12.1\n"),
            "{packages}"
        );
        assert!(packages.contains("\nFilename: pool/main/hello-modules-6.12.1_0.1_arm64.deb\n"));
        assert!(packages.contains(&format!(
            "\nSHA256: {}\n",
            hex::encode(Sha256::digest(&bytes))
        )));

        // zchroot's own archive client accepts it: signature, suite, hashes.
        let public = std::fs::read(r.dir.join("zchroot-board.asc")).unwrap();
        let keyring = Keyring::from_bytes(&public, "test").unwrap();
        let inrelease = std::fs::read(dists.join("InRelease")).unwrap();
        let v =
            verify_inrelease(&inrelease, &keyring, "trixie", "test", SystemTime::now()).unwrap();
        let e = v.get().files.get("main/binary-arm64/Packages").unwrap();
        assert_eq!(e.size, packages.len() as u64);
        assert!(v.get().files.contains_key("main/binary-arm64/Packages.xz"));
        // The secret stays outside the published tree.
        assert!(!r.key_path.starts_with(&r.dir));

        let (keyfile, sources) = board_lines(&r, "http://127.0.0.1:8080/");
        assert_eq!(keyfile, "/etc/apt/keyrings/zchroot-board.asc");
        assert!(sources.contains("Signed-By: /etc/apt/keyrings/zchroot-board.asc\n"));
        assert!(sources.contains("URIs: http://127.0.0.1:8080/\nSuites: trixie\n"));
        // The line that fetches the key gets the file publish wrote.
        let line = key_fetch_line(&r, "http://127.0.0.1:8080/");
        assert_eq!(
            line,
            "curl -fsSL http://127.0.0.1:8080/zchroot-board.asc -o /etc/apt/keyrings/zchroot-board.asc"
        );
        let url = line.split(' ').nth(2).unwrap();
        let served = r
            .dir
            .join(url.strip_prefix("http://127.0.0.1:8080/").unwrap());
        assert_eq!(std::fs::read(served).unwrap(), public);
    }
}
