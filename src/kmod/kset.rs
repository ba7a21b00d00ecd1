//! Kernel sets: the user's kernel .debs (`--kernel-deb`, a target's
//! `kernel-deb-dir`) grouped into kernels by what each package ships and
//! depends on, not by its file name: a `make bindeb-pkg` image + headers
//! pair, or a Debian-split set (image, flavour headers, common headers,
//! `linux-kbuild`, the flavour's metapackages). Pure: records in, kernels
//! (and what is missing, extra or ambiguous) out.

use std::path::PathBuf;

use crate::archive::relation::{self, Relation};
use crate::archive::version;

use super::kernel::{LocalKernel, LocalPart, TargetKernel};

/// What grouping needs of one .deb: its control fields and its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebRecord {
    pub deb: PathBuf,
    pub package: String,
    pub version: String,
    pub arch: String,
    /// The Source field (`linux-signed-arm64 (6.12.117+1)`), or empty.
    pub source: String,
    pub depends: String,
    /// The data member's paths, without `./`.
    pub paths: Vec<String>,
}

/// A .deb that is part of no kernel, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unused {
    pub deb: PathBuf,
    pub package: String,
    pub why: String,
    /// Expected beside a kernel (`linux-libc-dev`, debug symbols): not
    /// worth an error even among `--kernel-deb` files.
    pub expected: bool,
}

/// The kernels of a set of .debs, and the .debs of none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grouped {
    /// Oldest first (by the version the board's apt sees for the pin).
    pub kernels: Vec<LocalKernel>,
    pub unused: Vec<Unused>,
}

/// What a package is, from the files it ships.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Role {
    /// A kernel image of this release (`boot/vmlinuz-R`, or modules only).
    Image(String),
    /// Headers holding the kernel's `.config`: the flavour's (or bindeb-pkg's).
    Headers(String),
    /// Headers without a `.config` (`linux-headers-VER-common`).
    Common,
    /// The build helpers (`usr/lib/linux-kbuild-VER/`).
    Kbuild,
    /// None of those: a metapackage, linux-libc-dev, something else.
    Other,
}

fn first_dir<'a>(p: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = p.strip_prefix(prefix)?;
    let d = rest.split('/').next().unwrap_or("");
    (!d.is_empty()).then_some(d)
}

fn role(paths: &[String]) -> Role {
    let find = |prefixes: &[&str]| {
        paths
            .iter()
            .find_map(|p| prefixes.iter().find_map(|pre| first_dir(p, pre)))
    };
    if let Some(r) = find(&["boot/vmlinuz-", "boot/vmlinux-", "boot/Image-"]) {
        return Role::Image(r.to_string());
    }
    // A kernel's own headers hold its configuration: `.config` (Debian's,
    // older `make bindeb-pkg`), or only `include/config/auto.conf` (upstream
    // `make bindeb-pkg` since its headers come from install-extmod-build).
    if let Some(r) = paths.iter().find_map(|p| {
        let rest = p.strip_prefix("usr/src/linux-headers-")?;
        CONFIG_FILES
            .iter()
            .find_map(|c| rest.strip_suffix(c)?.strip_suffix('/'))
            .filter(|r| !r.contains('/'))
    }) {
        return Role::Headers(r.to_string());
    }
    if find(&["usr/src/linux-headers-"]).is_some() {
        return Role::Common;
    }
    if find(&["usr/lib/linux-kbuild-"]).is_some() {
        return Role::Kbuild;
    }
    // An image of modules only (`lib/modules/R/kernel/...`).
    if let Some(r) = paths.iter().find_map(|p| {
        let rest = p
            .strip_prefix("usr/lib/modules/")
            .or_else(|| p.strip_prefix("lib/modules/"))?;
        let (r, inner) = rest.split_once('/')?;
        inner.starts_with("kernel/").then_some(r)
    }) {
        return Role::Image(r.to_string());
    }
    Role::Other
}

/// Where a kernel's headers hold its configuration, in the order read.
pub const CONFIG_FILES: [&str; 2] = [".config", "include/config/auto.conf"];

/// Packages that come with a kernel but are not needed to build modules.
fn expected_extra(package: &str) -> bool {
    package.starts_with("linux-libc-dev")
        || package.ends_with("-dbg")
        || package.ends_with("-dbgsym")
}

fn part(r: &DebRecord) -> LocalPart {
    LocalPart {
        deb: r.deb.clone(),
        package: r.package.clone(),
        version: r.version.clone(),
    }
}

fn same_version(a: &str, b: &str) -> bool {
    version::compare(a, b) == std::cmp::Ordering::Equal
}

fn describe(r: &Relation) -> String {
    match &r.version {
        Some(v) => format!("{} ({} {})", r.name, v.op.as_str(), v.version),
        None => r.name.clone(),
    }
}

