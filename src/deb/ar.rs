//! The `ar` container that wraps every .deb, read and written the way dpkg does:
//! a `!<arch>\n` magic, then members with 60-byte headers, each padded to an
//! even offset. Only what dpkg uses is supported: short names, optionally with a
//! GNU-style trailing `/`; no symbol tables or long-name tables are interpreted.

use std::io::{self, Read, Write};

/// The global header of an ar archive.
pub const MAGIC: &[u8; 8] = b"!<arch>\n";

/// Size of a member header.
const HEADER_LEN: usize = 60;

/// The longest member name the writer accepts (the whole name field).
const MAX_NAME_LEN: usize = 16;

/// Errors reading or writing an ar archive.
#[derive(Debug, thiserror::Error)]
pub enum ArError {
    #[error("cannot read the ar magic")]
    ReadMagic(#[source] io::Error),
    #[error("not an ar archive: the file does not start with !<arch>")]
    BadMagic,
    #[error("cannot read the ar header after member {after}")]
    ReadHeader {
        after: String,
        #[source]
        source: io::Error,
    },
    #[error("truncated ar header after member {after}")]
    TruncatedHeader { after: String },
    #[error("malformed ar header after member {after}: {reason}")]
    BadHeader { after: String, reason: &'static str },
    #[error("cannot skip to the end of ar member {member}")]
    Skip {
        member: String,
        #[source]
        source: io::Error,
    },
    #[error("ar member {member} is truncated")]
    TruncatedMember { member: String },
    #[error("invalid ar member name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("cannot write ar member {member}")]
    Write {
        member: String,
        #[source]
        source: io::Error,
    },
}

/// Streaming reader over the members of an ar archive.
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::io::Read;
/// let file = std::fs::File::open("foo.deb")?;
/// let mut ar = zchroot::deb::ar::ArReader::new(std::io::BufReader::new(file))?;
/// while let Some(mut member) = ar.next_member()? {
///     let mut data = Vec::new();
///     member.read_to_end(&mut data)?;
/// }
/// # Ok(()) }
/// ```
pub struct ArReader<R> {
    inner: R,
    /// Name of the current (or last) member, for error messages.
    current: String,
    /// Bytes of the current member's data not yet consumed.
    remaining: u64,
    /// Padding byte after the current member's data.
    padding: u64,
}

impl<R: Read> ArReader<R> {
    /// Checks the `!<arch>\n` magic and positions the reader before the first member.
    pub fn new(mut inner: R) -> Result<Self, ArError> {
        let mut magic = [0u8; MAGIC.len()];
        match inner.read_exact(&mut magic) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(ArError::BadMagic),
            Err(e) => return Err(ArError::ReadMagic(e)),
        }
        if &magic != MAGIC {
            return Err(ArError::BadMagic);
        }
        Ok(ArReader {
            inner,
            current: "(start of archive)".to_string(),
            remaining: 0,
            padding: 0,
        })
    }

    /// The next member, or `None` at the end of the archive. Whatever is left of
    /// the previous member is skipped.
    pub fn next_member(&mut self) -> Result<Option<ArMember<'_, R>>, ArError> {
        self.skip_rest()?;
        let mut header = [0u8; HEADER_LEN];
        let mut filled = 0;
        while filled < HEADER_LEN {
            match self.inner.read(&mut header[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(ArError::ReadHeader {
                        after: self.current.clone(),
                        source,
                    })
                }
            }
        }
        if filled == 0 {
            return Ok(None);
        }
        if filled < HEADER_LEN {
            return Err(ArError::TruncatedHeader {
                after: self.current.clone(),
            });
        }
        let (name, size) = parse_header(&header).map_err(|reason| ArError::BadHeader {
            after: self.current.clone(),
            reason,
        })?;
        self.current = name;
        self.remaining = size;
        self.padding = size % 2;
        Ok(Some(ArMember { reader: self, size }))
    }

    /// Returns the underlying reader.
    pub fn into_inner(self) -> R {
        self.inner
    }

