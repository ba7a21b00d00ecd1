//! The one reader of ELF files zchroot has: which machine a program or a
//! kernel module is for, and what a module says about itself (vermagic,
//! license, signature, `__versions`), from `.ko`, `.ko.xz`, `.ko.zst` or
//! `.ko.gz` bytes alike (DKMS compresses modules as the kernel's config says).

use std::borrow::Cow;
use std::io::Read;

use crate::manifest::Arch;

/// The largest module a compressed `.ko` may unpack to.
const UNPACKED_MAX: u64 = 1 << 30;

/// The ELF machine of an executable (bytes 18..20, little endian), or
/// None for anything else.
pub fn elf_machine(bytes: &[u8]) -> Option<u16> {
    (bytes.len() >= 20 && bytes.starts_with(b"\x7fELF") && bytes[5] == 1)
        .then(|| u16::from_le_bytes([bytes[18], bytes[19]]))
}

/// An architecture's ELF machine, from its binfmt magic.
pub fn arch_machine(a: &Arch) -> u16 {
    u16::from_le_bytes([a.elf_magic[18], a.elf_magic[19]])
}

/// The architecture whose binfmt magic and mask match `header` (a file's
/// first bytes).
pub fn arch_of<'a>(archs: &'a [Arch], header: &[u8]) -> Option<&'a Arch> {
    archs.iter().find(|a| {
        header.len() >= a.elf_magic.len()
            && a.elf_magic
                .iter()
                .zip(&a.elf_mask)
                .enumerate()
                .all(|(i, (m, k))| header[i] & k == m & k)
    })
}

/// What a kernel module file says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KoInfo {
    /// ELF e_machine.
    pub machine: u16,
    pub vermagic: Option<String>,
    /// `srcversion=` of .modinfo: a hash of the module's sources.
    pub srcversion: Option<String>,
    /// `license=` of .modinfo (`GPL`, `CDDL`, …).
    pub license: Option<String>,
    /// The `__versions` section: the CRC of each kernel symbol the module
    /// uses, as resolved against the kernel's Module.symvers.
    pub modversions: Option<Vec<u8>>,
    pub signed: bool,
}

/// The contents of a section of a 64-bit little-endian ELF file.
pub fn elf_section<'a>(data: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let u16_at = |o: usize| Some(u16::from_le_bytes(data.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(data.get(o..o + 4)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(data.get(o..o + 8)?.try_into().ok()?) as usize);
    if data.get(4..6)? != [2, 1] {
        return None;
    }
    let shoff = u64_at(0x28)?;
    let shentsize = u16_at(0x3a)? as usize;
    let shnum = u16_at(0x3c)? as usize;
    let shstrndx = u16_at(0x3e)? as usize;
    let header = |i: usize| shoff.checked_add(i.checked_mul(shentsize)?);
    let strtab = u64_at(header(shstrndx)? + 0x18)?;
    for i in 0..shnum {
        let h = header(i)?;
        let n = strtab + u32_at(h)? as usize;
        let end = n + data.get(n..)?.iter().position(|&b| b == 0)?;
        if &data[n..end] == name.as_bytes() {
            let off = u64_at(h + 0x18)?;
            let size = u64_at(h + 0x20)?;
            return data.get(off..off.checked_add(size)?);
        }
    }
    None
}

/// How a module file is compressed, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Xz,
    Zstd,
    Gzip,
}

impl Compression {
    /// The compression whose magic `bytes` start with.
    pub fn of(bytes: &[u8]) -> Compression {
        if bytes.starts_with(b"\xfd7zXZ\x00") {
            Compression::Xz
        } else if bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else if bytes.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else {
            Compression::None
        }
    }
}

/// A module's bytes, decompressed if they are a `.ko.xz`, `.ko.zst` or
/// `.ko.gz` (else as they are, as they are too when decompressing fails:
/// they are then not an ELF file and [`ko_info`] says so).
pub fn decompressed(bytes: &[u8]) -> Cow<'_, [u8]> {
    let reader: Box<dyn Read + '_> = match Compression::of(bytes) {
        Compression::None => return bytes.into(),
        Compression::Xz => Box::new(liblzma::read::XzDecoder::new(bytes)),
        Compression::Gzip => Box::new(flate2::read::GzDecoder::new(bytes)),
        Compression::Zstd => match ruzstd::decoding::StreamingDecoder::new(bytes) {
            Ok(d) => Box::new(d),
            Err(_) => return bytes.into(),
        },
    };
    let mut out = Vec::new();
    match reader.take(UNPACKED_MAX).read_to_end(&mut out) {
        Ok(_) => out.into(),
        Err(_) => bytes.into(),
    }
}