/// The relations of a Depends field, each group's alternatives flattened.
fn depends(r: &DebRecord) -> Vec<Vec<Relation>> {
    relation::parse_relations(&r.depends).unwrap_or_default()
}

fn satisfies(rel: &Relation, r: &DebRecord) -> bool {
    rel.name == r.package && rel.version.as_ref().is_none_or(|v| v.matches(&r.version))
}

/// Whether the target's suites have a package satisfying a relation (a
/// set's common headers or linux-kbuild may come from there, as they do
/// for Debian's own kernels).
pub type InSuites<'a> = &'a dyn Fn(&Relation) -> bool;

/// The suites have nothing: every part must be in the set.
pub fn nowhere(_: &Relation) -> bool {
    false
}

/// Groups `records` into kernels. `what` names the files in messages
/// (`the --kernel-deb files`, `/srv/debs`). Errors name what is missing
/// from a set (and not in the suites), or which packages are ambiguous.
pub fn group(records: &[DebRecord], what: &str, in_suites: InSuites) -> Result<Grouped, String> {
    let roles: Vec<Role> = records.iter().map(|r| role(&r.paths)).collect();
    bad_release(records, &roles)?;
    let mut used = vec![false; records.len()];
    let mut kernels = Vec::new();
    for (release, version) in image_keys(records, &roles) {
        let images: Vec<usize> = (0..records.len())
            .filter(|&i| {
                roles[i] == Role::Image(release.clone())
                    && same_version(&records[i].version, &version)
            })
            .collect();
        let k = one_kernel(
            records,
            &roles,
            &images,
            (&release, &version),
            what,
            in_suites,
        )?;
        for i in k.1 {
            used[i] = true;
        }
        kernels.push(k.0);
    }
    orphan_headers(records, &roles, &used, what)?;
    let unused = (0..records.len())
        .filter(|&i| !used[i])
        .map(|i| unused(&records[i], &roles[i]))
        .collect();
    kernels.sort_by(|a: &LocalKernel, b| version::compare(&a.pin().version, &b.pin().version));
    Ok(Grouped { kernels, unused })
}

/// The (release, version) of each kernel image, in order of first sight.
fn image_keys(records: &[DebRecord], roles: &[Role]) -> Vec<(String, String)> {
    let mut keys: Vec<(String, String)> = Vec::new();
    for (r, role) in records.iter().zip(roles) {
        if let Role::Image(rel) = role {
            if !keys
                .iter()
                .any(|(k, v)| k == rel && same_version(v, &r.version))
            {
                keys.push((rel.clone(), r.version.clone()));
            }
        }
    }
    keys
}

/// The image packages of one kernel: one, or a signed image and its
/// `-unsigned` twin. The primary (signed first, as Debian's suites), and
/// the names apt may take instead.
fn image_of(records: &[DebRecord], images: &[usize]) -> Result<(usize, Vec<String>), String> {
    let name = |i: usize| records[i].package.as_str();
    let primary = match images {
        [i] => *i,
        [a, b] if name(*b) == format!("{}-unsigned", name(*a)) => *a,
        [a, b] if name(*a) == format!("{}-unsigned", name(*b)) => *b,
        _ => {
            let list: Vec<String> = images
                .iter()
                .map(|&i| format!("{} ({})", name(i), records[i].deb.display()))
                .collect();
            return Err(format!(
                "{} are all images of kernel {} {}: give one (or a signed image and its -unsigned twin)\nhelp: leave out all images of this kernel but one",
                list.join(", "),
                role_release(&records[images[0]].paths),
                records[images[0]].version
            ));
        }
    };
    let p = name(primary);
    let mut alternatives: Vec<String> = images
        .iter()
        .filter(|&&i| i != primary)
        .map(|&i| name(i).to_string())
        .collect();
    // Debian's signed and unsigned images (`linux-image-KREL` and
    // `linux-image-KREL-unsigned`) ship the same kernel: a module for one
    // loads into the other. Only under Debian's own names: a package the
    // user renamed is depended on as it is.
    let debian = format!("linux-image-{}", role_release(&records[primary].paths));
    if alternatives.is_empty() {
        if p == format!("{debian}-unsigned") {
            alternatives.push(debian);
        } else if p == debian && records[primary].source.starts_with("linux-signed-") {
            alternatives.push(format!("{p}-unsigned"));
        }
    }
    Ok((primary, alternatives))
}

/// A release read from a package's file names becomes a path, a package
/// name and a log file's name: one the archive made up is refused.
fn bad_release(records: &[DebRecord], roles: &[Role]) -> Result<(), String> {
    for (r, role) in records.iter().zip(roles) {
        if let Role::Image(rel) | Role::Headers(rel) = role {
            if !super::kernel::valid_release(rel) {
                return Err(format!(
                    "{} {} ({}) ships kernel release {rel:?}, which is not a valid kernel release\nhelp: leave this package out; a kernel release is letters, digits, '.', '+', '-', '_' and '~'",
                    r.package,
                    r.version,
                    r.deb.display()
                ));
            }
        }
    }
    Ok(())
}

