//! Dependency resolution for building a root: from a request (Essential
//! packages, priorities, names) to the closed set of packages to install,
//! taking each package's candidate (the highest version across all suites,
//! as apt does with equal pins), following Pre-Depends and Depends through
//! alternatives and (versioned) Provides, and checking Conflicts and Breaks
//! inside the chosen set. Pure: it takes records, returns a plan.

use std::collections::{BTreeMap, HashMap, VecDeque};

use super::index::{MultiArch, Package};
use super::relation::{self, ArchQual, Relation};
use super::version;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResolveError {
    #[error("unknown package '{name}': it is in none of {suites} for {arch}")]
    UnknownPackage {
        name: String,
        suites: String,
        arch: String,
    },
    /// `within` is "SUITES for ARCH".
    #[error("{name} has no version {version} in {within}: available are {available}")]
    UnknownVersion {
        name: String,
        version: String,
        within: String,
        available: String,
    },
    #[error("'{name}' is a virtual package provided by {providers}: name one of them")]
    VirtualRequest { name: String, providers: String },
    #[error("cannot satisfy '{relation}', needed by {chain}: {why}")]
    Unsatisfiable {
        relation: String,
        chain: String,
        why: String,
    },
    /// Boxed: eight fields would make every resolver result that large.
    #[error(transparent)]
    Conflict(Box<Conflict>),
    #[error("{package} {version}: bad {field} field: {message}")]
    BadField {
        package: String,
        version: String,
        field: &'static str,
        message: String,
    },
}

/// Two packages the resolution needs, one of which conflicts with or breaks
/// the other.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{a} {a_version} {kind} '{relation}', which {b} {b_version} matches; both are needed ({a}: {a_chain}; {b}: {b_chain})")]
pub struct Conflict {
    pub a: String,
    pub a_version: String,
    pub kind: &'static str,
    pub relation: String,
    pub b: String,
    pub b_version: String,
    pub a_chain: String,
    pub b_chain: String,
}

/// What to install.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Every `Essential: yes` package.
    pub essential: bool,
    /// Every package with one of these priorities.
    pub priorities: Vec<String>,
    /// These packages by name.
    pub packages: Vec<String>,
    /// Exact versions for some names (`--include NAME=VERSION`): that
    /// version is the name's candidate, for the request and its dependants.
    pub versions: BTreeMap<String, String>,
    /// Suites whose packages are candidates only where no other suite has
    /// the name (opt-in suites such as backports, as apt's NotAutomatic).
    pub fallback_suites: Vec<String>,
}

/// Why a package is in the set.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    Essential,
    Priority(String),
    Requested,
    /// Needed by this package (index into the plan) through this relation.
    Dependency {
        by: String,
        relation: String,
    },
}

/// The resolved set, sorted by name.
#[derive(Debug, Clone)]
pub struct Resolution<'a> {
    pub packages: Vec<(&'a Package, Reason)>,
}

/// All candidates by name, and providers of virtual names.
struct Universe<'a> {
    arch: &'a str,
    candidates: HashMap<&'a str, &'a Package>,
    /// name → (provider, provided version)
    providers: HashMap<String, Vec<(&'a Package, Option<String>)>>,
    suites: String,
}

const PRIORITY_ORDER: [&str; 5] = ["required", "important", "standard", "optional", "extra"];

fn priority_rank(p: &str) -> usize {
    PRIORITY_ORDER
        .iter()
        .position(|x| *x == p)
        .unwrap_or(PRIORITY_ORDER.len())
}

