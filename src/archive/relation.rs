//! Debian relationship fields (Depends, Provides, Breaks…), parsed for every package resolved.
//!
//! The syntax is Debian Policy §7.1: a comma-separated list of entries, each
//! a `|`-separated list of alternatives, each a package name with an optional
//! architecture qualifier (`:any`, `:native`, `:amd64`) and an optional
//! version restriction in parentheses (`(>= 2.36)`). Whitespace, including
//! the newlines of folded fields, may appear between any two tokens.
//!
//! Architecture restriction lists (`[amd64 !arm64]`) and build-profile lists
//! (`<!nocheck>`) only appear in source package fields (Build-Depends…);
//! binary `Packages` indexes never carry them, because dpkg-gencontrol
//! evaluates them away. They are accepted and skipped so that the parser is
//! tolerant, but their content is not kept.
//!
//! The parser is a hand-written scanner over bytes; it allocates only the
//! returned vectors and strings (and the error, when there is one).

use std::fmt;

use super::version;

/// A version relation operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Op {
    /// `<<`
    Lt,
    /// `<=` (also the obsolete `<`)
    Le,
    /// `=`
    Eq,
    /// `>=` (also the obsolete `>`)
    Ge,
    /// `>>`
    Gt,
}

impl Op {
    /// The operator as written in a relationship field.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Lt => "<<",
            Op::Le => "<=",
            Op::Eq => "=",
            Op::Ge => ">=",
            Op::Gt => ">>",
        }
    }

    /// Whether a candidate that compares `ordering` to the required version
    /// satisfies this operator.
    pub fn accepts(self, ordering: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::*;
        match self {
            Op::Lt => ordering == Less,
            Op::Le => ordering != Greater,
            Op::Eq => ordering == Equal,
            Op::Ge => ordering != Less,
            Op::Gt => ordering == Greater,
        }
    }

    /// Parses an operator token; the obsolete `<` and `>` mean `<=` and `>=`
    /// as in dpkg.
    fn parse(token: &[u8]) -> Option<Op> {
        Some(match token {
            b"<<" => Op::Lt,
            b"<=" | b"<" => Op::Le,
            b"=" => Op::Eq,
            b">=" | b">" => Op::Ge,
            b">>" => Op::Gt,
            _ => return None,
        })
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A version restriction such as `>= 2.36`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct VersionReq {
    pub op: Op,
    pub version: String,
}

impl VersionReq {
    /// Whether `version` satisfies this restriction, in dpkg's version order.
    pub fn matches(&self, version: &str) -> bool {
        self.op.accepts(version::compare(version, &self.version))
    }
}

impl fmt::Display for VersionReq {
    /// Writes `>= 2.36`, without the parentheses.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.op, self.version)
    }
}

/// An architecture qualifier after `:` in a relation.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub enum ArchQual {
    /// `pkg:any`: any architecture, for `Multi-Arch: allowed` packages.
    Any,
    /// `pkg:native`: the native architecture (source packages only).
    Native,
    /// `pkg:amd64` and the like.
    Named(String),
}

impl ArchQual {
    fn parse(name: &str) -> ArchQual {
        match name {
            "any" => ArchQual::Any,
            "native" => ArchQual::Native,
            _ => ArchQual::Named(name.to_owned()),
        }
    }

    /// The qualifier as written after the `:`.
    pub fn as_str(&self) -> &str {
        match self {
            ArchQual::Any => "any",
            ArchQual::Native => "native",
            ArchQual::Named(name) => name,
        }
    }
}

impl fmt::Display for ArchQual {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One package reference: `libc6 (>= 2.36)`, `python3:any`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Relation {
    pub name: String,
    pub arch: Option<ArchQual>,
    pub version: Option<VersionReq>,
}

impl fmt::Display for Relation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(arch) = &self.arch {
            write!(f, ":{arch}")?;
        }
        if let Some(version) = &self.version {
            write!(f, " ({version})")?;
        }
        Ok(())
    }
}

/// One entry of a relationship field: alternatives separated by `|`.
pub type Alternatives = Vec<Relation>;

