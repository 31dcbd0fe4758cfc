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
/// The most a pattern may compile to, in bytes (the engine's size limit).
pub const MAX_COMPILED_BYTES: usize = 1 << 20;
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
mod native {
    extern crate std;

    use alloc::format;
    use alloc::string::{String, ToString};
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
        regex::RegexBuilder::new(pattern)
            .size_limit(MAX_COMPILED_BYTES)
            .dfa_size_limit(MAX_COMPILED_BYTES)
            .build()
            .map(Arc::new)
            .map_err(|e| match e {
                regex::Error::CompiledTooBig(_) => format!(
                    "pattern {pattern:?} compiles to more than {} KiB",
                    MAX_COMPILED_BYTES >> 10
                ),
                other => format!("pattern {pattern:?} is not valid: {other}"),
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
    fn re2_syntax_with_unicode_classes() {
        assert_eq!(is_match(r"exit code \d+", "exit code 137"), Ok(true));
        assert_eq!(is_match(r"\p{Greek}", "σφάλμα"), Ok(true));
        assert_eq!(is_match(r"(?i)ΣΦΆΛΜΑ", "σφάλμα"), Ok(true));
        assert_eq!(
            is_match(r"^.{6}$", "σφάλμα"),
            Ok(true),
            "`.` is a character"
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
        let e = is_match(r"\w{1000}", "x").expect_err("compiles too big");
        assert!(e.contains("more than 1024 KiB"), "{e}");
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