impl<'a> Universe<'a> {
    fn new(
        packages: &'a [Package],
        arch: &'a str,
        request: &Request,
    ) -> Result<Self, ResolveError> {
        let mut candidates: HashMap<&str, &Package> = HashMap::new();
        let mut suites: Vec<&str> = Vec::new();
        for p in packages {
            if !suites.contains(&p.origin.suite.as_str()) {
                suites.push(&p.origin.suite);
            }
        }
        let usable = |p: &&Package| p.arch == arch || p.arch == "all";
        let fallback = |p: &&Package| request.fallback_suites.contains(&p.origin.suite);
        // The highest version of the ordinary suites, then the opt-in ones
        // for names the ordinary suites lack.
        for first in [true, false] {
            let mut found: HashMap<&str, &Package> = HashMap::new();
            for p in packages.iter().filter(usable) {
                if fallback(&p) == first || (!first && candidates.contains_key(p.name.as_str())) {
                    continue;
                }
                match found.get(p.name.as_str()) {
                    Some(c) if version::compare(&c.version, &p.version).is_ge() => {}
                    _ => {
                        found.insert(&p.name, p);
                    }
                }
            }
            candidates.extend(found);
        }
        let suites = suites.join(", ");
        for (name, wanted) in &request.versions {
            let versions: Vec<&Package> = packages
                .iter()
                .filter(usable)
                .filter(|p| &p.name == name)
                .collect();
            if versions.is_empty() {
                continue; // the request reports the unknown name
            }
            match versions.iter().find(|p| &p.version == wanted) {
                Some(p) => {
                    candidates.insert(&p.name, p);
                }
                None => {
                    return Err(ResolveError::UnknownVersion {
                        name: name.clone(),
                        version: wanted.clone(),
                        within: format!("{suites} for {arch}"),
                        available: versions
                            .iter()
                            .map(|p| format!("{} ({})", p.version, p.origin.suite))
                            .collect::<Vec<_>>()
                            .join(", "),
                    })
                }
            }
        }
        let mut providers: HashMap<String, Vec<(&Package, Option<String>)>> = HashMap::new();
        let mut names: Vec<&&str> = candidates.keys().collect();
        names.sort();
        for name in names {
            let p = candidates[*name];
            if p.provides.is_empty() {
                continue;
            }
            let provides =
                relation::parse_provides(&p.provides).map_err(|e| bad(p, "Provides", e))?;
            for r in provides {
                providers
                    .entry(r.name)
                    .or_default()
                    .push((p, r.version.map(|v| v.version)));
            }
        }
        Ok(Universe {
            arch,
            candidates,
            providers,
            suites,
        })
    }
}

fn bad(p: &Package, field: &'static str, e: impl std::fmt::Display) -> ResolveError {
    ResolveError::BadField {
        package: p.name.clone(),
        version: p.version.clone(),
        field,
        message: e.to_string(),
    }
}

/// Whether `p` (a real package named `r.name`) satisfies `r` in a
/// single-architecture root of `arch`.
fn arch_ok(r: &Relation, p: &Package, arch: &str) -> bool {
    match &r.arch {
        None => true,
        // `:any` needs a package that allows it (Multi-Arch: allowed).
        Some(ArchQual::Any) => p.multi_arch == MultiArch::Allowed,
        Some(ArchQual::Native) => p.arch == arch || p.arch == "all",
        Some(ArchQual::Named(a)) => a == &p.arch || (p.arch == "all" && a == arch),
    }
}

fn version_ok(r: &Relation, v: &str) -> bool {
    r.version.as_ref().is_none_or(|req| req.matches(v))
}

/// Does package `p` satisfy relation `r`, directly or through Provides?
fn satisfies(
    r: &Relation,
    p: &Package,
    provided: &[(&Package, Option<String>)],
    arch: &str,
) -> bool {
    if p.name == r.name {
        return arch_ok(r, p, arch) && version_ok(r, &p.version);
    }
    // Through Provides: a versioned relation needs a versioned Provides.
    let arch_fits = match &r.arch {
        None | Some(ArchQual::Native) => true,
        Some(ArchQual::Any) => matches!(p.multi_arch, MultiArch::Allowed | MultiArch::Foreign),
        Some(ArchQual::Named(a)) => a == &p.arch || (p.arch == "all" && a == arch),
    };
    arch_fits
        && provided.iter().any(|(q, pv)| {
            std::ptr::eq(*q, p)
                && match (&r.version, pv) {
                    (None, _) => true,
                    (Some(req), Some(v)) => req.matches(v),
                    (Some(_), None) => false,
                }
        })
}