    fn skip_rest(&mut self) -> Result<(), ArError> {
        let want = self.remaining + self.padding;
        if want == 0 {
            return Ok(());
        }
        let skipped =
            io::copy(&mut (&mut self.inner).take(want), &mut io::sink()).map_err(|source| {
                ArError::Skip {
                    member: self.current.clone(),
                    source,
                }
            })?;
        // A missing padding byte after the last member is tolerated, as dpkg does.
        if skipped < self.remaining {
            return Err(ArError::TruncatedMember {
                member: self.current.clone(),
            });
        }
        self.remaining = 0;
        self.padding = 0;
        Ok(())
    }
}

/// Parses a member header into (name, size).
fn parse_header(header: &[u8; HEADER_LEN]) -> Result<(String, u64), &'static str> {
    if &header[58..60] != b"`\n" {
        return Err("bad header terminator");
    }
    let raw_name = std::str::from_utf8(&header[0..16]).map_err(|_| "name is not UTF-8")?;
    let mut name = raw_name.trim_end_matches(' ');
    // GNU ar terminates names with '/'; "/" and "//" are its symbol and name tables.
    if name.len() > 1 && name != "//" {
        name = name.strip_suffix('/').unwrap_or(name);
    }
    if name.is_empty() {
        return Err("empty member name");
    }
    let size_field = std::str::from_utf8(&header[48..58]).map_err(|_| "size is not ASCII")?;
    let size_field = size_field.trim_end_matches(' ');
    if size_field.is_empty() || !size_field.bytes().all(|b| b.is_ascii_digit()) {
        return Err("size is not a decimal number");
    }
    let size = size_field.parse::<u64>().map_err(|_| "size out of range")?;
    Ok((name.to_string(), size))
}

/// One member of an ar archive; reading it yields the member's data.
pub struct ArMember<'a, R> {
    reader: &'a mut ArReader<R>,
    size: u64,
}

impl<R> ArMember<'_, R> {
    /// The member name, without GNU ar's trailing `/`.
    pub fn name(&self) -> &str {
        &self.reader.current
    }

    /// The size of the member's data in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl<R: Read> Read for ArMember<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let remaining = self.reader.remaining;
        if remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let max = buf
            .len()
            .min(usize::try_from(remaining).unwrap_or(usize::MAX));
        let n = self.reader.inner.read(&mut buf[..max])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("ar member {} is truncated", self.reader.current),
            ));
        }
        self.reader.remaining -= n as u64;
        Ok(n)
    }
}

/// Deterministic ar writer: every member gets the same mtime, uid and gid 0 and
/// mode 100644, exactly as `dpkg-deb --build` writes them.
pub struct ArWriter<W> {
    inner: W,
    mtime: u64,
}

impl<W: Write> ArWriter<W> {
    /// Writes the `!<arch>\n` magic. `mtime` is the timestamp stamped on every
    /// member (a `SOURCE_DATE_EPOCH`-style value).
    pub fn new(mut inner: W, mtime: u64) -> Result<Self, ArError> {
        inner.write_all(MAGIC).map_err(|source| ArError::Write {
            member: "(magic)".to_string(),
            source,
        })?;
        Ok(ArWriter { inner, mtime })
    }

    /// Appends a member. Names are at most 16 printable ASCII characters without
    /// `/` or spaces, and are written without a trailing `/`, like dpkg does.
    pub fn append(&mut self, name: &str, data: &[u8]) -> Result<(), ArError> {
        validate_name(name)?;
        let mut mtime = self.mtime.to_string();
        if mtime.len() > 12 {
            // Does not fit the 12-character field; cannot happen before year 33658.
            mtime = "0".to_string();
        }
        let header = format!(
            "{name:<16}{mtime:<12}{uid:<6}{gid:<6}{mode:<8}{size:<10}`\n",
            uid = 0,
            gid = 0,
            mode = "100644",
            size = data.len(),
        );
        if header.len() != HEADER_LEN {
            return Err(ArError::InvalidName {
                name: name.to_string(),
                reason: "member too large for the ar size field",
            });
        }
        let write = |inner: &mut W| -> io::Result<()> {
            inner.write_all(header.as_bytes())?;
            inner.write_all(data)?;
            if data.len() % 2 == 1 {
                inner.write_all(b"\n")?;
            }
            Ok(())
        };
        write(&mut self.inner).map_err(|source| ArError::Write {
            member: name.to_string(),
            source,
        })
    }

