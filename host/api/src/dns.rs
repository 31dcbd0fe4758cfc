//! Kubernetes name and label-value syntax checks (DNS-1035 / DNS-1123
//! labels and subdomains, label values, domain-prefixed paths). Each check
//! returns the list of problems, empty when the value is valid.

/// Longest DNS label (and label value, and most generated names).
pub const DNS_LABEL_MAX_LENGTH: usize = 63;
/// Longest DNS-1123 subdomain.
pub const DNS_SUBDOMAIN_MAX_LENGTH: usize = 253;

fn is_lower_alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

fn too_long(len: usize, max: usize) -> String {
    format!("must be no more than {max} characters (is {len})")
}

/// Whether `s` is a DNS-1123 label body: lowercase alphanumerics and `-`,
/// alphanumeric at both ends.
fn is_1123_label_syntax(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| is_lower_alnum(c) || c == '-')
        && s.chars().next().is_some_and(is_lower_alnum)
        && s.chars().last().is_some_and(is_lower_alnum)
}

/// Problems of `s` as a DNS-1035 label: at most 63 lowercase alphanumerics
/// or `-`, starting with a letter and ending with an alphanumeric.
pub fn dns1035_label(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > DNS_LABEL_MAX_LENGTH {
        errs.push(too_long(s.len(), DNS_LABEL_MAX_LENGTH));
    }
    let starts_with_letter = s.chars().next().is_some_and(|c| c.is_ascii_lowercase());
    if !is_1123_label_syntax(s) || !starts_with_letter {
        errs.push(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', \
             start with an alphabetic character, and end with an alphanumeric character"
                .to_string(),
        );
    }
    errs
}

/// Problems of `s` as a DNS-1123 label: at most 63 lowercase alphanumerics
/// or `-`, alphanumeric at both ends.
pub fn dns1123_label(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > DNS_LABEL_MAX_LENGTH {
        errs.push(too_long(s.len(), DNS_LABEL_MAX_LENGTH));
    }
    if !is_1123_label_syntax(s) {
        errs.push(
            "a DNS-1123 label must consist of lower case alphanumeric characters or '-', \
             and must start and end with an alphanumeric character"
                .to_string(),
        );
    }
    errs
}

/// Problems of `s` as a DNS-1123 subdomain: at most 253 characters, DNS-1123
/// labels joined by `.`.
pub fn dns1123_subdomain(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > DNS_SUBDOMAIN_MAX_LENGTH {
        errs.push(too_long(s.len(), DNS_SUBDOMAIN_MAX_LENGTH));
    }
    if !s.split('.').all(is_1123_label_syntax) {
        errs.push(
            "a DNS-1123 subdomain must consist of lower case alphanumeric characters, '-' or \
             '.', and must start and end with an alphanumeric character"
                .to_string(),
        );
    }
    errs
}

/// Problems of `s` as a label value: empty, or at most 63 alphanumerics,
/// `-`, `_` or `.`, alphanumeric at both ends.
pub fn label_value(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > DNS_LABEL_MAX_LENGTH {
        errs.push(too_long(s.len(), DNS_LABEL_MAX_LENGTH));
    }
    let ok = s.is_empty()
        || (s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && s.chars().last().is_some_and(|c| c.is_ascii_alphanumeric()));
    if !ok {
        errs.push(
            "a valid label must be an empty string or consist of alphanumeric characters, \
             '-', '_' or '.', and must start and end with an alphanumeric character"
                .to_string(),
        );
    }
    errs
}

/// Problems of `s` as a domain-prefixed path such as `acme.io/foo`: a
/// DNS-1123 subdomain, `/`, then a non-empty HTTP path.
pub fn domain_prefixed_path(s: &str) -> Vec<String> {
    let Some((host, path)) = s.split_once('/') else {
        return vec!["must be a domain-prefixed path (such as \"acme.io/foo\")".to_string()];
    };
    let mut errs: Vec<String> = dns1123_subdomain(host)
        .into_iter()
        .map(|e| format!("domain prefix: {e}"))
        .collect();
    if path.is_empty() {
        errs.push("must be a domain-prefixed path (such as \"acme.io/foo\")".to_string());
    } else if !path
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/-._~%!$&'()*+,;=:".contains(c))
    {
        errs.push("path part must contain only valid HTTP path characters".to_string());
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns1035_labels_must_start_with_a_letter() {
        assert!(dns1035_label("abc-1").is_empty());
        assert_eq!(dns1035_label("1abc").len(), 1);
        assert_eq!(dns1035_label("abc-").len(), 1);
        assert_eq!(dns1035_label("Abc").len(), 1);
        assert_eq!(dns1035_label("").len(), 1);
    }

    #[test]
    fn labels_over_63_characters_are_too_long() {
        let s = "a".repeat(64);
        assert_eq!(dns1035_label(&s), vec![too_long(64, 63)]);
        assert!(dns1035_label(&"a".repeat(63)).is_empty());
        assert_eq!(dns1123_label(&s).len(), 1);
        assert_eq!(label_value(&s).len(), 1);
    }

    #[test]
    fn dns1123_labels_may_start_with_a_digit() {
        assert!(dns1123_label("1abc").is_empty());
        assert_eq!(dns1123_label("a_b").len(), 1);
    }

    #[test]
    fn subdomains_are_dot_separated_labels() {
        assert!(dns1123_subdomain("a.b-c.d").is_empty());
        assert_eq!(dns1123_subdomain("a..b").len(), 1);
        assert_eq!(dns1123_subdomain(".a").len(), 1);
        assert_eq!(dns1123_subdomain(&"a".repeat(254)).len(), 1);
    }

    #[test]
    fn label_values_allow_empty_and_mixed_case() {
        assert!(label_value("").is_empty());
        assert!(label_value("Js-a_0.b").is_empty());
        assert_eq!(label_value("-a").len(), 1);
        assert_eq!(label_value("a/b").len(), 1);
    }

    #[test]
    fn domain_prefixed_paths_need_a_domain_and_a_path() {
        assert!(domain_prefixed_path("acme.io/foo").is_empty());
        assert!(domain_prefixed_path("jobset.sigs.k8s.io/jobset-controller").is_empty());
        assert_eq!(domain_prefixed_path("foo").len(), 1);
        assert_eq!(domain_prefixed_path("acme.io/").len(), 1);
        assert_eq!(domain_prefixed_path("Acme/x").len(), 1);
        assert_eq!(domain_prefixed_path("acme.io/a b").len(), 1);
    }
}