/// Reads a module: `.ko`, `.ko.xz`, `.ko.zst` or `.ko.gz` bytes.
pub fn ko_info(bytes: &[u8]) -> Option<KoInfo> {
    let data = decompressed(bytes);
    if data.len() < 20 || !data.starts_with(b"\x7fELF") {
        return None;
    }
    let machine = u16::from_le_bytes([data[18], data[19]]);
    let modinfo = |key: &[u8]| {
        data.windows(key.len()).position(|w| w == key).map(|i| {
            let rest = &data[i + key.len()..];
            let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
            String::from_utf8_lossy(&rest[..end]).into_owned()
        })
    };
    let signed = data.ends_with(b"~Module signature appended~\n");
    Some(KoInfo {
        machine,
        vermagic: modinfo(b"vermagic="),
        srcversion: modinfo(b"srcversion="),
        license: modinfo(b"\0license=").or_else(|| modinfo(b"license=")),
        modversions: elf_section(&data, "__versions").map(<[u8]>::to_vec),
        signed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ko_headers_are_read() {
        let mut ko =
            b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\xb7\x00".to_vec();
        ko.extend_from_slice(b"\0name=hello\0vermagic=6.12.117+deb13-arm64 SMP preempt mod_unload modversions aarch64\0");
        let i = ko_info(&ko).unwrap();
        assert_eq!(i.machine, 0xb7);
        assert_eq!(
            i.vermagic.as_deref(),
            Some("6.12.117+deb13-arm64 SMP preempt mod_unload modversions aarch64")
        );
        assert!(!i.signed);
        ko.extend_from_slice(b"~Module signature appended~\n");
        assert!(ko_info(&ko).unwrap().signed);
        assert!(ko_info(b"not elf").is_none());
        assert_eq!(i.modversions, None, "no section headers");
    }

    /// A 64-bit ELF with sections: null, .shstrtab, __versions.
    fn elf_with_versions(versions: &[u8]) -> Vec<u8> {
        let strtab = b"\0.shstrtab\0__versions\0";
        let mut e = vec![0u8; 64];
        e[..6].copy_from_slice(b"\x7fELF\x02\x01");
        let strtab_off = e.len();
        e.extend_from_slice(strtab);
        let versions_off = e.len();
        e.extend_from_slice(versions);
        let shoff = e.len();
        let sh = |name: u32, off: usize, size: usize| {
            let mut h = vec![0u8; 64];
            h[..4].copy_from_slice(&name.to_le_bytes());
            h[0x18..0x20].copy_from_slice(&(off as u64).to_le_bytes());
            h[0x20..0x28].copy_from_slice(&(size as u64).to_le_bytes());
            h
        };
        let headers = [
            sh(0, 0, 0),
            sh(1, strtab_off, strtab.len()),
            sh(11, versions_off, versions.len()),
        ]
        .concat();
        e.extend_from_slice(&headers);
        e[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        e[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        e[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        e[0x3e..0x40].copy_from_slice(&1u16.to_le_bytes());
        e
    }

    #[test]
    fn elf_sections_are_found_by_name() {
        let e = elf_with_versions(b"\x12\x34module_layout\0");
        assert_eq!(
            elf_section(&e, "__versions"),
            Some(&b"\x12\x34module_layout\0"[..])
        );
        assert_eq!(elf_section(&e, ".shstrtab").map(|s| s.len()), Some(22));
        assert_eq!(elf_section(&e, ".text"), None);
        assert_eq!(elf_section(&e[..100], "__versions"), None, "truncated");
        assert_eq!(
            ko_info(&e).unwrap().modversions.as_deref(),
            Some(&b"\x12\x34module_layout\0"[..])
        );
    }

    /// A small module with a vermagic and a license.
    fn module() -> Vec<u8> {
        let mut ko =
            b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\xb7\x00".to_vec();
        ko.extend_from_slice(b"\0license=GPL\0vermagic=6.12.117+deb13-arm64 SMP aarch64\0");
        ko
    }

    fn check(bytes: &[u8]) {
        let i = crate::kmod::elf::ko_info(bytes).unwrap();
        assert_eq!(i.machine, 0xb7);
        assert_eq!(
            i.vermagic.as_deref(),
            Some("6.12.117+deb13-arm64 SMP aarch64")
        );
        assert_eq!(i.license.as_deref(), Some("GPL"));
        assert_eq!(&*decompressed(bytes), &module()[..]);
    }

    #[test]
    fn a_plain_ko_is_read() {
        assert_eq!(Compression::of(&module()), Compression::None);
        check(&module());
    }

    #[test]
    fn a_ko_xz_is_read() {
        let mut xz = Vec::new();
        liblzma::read::XzEncoder::new(&module()[..], 6)
            .read_to_end(&mut xz)
            .unwrap();
        assert_eq!(Compression::of(&xz), Compression::Xz);
        check(&xz);
    }

    #[test]
    fn a_ko_zst_is_read() {
        let zst = ruzstd::encoding::compress_to_vec(
            &module()[..],
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        assert_eq!(Compression::of(&zst), Compression::Zstd);
        check(&zst);
    }

    #[test]
    fn a_ko_gz_is_read() {
        let mut gz = Vec::new();
        flate2::read::GzEncoder::new(&module()[..], flate2::Compression::best())
            .read_to_end(&mut gz)
            .unwrap();
        assert_eq!(Compression::of(&gz), Compression::Gzip);
        check(&gz);
    }

    #[test]
    fn broken_compressed_data_is_not_a_module() {
        assert!(ko_info(b"\xfd7zXZ\x00garbage").is_none());
        assert!(ko_info(&[0x28, 0xb5, 0x2f, 0xfd, 0, 0]).is_none());
        assert!(ko_info(&[0x1f, 0x8b, 8, 0]).is_none());
    }

    #[test]
    fn elf_machines() {
        let a = crate::manifest::Manifests::embedded()
            .architectures()
            .unwrap()
            .into_iter()
            .find(|a| a.name == "arm64")
            .unwrap();
        assert_eq!(arch_machine(&a), 0xb7);
        let mut exe = vec![0u8; 64];
        exe[..6].copy_from_slice(b"\x7fELF\x02\x01");
        exe[18] = 0x3e;
        assert_eq!(elf_machine(&exe), Some(0x3e));
        assert_eq!(elf_machine(b"#!/bin/sh\n"), None);
    }
}
