//! Module signing on the host, after the build: the user's key never
//! enters a build root (where DKMS, the compilers and the module's own
//! Makefile run with the network shared). The build returns unsigned
//! modules; each is decompressed, stripped of any signature the build
//! appended, signed with `openssl cms` reading the user's key file where it
//! is, and compressed again as it came.
//!
//! The signature is what the kernel's `scripts/sign-file` appends: the
//! module, a detached PKCS#7 (CMS) SignedData in DER (no certificates, no
//! signed attributes, the signer named by issuer and serial number), a
//! `struct module_signature` and the magic string.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use super::elf::{self, Compression};

/// The string a signed module ends with.
pub const MAGIC: &[u8] = b"~Module signature appended~\n";
/// `struct module_signature`: algo, hash, id_type, signer_len, key_id_len,
/// pad[3], __be32 sig_len.
const SIG_INFO_LEN: usize = 12;
/// `id_type` of a PKCS#7 signature.
const PKEY_ID_PKCS7: u8 = 2;
/// The hashes a module may be signed with (`CONFIG_MODULE_SIG_HASH`).
const HASHES: &[&str] = &[
    "sha256", "sha384", "sha512", "sha3-256", "sha3-384", "sha3-512",
];
/// The hash when the kernel's config names none.
pub const DEFAULT_HASH: &str = "sha256";

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("openssl, which signs the modules on this host (the key never enters the build root), could not be run: {0}\nhelp: install openssl (apt-get install openssl), or build without --sign-key")]
    NoOpenssl(std::io::Error),
    #[error("openssl cms could not sign with key {} and certificate {}: {message}\nhelp: check that the key is the certificate's, and is not passphrase-protected", key.display(), cert.display())]
    Openssl {
        key: std::path::PathBuf,
        cert: std::path::PathBuf,
        message: String,
    },
    #[error("{0}")]
    Module(String),
}

/// The hash the kernel's config names (the build's record of
/// `CONFIG_MODULE_SIG_HASH`, untrusted): one of [`HASHES`], else None.
pub fn hash_of(text: &str) -> Option<&'static str> {
    let name = text.trim();
    HASHES.iter().copied().find(|h| *h == name)
}

/// `module` without the signatures appended to it (a build may have
/// signed it with a key of its own), or why its trailer is malformed.
pub fn strip_signatures(module: &[u8]) -> Result<&[u8], String> {
    let mut m = module;
    while let Some(rest) = m.strip_suffix(MAGIC) {
        let info_at = rest
            .len()
            .checked_sub(SIG_INFO_LEN)
            .ok_or("a signature trailer without its header")?;
        let info = &rest[info_at..];
        if info[2] != PKEY_ID_PKCS7 {
            return Err(format!("a signature of id type {}, not PKCS#7", info[2]));
        }
        let sig_len = u32::from_be_bytes(info[8..12].try_into().unwrap()) as usize;
        m = rest[..info_at]
            .len()
            .checked_sub(sig_len)
            .map(|end| &rest[..end])
            .ok_or("a signature longer than the module")?;
    }
    Ok(m)
}

/// `module` with the PKCS#7 signature `cms` (DER) appended, as sign-file
/// appends it.
pub fn append_signature(module: &[u8], cms: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(module.len() + cms.len() + SIG_INFO_LEN + MAGIC.len());
    out.extend_from_slice(module);
    out.extend_from_slice(cms);
    out.extend_from_slice(&[0, 0, PKEY_ID_PKCS7, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&(cms.len() as u32).to_be_bytes());
    out.extend_from_slice(MAGIC);
    out
}

/// The user's key and certificate, read where they are by openssl on
/// this host.
pub struct Signer<'a> {
    pub key: &'a Path,
    pub cert: &'a Path,
}