/// Why a relationship field could not be parsed. Each message quotes the
/// whole field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RelationError {
    #[error("unknown version operator {op:?} in relationship field {field:?}")]
    UnknownOperator { field: String, op: String },
    #[error("unclosed parenthesis in relationship field {field:?}")]
    UnclosedParen { field: String },
    #[error("missing version after {op:?} in relationship field {field:?}")]
    MissingVersion { field: String, op: String },
    #[error("empty package name in an alternative in relationship field {field:?}")]
    EmptyName { field: String },
    #[error("empty architecture qualifier after {name:?} in relationship field {field:?}")]
    EmptyArch { field: String, name: String },
    #[error("more than one version restriction for {name:?} in relationship field {field:?}")]
    DuplicateVersion { field: String, name: String },
    #[error("unclosed architecture list '[' in relationship field {field:?}")]
    UnclosedArchList { field: String },
    #[error("unclosed build profile list '<' in relationship field {field:?}")]
    UnclosedProfileList { field: String },
    #[error("unexpected {found:?} at byte {offset} in relationship field {field:?}")]
    Unexpected {
        field: String,
        found: char,
        offset: usize,
    },
    #[error("alternatives ('|') are not allowed in provides field {field:?}")]
    AlternativeInProvides { field: String },
    #[error("provides entry {name:?} uses {op:?} but only \"=\" is allowed, in field {field:?}")]
    ProvidesOperator {
        field: String,
        name: String,
        op: String,
    },
}

/// Parses a relationship field value (Depends, Pre-Depends, Recommends,
/// Suggests, Conflicts, Breaks, Replaces, Enhances…) into its entries.
///
/// An empty field gives an empty list; empty entries (`a, , b,`) are
/// ignored. Architecture restriction and build-profile lists are skipped.
pub fn parse_relations(field: &str) -> Result<Vec<Alternatives>, RelationError> {
    let mut p = Parser::new(field);
    let mut entries = Vec::new();
    while p.start_entry() {
        let mut alternatives = Vec::with_capacity(1);
        loop {
            alternatives.push(p.relation()?);
            match p.separator()? {
                Sep::Alternative => continue,
                Sep::Entry | Sep::End => break,
            }
        }
        entries.push(alternatives);
    }
    Ok(entries)
}

/// Parses a Provides field value: like [`parse_relations`] but without
/// alternatives, and a version, if any, must use `=` (Policy §7.5).
pub fn parse_provides(field: &str) -> Result<Vec<Relation>, RelationError> {
    let mut p = Parser::new(field);
    let mut provides = Vec::new();
    while p.start_entry() {
        let relation = p.relation()?;
        if let Some(req) = &relation.version {
            if req.op != Op::Eq {
                return Err(RelationError::ProvidesOperator {
                    field: field.to_owned(),
                    name: relation.name,
                    op: req.op.as_str().to_owned(),
                });
            }
        }
        if p.separator()? == Sep::Alternative {
            return Err(RelationError::AlternativeInProvides {
                field: field.to_owned(),
            });
        }
        provides.push(relation);
    }
    Ok(provides)
}

/// What follows a relation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sep {
    /// `|`: another alternative of the same entry.
    Alternative,
    /// `,`: a new entry.
    Entry,
    /// The end of the field.
    End,
}

/// Bytes that end a package name or an architecture name.
fn ends_name(c: u8) -> bool {
    c.is_ascii_whitespace()
        || matches!(
            c,
            b',' | b'|' | b':' | b'(' | b')' | b'[' | b']' | b'<' | b'>' | b'='
        )
}

/// Bytes that may make up a version operator.
fn is_op_byte(c: u8) -> bool {
    matches!(c, b'<' | b'>' | b'=' | b'!')
}

/// Bytes that end a version inside parentheses.
fn ends_version(c: u8) -> bool {
    c.is_ascii_whitespace() || matches!(c, b')' | b'(' | b',' | b'|')
}