struct State<'a> {
    chosen: BTreeMap<&'a str, (&'a Package, Reason)>,
}

impl<'a> State<'a> {
    /// `name ← parent ← … ← why` for error messages.
    fn chain(&self, name: &str) -> String {
        let mut parts = vec![name.to_string()];
        let mut cur = name.to_string();
        for _ in 0..64 {
            match self.chosen.get(cur.as_str()).map(|(_, r)| r) {
                Some(Reason::Dependency { by, .. }) => {
                    parts.push(by.clone());
                    cur = by.clone();
                }
                Some(Reason::Essential) => {
                    parts.push("(Essential: yes)".into());
                    break;
                }
                Some(Reason::Priority(p)) => {
                    parts.push(format!("(Priority: {p})"));
                    break;
                }
                Some(Reason::Requested) => {
                    parts.push("(requested)".into());
                    break;
                }
                None => break,
            }
        }
        parts.join(" ← ")
    }
}

/// Resolves `request` against `packages` (records of every suite, for
/// `arch` and `all`) into the set to install.
pub fn resolve<'a>(
    packages: &'a [Package],
    arch: &'a str,
    request: &Request,
) -> Result<Resolution<'a>, ResolveError> {
    let u = Universe::new(packages, arch, request)?;
    let mut st = State {
        chosen: BTreeMap::new(),
    };
    let mut queue: VecDeque<&'a Package> = VecDeque::new();

    // Mark everything asked for first, so that dependencies prefer it.
    let mut names: Vec<&&str> = u.candidates.keys().collect();
    names.sort();
    for name in names {
        let p = u.candidates[*name];
        let reason = if request.essential && p.essential {
            Reason::Essential
        } else if request.priorities.contains(&p.priority) {
            Reason::Priority(p.priority.clone())
        } else {
            continue;
        };
        st.chosen.insert(&p.name, (p, reason));
        queue.push_back(p);
    }
    for name in &request.packages {
        if st.chosen.contains_key(name.as_str()) {
            continue;
        }
        match u.candidates.get(name.as_str()) {
            Some(p) => {
                st.chosen.insert(&p.name, (p, Reason::Requested));
                queue.push_back(p);
            }
            None => {
                if let Some(provs) = u.providers.get(name) {
                    let mut names: Vec<_> = provs.iter().map(|(p, _)| p.name.as_str()).collect();
                    names.sort();
                    names.dedup();
                    return Err(ResolveError::VirtualRequest {
                        name: name.clone(),
                        providers: names.join(", "),
                    });
                }
                return Err(ResolveError::UnknownPackage {
                    name: name.clone(),
                    suites: u.suites.clone(),
                    arch: arch.into(),
                });
            }
        }
    }

    while let Some(p) = queue.pop_front() {
        for (field, text) in [("Pre-Depends", &p.pre_depends), ("Depends", &p.depends)] {
            if text.is_empty() {
                continue;
            }
            let deps = relation::parse_relations(text).map_err(|e| bad(p, field, e))?;
            for alts in deps {
                if let Some(new) = pick(&u, &st, p, &alts)? {
                    let rel = alts
                        .iter()
                        .map(|r| r.to_string())
                        .collect::<Vec<_>>()
                        .join(" | ");
                    st.chosen.insert(
                        &new.name,
                        (
                            new,
                            Reason::Dependency {
                                by: p.name.clone(),
                                relation: rel,
                            },
                        ),
                    );
                    queue.push_back(new);
                }
            }
        }
    }

    check_conflicts(&u, &st)?;
    Ok(Resolution {
        packages: st.chosen.into_values().collect(),
    })
}

