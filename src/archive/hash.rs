//! SHA256 sums as the archive names them. An index's `SHA256` text becomes a
//! [`Sha256`] only when it is exactly 64 hex digits, so nothing an index says
//! reaches a file name (`blobs/<hex>`) unparsed.

use std::fmt;

/// A SHA256 sum: exactly 32 bytes. Shown as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256([u8; 32]);

/// Text that is not 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad SHA256 {text:?}: expected 64 hex digits")]
pub struct BadSha256 {
    /// The text, shortened to 80 characters.
    pub text: String,
}

impl Sha256 {
    /// Parses exactly 64 hex digits (either case).
    pub fn parse(s: &str) -> Result<Sha256, BadSha256> {
        let bad = || BadSha256 {
            text: s.chars().take(80).collect(),
        };
        if s.len() != 64 {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| bad())?;
        Ok(Sha256(out))
    }

    /// The sum of `data`.
    pub fn digest(data: &[u8]) -> Sha256 {
        use sha2::Digest;
        Sha256(sha2::Sha256::digest(data).into())
    }

    /// The sum a finished hasher holds.
    pub fn from_hasher(h: sha2::Sha256) -> Sha256 {
        use sha2::Digest;
        Sha256(h.finalize().into())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// 64 lowercase hex digits: the only form that names a cache file.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl From<[u8; 32]> for Sha256 {
    fn from(b: [u8; 32]) -> Self {
        Sha256(b)
    }
}

impl std::str::FromStr for Sha256 {
    type Err = BadSha256;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Sha256::parse(s)
    }
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256({self})")
    }
}

impl serde::Serialize for Sha256 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for Sha256 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Sha256::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_64_hex_digits_parse() {
        let h = "0123456789ABCDEF".repeat(4);
        let s = Sha256::parse(&h).unwrap();
        assert_eq!(s.to_string(), h.to_ascii_lowercase());
        assert_eq!(format!("{s}"), s.to_hex());
        for bad in [
            "",
            "ab",
            "../../../victim/x",
            &format!("{}/", "a".repeat(63)),
            &"g".repeat(64),
            &format!("{}\n", "a".repeat(63)),
            &"a".repeat(65),
            // 64 bytes but not ASCII hex digits.
            &format!("{}é", "a".repeat(62)),
        ] {
            let e = Sha256::parse(bad).unwrap_err();
            assert!(e.to_string().contains("expected 64 hex digits"), "{e}");
        }
        assert_eq!(
            Sha256::digest(b"").to_string(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn serde_is_the_hex_string() {
        let s = Sha256::digest(b"x");
        let j = serde_json::to_string(&s).unwrap();
        assert_eq!(j, format!("\"{s}\""));
        assert_eq!(serde_json::from_str::<Sha256>(&j).unwrap(), s);
        assert!(serde_json::from_str::<Sha256>("\"../x\"").is_err());
    }
}
