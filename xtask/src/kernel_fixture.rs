//! The fixture kernel: a real `make bindeb-pkg` arm64 kernel built from
//! Debian's linux-source with Debian's cross compiler, inside an amd64 root
//! zchroot makes, as a vendor or a user builds theirs. Built once per
//! machine and cached by a hash of what shapes it. Shared by `cargo xtask
//! kernel-fixture` and the integration tests (`tests/it/kernel_fixture.rs`
//! includes this file), so there is one build script; std and nix only.

use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The configuration fragment forced over `allnoconfig`.
pub const CONFIG: &str = include_str!("../../tests/data/kernel-fixture.config");
/// The build, run inside the amd64 build root.
pub const SCRIPT: &str = include_str!("kernel_fixture.sh");
/// The linux-source package the kernel is built from.
pub const SOURCE: &str = "linux-source-6.12";
/// Debian's arm64 cross compiler (its CONFIG_CC_VERSION_TEXT names gcc 14,
/// as Debian's arm64 kernels' do).
pub const CROSS_GCC: &str = "gcc-14-aarch64-linux-gnu";
/// The build root's packages beyond `buildd` (libc6-dev-arm64-cross: the
/// headers package rebuilds its helpers with the target compiler).
pub const BUILD_PACKAGES: &[&str] = &[
    SOURCE,
    CROSS_GCC,
    "libc6-dev-arm64-cross",
    "make",
    "bc",
    "bison",
    "flex",
    "libssl-dev",
    "libelf-dev",
    "cpio",
    "kmod",
    "dpkg-dev",
    "rsync",
    "xz-utils",
    "fakeroot",
    // debian/rules of bindeb-pkg asks dh_listpackages which packages to make.
    "debhelper",
    // aarch64-linux-gnu-gcc (gcc 14 too): debian/rules rebuilds the headers'
    // helpers with $(CROSS_COMPILE)gcc, not with CC.
    "gcc-aarch64-linux-gnu",
];
/// The build root's name in the cache's zchroot home (followed by the
/// entry's name: builds of different entries may run at once).
const BUILDER: &str = "kernel-fixture-builder";
/// The description of a finished cache entry, written last before the
/// entry gets its name.
const DESCRIPTION: &str = "fixture.txt";

/// A built fixture kernel's packages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixtureKernel {
    /// linux-image-KREL_VERSION_arm64.deb
    pub image: PathBuf,
    /// linux-headers-KREL_VERSION_arm64.deb
    pub headers: PathBuf,
    /// The kernel release (`uname -r`).
    pub release: String,
    /// The packages' Version.
    pub version: String,
}

/// The cache folder: `$ZCHROOT_FIXTURE_CACHE`, else `TARGET/fixture-cache`.
pub fn cache_dir(target_dir: &Path) -> PathBuf {
    match std::env::var_os("ZCHROOT_FIXTURE_CACHE") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => target_dir.join("fixture-cache"),
    }
}

/// The versions the cache key names, from `zchroot resolve`'s lines
/// (`NAME VERSION ARCH SUITE`).
pub fn versions_of(resolved: &str) -> Result<(String, String), String> {
    let find = |name: &str| {
        resolved
            .lines()
            .find_map(|l| {
                let mut w = l.split_whitespace();
                (w.next() == Some(name)).then(|| w.next().map(str::to_owned))?
            })
            .ok_or_else(|| format!("zchroot resolve named no {name}"))
    };
    Ok((find(SOURCE)?, find(CROSS_GCC)?))
}

/// The cache entry's name: a hash of everything that shapes the kernel.
pub fn entry_name(source_version: &str, gcc_version: &str) -> String {
    let mut h = sha2_hex(
        format!(
            "{SOURCE} {source_version}\n{CROSS_GCC} {gcc_version}\n{}\n--\n{CONFIG}\n--\n{SCRIPT}",
            BUILD_PACKAGES.join(",")
        )
        .as_bytes(),
    );
    h.truncate(16);
    format!("bindeb-{h}")
}

fn sha2_hex(data: &[u8]) -> String {
    zchroot::archive::hash::Sha256::digest(data).to_hex()
}

/// The packages' Version for a linux-source version.
pub fn package_version(source_version: &str) -> String {
    format!("{source_version}+zfixture1")
}

/// Parses an entry's description (`KEY=VALUE` lines) into the kernel.
pub fn parse_description(dir: &Path, text: &str) -> Result<FixtureKernel, String> {
    let get = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(str::to_owned)
            .ok_or_else(|| format!("{} has no {key}", dir.join(DESCRIPTION).display()))
    };
    Ok(FixtureKernel {
        image: dir.join(get("image")?),
        headers: dir.join(get("headers")?),
        release: get("release")?,
        version: get("version")?,
    })
}