fn role_release(paths: &[String]) -> String {
    match role(paths) {
        Role::Image(r) | Role::Headers(r) => r,
        _ => String::new(),
    }
}

/// One kernel from its images: its headers (same release and version),
/// what they depend on in the set, its metapackages; the records used.
fn one_kernel(
    records: &[DebRecord],
    roles: &[Role],
    images: &[usize],
    (release, version): (&str, &str),
    what: &str,
    in_suites: InSuites,
) -> Result<(LocalKernel, Vec<usize>), String> {
    let (image, alternatives) = image_of(records, images)?;
    let img = &records[image];
    let headers = headers_of(records, roles, img, release, what)?;
    let mut used: Vec<usize> = images.to_vec();
    used.push(headers);
    let (common, kbuild, suite_parts) = headers_parts(records, roles, headers, what, in_suites)?;
    used.extend(&common);
    used.extend(kbuild);
    let meta = meta_of(records, roles, images, "image", what)?;
    let headers_meta = meta_of(records, roles, &[headers], "headers", what)?;
    used.extend(meta.into_iter().chain(headers_meta));
    let kernel = LocalKernel {
        kernel: TargetKernel {
            release: release.to_string(),
            image_package: img.package.clone(),
            image_version: version.to_string(),
            alternatives,
            headers_package: records[headers].package.clone(),
        },
        image_deb: img.deb.clone(),
        headers_deb: records[headers].deb.clone(),
        common_debs: common.iter().map(|&i| records[i].deb.clone()).collect(),
        kbuild: kbuild.map(|i| part(&records[i])),
        meta: meta.map(|i| part(&records[i])),
        headers_meta: headers_meta.map(|i| part(&records[i])),
        suite_parts,
    };
    Ok((kernel, used))
}

/// The headers (with the `.config`) of the image `img`: same release,
/// same version, exactly one.
fn headers_of(
    records: &[DebRecord],
    roles: &[Role],
    img: &DebRecord,
    release: &str,
    what: &str,
) -> Result<usize, String> {
    let of_release: Vec<usize> = (0..records.len())
        .filter(|&i| roles[i] == Role::Headers(release.to_string()))
        .collect();
    let matching: Vec<usize> = of_release
        .iter()
        .copied()
        .filter(|&i| same_version(&records[i].version, &img.version))
        .collect();
    match matching[..] {
        [h] => Ok(h),
        [] => {
            let mut e = format!(
                "no headers package of kernel {release} {} (the image {} is {}) among {what}: DKMS needs the headers (usr/src/linux-headers-{release}/ with its .config or include/config/auto.conf)",
                img.version,
                img.package,
                img.deb.display()
            );
            if let Some(&h) = of_release.first() {
                e.push_str(&format!(
                    "; the headers {} ({}) are version {}, the image {}: they do not match",
                    records[h].package,
                    records[h].deb.display(),
                    records[h].version,
                    img.version
                ));
            } else if let Some(h) =
                (0..records.len()).find(|&i| matches!(roles[i], Role::Headers(_)))
            {
                e.push_str(&format!(
                    "; the headers {} are for kernel {}, but the image {} is kernel {release}: they do not match",
                    records[h].deb.display(),
                    role_release(&records[h].paths),
                    img.deb.display()
                ));
            } else if let Some(h) = (0..records.len()).find(|&i| roles[i] == Role::Common) {
                e.push_str(&format!(
                    "; {} ({}) holds headers without a .config (common headers, or not a kernel's): not the headers of kernel {release}",
                    records[h].package,
                    records[h].deb.display()
                ));
            }
            e.push_str(&format!(
                "\nhelp: add the kernel's headers package (linux-headers-{release}, version {})",
                img.version
            ));
            Err(e)
        }
        _ => Err(format!(
            "{} all hold the headers of kernel {release} {}: give one\nhelp: leave out all headers packages of this kernel but one",
            matching
                .iter()
                .map(|&i| format!("{} ({})", records[i].package, records[i].deb.display()))
                .collect::<Vec<_>>()
                .join(", "),
            img.version
        )),
    }
}

/// Indexes of the common headers and linux-kbuild, and the suites' parts.
type Parts = (Vec<usize>, Option<usize>, Vec<String>);

