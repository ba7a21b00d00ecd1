//! binfmt_misc: the line that registers qemu-user as the interpreter for a
//! foreign architecture's ELF files, and the reading of the host's table.
//! Pure: the caller reads `/proc/sys/fs/binfmt_misc` (see `host`).

use std::path::Path;

use crate::manifest::Arch;

fn escape(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("\\x{b:02x}")).collect()
}

/// `:NAME:M::MAGIC:MASK:INTERPRETER:FLAGS`. With `F` the kernel opens the
/// interpreter at registration, so it need not exist inside the root.
pub fn register_line(arch: &Arch, interpreter: &Path) -> String {
    register_line_named(&format!("qemu-{}", arch.qemu), arch, interpreter)
}

/// [`register_line`] under another entry name.
pub fn register_line_named(name: &str, arch: &Arch, interpreter: &Path) -> String {
    format!(
        ":{name}:M::{}:{}:{}:F",
        escape(&arch.elf_magic),
        escape(&arch.elf_mask),
        interpreter.display()
    )
}

/// An entry of a binfmt_misc table (`/proc/sys/fs/binfmt_misc/NAME`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub enabled: bool,
    pub interpreter: String,
    pub flags: String,
    pub magic: Vec<u8>,
    pub mask: Vec<u8>,
}

/// Parses an entry file:
/// `enabled\ninterpreter /usr/bin/qemu-aarch64\nflags: POCF\noffset 0\nmagic 7f45..\nmask ff..\n`.
pub fn parse_entry(text: &str) -> Option<Entry> {
    let mut e = Entry {
        enabled: false,
        interpreter: String::new(),
        flags: String::new(),
        magic: vec![],
        mask: vec![],
    };
    for line in text.lines() {
        if line == "enabled" {
            e.enabled = true;
        } else if let Some(v) = line.strip_prefix("interpreter ") {
            e.interpreter = v.to_string();
        } else if let Some(v) = line.strip_prefix("flags: ") {
            e.flags = v.to_string();
        } else if let Some(v) = line.strip_prefix("magic ") {
            e.magic = hex::decode(v).ok()?;
        } else if let Some(v) = line.strip_prefix("mask ") {
            e.mask = hex::decode(v).ok()?;
        }
    }
    (!e.magic.is_empty()).then_some(e)
}

/// Whether a host entry runs `arch`'s executables from inside any root: it
/// is enabled, has the F flag (interpreter opened at registration), and
/// matches the architecture's ELF header.
pub fn entry_serves(e: &Entry, arch: &Arch) -> bool {
    if !e.enabled || !e.flags.contains('F') {
        return false;
    }
    let header = &arch.elf_magic;
    e.magic.len() <= header.len()
        && e.magic.iter().enumerate().all(|(i, m)| {
            let k = e.mask.get(i).copied().unwrap_or(0xff);
            header[i] & k == m & k
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Manifests;

    #[test]
    fn register_line_for_arm64() {
        let a = Manifests::embedded().arch("arm64").unwrap();
        let l = register_line(&a, Path::new("/c/qemu-aarch64"));
        assert_eq!(
            l,
            ":qemu-aarch64:M::\\x7f\\x45\\x4c\\x46\\x02\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00\\xb7\\x00:\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xfe\\xff\\xff\\xff:/c/qemu-aarch64:F"
        );
    }

    #[test]
    fn host_entries_are_matched_by_magic_and_flags() {
        let m = Manifests::embedded();
        let arm64 = m.arch("arm64").unwrap();
        let armhf = m.arch("armhf").unwrap();
        let text = "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POCF\noffset 0\n\
                    magic 7f454c460201010000000000000000000200b700\nmask ffffffffffffff00fffffffffffffffffeffffff\n";
        let e = parse_entry(text).unwrap();
        assert!(entry_serves(&e, &arm64));
        assert!(!entry_serves(&e, &armhf));
        let no_f = parse_entry(&text.replace("POCF", "PO")).unwrap();
        assert!(!entry_serves(&no_f, &arm64));
        let disabled = parse_entry(&text.replace("enabled\n", "disabled\n")).unwrap();
        assert!(!entry_serves(&disabled, &arm64));
    }
}