struct Parser<'a> {
    field: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(field: &'a str) -> Self {
        Parser {
            field,
            bytes: field.as_bytes(),
            pos: 0,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    /// Advances while `keep` holds and returns the bytes passed over. All
    /// stop conditions are ASCII, so the slice is on character boundaries.
    fn take_while(&mut self, keep: impl Fn(u8) -> bool) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(&keep) {
            self.pos += 1;
        }
        &self.field[start..self.pos]
    }

    fn field(&self) -> String {
        self.field.to_owned()
    }

    fn unexpected(&self) -> RelationError {
        RelationError::Unexpected {
            field: self.field(),
            found: self.field[self.pos..].chars().next().unwrap_or('\0'),
            offset: self.pos,
        }
    }

    /// Skips whitespace and empty entries; returns whether a relation
    /// follows.
    fn start_entry(&mut self) -> bool {
        loop {
            self.skip_ws();
            match self.peek() {
                None => return false,
                Some(b',') => self.pos += 1,
                Some(_) => return true,
            }
        }
    }

    /// Consumes the separator after a relation.
    fn separator(&mut self) -> Result<Sep, RelationError> {
        self.skip_ws();
        let sep = match self.peek() {
            None => return Ok(Sep::End),
            Some(b'|') => Sep::Alternative,
            Some(b',') => Sep::Entry,
            Some(_) => return Err(self.unexpected()),
        };
        self.pos += 1;
        Ok(sep)
    }

    /// Parses `name[:arch] [(op version)] [[arch list]] [<profiles>...]`.
    fn relation(&mut self) -> Result<Relation, RelationError> {
        self.skip_ws();
        let name = self.take_while(|c| !ends_name(c));
        if name.is_empty() {
            return Err(match self.peek() {
                None | Some(b'|' | b',' | b'(' | b':' | b'[' | b'<') => RelationError::EmptyName {
                    field: self.field(),
                },
                Some(_) => self.unexpected(),
            });
        }
        let arch = if self.peek() == Some(b':') {
            self.pos += 1;
            let arch = self.take_while(|c| !ends_name(c));
            if arch.is_empty() {
                return Err(RelationError::EmptyArch {
                    field: self.field(),
                    name: name.to_owned(),
                });
            }
            Some(ArchQual::parse(arch))
        } else {
            None
        };
        let mut version = None;
        loop {
            self.skip_ws();
            match self.peek() {
                Some(b'(') => {
                    if version.is_some() {
                        return Err(RelationError::DuplicateVersion {
                            field: self.field(),
                            name: name.to_owned(),
                        });
                    }
                    self.pos += 1;
                    version = Some(self.version_req()?);
                }
                Some(b'[') => {
                    self.pos += 1;
                    if !self.skip_list(b']') {
                        return Err(RelationError::UnclosedArchList {
                            field: self.field(),
                        });
                    }
                }
                Some(b'<') => {
                    self.pos += 1;
                    if !self.skip_list(b'>') {
                        return Err(RelationError::UnclosedProfileList {
                            field: self.field(),
                        });
                    }
                }
                _ => break,
            }
        }
        Ok(Relation {
            name: name.to_owned(),
            arch,
            version,
        })
    }

    /// Parses `op version)` after the `(`.
    fn version_req(&mut self) -> Result<VersionReq, RelationError> {
        self.skip_ws();
        let op_token = self.take_while(is_op_byte);
        self.skip_ws();
        let version = self.take_while(|c| !ends_version(c));
        let op = if op_token.is_empty() {
            if version.is_empty() {
                // `()` or an unterminated `(`.
                return Err(match self.peek() {
                    Some(b')') => RelationError::MissingVersion {
                        field: self.field(),
                        op: String::new(),
                    },
                    None | Some(b',' | b'|') => RelationError::UnclosedParen {
                        field: self.field(),
                    },
                    Some(_) => self.unexpected(),
                });
            }
            if !version.as_bytes()[0].is_ascii_digit() {
                // Something like `~=` or `lt`: not an operator dpkg knows.
                return Err(RelationError::UnknownOperator {
                    field: self.field(),
                    op: version.to_owned(),
                });
            }
            // dpkg accepts `(1.0)` as `(= 1.0)` with a warning.
            Op::Eq
        } else {
            Op::parse(op_token.as_bytes()).ok_or_else(|| RelationError::UnknownOperator {
                field: self.field(),
                op: op_token.to_owned(),
            })?
        };
        self.skip_ws();
        match self.peek() {
            Some(b')') if version.is_empty() => Err(RelationError::MissingVersion {
                field: self.field(),
                op: op_token.to_owned(),
            }),
            Some(b')') => {
                self.pos += 1;
                Ok(VersionReq {
                    op,
                    version: version.to_owned(),
                })
            }
            None | Some(b',' | b'|') => Err(RelationError::UnclosedParen {
                field: self.field(),
            }),
            Some(_) => Err(self.unexpected()),
        }
    }

    /// Skips an architecture or build-profile list up to and including
    /// `close`. Those lists hold names, `!` and whitespace only; a
    /// structural character before `close` means the list is unclosed, and
    /// then this returns false.
    fn skip_list(&mut self, close: u8) -> bool {
        while let Some(c) = self.peek() {
            if c == close {
                self.pos += 1;
                return true;
            }
            if matches!(c, b',' | b'|' | b'(' | b')' | b'[' | b']' | b'<' | b'>') {
                break;
            }
            self.pos += 1;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(name: &str) -> Relation {
        Relation {
            name: name.into(),
            arch: None,
            version: None,
        }
    }

    fn relv(name: &str, op: Op, version: &str) -> Relation {
        Relation {
            name: name.into(),
            arch: None,
            version: Some(VersionReq {
                op,
                version: version.into(),
            }),
        }
    }

    fn with_arch(mut r: Relation, arch: ArchQual) -> Relation {
        r.arch = Some(arch);
        r
    }

    fn parse(field: &str) -> Vec<Alternatives> {
        parse_relations(field).unwrap_or_else(|e| panic!("{field:?}: {e}"))
    }

    #[test]
    fn simple_list() {
        assert_eq!(
            parse("libc6 (>= 2.36), libssl3 (>= 3.0.0), zlib1g"),
            vec![
                vec![relv("libc6", Op::Ge, "2.36")],
                vec![relv("libssl3", Op::Ge, "3.0.0")],
                vec![rel("zlib1g")],
            ]
        );
    }

    #[test]
    fn alternatives() {
        assert_eq!(
            parse("libc6 (>= 2.36) | libc6-udeb, debconf (>= 0.5) | debconf-2.0"),
            vec![
                vec![relv("libc6", Op::Ge, "2.36"), rel("libc6-udeb")],
                vec![relv("debconf", Op::Ge, "0.5"), rel("debconf-2.0")],
            ]
        );
        assert_eq!(parse("a|b|c"), vec![vec![rel("a"), rel("b"), rel("c")]]);
    }

    #[test]
    fn all_operators() {
        let cases = [
            ("<<", Op::Lt),
            ("<=", Op::Le),
            ("<", Op::Le),
            ("=", Op::Eq),
            (">=", Op::Ge),
            (">", Op::Ge),
            (">>", Op::Gt),
        ];
        for (token, op) in cases {
            let field = format!("foo ({token} 1.0)");
            assert_eq!(parse(&field), vec![vec![relv("foo", op, "1.0")]], "{field}");
        }
    }

    #[test]
    fn whitespace_anywhere() {
        let expected = vec![vec![relv("foo", Op::Ge, "1")]];
        for field in [
            "foo(>=1)",
            "foo ( >= 1 )",
            "foo (>=1 )",
            "  foo\n (>=\n 1)\n",
            "\tfoo\t(\t>=\t1\t)\t",
            "foo (>= 1),",
            ",foo (>= 1)",
        ] {
            assert_eq!(parse(field), expected, "{field:?}");
        }
        assert_eq!(
            parse("a,\n b |\n c,\n d"),
            vec![vec![rel("a")], vec![rel("b"), rel("c")], vec![rel("d")]]
        );
    }

    #[test]
    fn empty_fields_and_entries() {
        assert_eq!(parse(""), Vec::<Alternatives>::new());
        assert_eq!(parse("   \n "), Vec::<Alternatives>::new());
        assert_eq!(parse(","), Vec::<Alternatives>::new());
        assert_eq!(parse("a, b,"), vec![vec![rel("a")], vec![rel("b")]]);
        assert_eq!(parse("a, , ,b"), vec![vec![rel("a")], vec![rel("b")]]);
    }

    #[test]
    fn arch_qualifiers() {
        assert_eq!(
            parse("python3:any, libfoo:native (>= 1), gcc-12:amd64 (= 12.2.0-14)"),
            vec![
                vec![with_arch(rel("python3"), ArchQual::Any)],
                vec![with_arch(relv("libfoo", Op::Ge, "1"), ArchQual::Native)],
                vec![with_arch(
                    relv("gcc-12", Op::Eq, "12.2.0-14"),
                    ArchQual::Named("amd64".into())
                )],
            ]
        );
        assert_eq!(
            parse("python3:any(>=3.11)"),
            vec![vec![with_arch(
                relv("python3", Op::Ge, "3.11"),
                ArchQual::Any
            )]]
        );
    }

    #[test]
    fn versions_with_epochs_and_hyphens() {
        assert_eq!(
            parse("libfoo (>= 1:2.0-3~bpo12+1), bar (<< 2.0~)"),
            vec![
                vec![relv("libfoo", Op::Ge, "1:2.0-3~bpo12+1")],
                vec![relv("bar", Op::Lt, "2.0~")],
            ]
        );
    }

    #[test]
    fn arch_lists_and_profiles_are_skipped() {
        assert_eq!(
            parse(
                "debhelper-compat (= 13), libfoo-dev [amd64 !arm64] <!nocheck>, \
                 bar (>= 1) [linux-any] <!stage1 !cross> <pkg.foo.bar>, baz [ i386 ]|qux <nocheck>"
            ),
            vec![
                vec![relv("debhelper-compat", Op::Eq, "13")],
                vec![rel("libfoo-dev")],
                vec![relv("bar", Op::Ge, "1")],
                vec![rel("baz"), rel("qux")],
            ]
        );
        assert_eq!(parse("foo[amd64]<!nocheck>"), vec![vec![rel("foo")]]);
    }

    #[test]
    fn implicit_equal_like_dpkg() {
        assert_eq!(parse("foo (1.0)"), vec![vec![relv("foo", Op::Eq, "1.0")]]);
    }

    #[test]
    fn non_ascii_names_do_not_panic() {
        assert_eq!(parse("fóo"), vec![vec![rel("fóo")]]);
        let e = parse_relations("foo (>= 1) é").unwrap_err();
        assert!(
            matches!(e, RelationError::Unexpected { found: 'é', .. }),
            "{e:?}"
        );
    }

    fn err(field: &str) -> RelationError {
        match parse_relations(field) {
            Ok(v) => panic!("{field:?} parsed as {v:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn errors_unknown_operators() {
        let f = |s: &str| s.to_owned();
        assert_eq!(
            err("foo (=> 1)"),
            RelationError::UnknownOperator {
                field: f("foo (=> 1)"),
                op: f("=>")
            }
        );
        assert_eq!(
            err("foo (!= 1)"),
            RelationError::UnknownOperator {
                field: f("foo (!= 1)"),
                op: f("!=")
            }
        );
        assert_eq!(
            err("foo (~= 1)"),
            RelationError::UnknownOperator {
                field: f("foo (~= 1)"),
                op: f("~=")
            }
        );
    }

    #[test]
    fn errors_unclosed_parentheses() {
        let f = |s: &str| s.to_owned();
        assert_eq!(
            err("foo (>= 1"),
            RelationError::UnclosedParen {
                field: f("foo (>= 1")
            }
        );
        assert_eq!(
            err("foo (>= 1, bar"),
            RelationError::UnclosedParen {
                field: f("foo (>= 1, bar")
            }
        );
        assert_eq!(
            err("foo (>="),
            RelationError::UnclosedParen {
                field: f("foo (>=")
            }
        );
        assert_eq!(
            err("foo ("),
            RelationError::UnclosedParen { field: f("foo (") }
        );
    }

    #[test]
    fn errors_missing_versions() {
        let f = |s: &str| s.to_owned();
        assert_eq!(
            err("foo (>= )"),
            RelationError::MissingVersion {
                field: f("foo (>= )"),
                op: f(">=")
            }
        );
        assert_eq!(
            err("foo ()"),
            RelationError::MissingVersion {
                field: f("foo ()"),
                op: f("")
            }
        );
    }

    #[test]
    fn errors_empty_names_and_arches_and_duplicate_versions() {
        let f = |s: &str| s.to_owned();
        for field in ["a | , b", "| a", "a |", "a || b", "a, (>= 1)", "a, :amd64"] {
            assert_eq!(
                err(field),
                RelationError::EmptyName { field: f(field) },
                "{field:?}"
            );
        }
        assert_eq!(
            err("foo: (>= 1)"),
            RelationError::EmptyArch {
                field: f("foo: (>= 1)"),
                name: f("foo")
            }
        );
        assert_eq!(
            err("foo (>= 1) (<< 2)"),
            RelationError::DuplicateVersion {
                field: f("foo (>= 1) (<< 2)"),
                name: f("foo")
            }
        );
    }

    #[test]
    fn errors_unclosed_arch_and_profile_lists() {
        let f = |s: &str| s.to_owned();
        assert_eq!(
            err("foo [amd64, bar"),
            RelationError::UnclosedArchList {
                field: f("foo [amd64, bar")
            }
        );
        assert_eq!(
            err("foo <!nocheck"),
            RelationError::UnclosedProfileList {
                field: f("foo <!nocheck")
            }
        );
    }

    #[test]
    fn errors_unexpected_characters() {
        let f = |s: &str| s.to_owned();
        assert_eq!(
            err("foo bar"),
            RelationError::Unexpected {
                field: f("foo bar"),
                found: 'b',
                offset: 4
            }
        );
        assert_eq!(
            err("foo>=1"),
            RelationError::Unexpected {
                field: f("foo>=1"),
                found: '>',
                offset: 3
            }
        );
        assert_eq!(
            err("foo (>= 1 2)"),
            RelationError::Unexpected {
                field: f("foo (>= 1 2)"),
                found: '2',
                offset: 10
            }
        );
        assert_eq!(
            err("foo)"),
            RelationError::Unexpected {
                field: f("foo)"),
                found: ')',
                offset: 3
            }
        );
    }

    #[test]
    fn error_messages() {
        assert_eq!(
            err("foo (=> 1)").to_string(),
            "unknown version operator \"=>\" in relationship field \"foo (=> 1)\""
        );
        assert_eq!(
            err("foo (>= 1").to_string(),
            "unclosed parenthesis in relationship field \"foo (>= 1\""
        );
        assert_eq!(
            err("foo (>= )").to_string(),
            "missing version after \">=\" in relationship field \"foo (>= )\""
        );
        assert_eq!(
            err("a |\n b |").to_string(),
            "empty package name in an alternative in relationship field \"a |\\n b |\""
        );
        for field in ["foo (=> 1)", "a |", "foo bar", "foo [x", "foo:"] {
            let msg = err(field).to_string();
            assert!(msg.starts_with(|c: char| c.is_lowercase()), "{msg}");
            assert!(!msg.ends_with('.'), "{msg}");
            assert!(msg.contains(&format!("{field:?}")), "{msg}");
        }
    }

    #[test]
    fn display() {
        let r = parse("libc6 (>= 2.36), python3:any, gcc:amd64 (<< 13), foo (< 1)");
        let shown: Vec<String> = r.iter().map(|a| a[0].to_string()).collect();
        assert_eq!(
            shown,
            [
                "libc6 (>= 2.36)",
                "python3:any",
                "gcc:amd64 (<< 13)",
                "foo (<= 1)"
            ]
        );
        assert_eq!(r[0][0].version.as_ref().unwrap().to_string(), ">= 2.36");
        // Display output parses back to the same relation.
        for (alts, text) in r.iter().zip(&shown) {
            assert_eq!(&parse(text)[0], alts);
        }
    }

    #[test]
    fn version_req_matches() {
        let req = |op, v: &str| VersionReq {
            op,
            version: v.into(),
        };
        assert!(req(Op::Ge, "2.36").matches("2.36-9+deb12u4"));
        assert!(req(Op::Ge, "2.36").matches("2.36"));
        assert!(!req(Op::Ge, "2.36").matches("2.36~rc1"));
        assert!(req(Op::Lt, "2.0").matches("2.0~beta"));
        assert!(!req(Op::Lt, "2.0").matches("2.0"));
        assert!(req(Op::Le, "2.0").matches("2.0"));
        assert!(!req(Op::Le, "2.0").matches("1:0"));
        assert!(req(Op::Eq, "1.0").matches("0:1.0-0"));
        assert!(!req(Op::Eq, "1.0").matches("1.0-1"));
        assert!(req(Op::Gt, "1.0").matches("1.0-1"));
        assert!(!req(Op::Gt, "1.0").matches("1.0"));
    }

    #[test]
    fn provides() {
        assert_eq!(
            parse_provides("mail-transport-agent, libfoo-abi-2 (= 2.1), python3:any,").unwrap(),
            vec![
                rel("mail-transport-agent"),
                relv("libfoo-abi-2", Op::Eq, "2.1"),
                with_arch(rel("python3"), ArchQual::Any),
            ]
        );
        assert_eq!(parse_provides("").unwrap(), vec![]);
        assert_eq!(
            parse_provides("a, b | c").unwrap_err(),
            RelationError::AlternativeInProvides {
                field: "a, b | c".into()
            }
        );
        assert_eq!(
            parse_provides("a (>= 1)").unwrap_err(),
            RelationError::ProvidesOperator {
                field: "a (>= 1)".into(),
                name: "a".into(),
                op: ">=".into()
            }
        );
        assert_eq!(
            parse_provides("a (>= 1)").unwrap_err().to_string(),
            "provides entry \"a\" uses \">=\" but only \"=\" is allowed, in field \"a (>= 1)\""
        );
        assert!(matches!(
            parse_provides("a (= 1"),
            Err(RelationError::UnclosedParen { .. })
        ));
    }

    #[test]
    fn serializes() {
        // serde_json is a regular dependency of the crate.
        let r = &parse("python3:any (>= 3.11)")[0][0];
        let json = serde_json::to_string(r).unwrap();
        assert_eq!(
            json,
            r#"{"name":"python3","arch":"Any","version":{"op":"Ge","version":"3.11"}}"#
        );
    }
}
