//! dpkg's path filters (`--dpkgopt path-exclude=GLOB`, `path-include=GLOB`)
//! applied to packages zchroot unpacked itself: dpkg filters only what it
//! unpacks, so, as mmdebstrap does for its own extraction, the files the
//! filters exclude are removed after the native unpack, before anything
//! runs inside the root.

use std::path::Path;

use crate::rootdir::{Kind, RootDir, RootDirError};

/// One `path-exclude`/`path-include` option, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub exclude: bool,
    pub pattern: String,
}

/// The path filters among dpkg option lines (`path-exclude=/usr/share/man/*`,
/// with or without the leading `--`).
pub fn filters(dpkgopts: &[String]) -> Vec<Filter> {
    dpkgopts
        .iter()
        .filter_map(|l| {
            let l = l.trim().trim_start_matches("--");
            let (key, pattern) = l.split_once('=')?;
            let exclude = match key.trim() {
                "path-exclude" => true,
                "path-include" => false,
                _ => return None,
            };
            Some(Filter {
                exclude,
                pattern: pattern.trim().to_string(),
            })
        })
        .collect()
}

/// Whether dpkg would leave `path` out: the last filter that matches it
/// decides (dpkg's rule); none matching keeps it.
pub fn excluded(filters: &[Filter], path: &str) -> bool {
    filters
        .iter()
        .rev()
        .find(|f| fnmatch(&f.pattern, path))
        .is_some_and(|f| f.exclude)
}

/// fnmatch(3) without flags, as dpkg calls it: `*` and `?` match `/` too;
/// `[...]` classes with `!`/`^` and ranges; `\` quotes.
pub fn fnmatch(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was, and the text position it now stands for.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        let step = match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
                continue;
            }
            Some('?') => Some(pi + 1),
            Some('[') => class(&p, pi, t[ti]),
            Some('\\') if pi + 1 < p.len() => (p[pi + 1] == t[ti]).then_some(pi + 2),
            Some(&c) => (c == t[ti]).then_some(pi + 1),
            None => None,
        };
        match (step, star) {
            (Some(next), _) => {
                pi = next;
                ti += 1;
            }
            (None, Some((sp, st))) => {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            }
            (None, None) => return false,
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Matches `c` against the class starting at `p[start] == '['`; the index
/// after the class when it matches. An unclosed `[` is a literal.
fn class(p: &[char], start: usize, c: char) -> Option<usize> {
    let mut i = start + 1;
    let negate = matches!(p.get(i), Some('!') | Some('^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while i < p.len() && (first || p[i] != ']') {
        first = false;
        let lo = p[i];
        if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
            matched |= lo <= c && c <= p[i + 2];
            i += 3;
        } else {
            matched |= lo == c;
            i += 1;
        }
    }
    if i >= p.len() {
        return (c == '[').then_some(start + 1);
    }
    (matched != negate).then_some(i + 1)
}

/// Removes from the root the files and links the filters exclude, of the
/// paths dpkg's lists (`var/lib/dpkg/info/*.list`) name; directories stay,
/// as dpkg keeps them. Returns how many were removed.
pub fn apply(root: &RootDir, filters: &[Filter]) -> Result<usize, RootDirError> {
    if !filters.iter().any(|f| f.exclude) {
        return Ok(0);
    }
    let info = Path::new("var/lib/dpkg/info");
    let mut removed = 0;
    for (name, kind) in root.list(info)? {
        let name = name.to_string_lossy();
        if kind != Kind::File || !name.ends_with(".list") {
            continue;
        }
        let list = root.read(&info.join(&*name), 64 << 20)?;
        for path in String::from_utf8_lossy(&list).lines() {
            if !excluded(filters, path) {
                continue;
            }
            let rel = Path::new(path.trim_start_matches('/'));
            match root.kind(rel)? {
                Some(Kind::Dir) | None => {}
                Some(_) => {
                    root.remove(rel)?;
                    removed += 1;
                }
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnmatch_as_dpkg_calls_it() {
        assert!(fnmatch("/usr/share/man/*", "/usr/share/man/man1/ls.1.gz"));
        assert!(fnmatch(
            "/usr/share/doc/*/copyright",
            "/usr/share/doc/a/b/copyright"
        ));
        assert!(!fnmatch("/usr/share/man/*", "/usr/share/many"));
        assert!(fnmatch(
            "/usr/share/locale/??/*",
            "/usr/share/locale/de/LC_MESSAGES/x.mo"
        ));
        assert!(!fnmatch(
            "/usr/share/locale/??/*",
            "/usr/share/locale/de_AT/x"
        ));
        assert!(fnmatch("/a/[bc]x", "/a/cx"));
        assert!(!fnmatch("/a/[!bc]x", "/a/cx"));
        assert!(fnmatch("/a/[a-c]*", "/a/b/z"));
        assert!(fnmatch("/a/\\*", "/a/*"));
        assert!(!fnmatch("/a/\\*", "/a/b"));
        assert!(fnmatch("/a/[x", "/a/[x"));
        assert!(fnmatch("*", ""));
        assert!(!fnmatch("/a", "/a/b"));
    }

    #[test]
    fn the_last_matching_filter_decides() {
        let f = filters(&[
            "path-exclude=/usr/share/doc/*".into(),
            "--path-include=/usr/share/doc/*/copyright".into(),
            "force-unsafe-io".into(),
        ]);
        assert_eq!(f.len(), 2);
        assert!(excluded(&f, "/usr/share/doc/bash/README"));
        assert!(!excluded(&f, "/usr/share/doc/bash/copyright"));
        assert!(!excluded(&f, "/usr/bin/bash"));
    }
}
