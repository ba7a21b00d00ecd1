//! A fast parser for deb822 control data (Release, Packages, dpkg status):
//! stanzas of `Field: value` lines separated by blank lines, with folded
//! continuation lines. It borrows from the input and allocates one small
//! vector per stanza, so a full Packages index (~70,000 stanzas) parses in
//! tens of milliseconds.

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{origin}: line {line}: {message}")]
pub struct Deb822Error {
    pub origin: String,
    pub line: usize,
    pub message: String,
}

/// One stanza: fields in file order. Values keep their continuation lines
/// (each starting with `\n` and a space or tab); the first line is trimmed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stanza<'a> {
    pub fields: Vec<(&'a str, &'a str)>,
    /// 1-based line number of the stanza's first field.
    pub line: usize,
}

impl<'a> Stanza<'a> {
    /// A field's value; field names are case-insensitive.
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    /// The continuation lines of a multi-line field (such as `SHA256` in a
    /// Release file), trimmed, without the (usually empty) first line.
    pub fn lines(&self, name: &str) -> impl Iterator<Item = &'a str> {
        let value = self.get(name).unwrap_or("");
        value
            .split('\n')
            .skip(1)
            .map(|l| l.trim())
            .filter(|l| !l.is_empty())
    }
}

/// Iterates the stanzas of `text`. `origin` names the file in errors.
pub struct Stanzas<'a> {
    text: &'a str,
    pos: usize,
    line: usize,
    origin: &'a str,
}

pub fn stanzas<'a>(text: &'a str, origin: &'a str) -> Stanzas<'a> {
    Stanzas {
        text,
        pos: 0,
        line: 0,
        origin,
    }
}

/// Parses all stanzas, stopping at the first error.
pub fn parse<'a>(text: &'a str, origin: &'a str) -> Result<Vec<Stanza<'a>>, Deb822Error> {
    stanzas(text, origin).collect()
}

impl<'a> Stanzas<'a> {
    fn err(&self, line: usize, message: impl Into<String>) -> Deb822Error {
        Deb822Error {
            origin: self.origin.to_string(),
            line,
            message: message.into(),
        }
    }

    /// The next line (without its newline) and the offset after it.
    fn next_line(&mut self) -> Option<&'a str> {
        if self.pos >= self.text.len() {
            return None;
        }
        let rest = &self.text[self.pos..];
        let (line, advance) = match memchr_newline(rest.as_bytes()) {
            Some(i) => (&rest[..i], i + 1),
            None => (rest, rest.len()),
        };
        self.pos += advance;
        self.line += 1;
        Some(line)
    }
}

fn memchr_newline(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
}

impl<'a> Iterator for Stanzas<'a> {
    type Item = Result<Stanza<'a>, Deb822Error>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut stanza = Stanza::default();
        // Start offset and end offset of the current field's value.
        let mut current: Option<(&'a str, usize, usize)> = None;
        loop {
            let line_start = self.pos;
            let Some(line) = self.next_line() else { break };
            let bytes = line.as_bytes();
            if bytes.is_empty() || line.trim().is_empty() {
                if stanza.fields.is_empty() && current.is_none() {
                    continue; // blank lines between stanzas
                }
                break;
            }
            match bytes[0] {
                b'#' if current.is_none() && stanza.fields.is_empty() => continue,
                b' ' | b'\t' => {
                    let Some((_, _, end)) = current.as_mut() else {
                        return Some(Err(self.err(self.line, "continuation line without a field")));
                    };
                    *end = line_start + line.len();
                }
                _ => {
                    let Some(colon) = line.find(':') else {
                        return Some(Err(self.err(
                            self.line,
                            format!("expected 'Field: value', found {:?}", truncate(line)),
                        )));
                    };
                    if let Some((name, start, end)) = current.take() {
                        stanza.fields.push((name, self.value(start, end)));
                    }
                    if stanza.fields.is_empty() {
                        stanza.line = self.line;
                    }
                    let name = &line[..colon];
                    if name.is_empty() || name.contains(char::is_whitespace) {
                        return Some(Err(
                            self.err(self.line, format!("bad field name {:?}", truncate(name)))
                        ));
                    }
                    let start = line_start + colon + 1;
                    current = Some((name, start, line_start + line.len()));
                }
            }
        }
        if let Some((name, start, end)) = current.take() {
            stanza.fields.push((name, self.value(start, end)));
        }
        if stanza.fields.is_empty() {
            None
        } else {
            Some(Ok(stanza))
        }
    }
}

impl<'a> Stanzas<'a> {
    /// The value between `start` and `end`: leading blanks of the first line
    /// and trailing blanks (and a trailing `\r`) of the whole value removed.
    fn value(&self, start: usize, end: usize) -> &'a str {
        self.text[start..end]
            .trim_start_matches([' ', '\t'])
            .trim_end_matches([' ', '\t', '\r'])
    }
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(60) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stanzas_fields_and_continuations() {
        let text = "Package: a\nVersion: 1.0\nDescription: short\n long line\n .\n more\n\n\n\
                    Package: b\nDepends: x (>= 1),\n y\nMulti-Arch:foreign\n";
        let s = parse(text, "test").unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].get("package"), Some("a"));
        assert_eq!(
            s[0].get("Description"),
            Some("short\n long line\n .\n more")
        );
        assert_eq!(s[0].line, 1);
        assert_eq!(s[1].get("Depends"), Some("x (>= 1),\n y"));
        assert_eq!(s[1].get("Multi-Arch"), Some("foreign"));
        assert_eq!(s[1].line, 9);
        assert_eq!(s[1].get("Missing"), None);
    }

    #[test]
    fn multi_line_fields_list_their_lines() {
        let text = "Suite: x\nSHA256:\n aa 12 main/a\n bb 34 main/b\nDate: now\n";
        let s = parse(text, "Release").unwrap();
        let lines: Vec<_> = s[0].lines("SHA256").collect();
        assert_eq!(lines, ["aa 12 main/a", "bb 34 main/b"]);
        assert_eq!(s[0].get("Date"), Some("now"));
    }

    #[test]
    fn crlf_and_trailing_blanks_are_trimmed() {
        let s = parse("A: 1 \r\nB:  two\t\r\n", "t").unwrap();
        assert_eq!(s[0].get("A"), Some("1"));
        assert_eq!(s[0].get("B"), Some("two"));
    }

    #[test]
    fn errors_name_the_origin_and_line() {
        let e = parse("A: 1\nno colon here\n", "Packages").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(
            e.to_string().starts_with("Packages: line 2: expected"),
            "{e}"
        );
        let e = parse(" leading continuation\n", "P").unwrap_err();
        assert_eq!(
            e.to_string(),
            "P: line 1: continuation line without a field"
        );
    }

    #[test]
    fn empty_input_has_no_stanzas() {
        assert!(parse("", "t").unwrap().is_empty());
        assert!(parse("\n\n  \n", "t").unwrap().is_empty());
    }
}