/// The fixture kernel, from the cache or built into it. `zchroot` is the
/// binary that makes and runs the build root; `say` gets progress lines.
pub fn ensure(zchroot: &Path, cache: &Path, say: &dyn Fn(&str)) -> Result<FixtureKernel, String> {
    mkdir(cache)?;
    let home = cache.join("home");
    let z = Zchroot {
        exe: zchroot,
        home: &home,
    };
    let mut resolve = vec!["-q", "resolve", "--arch", "amd64", "--variant", "buildd"];
    let include = BUILD_PACKAGES.join(",");
    resolve.extend(["--include", &include]);
    let resolved = z.output(&resolve)?;
    let (source_version, gcc_version) = versions_of(&resolved)?;
    let entry = cache.join(entry_name(&source_version, &gcc_version));
    if let Some(k) = finished(&entry)? {
        return Ok(k);
    }
    // One build of an entry at a time on this machine; the others wait and
    // take it.
    let lock_path = cache.join(format!(
        "{}.lock",
        entry.file_name().unwrap().to_string_lossy()
    ));
    let lock = File::create(&lock_path).map_err(|e| io_err(&lock_path, e))?;
    say(&format!("waiting for the lock {}", lock_path.display()));
    let _lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| format!("cannot lock {}: {e}", lock_path.display()))?;
    if let Some(k) = finished(&entry)? {
        return Ok(k);
    }
    say(&format!(
        "building the fixture kernel from {SOURCE} {source_version} with {CROSS_GCC} {gcc_version} into {} (a few minutes on 2 cores)",
        entry.display()
    ));
    let scratch = cache.join(format!(
        "tmp-{}",
        entry.file_name().unwrap().to_string_lossy()
    ));
    // Under the lock no other build of this entry runs: a scratch folder
    // left is stale.
    remove(&scratch)?;
    let builder = format!("{BUILDER}-{}", entry.file_name().unwrap().to_string_lossy());
    let built = build(&z, &builder, &scratch, &source_version, &include, say);
    let r = built.and_then(|()| publish(&scratch, &entry));
    let kept = cache.join(format!(
        "{}.failed.log",
        entry.file_name().unwrap().to_string_lossy()
    ));
    if r.is_err() {
        let _ = std::fs::rename(scratch.join("build.log"), &kept);
    }
    remove(&scratch)?;
    let _ = z.output(&["-q", "destroy", &builder]);
    r.map_err(|e| format!("{e}\nthe build's log: {}", kept.display()))?;
    finished(&entry)?.ok_or_else(|| format!("{} was not made", entry.display()))
}

/// The entry if it is complete (it exists only once renamed into place).
fn finished(entry: &Path) -> Result<Option<FixtureKernel>, String> {
    let p = entry.join(DESCRIPTION);
    match std::fs::read_to_string(&p) {
        Ok(text) => parse_description(entry, &text).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(&p, e)),
    }
}

/// Makes the build root and runs the build script in it; the packages and
/// `kernelrelease` land in `scratch/out`, the log in `scratch/build.log`.
fn build(
    z: &Zchroot,
    builder: &str,
    scratch: &Path,
    source_version: &str,
    include: &str,
    say: &dyn Fn(&str),
) -> Result<(), String> {
    mkdir(scratch)?;
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
    write(&scratch.join("kernel-fixture.config"), CONFIG)?;
    write(&scratch.join("kernel_fixture.sh"), SCRIPT)?;
    write(&scratch.join("jobs"), &jobs.to_string())?;
    write(
        &scratch.join("pkgversion"),
        &package_version(source_version),
    )?;
    say("making the amd64 build root");
    z.output(&[
        "-q",
        "create",
        "--arch",
        "amd64",
        "--variant",
        "buildd",
        "--name",
        builder,
        "--force",
        "--include",
        include,
    ])?;
    say("make bindeb-pkg (log in the scratch folder's build.log)");
    let log = scratch.join("build.log");
    let out = File::create(&log).map_err(|e| io_err(&log, e))?;
    let err = out.try_clone().map_err(|e| io_err(&log, e))?;
    let bind = format!("{}:/fixture", scratch.display());
    let status = z
        .command(&[
            "-q",
            "run",
            builder,
            "--bind",
            &bind,
            "--",
            "sh",
            "/fixture/kernel_fixture.sh",
        ])
        .stdout(out)
        .stderr(err)
        .status()
        .map_err(|e| format!("cannot run {}: {e}", z.exe.display()))?;
    if !status.success() {
        return Err(format!("the fixture kernel's build failed ({status})"));
    }
    Ok(())
}