/// For one dependency (a list of alternatives) of `p`: `None` when the
/// chosen set satisfies it already, else the package to add.
fn pick<'a>(
    u: &Universe<'a>,
    st: &State<'a>,
    p: &'a Package,
    alts: &[Relation],
) -> Result<Option<&'a Package>, ResolveError> {
    let no_providers = Vec::new();
    // Satisfied by something chosen already?
    for r in alts {
        if let Some((q, _)) = st.chosen.get(r.name.as_str()) {
            if satisfies(r, q, &[], u.arch) {
                return Ok(None);
            }
        }
        let provs = u.providers.get(&r.name).unwrap_or(&no_providers);
        for (q, _) in provs {
            if st
                .chosen
                .get(q.name.as_str())
                .is_some_and(|(c, _)| std::ptr::eq(*c, *q))
                && satisfies(r, q, provs, u.arch)
            {
                return Ok(None);
            }
        }
    }
    // The first alternative that a candidate can satisfy.
    let mut why = Vec::new();
    for r in alts {
        if let Some(q) = u.candidates.get(r.name.as_str()) {
            if st.chosen.contains_key(q.name.as_str()) {
                why.push(format!("{} {} is chosen already", q.name, q.version));
            } else if satisfies(r, q, &[], u.arch) {
                return Ok(Some(q));
            } else {
                why.push(format!(
                    "the candidate is {} {} ({})",
                    q.name, q.version, q.arch
                ));
            }
        }
        let provs = u.providers.get(&r.name).unwrap_or(&no_providers);
        let mut fitting: Vec<&'a Package> = provs
            .iter()
            .filter(|(q, _)| {
                !st.chosen.contains_key(q.name.as_str()) && satisfies(r, q, provs, u.arch)
            })
            .map(|(q, _)| *q)
            .collect();
        // Several providers: the most important priority, then the name.
        fitting.sort_by(|a, b| {
            priority_rank(&a.priority)
                .cmp(&priority_rank(&b.priority))
                .then_with(|| a.name.cmp(&b.name))
        });
        if let Some(q) = fitting.first() {
            return Ok(Some(q));
        }
        if !provs.is_empty() {
            let names: Vec<_> = provs
                .iter()
                .map(|(q, v)| match v {
                    Some(v) => format!("{} (provides {} = {v})", q.name, r.name),
                    None => q.name.clone(),
                })
                .collect();
            why.push(format!("provided by {}", names.join(", ")));
        }
        if !u.candidates.contains_key(r.name.as_str()) && provs.is_empty() {
            why.push(format!("no package {} in {}", r.name, u.suites));
        }
    }
    Err(ResolveError::Unsatisfiable {
        relation: alts
            .iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
            .join(" | "),
        chain: st.chain(&p.name),
        why: why.join("; "),
    })
}

