//! The user's config file, `config.toml` beside `targets/` in the config
//! directory (`~/.config/zchroot/config.toml`): defaults for the mirrors,
//! the downloads at once and the proxy, so that they need not be given on
//! every command line. Options on the command line win over it. Parsing
//! and checking are pure; [`load`] reads the file.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::archive::fetch;
use crate::manifest::MirrorMap;

/// The keys the file may have.
pub const KEYS: [&str; 4] = ["mirror", "security-mirror", "parallel-downloads", "proxy"];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: unknown key '{key}'\nhelp: the keys are {}; see \"Configuration\" in the README", path.display(), KEYS.join(", "))]
    UnknownKey { path: PathBuf, key: String },
    #[error("{}: {message}\nhelp: fix the file, or move it away to use the defaults", path.display())]
    Bad { path: PathBuf, message: String },
    #[error("reading {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What the file says; a key left out is `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Config {
    /// The main archive's mirror (as `--mirror`).
    pub mirror: Option<String>,
    /// The security archive's mirror (as `--security-mirror`).
    pub security_mirror: Option<String>,
    /// Downloads at once (as `--parallel`), 1 to 64.
    pub parallel_downloads: Option<u16>,
    /// The proxy for zchroot's downloads, where http_proxy, https_proxy
    /// and all_proxy name none.
    pub proxy: Option<String>,
}

impl Config {
    /// The mirror map for the manifests: the file's mirrors, with
    /// `security_mirror` (from the command line) over the file's.
    pub fn mirrors(&self, security_mirror: Option<&str>) -> MirrorMap {
        MirrorMap {
            archive: self.mirror.clone(),
            security: security_mirror
                .map(String::from)
                .or_else(|| self.security_mirror.clone()),
        }
    }
}

/// Parses and checks the file's text (`path` names it in errors).
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let bad = |message: String| ConfigError::Bad {
        path: path.into(),
        message,
    };
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| bad(e.to_string()))?;
    if let Some(key) = table.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(ConfigError::UnknownKey {
            path: path.into(),
            key: key.clone(),
        });
    }
    let config: Config = toml::from_str(text).map_err(|e| bad(e.message().to_string()))?;
    for (key, url) in [
        ("mirror", &config.mirror),
        ("security-mirror", &config.security_mirror),
    ] {
        if let Some(url) = url {
            fetch::check_mirror(url).map_err(|why| bad(format!("{key} = {url:?}: {why}")))?;
        }
    }
    if let Some(n) = config.parallel_downloads {
        if !(1..=64).contains(&n) {
            return Err(bad(format!("parallel-downloads = {n}: give 1 to 64")));
        }
    }
    if let Some(p) = &config.proxy {
        check_proxy(p).map_err(|m| bad(format!("proxy = {p:?}: {m}")))?;
    }
    Ok(config)
}

/// A proxy is an `http://` (or `https://`) URL with a host.
fn check_proxy(p: &str) -> Result<(), &'static str> {
    let rest = p
        .strip_prefix("http://")
        .or_else(|| p.strip_prefix("https://"))
        .ok_or("expected an http:// URL such as http://proxy.example:3128")?;
    let host = rest.split('/').next().unwrap_or("");
    let host = host.rsplit_once('@').map(|(_, h)| h).unwrap_or(host);
    if host.is_empty() || host.starts_with(':') {
        return Err("no host");
    }
    Ok(())
}

/// Reads the file at `path`; no file is the defaults.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
        Err(source) => Err(ConfigError::Io {
            path: path.into(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> &'static Path {
        Path::new("/home/a/.config/zchroot/config.toml")
    }

    #[test]
    fn every_key_parses_and_none_is_needed() {
        let c = parse(
            "mirror = \"http://cache:3142/debian\"\n\
             security-mirror = \"https://cache.example/debian-security\"\n\
             parallel-downloads = 8\n\
             proxy = \"http://proxy:3128\"\n",
            p(),
        )
        .unwrap();
        assert_eq!(c.mirror.as_deref(), Some("http://cache:3142/debian"));
        assert_eq!(c.parallel_downloads, Some(8));
        assert_eq!(c.proxy.as_deref(), Some("http://proxy:3128"));
        assert_eq!(
            c.mirrors(None).security.as_deref(),
            Some("https://cache.example/debian-security")
        );
        // The command line wins.
        assert_eq!(
            c.mirrors(Some("http://given/")).security.as_deref(),
            Some("http://given/")
        );
        assert_eq!(parse("", p()).unwrap(), Config::default());
    }

    #[test]
    fn an_unknown_key_is_named_with_the_file_and_the_known_ones() {
        let e = parse("mirror = \"http://m/debian\"\nparallel = 3\n", p())
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("/home/a/.config/zchroot/config.toml: unknown key 'parallel'"),
            "{e}"
        );
        assert!(
            e.contains("help: the keys are mirror, security-mirror, parallel-downloads, proxy"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_are_refused_saying_why() {
        let e = |t: &str| parse(t, p()).unwrap_err().to_string();
        let ftp = e("security-mirror = \"ftp://m/debian\"");
        assert!(
            ftp.contains("security-mirror = \"ftp://m/debian\": ftp:// is not supported"),
            "{ftp}"
        );
        assert!(e("parallel-downloads = 0").contains("give 1 to 64"));
        assert!(
            e("parallel-downloads = \"x\"").starts_with("/home/a/.config/zchroot/config.toml: ")
        );
        assert!(e("proxy = \"socks5://p:1080\"").contains("expected an http:// URL"));
        assert!(e("mirror = ").contains("config.toml"));
        assert!(parse("proxy = \"http://user:pw@p:3128\"", p()).is_ok());
    }

    #[test]
    fn no_file_is_the_defaults_and_a_file_is_read() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("config.toml");
        assert_eq!(load(&f).unwrap(), Config::default());
        std::fs::write(&f, "parallel-downloads = 2\n").unwrap();
        assert_eq!(load(&f).unwrap().parallel_downloads, Some(2));
    }
}