/// Moves the packages into a new folder, describes them, and renames that
/// folder to `entry` (so a half-made entry never has the entry's name).
fn publish(scratch: &Path, entry: &Path) -> Result<(), String> {
    let out = scratch.join("out");
    let release_file = out.join("kernelrelease");
    let release = std::fs::read_to_string(&release_file)
        .map_err(|e| io_err(&release_file, e))?
        .trim()
        .to_owned();
    let ready = scratch.join("entry");
    mkdir(&ready)?;
    let mut image = None;
    let mut headers = None;
    for e in std::fs::read_dir(&out).map_err(|e| io_err(&out, e))? {
        let e = e.map_err(|e| io_err(&out, e))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".deb") {
            continue;
        }
        if name.starts_with(&format!("linux-image-{release}_")) {
            image = Some(name.clone());
        } else if name.starts_with(&format!("linux-headers-{release}_")) {
            headers = Some(name.clone());
        }
        std::fs::rename(e.path(), ready.join(&name)).map_err(|e| io_err(&ready, e))?;
    }
    let (Some(image), Some(headers)) = (image, headers) else {
        return Err(format!(
            "make bindeb-pkg made no linux-image-{release} and linux-headers-{release} packages in {}",
            out.display()
        ));
    };
    let version = std::fs::read_to_string(scratch.join("pkgversion"))
        .map_err(|e| io_err(&scratch.join("pkgversion"), e))?;
    let mut d = String::new();
    let _ = writeln!(
        d,
        "image={image}\nheaders={headers}\nrelease={release}\nversion={version}"
    );
    write(&ready.join(DESCRIPTION), &d)?;
    std::fs::rename(&ready, entry).map_err(|e| io_err(entry, e))
}

/// zchroot with the cache's home.
struct Zchroot<'a> {
    exe: &'a Path,
    home: &'a Path,
}

impl Zchroot<'_> {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(self.exe);
        c.args(args).env("ZCHROOT_HOME", self.home);
        c
    }

    /// Runs zchroot; its stdout, or an error with what it printed.
    fn output(&self, args: &[&str]) -> Result<String, String> {
        let o = self
            .command(args)
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.exe.display()))?;
        if !o.status.success() {
            return Err(format!(
                "zchroot {} failed ({}):\n{}{}",
                args.join(" "),
                o.status,
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    }
}

fn io_err(path: &Path, e: std::io::Error) -> String {
    format!("{}: {e}", path.display())
}

fn mkdir(path: &Path) -> Result<(), String> {
    std::fs::create_dir_all(path).map_err(|e| io_err(path, e))
}

fn write(path: &Path, data: &str) -> Result<(), String> {
    std::fs::write(path, data).map_err(|e| io_err(path, e))
}

/// Removes a scratch folder of ours (plain files: the build root's bind
/// mount lives only in its sandbox).
fn remove(path: &Path) -> Result<(), String> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(path, e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_follows_the_versions_and_the_description_reads_back() {
        let resolved = "base-files 13.8 amd64 trixie\n\
                        linux-source-6.12 6.12.57-1 all trixie-security\n\
                        gcc-14-aarch64-linux-gnu 14.2.0-19cross1 amd64 trixie\n";
        let (s, g) = versions_of(resolved).unwrap();
        assert_eq!((s.as_str(), g.as_str()), ("6.12.57-1", "14.2.0-19cross1"));
        let a = entry_name(&s, &g);
        assert!(a.starts_with("bindeb-") && a.len() == 7 + 16, "{a}");
        assert_eq!(a, entry_name(&s, &g));
        assert_ne!(a, entry_name("6.12.58-1", &g));
        assert_ne!(a, entry_name(&s, "14.2.0-20cross1"));
        assert_eq!(
            versions_of("make 4.4 amd64 trixie\n").unwrap_err(),
            "zchroot resolve named no linux-source-6.12"
        );
        let dir = Path::new("/c/bindeb-x");
        let k = parse_description(
            dir,
            "image=i.deb\nheaders=h.deb\nrelease=6.12.57-zfixture\nversion=6.12.57-1+zfixture1\n",
        )
        .unwrap();
        assert_eq!(k.image, dir.join("i.deb"));
        assert_eq!(k.headers, dir.join("h.deb"));
        assert_eq!(k.release, "6.12.57-zfixture");
        assert_eq!(k.version, package_version("6.12.57-1"));
        assert!(parse_description(dir, "image=i.deb\n")
            .unwrap_err()
            .ends_with("fixture.txt has no headers"));
    }
}