impl Signer<'_> {
    /// The detached CMS signature of `data` (DER), as sign-file makes it:
    /// no certificates, no signed attributes, binary.
    pub fn cms(&self, data: &[u8], hash: &str) -> Result<Vec<u8>, SignError> {
        let mut child = Command::new("openssl")
            .args(["cms", "-sign", "-binary", "-noattr", "-nocerts"])
            .args(["-outform", "DER", "-md", hash, "-signer"])
            .arg(self.cert)
            .arg("-inkey")
            .arg(self.key)
            // A passphrase is not asked for on the terminal.
            .args(["-passin", "pass:"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(SignError::NoOpenssl)?;
        let mut stdin = child.stdin.take().unwrap();
        let (mut stdout, mut stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
        let (sig, err) = std::thread::scope(|s| {
            s.spawn(move || {
                // openssl reads it all before it writes: a failure to write
                // is its exit, reported below.
                let _ = stdin.write_all(data);
            });
            let e = s.spawn(move || {
                let mut e = Vec::new();
                let _ = stderr.read_to_end(&mut e);
                e
            });
            let mut out = Vec::new();
            let r = stdout.read_to_end(&mut out).map(|_| out);
            (r, e.join().unwrap_or_default())
        });
        let status = child.wait().map_err(SignError::NoOpenssl)?;
        let err = String::from_utf8_lossy(&err).trim().to_string();
        match sig {
            Ok(sig) if status.success() && !sig.is_empty() => Ok(sig),
            Ok(_) => Err(SignError::Openssl {
                key: self.key.into(),
                cert: self.cert.into(),
                message: format!("{status}: {err}"),
            }),
            Err(e) => Err(SignError::Openssl {
                key: self.key.into(),
                cert: self.cert.into(),
                message: e.to_string(),
            }),
        }
    }

    /// Signs a module file's bytes (`.ko`, or compressed as `.ko.xz`,
    /// `.ko.zst`, `.ko.gz`): signed uncompressed, then compressed again as
    /// it came. `name` is for messages.
    pub fn sign_module(&self, name: &str, bytes: &[u8], hash: &str) -> Result<Vec<u8>, SignError> {
        let bad = |m: String| SignError::Module(format!("{name}: {m}"));
        let compression = Compression::of(bytes);
        let plain = elf::decompressed(bytes);
        if compression != Compression::None && plain.as_ref() == bytes {
            return Err(bad("could not be decompressed".into()));
        }
        let module = strip_signatures(&plain).map_err(bad)?;
        let signed = append_signature(module, &self.cms(module, hash)?);
        compress(compression, &signed).map_err(|e| bad(format!("compressing it again: {e}")))
    }
}

/// `data` compressed as `c`, as the kernel's own modules are (xz with
/// CRC32 and a 1 MiB dictionary, which the kernel's decompressor reads).
pub fn compress(c: Compression, data: &[u8]) -> std::io::Result<Vec<u8>> {
    match c {
        Compression::None => Ok(data.to_vec()),
        Compression::Xz => {
            let mut opts = liblzma::stream::LzmaOptions::new_preset(6)?;
            opts.dict_size(1 << 20);
            let mut filters = liblzma::stream::Filters::new();
            filters.lzma2(&opts);
            let stream = liblzma::stream::Stream::new_stream_encoder(
                &filters,
                liblzma::stream::Check::Crc32,
            )?;
            let mut w = liblzma::write::XzEncoder::new_stream(Vec::new(), stream);
            w.write_all(data)?;
            w.finish()
        }
        Compression::Zstd => Ok(ruzstd::encoding::compress_to_vec(
            data,
            ruzstd::encoding::CompressionLevel::Fastest,
        )),
        Compression::Gzip => {
            let mut w = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            w.write_all(data)?;
            w.finish()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_from_the_build_are_checked() {
        assert_eq!(hash_of("sha256\n"), Some("sha256"));
        assert_eq!(hash_of("sha512"), Some("sha512"));
        for bad in ["", "sha1", "md5", "-engine x", "sha256 -x"] {
            assert_eq!(hash_of(bad), None, "{bad}");
        }
    }

    #[test]
    fn signatures_are_appended_and_stripped_as_sign_file_does() {
        let module = b"\x7fELF module".to_vec();
        let signed = append_signature(&module, b"CMS");
        assert_eq!(
            signed[module.len()..],
            *b"CMS\0\0\x02\0\0\0\0\0\0\0\0\x03~Module signature appended~\n"
        );
        assert_eq!(strip_signatures(&signed).unwrap(), &module[..]);
        // Signed twice (a build's own key, then another): both go.
        let twice = append_signature(&signed, b"SECOND");
        assert_eq!(strip_signatures(&twice).unwrap(), &module[..]);
        assert_eq!(strip_signatures(&module).unwrap(), &module[..]);
        // A trailer that lies about its length.
        let mut bad = append_signature(&module, b"CMS");
        let at = bad.len() - MAGIC.len() - 4;
        bad[at..at + 4].copy_from_slice(&1000u32.to_be_bytes());
        assert_eq!(
            strip_signatures(&bad).unwrap_err(),
            "a signature longer than the module"
        );
        assert!(strip_signatures(MAGIC).is_err());
    }

    #[test]
    fn compressed_modules_come_back_compressed_alike() {
        let data = b"\x7fELF".repeat(1000);
        for c in [
            Compression::None,
            Compression::Xz,
            Compression::Zstd,
            Compression::Gzip,
        ] {
            let z = compress(c, &data).unwrap();
            assert_eq!(Compression::of(&z), c);
            assert_eq!(elf::decompressed(&z).as_ref(), &data[..], "{c:?}");
        }
    }
}