/// The common headers (in dependency order: each after what it depends
/// on) and the `linux-kbuild` package that the headers `h` depend on and
/// the set holds, and (as `name=version`) those the suites give instead.
/// Common headers missing from both are an error; a missing linux-kbuild
/// is not (a cross build uses the host's helpers).
fn headers_parts(
    records: &[DebRecord],
    roles: &[Role],
    h: usize,
    what: &str,
    in_suites: InSuites,
) -> Result<Parts, String> {
    let mut common: Vec<usize> = Vec::new();
    let mut kbuild = None;
    let mut suite_parts = Vec::new();
    // Depth first: a part's own dependencies come before it.
    let mut stack: Vec<(usize, bool)> = vec![(h, false)];
    while let Some((i, expanded)) = stack.pop() {
        if expanded {
            if i != h && !common.contains(&i) {
                common.push(i);
            }
            continue;
        }
        stack.push((i, true));
        for alts in depends(&records[i]) {
            let Some(first) = alts.first() else { continue };
            let is_kbuild = first.name.starts_with("linux-kbuild-");
            if !is_kbuild && !first.name.starts_with("linux-headers-") {
                continue;
            }
            let found =
                (0..records.len()).find(|&j| alts.iter().any(|rel| satisfies(rel, &records[j])));
            match (found, is_kbuild) {
                (Some(j), true) if roles[j] == Role::Kbuild => kbuild = Some(j),
                (Some(j), false) if roles[j] == Role::Common => {
                    if !common.contains(&j) && !stack.iter().any(|(s, _)| *s == j) {
                        stack.push((j, false));
                    }
                }
                (Some(j), _) => {
                    return Err(format!(
                        "{} depends on {}, but {} ({}) ships no {}\nhelp: give the kernel's own {} package, or leave {} out",
                        records[i].package,
                        describe(first),
                        records[j].package,
                        records[j].deb.display(),
                        if is_kbuild {
                            "usr/lib/linux-kbuild-*/"
                        } else {
                            "usr/src/linux-headers-*/"
                        },
                        first.name,
                        records[j].package
                    ))
                }
                (None, _) if alts.iter().any(in_suites) => {
                    let spec = match &first.version {
                        Some(v) if v.op == relation::Op::Eq => {
                            format!("{}={}", first.name, v.version)
                        }
                        _ => first.name.clone(),
                    };
                    if !suite_parts.contains(&spec) {
                        suite_parts.push(spec);
                    }
                }
                (None, true) => {}
                (None, false) => return Err(missing(records, i, &alts, what)),
            }
        }
    }
    Ok((common, kbuild, suite_parts))
}

/// "X depends on Y (= V), which is not among the --kernel-deb files (nor in the suites)",
/// with the version there is, if any.
fn missing(records: &[DebRecord], i: usize, alts: &[Relation], what: &str) -> String {
    let wanted: Vec<String> = alts.iter().map(describe).collect();
    let mut e = format!(
        "{} {} depends on {}, which is not among {what} (nor in the suites)",
        records[i].package,
        records[i].version,
        wanted.join(" | ")
    );
    let there: Vec<String> = records
        .iter()
        .filter(|r| alts.iter().any(|a| a.name == r.package))
        .map(|r| format!("{} {} ({})", r.package, r.version, r.deb.display()))
        .collect();
    if !there.is_empty() {
        e.push_str(&format!(" (there is {})", there.join(", ")));
    }
    e.push_str(&format!(
        "\nhelp: add {} of version {} to them",
        alts[0].name,
        alts[0]
            .version
            .as_ref()
            .map(|v| v.version.as_str())
            .unwrap_or(&records[i].version)
    ));
    e
}

/// The metapackage depending on one of `targets` (an image's or the
/// headers'), when the set has one: a package that ships no kernel, named
/// `linux-image-*` (or `linux-headers-*`): another package depending on
/// the image (a module .deb of this kernel) is none.
fn meta_of(
    records: &[DebRecord],
    roles: &[Role],
    targets: &[usize],
    kind: &str,
    what: &str,
) -> Result<Option<usize>, String> {
    let prefix = format!("linux-{kind}-");
    let metas: Vec<usize> = (0..records.len())
        .filter(|&i| roles[i] == Role::Other && !expected_extra(&records[i].package))
        .filter(|&i| records[i].package.starts_with(&prefix))
        .filter(|&i| {
            depends(&records[i])
                .iter()
                .flatten()
                .any(|rel| targets.iter().any(|&t| satisfies(rel, &records[t])))
        })
        .collect();
    match metas[..] {
        [] => Ok(None),
        [m] => Ok(Some(m)),
        _ => Err(format!(
            "{} all depend on the {kind} package {} {} among {what}: which is the flavour's metapackage is ambiguous; give one\nhelp: leave out all {kind} metapackages of this kernel but one",
            metas
                .iter()
                .map(|&i| format!("{} {}", records[i].package, records[i].version))
                .collect::<Vec<_>>()
                .join(", "),
            records[targets[0]].package,
            records[targets[0]].version
        )),
    }
}