    /// Flushes and returns the underlying writer.
    pub fn into_inner(mut self) -> Result<W, ArError> {
        self.inner.flush().map_err(|source| ArError::Write {
            member: "(end of archive)".to_string(),
            source,
        })?;
        Ok(self.inner)
    }
}

fn validate_name(name: &str) -> Result<(), ArError> {
    let reason = if name.is_empty() {
        Some("empty")
    } else if name.len() > MAX_NAME_LEN {
        Some("longer than 16 bytes")
    } else if !name.bytes().all(|b| b.is_ascii_graphic() && b != b'/') {
        Some("only printable ASCII without '/' or spaces is allowed")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(ArError::InvalidName {
            name: name.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(data: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut ar = ArReader::new(data).unwrap();
        let mut out = Vec::new();
        while let Some(mut m) = ar.next_member().unwrap() {
            let mut buf = Vec::new();
            m.read_to_end(&mut buf).unwrap();
            assert_eq!(buf.len() as u64, m.size());
            out.push((m.name().to_string(), buf));
        }
        out
    }

    #[test]
    fn round_trip_with_odd_sizes() {
        let mut w = ArWriter::new(Vec::new(), 1_700_000_000).unwrap();
        w.append("debian-binary", b"2.0\n").unwrap();
        w.append("odd", b"abc").unwrap();
        w.append("empty", b"").unwrap();
        w.append("last", b"x").unwrap();
        let bytes = w.into_inner().unwrap();
        assert_eq!(&bytes[..8], MAGIC);
        assert_eq!(
            &bytes[8..68],
            b"debian-binary   1700000000  0     0     100644  4         `\n"
        );
        assert_eq!(
            read_all(&bytes),
            vec![
                ("debian-binary".to_string(), b"2.0\n".to_vec()),
                ("odd".to_string(), b"abc".to_vec()),
                ("empty".to_string(), Vec::new()),
                ("last".to_string(), b"x".to_vec()),
            ]
        );
    }

    #[test]
    fn skips_unread_members_and_gnu_names() {
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(b"first/          0           0     0     100644  5         `\n");
        bytes.extend_from_slice(b"hello\n");
        bytes.extend_from_slice(b"second/         0           0     0     100644  2         `\n");
        bytes.extend_from_slice(b"hi");
        let mut ar = ArReader::new(&bytes[..]).unwrap();
        let first = ar.next_member().unwrap().unwrap();
        assert_eq!(first.name(), "first");
        let mut second = ar.next_member().unwrap().unwrap();
        assert_eq!(second.name(), "second");
        let mut data = String::new();
        second.read_to_string(&mut data).unwrap();
        assert_eq!(data, "hi");
        assert!(ar.next_member().unwrap().is_none());
    }

    #[test]
    fn rejects_garbage() {
        assert!(matches!(
            ArReader::new(&b"!<arch>"[..]),
            Err(ArError::BadMagic)
        ));
        assert!(matches!(
            ArReader::new(&b"PK\x03\x04xxxx"[..]),
            Err(ArError::BadMagic)
        ));
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(b"short");
        let mut ar = ArReader::new(&bytes[..]).unwrap();
        assert!(matches!(
            ar.next_member(),
            Err(ArError::TruncatedHeader { .. })
        ));

        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(b"m               0           0     0     100644  10        `\n");
        bytes.extend_from_slice(b"abc");
        let mut ar = ArReader::new(&bytes[..]).unwrap();
        let mut m = ar.next_member().unwrap().unwrap();
        let mut buf = Vec::new();
        assert!(m.read_to_end(&mut buf).is_err());

        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(b"m               0           0     0     100644  1x        `\n");
        let mut ar = ArReader::new(&bytes[..]).unwrap();
        assert!(matches!(ar.next_member(), Err(ArError::BadHeader { .. })));
    }

    #[test]
    fn writer_rejects_bad_names() {
        let mut w = ArWriter::new(Vec::new(), 0).unwrap();
        for name in ["", "a/b", "with space", "seventeen-chars-x"] {
            assert!(
                matches!(w.append(name, b""), Err(ArError::InvalidName { .. })),
                "{name:?}"
            );
        }
    }
}
