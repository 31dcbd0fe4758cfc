//! Regular expressions for plugins: RE2 syntax, search semantics, matched
//! by the host (`wit/regex.wit`).
//!
//! In a component, [`is_match`] calls the host's `jobset:policy/regex`
//! import, so a plugin carries no regex engine and a pattern is compiled
//! once per host, not once per decision. Natively (plugin unit tests, and
//! the host itself, which answers the import with this very function) it
//! runs the same engine with the same limits here, so a policy matches the
//! same way in `cargo test` as in the cluster.

/// The longest pattern accepted, in bytes.
pub const MAX_PATTERN_BYTES: usize = 1 << 10;
/// The most a pattern may compile to, in bytes: the engine's limit on the
/// compiled program and on each matching thread's lazy DFA cache. With at
/// most 64 patterns kept, this bounds what the host holds for plugins'
/// patterns to tens of MiB even when every one is as large as allowed.
pub const MAX_COMPILED_BYTES: usize = 256 << 10;
/// The longest text accepted, in bytes.
pub const MAX_TEXT_BYTES: usize = 64 << 10;

/// The generated import of `jobset:policy/regex` (for a plugin's
/// `wit_bindgen::generate!` `with` mapping).
pub use crate::generated::jobset::policy::regex as import;

/// Whether `pattern` matches somewhere in `text` (a search, as Go's
/// `regexp.MatchString`). An error names the reason: the pattern does not
/// parse, or a limit above is exceeded.
pub fn is_match(pattern: &str, text: &str) -> Result<bool, alloc::string::String> {
    #[cfg(target_arch = "wasm32")]
    {
        import::is_match(pattern, text)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        native::is_match(pattern, text)
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod native {
    extern crate std;

    use alloc::boxed::Box;
    use alloc::format;
    use alloc::string::{String, ToString};
    use alloc::vec;
    use regex_syntax::ast::{
        AssertionKind, Ast, ClassBracketed, ClassPerl, ClassPerlKind, ClassSet, ClassSetItem,
        ClassSetRange, ClassSetUnion, Flag, Flags, FlagsItem, FlagsItemKind, Group, GroupKind,
        HexLiteralKind, Literal, LiteralKind, Span,
    };
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock};

    use super::{MAX_COMPILED_BYTES, MAX_PATTERN_BYTES, MAX_TEXT_BYTES};

    /// How many compiled patterns are kept. Failure-policy patterns are few;
    /// when a plugin cycles through more, the cache starts over.
    const CACHED: usize = 64;

    type Compiled = Result<Arc<regex::Regex>, String>;

    fn cache() -> &'static Mutex<HashMap<String, Compiled>> {
        static CACHE: OnceLock<Mutex<HashMap<String, Compiled>>> = OnceLock::new();
        CACHE.get_or_init(|| Mutex::new(HashMap::new()))
    }

    fn compile(pattern: &str) -> Compiled {
        let invalid = |e: &dyn core::fmt::Display| format!("pattern {pattern:?} is not valid: {e}");
        let translated = as_in_go(pattern).map_err(|e| invalid(&e))?;
        regex::RegexBuilder::new(&translated)
            .size_limit(MAX_COMPILED_BYTES)
            .dfa_size_limit(MAX_COMPILED_BYTES)
            .build()
            .map(Arc::new)
            .map_err(|e| match e {
                regex::Error::CompiledTooBig(_) => format!(
                    "pattern {pattern:?} compiles to more than {} KiB",
                    MAX_COMPILED_BYTES >> 10
                ),
                other => invalid(&other),
            })
    }

    /// The pattern with Go's meaning of `\d`, `\w`, `\s` and `\b`: ASCII
    /// only (`[0-9]`, `[0-9A-Za-z_]`, `[\t\n\f\r ]`), where this engine's
    /// are Unicode-aware. The rest of Unicode mode stays, as in Go: `.` is
    /// a character, `(?i)` folds case across Unicode, `\pL` works. Besides
    /// matching like upstream, ASCII classes keep counted repetitions such
    /// as `[\w.-]{3,64}` small (a Unicode `\w` compiles to tens of KB).
    /// A pattern that does not parse is an error with the parser's reason.
    pub(super) fn as_in_go(pattern: &str) -> Result<String, String> {
        let mut ast = regex_syntax::ast::parse::Parser::new()
            .parse(&go_text(pattern))
            .map_err(|e| e.to_string())?;
        go_ast(&mut ast);
        let mut out = String::new();
        // Printing into a String cannot fail.
        let _ = regex_syntax::ast::print::Printer::new().print(&ast, &mut out);
        Ok(out)
    }

    /// Go's syntax this parser reads otherwise, rewritten before parsing:
    /// `\Q...\E` quotes literal text; `\141` and `\0` are octal escapes;
    /// `\p{^Greek}` negates a class; `\<` and `\>` are the characters
    /// (here they would be word boundaries); inside brackets `[`, `&&`,
    /// `~~` are literal characters (here nested classes and set
    /// operations). Anything else is left for the parser to accept or
    /// refuse.
    fn go_text(pattern: &str) -> String {
        let chars: alloc::vec::Vec<char> = pattern.chars().collect();
        let n = chars.len();
        let mut out = String::with_capacity(pattern.len());
        let mut i = 0;
        let mut in_class = false;
        let octal = |c: char| ('0'..='7').contains(&c);
        while i < n {
            let c = chars[i];
            let next = chars.get(i + 1).copied();
            if c == '\\' {
                let Some(d) = next else {
                    out.push(c);
                    break;
                };
                if d == 'Q' && !in_class {
                    let start = i + 2;
                    let end = (start..n)
                        .find(|&j| chars[j] == '\\' && chars.get(j + 1) == Some(&'E'))
                        .unwrap_or(n);
                    let quoted: String = chars[start..end].iter().collect();
                    out.push_str(&regex_syntax::escape(&quoted));
                    i = (end + 2).min(n.max(end));
                    continue;
                }
                let second = chars.get(i + 2).copied();
                if d == '0' || (('1'..='7').contains(&d) && second.is_some_and(octal)) {
                    // Up to three octal digits in all, as Go reads them.
                    let digits: String = chars[i + 1..n.min(i + 4)]
                        .iter()
                        .take_while(|c| octal(**c))
                        .collect();
                    let value = u32::from_str_radix(&digits, 8).unwrap_or(0);
                    out.push_str(&format!("\\x{{{value:X}}}"));
                    i += 1 + digits.len();
                    continue;
                }
                if matches!(d, 'p' | 'P') && second == Some('{') && chars.get(i + 3) == Some(&'^') {
                    out.push('\\');
                    out.push(if d == 'p' { 'P' } else { 'p' });
                    out.push('{');
                    i += 4;
                    continue;
                }
                if matches!(d, '<' | '>') {
                    out.push_str(if d == '<' { "\\x3C" } else { "\\x3E" });
                    i += 2;
                    continue;
                }
                out.push(c);
                out.push(d);
                i += 2;
                continue;
            }
            if in_class {
                match c {
                    '[' if next == Some(':') => {
                        // A POSIX class such as [:alpha:], copied whole.
                        let end = (i + 2..n.saturating_sub(1))
                            .find(|&j| chars[j] == ':' && chars[j + 1] == ']')
                            .map_or(i, |j| j + 1);
                        out.extend(&chars[i..=end]);
                        i = end + 1;
                        continue;
                    }
                    ']' => in_class = false,
                    '[' | '&' | '~' => out.push('\\'),
                    _ => {}
                }
                out.push(c);
                i += 1;
                continue;
            }
            out.push(c);
            i += 1;
            if c == '[' {
                in_class = true;
                // A leading `^`, then a leading `]`, belong to the class.
                if chars.get(i) == Some(&'^') {
                    out.push('^');
                    i += 1;
                }
                if chars.get(i) == Some(&']') {
                    out.push_str("\\]");
                    i += 1;
                }
            }
        }
        out
    }

    fn go_ast(ast: &mut Ast) {
        match ast {
            Ast::ClassPerl(class) => {
                let ascii = ascii_class(class);
                *ast = Ast::class_bracketed(ascii);
            }
            Ast::Assertion(a)
                if matches!(
                    a.kind,
                    AssertionKind::WordBoundary | AssertionKind::NotWordBoundary
                ) =>
            {
                let span = a.span;
                let assertion = core::mem::replace(ast, Ast::empty(span));
                *ast = ascii_group(span, assertion);
            }
            Ast::ClassBracketed(class) => go_set(&mut class.kind),
            Ast::Repetition(r) => go_ast(&mut r.ast),
            Ast::Group(g) => go_ast(&mut g.ast),
            Ast::Alternation(a) => a.asts.iter_mut().for_each(go_ast),
            Ast::Concat(c) => c.asts.iter_mut().for_each(go_ast),
            _ => {}
        }
    }

    fn go_set(set: &mut ClassSet) {
        match set {
            ClassSet::Item(item) => go_set_item(item),
            ClassSet::BinaryOp(op) => {
                go_set(&mut op.lhs);
                go_set(&mut op.rhs);
            }
        }
    }

    fn go_set_item(item: &mut ClassSetItem) {
        match item {
            ClassSetItem::Perl(class) => {
                *item = ClassSetItem::Bracketed(Box::new(ascii_class(class)))
            }
            ClassSetItem::Bracketed(class) => go_set(&mut class.kind),
            ClassSetItem::Union(union) => union.items.iter_mut().for_each(go_set_item),
            _ => {}
        }
    }

    /// `[0-9]`, `[0-9A-Z_a-z]` or `[\t\n\f\r ]` (negated for `\D`, `\W`,
    /// `\S`), written with `\x` escapes so that `(?x)` cannot drop the space.
    fn ascii_class(class: &ClassPerl) -> ClassBracketed {
        let ranges: &[(char, char)] = match class.kind {
            ClassPerlKind::Digit => &[('0', '9')],
            ClassPerlKind::Word => &[('0', '9'), ('A', 'Z'), ('_', '_'), ('a', 'z')],
            ClassPerlKind::Space => &[('\t', '\n'), ('\x0C', '\r'), (' ', ' ')],
        };
        let span = class.span;
        let literal = |c| Literal {
            span,
            kind: LiteralKind::HexFixed(HexLiteralKind::X),
            c,
        };
        ClassBracketed {
            span,
            negated: class.negated,
            kind: ClassSet::Item(ClassSetItem::Union(ClassSetUnion {
                span,
                items: ranges
                    .iter()
                    .map(|&(start, end)| {
                        ClassSetItem::Range(ClassSetRange {
                            span,
                            start: literal(start),
                            end: literal(end),
                        })
                    })
                    .collect(),
            })),
        }
    }

    /// `(?-u:…)`: an ASCII word boundary.
    fn ascii_group(span: Span, inner: Ast) -> Ast {
        Ast::group(Group {
            span,
            kind: GroupKind::NonCapturing(Flags {
                span,
                items: vec![
                    FlagsItem {
                        span,
                        kind: FlagsItemKind::Negation,
                    },
                    FlagsItem {
                        span,
                        kind: FlagsItemKind::Flag(Flag::Unicode),
                    },
                ],
            }),
            ast: Box::new(inner),
        })
    }

    pub(super) fn is_match(pattern: &str, text: &str) -> Result<bool, String> {
        if pattern.len() > MAX_PATTERN_BYTES {
            return Err(format!(
                "pattern of {} bytes is over the {} byte limit",
                pattern.len(),
                MAX_PATTERN_BYTES
            ));
        }
        if text.len() > MAX_TEXT_BYTES {
            return Err(format!(
                "text of {} bytes is over the {} KiB limit",
                text.len(),
                MAX_TEXT_BYTES >> 10
            ));
        }
        // A poisoned lock only means another thread panicked mid-insert; the
        // map itself is still whole.
        let mut cached = cache().lock().unwrap_or_else(|e| e.into_inner());
        let compiled = match cached.get(pattern) {
            Some(c) => c.clone(),
            None => {
                let c = compile(pattern);
                if cached.len() >= CACHED {
                    cached.clear();
                }
                cached.insert(pattern.to_string(), c.clone());
                c
            }
        };
        drop(cached);
        compiled.map(|re| re.is_match(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;

    #[test]
    fn searches_rather_than_matching_the_whole_text() {
        assert_eq!(is_match("preempt(ed|ion)", "node was preempted"), Ok(true));
        assert_eq!(is_match("^preempted$", "node was preempted"), Ok(false));
        assert_eq!(is_match("", "anything"), Ok(true));
        assert_eq!(is_match("oom", "OOMKilled"), Ok(false));
        assert_eq!(is_match("(?i)oom", "OOMKilled"), Ok(true));
    }

    #[test]
    fn re2_syntax_with_unicode_where_go_has_it() {
        assert_eq!(is_match(r"exit code \d+", "exit code 137"), Ok(true));
        assert_eq!(is_match(r"\p{Greek}", "σφάλμα"), Ok(true));
        assert_eq!(is_match(r"(?i)ΣΦΆΛΜΑ", "σφάλμα"), Ok(true));
        assert_eq!(
            is_match(r"^.{6}$", "σφάλμα"),
            Ok(true),
            "`.` is a character"
        );
    }

    /// Go's `\d`, `\w`, `\s` and `\b` are ASCII; so are these.
    #[test]
    fn perl_classes_and_word_boundaries_are_ascii_as_in_go() {
        let cases = [
            (r"\d", "٣", false, "an Arabic-Indic digit is no \\d"),
            (r"\D", "٣", true, "but a \\D"),
            (r"^\w+$", "node_7", true, "ASCII word characters"),
            (r"\w", "é", false, "é is no word character"),
            (r"^\W$", "é", true, "\\W is any other character"),
            (r"\s", "\u{a0}", false, "a no-break space is no \\s"),
            (r"\s", "\x0b", false, "Go's \\s has no vertical tab"),
            (r"a\sb", "a\x0cb", true, "form feed is"),
            (r"[^\d\s]", "1 2", false, "inside brackets too"),
            (r"[\w.-]+\.local", "node-1.local", true, "in a class"),
            (r"\bpreempted\b", "was preempted.", true, "word boundaries"),
            (r"é\b", "éa", true, "an ASCII boundary after é"),
            (r"\Bempt\B", "preempted", true, "not a boundary"),
            (r"(?x) a \s b ", "a b", true, "(?x) keeps the space in \\s"),
            (
                r"[\w.-]{3,64}",
                "node-1.zone",
                true,
                "small, unlike Unicode's",
            ),
        ];
        for (pattern, text, expected, why) in cases {
            assert_eq!(
                is_match(pattern, text),
                Ok(expected),
                "{pattern} on {text:?}: {why}"
            );
        }
    }

    /// RE2 syntax of Go's regexp that reads differently here, read as Go.
    #[test]
    fn go_only_syntax_reads_as_in_go() {
        let cases = [
            (r"\Qa*b\E", "xa*by", true, "\\Q...\\E quotes"),
            (r"\Qa*b\E", "aab", false, "the * is literal"),
            (r"\Q(unclosed", "(unclosed", true, "to the end without \\E"),
            (r"\141", "a", true, "octal \\141 is a"),
            (r"x\0y", "x\0y", true, "\\0 is NUL"),
            (r"\p{^Greek}", "a", true, "a negated Unicode class"),
            (r"\p{^Greek}", "σ", false, "Greek is not in it"),
            (r"\<a\>", "<a>", true, "\\< and \\> are the characters"),
            (r"\<a", "a", false, "not a word boundary"),
            (r"[a&&b]", "&", true, "&& in brackets is literal"),
            (r"[a&&b]", "a", true, "so is a"),
            (r"[~~]", "~", true, "~~ too"),
            (r"[[a]", "[", true, "[ in brackets is literal"),
            (r"[]a]", "]", true, "a leading ] belongs to the class"),
            (r"[^]a]", "b", true, "after ^ as well"),
            (r"[[:digit:]x]", "7", true, "POSIX classes stay"),
            (r"[\]]", "]", true, "an escaped ] in brackets"),
        ];
        for (pattern, text, expected, why) in cases {
            assert_eq!(
                is_match(pattern, text),
                Ok(expected),
                "{pattern} on {text:?}: {why}"
            );
        }
        // As in Go: backreferences, \8 and \C are refused.
        for pattern in [r"(a)\1", r"\8", r"\C"] {
            assert!(is_match(pattern, "a").is_err(), "{pattern}");
        }
    }

    #[test]
    fn a_translated_pattern_reads_as_written() {
        assert_eq!(
            native::as_in_go(r"\d[\W]\b").expect("parses"),
            r"[\x30-\x39][[^\x30-\x39\x41-\x5A\x5F-\x5F\x61-\x7A]](?-u:\b)"
        );
    }

    #[test]
    fn an_invalid_pattern_is_an_error_naming_it_every_time() {
        for _ in 0..2 {
            let e = is_match("preempt(ed", "x").expect_err("unclosed group");
            assert!(
                e.contains("\"preempt(ed\"") && e.contains("not valid"),
                "{e}"
            );
        }
        // Backreferences are not RE2.
        assert!(is_match(r"(a)\1", "aa").is_err());
    }

    #[test]
    fn limits_are_errors_that_say_which() {
        let long = "a".repeat(MAX_PATTERN_BYTES + 1);
        let e = is_match(&long, "a").expect_err("too long");
        assert!(e.contains("1024 byte limit"), "{e}");
        let text = "a".repeat(MAX_TEXT_BYTES + 1);
        let e = is_match("a", &text).expect_err("text too long");
        assert!(e.contains("64 KiB"), "{e}");
        assert_eq!(is_match("a", &text[..MAX_TEXT_BYTES]), Ok(true));
        let e = is_match(r"\pL{100}", "x").expect_err("compiles too big");
        assert!(e.contains("more than 256 KiB"), "{e}");
    }

    #[test]
    fn more_patterns_than_the_cache_holds_still_match() {
        for i in 0..200 {
            let pattern = alloc::format!("job-{i}$");
            let text: String = alloc::format!("failed: job-{i}");
            assert_eq!(is_match(&pattern, &text), Ok(true));
        }
    }
}