/// Headers with a `.config` that no image of the set claimed.
fn orphan_headers(
    records: &[DebRecord],
    roles: &[Role],
    used: &[bool],
    what: &str,
) -> Result<(), String> {
    match (0..records.len()).find(|&i| !used[i] && matches!(roles[i], Role::Headers(_))) {
        None => Ok(()),
        Some(h) => Err(format!(
            "the headers {} {} ({}) are for kernel {}, but no image package of that kernel and version is among {what}\nhelp: add the kernel's image package (linux-image-*), or remove the headers",
            records[h].package,
            records[h].version,
            records[h].deb.display(),
            role_release(&records[h].paths)
        )),
    }
}

fn unused(r: &DebRecord, role: &Role) -> Unused {
    let why = match role {
        Role::Common => "common headers no headers package of the set depends on",
        Role::Kbuild => "build helpers no headers package of the set depends on",
        _ if expected_extra(&r.package) => "not needed to build modules",
        _ => "ships no kernel, headers or build helpers, and depends on no kernel of the set",
    };
    Unused {
        deb: r.deb.clone(),
        package: r.package.clone(),
        why: why.to_string(),
        expected: expected_extra(&r.package),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(package: &str, version: &str, depends: &str, paths: &[&str]) -> DebRecord {
        DebRecord {
            deb: PathBuf::from(format!("{package}_{version}.deb")),
            package: package.into(),
            version: version.into(),
            arch: "arm64".into(),
            source: String::new(),
            depends: depends.into(),
            paths: paths.iter().map(|p| p.to_string()).collect(),
        }
    }

    const RPI: &str = "1:6.12.47-1+rpt1";

    /// Raspberry Pi OS's kernel, as it ships: image, flavour headers,
    /// common headers, linux-kbuild, the flavour's metapackages.
    fn rpi() -> Vec<DebRecord> {
        vec![
            rec(
                "linux-image-6.12.47+rpt-rpi-v8",
                RPI,
                "kmod, linux-base (>= 4.3~), initramfs-tools (>= 0.120+deb8u2)",
                &["boot/vmlinuz-6.12.47+rpt-rpi-v8", "usr/lib/modules/6.12.47+rpt-rpi-v8/kernel/fs/ext4/ext4.ko.xz"],
            ),
            rec(
                "linux-headers-6.12.47+rpt-rpi-v8",
                RPI,
                "linux-headers-6.12.47+rpt-common-rpi (= 1:6.12.47-1+rpt1), linux-kbuild-6.12.47+rpt (= 1:6.12.47-1+rpt1), gcc-12",
                &["usr/src/linux-headers-6.12.47+rpt-rpi-v8/.config", "usr/src/linux-headers-6.12.47+rpt-rpi-v8/Makefile", "usr/lib/modules/6.12.47+rpt-rpi-v8/build"],
            ),
            rec(
                "linux-headers-6.12.47+rpt-common-rpi",
                RPI,
                "",
                &["usr/src/linux-headers-6.12.47+rpt-common-rpi/Makefile"],
            ),
            rec(
                "linux-kbuild-6.12.47+rpt",
                RPI,
                "libc6 (>= 2.34)",
                &["usr/lib/linux-kbuild-6.12.47+rpt/scripts/basic/fixdep"],
            ),
            rec(
                "linux-image-rpi-v8",
                RPI,
                "linux-image-6.12.47+rpt-rpi-v8 (= 1:6.12.47-1+rpt1)",
                &["usr/share/doc/linux-image-rpi-v8/copyright"],
            ),
            rec(
                "linux-headers-rpi-v8",
                RPI,
                "linux-headers-6.12.47+rpt-rpi-v8 (= 1:6.12.47-1+rpt1)",
                &["usr/share/doc/linux-headers-rpi-v8/copyright"],
            ),
        ]
    }

    #[test]
    fn a_debian_split_set_is_one_kernel() {
        let mut set = rpi();
        set.reverse(); // the order of the files says nothing
        let g = group(&set, "the --kernel-deb files", &nowhere).unwrap();
        assert!(g.unused.is_empty(), "{:?}", g.unused);
        let [k] = &g.kernels[..] else {
            panic!("{:?}", g.kernels)
        };
        assert_eq!(k.kernel.release, "6.12.47+rpt-rpi-v8");
        assert_eq!(k.kernel.image_package, "linux-image-6.12.47+rpt-rpi-v8");
        assert_eq!(k.kernel.image_version, RPI);
        assert_eq!(k.kernel.headers_package, "linux-headers-6.12.47+rpt-rpi-v8");
        assert_eq!(
            k.headers_deb,
            PathBuf::from(format!("linux-headers-6.12.47+rpt-rpi-v8_{RPI}.deb"))
        );
        assert_eq!(
            k.common_debs,
            vec![PathBuf::from(format!(
                "linux-headers-6.12.47+rpt-common-rpi_{RPI}.deb"
            ))]
        );
        assert_eq!(
            k.kbuild.as_ref().unwrap().package,
            "linux-kbuild-6.12.47+rpt"
        );
        assert_eq!(k.meta.as_ref().unwrap().package, "linux-image-rpi-v8");
        assert_eq!(
            k.headers_meta.as_ref().unwrap().package,
            "linux-headers-rpi-v8"
        );
        assert_eq!(k.pin().package, "linux-image-rpi-v8");
        assert_eq!(
            k.kernel.depends(),
            format!("linux-image-6.12.47+rpt-rpi-v8 (= {RPI})")
        );
        // The exact shape of the command line that failed: image, flavour
        // headers, common headers (no kbuild: it may come from elsewhere).
        let g = group(&rpi()[..3], "the --kernel-deb files", &nowhere).unwrap();
        assert_eq!(g.kernels[0].common_debs.len(), 1);
        assert_eq!(g.kernels[0].kbuild, None);
        assert_eq!(g.kernels[0].pin().package, "linux-image-6.12.47+rpt-rpi-v8");
        assert_eq!(g.kernels[0].pin().version, RPI);
    }

    #[test]
    fn what_is_missing_from_a_set_is_named() {
        let mut set = rpi();
        set.remove(2);
        let e = group(&set, "the --kernel-deb files", &nowhere).unwrap_err();
        assert!(e.starts_with(
            "linux-headers-6.12.47+rpt-rpi-v8 1:6.12.47-1+rpt1 depends on linux-headers-6.12.47+rpt-common-rpi (= 1:6.12.47-1+rpt1), which is not among the --kernel-deb files (nor in the suites)"
        ), "{e}");
        assert!(
            e.contains(
                "help: add linux-headers-6.12.47+rpt-common-rpi of version 1:6.12.47-1+rpt1"
            ),
            "{e}"
        );
        // Another version of the common headers is not them.
        let mut set = rpi();
        set[2].version = "1:6.12.46-1+rpt1".into();
        let e = group(&set, "/srv/debs", &nowhere).unwrap_err();
        assert!(e.contains("which is not among /srv/debs (nor in the suites) (there is linux-headers-6.12.47+rpt-common-rpi 1:6.12.46-1+rpt1"), "{e}");
        // No headers at all.
        let e = group(&rpi()[..1], "the --kernel-deb files", &nowhere).unwrap_err();
        assert!(
            e.starts_with("no headers package of kernel 6.12.47+rpt-rpi-v8"),
            "{e}"
        );
        // Headers without their image.
        let e = group(&rpi()[1..3], "the --kernel-deb files", &nowhere).unwrap_err();
        assert!(
            e.contains("no image package of that kernel and version"),
            "{e}"
        );
    }

    #[test]
    fn parts_the_set_lacks_may_come_from_the_suites() {
        // Debian's own image and flavour headers only: apt takes the
        // common headers and linux-kbuild from the suites.
        let v = "6.12.117-1";
        let set = [
            rec("linux-image-6.12.117+deb13-arm64", v, "", &["boot/vmlinuz-6.12.117+deb13-arm64"]),
            rec(
                "linux-headers-6.12.117+deb13-arm64",
                v,
                "linux-headers-6.12.117+deb13-common (= 6.12.117-1), linux-kbuild-6.12.117+deb13 (= 6.12.117-1), gcc-14",
                &["usr/src/linux-headers-6.12.117+deb13-arm64/.config"],
            ),
        ];
        let suites =
            |r: &Relation| r.name.starts_with("linux-") && r.name.contains("6.12.117+deb13");
        let g = group(&set, "x", &suites).unwrap();
        assert_eq!(
            g.kernels[0].suite_parts,
            [
                "linux-headers-6.12.117+deb13-common=6.12.117-1",
                "linux-kbuild-6.12.117+deb13=6.12.117-1"
            ]
        );
        assert!(g.kernels[0].common_debs.is_empty());
        let e = group(&set, "x", &nowhere).unwrap_err();
        assert!(
            e.contains("which is not among x (nor in the suites)"),
            "{e}"
        );
        // Only common headers beside the image: said so.
        let e = group(
            &[
                set[0].clone(),
                rec(
                    "linux-headers-6.12.117+deb13-common",
                    v,
                    "",
                    &["usr/src/linux-headers-6.12.117+deb13-common/Makefile"],
                ),
            ],
            "x",
            &nowhere,
        )
        .unwrap_err();
        assert!(
            e.contains("holds headers without a .config (common headers"),
            "{e}"
        );
    }

    #[test]
    fn extra_and_ambiguous_packages_are_named() {
        let mut set = rpi();
        set.push(rec(
            "linux-libc-dev",
            "6.12.47-1",
            "",
            &["usr/include/linux/a.h"],
        ));
        set.push(rec("hello", "1", "", &["usr/bin/hello"]));
        let g = group(&set, "x", &nowhere).unwrap();
        assert_eq!(g.unused.len(), 2);
        assert!(
            g.unused[0].expected && !g.unused[1].expected,
            "{:?}",
            g.unused
        );
        // Two images of one kernel that are not a signed/unsigned pair.
        let mut set = rpi();
        let mut twin = set[0].clone();
        twin.package = "linux-image-other".into();
        set.push(twin);
        let e = group(&set, "x", &nowhere).unwrap_err();
        assert!(
            e.contains("are all images of kernel 6.12.47+rpt-rpi-v8 1:6.12.47-1+rpt1: give one"),
            "{e}"
        );
        // Two metapackages of one image.
        let mut set = rpi();
        let mut m = set[4].clone();
        m.package = "linux-image-rpi-v8-again".into();
        set.push(m);
        let e = group(&set, "x", &nowhere).unwrap_err();
        assert!(
            e.contains("which is the flavour's metapackage is ambiguous"),
            "{e}"
        );
    }

    /// A module .deb of the kernel (depending on its image) dropped in
    /// with the set is no metapackage of the flavour.
    #[test]
    fn only_linux_image_and_headers_names_are_metapackages() {
        let mut set = rpi();
        set.push(rec(
            "zfs-modules-6.12.47+rpt-rpi-v8",
            "2.3.2-1",
            "linux-image-6.12.47+rpt-rpi-v8 (= 1:6.12.47-1+rpt1), linux-headers-6.12.47+rpt-rpi-v8 (= 1:6.12.47-1+rpt1)",
            &["usr/lib/modules/6.12.47+rpt-rpi-v8/updates/dkms/zfs.ko.xz"],
        ));
        let g = group(&set, "x", &nowhere).unwrap();
        let [k] = &g.kernels[..] else {
            panic!("{:?}", g.kernels)
        };
        assert_eq!(k.meta.as_ref().unwrap().package, "linux-image-rpi-v8");
        assert_eq!(
            k.headers_meta.as_ref().unwrap().package,
            "linux-headers-rpi-v8"
        );
        assert_eq!(g.unused.len(), 1, "{:?}", g.unused);
    }

    /// A release from a file name is a path and a package name: checked.
    #[test]
    fn a_bad_release_in_a_file_name_is_refused() {
        for bad in ["..", "6.12 x", "-rf", "6.12'"] {
            let mut set = rpi();
            set[0].paths = vec![format!("boot/vmlinuz-{bad}")];
            let e = group(&set, "x", &nowhere).unwrap_err();
            assert!(
                e.starts_with("linux-image-6.12.47+rpt-rpi-v8 1:6.12.47-1+rpt1 (linux-image-6.12.47+rpt-rpi-v8_1:6.12.47-1+rpt1.deb) ships kernel release"),
                "{e}"
            );
            assert!(e.contains("\nhelp: "), "{e}");
        }
        let mut set = rpi();
        set[1].paths = vec!["usr/src/linux-headers-../.config".into()];
        let e = group(&set, "x", &nowhere).unwrap_err();
        assert!(e.starts_with("linux-headers-6.12.47+rpt-rpi-v8 "), "{e}");
    }

    #[test]
    fn signed_and_unsigned_images_are_alternatives() {
        let v = "6.12.117-1";
        let debian = |image: &str, source: &str| {
            let mut i = rec(image, v, "", &["boot/vmlinuz-6.12.117+deb13-arm64"]);
            i.source = source.into();
            vec![
                i,
                rec(
                    "linux-headers-6.12.117+deb13-arm64",
                    v,
                    "linux-headers-6.12.117+deb13-common (= 6.12.117-1), linux-kbuild-6.12.117+deb13 (= 6.12.117-1)",
                    &["usr/src/linux-headers-6.12.117+deb13-arm64/.config"],
                ),
                rec(
                    "linux-headers-6.12.117+deb13-common",
                    v,
                    "",
                    &["usr/src/linux-headers-6.12.117+deb13-common/Makefile"],
                ),
            ]
        };
        let signed = group(
            &debian(
                "linux-image-6.12.117+deb13-arm64",
                "linux-signed-arm64 (6.12.117+1)",
            ),
            "x",
            &nowhere,
        )
        .unwrap();
        assert_eq!(
            signed.kernels[0].kernel.depends(),
            "linux-image-6.12.117+deb13-arm64 (= 6.12.117-1) | linux-image-6.12.117+deb13-arm64-unsigned (= 6.12.117-1)"
        );
        let unsigned = group(
            &debian("linux-image-6.12.117+deb13-arm64-unsigned", "linux"),
            "x",
            &nowhere,
        )
        .unwrap();
        assert_eq!(
            unsigned.kernels[0].kernel.depends(),
            "linux-image-6.12.117+deb13-arm64-unsigned (= 6.12.117-1) | linux-image-6.12.117+deb13-arm64 (= 6.12.117-1)"
        );
        // Renamed by the user: depended on as it is.
        let renamed = group(
            &debian("linux-image", "linux-signed-arm64 (6.12.117+1)"),
            "x",
            &nowhere,
        )
        .unwrap();
        assert_eq!(
            renamed.kernels[0].kernel.depends(),
            "linux-image (= 6.12.117-1)"
        );
        let mut both = debian("linux-image-6.12.117+deb13-arm64-unsigned", "linux");
        both.push(debian("linux-image-6.12.117+deb13-arm64", "linux-signed-arm64").remove(0));
        let both = group(&both, "x", &nowhere).unwrap();
        assert_eq!(both.kernels.len(), 1);
        assert_eq!(
            both.kernels[0].kernel.image_package,
            "linux-image-6.12.117+deb13-arm64"
        );
    }

    #[test]
    fn upstream_bindeb_pkg_headers_without_a_dot_config_are_the_kernels_headers() {
        // What `make bindeb-pkg` of 6.12 ships: include/config/auto.conf,
        // no .config (the fixture kernel's headers are so).
        let krel = "6.12.118-zfixture";
        let v = "6.12.118-1+zfixture1";
        let set = vec![
            rec(
                &format!("linux-image-{krel}"),
                v,
                "",
                &[&format!("boot/vmlinuz-{krel}")],
            ),
            rec(
                &format!("linux-headers-{krel}"),
                v,
                "",
                &[
                    &format!("usr/src/linux-headers-{krel}/include/config/auto.conf"),
                    &format!("usr/src/linux-headers-{krel}/scripts/basic/fixdep.c"),
                    &format!("lib/modules/{krel}/build"),
                ],
            ),
        ];
        let g = group(&set, "--kernel-deb files", &nowhere).unwrap();
        assert_eq!(g.kernels.len(), 1);
        let k = &g.kernels[0];
        assert_eq!(k.kernel.release, krel);
        assert_eq!(k.kernel.headers_package, format!("linux-headers-{krel}"));
        assert!(k.common_debs.is_empty());
    }

    #[test]
    fn bindeb_pkg_sets_and_several_kernels_in_a_directory() {
        let bindeb = |v: &str, krel: &str| {
            vec![
                rec(
                    "linux-image",
                    v,
                    "",
                    &[
                        &format!("boot/vmlinuz-{krel}"),
                        &format!("lib/modules/{krel}/kernel/a.ko"),
                    ],
                ),
                rec(
                    "linux-headers",
                    v,
                    "",
                    &[
                        &format!("usr/src/linux-headers-{krel}/.config"),
                        &format!("usr/src/linux-headers-{krel}/scripts/basic/fixdep"),
                        &format!("lib/modules/{krel}/build"),
                    ],
                ),
                rec("linux-libc-dev", v, "", &["usr/include/linux/a.h"]),
            ]
        };
        let mut dir = bindeb("6.12.48-2", "6.12.48");
        dir.extend(bindeb("6.12.47-1", "6.12.47"));
        dir.extend(rpi());
        let g = group(&dir, "/srv/debs", &nowhere).unwrap();
        let got: Vec<(&str, &str)> = g
            .kernels
            .iter()
            .map(|k| {
                let v = if k.pin().version == RPI {
                    "rpi"
                } else {
                    "bindeb"
                };
                (k.kernel.release.as_str(), v)
            })
            .collect();
        assert_eq!(
            got,
            [
                ("6.12.47", "bindeb"),
                ("6.12.48", "bindeb"),
                ("6.12.47+rpt-rpi-v8", "rpi")
            ]
        );
        assert_eq!(g.kernels[1].kernel.depends(), "linux-image (= 6.12.48-2)");
        assert_eq!(g.kernels[1].pin().package, "linux-image");
        assert!(g.kernels[1].common_debs.is_empty() && g.kernels[1].kbuild.is_none());
        assert_eq!(g.unused.len(), 2);
        assert!(g.unused.iter().all(|u| u.expected));
        // Headers of another version of the same release do not match.
        let mut bad = bindeb("6.12.48-2", "6.12.48");
        bad[1].version = "6.12.48-3".into();
        let e = group(&bad, "x", &nowhere).unwrap_err();
        assert!(
            e.contains("are version 6.12.48-3, the image 6.12.48-2: they do not match"),
            "{e}"
        );
    }
}