fn check_conflicts(u: &Universe, st: &State) -> Result<(), ResolveError> {
    for (p, _) in st.chosen.values() {
        for (kind, field, text) in [
            ("conflicts with", "Conflicts", &p.conflicts),
            ("breaks", "Breaks", &p.breaks),
        ] {
            if text.is_empty() {
                continue;
            }
            for alts in relation::parse_relations(text).map_err(|e| bad(p, field, e))? {
                for r in &alts {
                    let no = Vec::new();
                    let provs = u.providers.get(&r.name).unwrap_or(&no);
                    let mut hits: Vec<&Package> = Vec::new();
                    if let Some((q, _)) = st.chosen.get(r.name.as_str()) {
                        hits.push(q);
                    }
                    for (q, _) in provs {
                        if st
                            .chosen
                            .get(q.name.as_str())
                            .is_some_and(|(c, _)| std::ptr::eq(*c, *q))
                        {
                            hits.push(q);
                        }
                    }
                    for q in hits {
                        // A package never conflicts with itself (Conflicts +
                        // Provides + Replaces of a virtual name it provides).
                        if std::ptr::eq(*p, q) || !satisfies(r, q, provs, u.arch) {
                            continue;
                        }
                        return Err(ResolveError::Conflict(Box::new(Conflict {
                            a: p.name.clone(),
                            a_version: p.version.clone(),
                            kind,
                            relation: r.to_string(),
                            b: q.name.clone(),
                            b_version: q.version.clone(),
                            a_chain: st.chain(&p.name),
                            b_chain: st.chain(&q.name),
                        })));
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names_versions(r: &Resolution) -> Vec<String> {
        r.packages
            .iter()
            .map(|(p, _)| format!("{} {} {}", p.name, p.version, p.origin.suite))
            .collect()
    }

    fn archive() -> Vec<Package> {
        vec![
            Package::for_test("app", "1.0", "amd64", "stable", "lib (>= 1.0)"),
            Package::for_test("app", "2.0", "amd64", "stable-updates", "lib (>= 2.0)"),
            Package::for_test("app", "3.0", "amd64", "stable-backports", "lib (>= 3.0)"),
            Package::for_test("lib", "1.0", "amd64", "stable", ""),
            Package::for_test("lib", "2.0", "amd64", "stable", ""),
            Package::for_test("lib", "3.0", "amd64", "stable-backports", ""),
            Package::for_test("only-bpo", "1.0", "amd64", "stable-backports", ""),
        ]
    }

    fn request(packages: &[&str], versions: &[(&str, &str)], fallback: &[&str]) -> Request {
        Request {
            packages: packages.iter().map(|s| s.to_string()).collect(),
            versions: versions
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            fallback_suites: fallback.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_pinned_version_is_the_candidate_for_dependants_too() {
        let a = archive();
        let bpo = ["stable-backports"];
        let r = resolve(&a, "amd64", &request(&["app"], &[("app", "1.0")], &bpo)).unwrap();
        assert_eq!(names_versions(&r), ["app 1.0 stable", "lib 2.0 stable"]);
        let r = resolve(
            &a,
            "amd64",
            &request(&["app", "lib"], &[("app", "1.0"), ("lib", "1.0")], &[]),
        )
        .unwrap();
        assert_eq!(names_versions(&r), ["app 1.0 stable", "lib 1.0 stable"]);
    }

    #[test]
    fn a_missing_version_names_the_versions_available() {
        let a = archive();
        let e = resolve(&a, "amd64", &request(&["app"], &[("app", "9.9")], &[]))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "app has no version 9.9 in stable, stable-updates, stable-backports for amd64: available are 1.0 (stable), 2.0 (stable-updates), 3.0 (stable-backports)"
        );
    }

    #[test]
    fn opt_in_suites_only_fill_gaps_unless_pinned() {
        let a = archive();
        let bpo = ["stable-backports"];
        let r = resolve(&a, "amd64", &request(&["app", "only-bpo"], &[], &bpo)).unwrap();
        assert_eq!(
            names_versions(&r),
            [
                "app 2.0 stable-updates",
                "lib 2.0 stable",
                "only-bpo 1.0 stable-backports"
            ]
        );
        // Pinned to the backport, which needs the backported lib: a
        // dependency is not taken from the opt-in suite unasked.
        let e = resolve(&a, "amd64", &request(&["app"], &[("app", "3.0")], &bpo)).unwrap_err();
        assert!(matches!(e, ResolveError::Unsatisfiable { .. }), "{e}");
        let r = resolve(
            &a,
            "amd64",
            &request(&["app"], &[("app", "3.0"), ("lib", "3.0")], &bpo),
        )
        .unwrap();
        assert_eq!(
            names_versions(&r),
            ["app 3.0 stable-backports", "lib 3.0 stable-backports"]
        );
        // Without the fallback mark, the highest version wins as before.
        let r = resolve(&a, "amd64", &request(&["app"], &[], &[])).unwrap();
        assert_eq!(
            names_versions(&r),
            ["app 3.0 stable-backports", "lib 3.0 stable-backports"]
        );
    }
}
