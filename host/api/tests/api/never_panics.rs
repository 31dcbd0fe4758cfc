//! Reading mangled manifests never panics: many mutations of every example
//! (ours, and upstream's when beside the checkout), at the text level and at the value level, go through parsing,
//! defaulting and both validations.

use std::path::PathBuf;

use jobset_api::*;
use serde_json::{Value, json};

use crate::upstream::upstream_examples;

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// The seeds: our own example manifests, and upstream's when they are
/// beside the checkout.
fn examples() -> Vec<String> {
    let own = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut files: Vec<PathBuf> = std::iter::once(own)
        .chain(upstream_examples())
        .flat_map(|dir| {
            std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect::<Vec<_>>()
        })
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .filter(|p| !p.to_string_lossy().ends_with(".scenario.yaml"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect()
}

/// Runs everything a manifest goes through; only panics matter here.
fn exercise(text: &str) -> bool {
    let Ok(docs) = split_documents(text) else {
        let _ = parse_jobset_yaml(text);
        return false;
    };
    let mut parsed = false;
    for doc in docs {
        if let Ok(js) = parse_jobset_value(&doc) {
            exercise_jobset(js);
            parsed = true;
        }
    }
    parsed
}

fn exercise_jobset(js: JobSet) {
    let mut defaulted = js.clone();
    default_jobset(&mut defaulted);
    let ctx = ValidationContext::default();
    let _ = validate_create(&js, &ctx).map_err(|e| e.to_string());
    let _ = validate_create(&defaulted, &ctx);
    let _ = validate_update(&js, &defaulted, &ctx);
    let _ = validate_update(&defaulted, &js, &ctx);
    let _ = serde_json::to_string(&js);
    let _ = embedded_unknown_fields(&js);
}

const NOISE: &[&str] = &[
    ":", "-", "[", "]", "{", "}", "\n", " ", "'", "\"", "&a", "*a", "!!", "|", ">", "#", "\t", "0",
    "-1", "null", "~", "1e400", "é",
];

fn mutate_text(rng: &mut Rng, text: &str) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(chars.len() + 1);
        match rng.below(5) {
            0 if at < chars.len() => {
                chars.remove(at);
            }
            1 => {
                let noise = NOISE[rng.below(NOISE.len())];
                for (k, c) in noise.chars().enumerate() {
                    chars.insert((at + k).min(chars.len()), c);
                }
            }
            2 => chars.truncate(at),
            3 => {
                // Shift the indentation of one line.
                let line_start = chars[..at.min(chars.len())]
                    .iter()
                    .rposition(|c| *c == '\n')
                    .map_or(0, |p| p + 1);
                for _ in 0..1 + rng.below(3) {
                    chars.insert(line_start, ' ');
                }
            }
            _ => {
                let len = rng.below(40);
                let end = (at + len).min(chars.len());
                let slice: Vec<char> = chars[at.min(end)..end].to_vec();
                let to = rng.below(chars.len() + 1);
                for (k, c) in slice.into_iter().enumerate() {
                    chars.insert((to + k).min(chars.len()), c);
                }
            }
        }
    }
    chars.into_iter().collect()
}

fn random_value(rng: &mut Rng) -> Value {
    match rng.below(12) {
        0 => Value::Null,
        1 => json!(true),
        2 => json!(-1),
        3 => json!(i64::MAX),
        4 => json!(i32::MIN),
        5 => json!(2147483648u64),
        6 => json!(1.5),
        7 => json!(""),
        8 => json!("x".repeat(300)),
        9 => json!([]),
        10 => json!({}),
        _ => json!({"name": "Bad Name", "replicas": -3, "status": "Ready"}),
    }
}

/// Replaces, removes or duplicates one node somewhere in the document.
fn mutate_value(rng: &mut Rng, v: &mut Value, depth: usize) {
    let stop = depth > 0 && rng.below(4) == 0;
    match v {
        Value::Object(m) if !m.is_empty() && !stop => {
            let keys: Vec<String> = m.keys().cloned().collect();
            let k = &keys[rng.below(keys.len())];
            match rng.below(6) {
                0 => {
                    m.remove(k);
                }
                1 => {
                    m.insert(k.clone(), random_value(rng));
                }
                _ => {
                    if let Some(child) = m.get_mut(k) {
                        mutate_value(rng, child, depth + 1);
                    }
                }
            }
        }
        Value::Array(a) if !a.is_empty() && !stop => {
            let i = rng.below(a.len());
            match rng.below(5) {
                0 => {
                    let dup = a[i].clone();
                    a.push(dup);
                }
                1 => {
                    a.remove(i);
                }
                _ => mutate_value(rng, &mut a[i], depth + 1),
            }
        }
        _ if rng.below(3) > 0 => *v = random_like(rng, v),
        _ => *v = random_value(rng),
    }
}

/// A value of the same JSON type, so that the typed parse usually succeeds
/// and the mutation reaches validation.
fn random_like(rng: &mut Rng, v: &Value) -> Value {
    const INTS: [i64; 8] = [0, 1, -1, 2, 1024, 1025, i32::MAX as i64, i32::MIN as i64];
    const STRINGS: [&str; 9] = [
        "",
        "a",
        "driver",
        "workers",
        "Bad_Name",
        "InOrder",
        "(",
        "x.y",
        "acme.io/x",
    ];
    match v {
        Value::Bool(b) => json!(!*b),
        Value::Number(_) => json!(INTS[rng.below(INTS.len())]),
        Value::String(_) if rng.below(5) == 0 => json!("n".repeat(rng.below(130))),
        Value::String(_) => json!(STRINGS[rng.below(STRINGS.len())]),
        other => other.clone(),
    }
}

#[test]
fn mangled_yaml_text_never_panics() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut parsed = 0;
    let mut total = 0;
    let texts = examples();
    // As many mutations with our four examples alone as with upstream's too.
    let rounds = (2400 / texts.len()).max(80);
    for text in texts {
        for _ in 0..rounds {
            total += 1;
            if exercise(&mutate_text(&mut rng, &text)) {
                parsed += 1;
            }
        }
    }
    // The mutations must leave many inputs parseable, or the later stages
    // would never run.
    assert!(
        total >= 2000 && parsed * 10 >= total,
        "{parsed} of {total} parsed"
    );
}

#[test]
fn mangled_documents_never_panic() {
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let mut parsed = 0;
    let mut total = 0;
    let texts = examples();
    let rounds = (2400 / texts.len()).max(80);
    for text in texts {
        let docs = split_documents(&text).unwrap();
        for doc in docs.iter().filter(|d| is_jobset(d)) {
            for _ in 0..rounds {
                let mut v = doc.clone();
                for _ in 0..1 + rng.below(3) {
                    mutate_value(&mut rng, &mut v, 0);
                }
                total += 1;
                if let Ok(js) = parse_jobset_value(&v) {
                    exercise_jobset(js);
                    parsed += 1;
                }
            }
        }
    }
    assert!(
        total >= 2000 && parsed * 10 >= total,
        "{parsed} of {total} parsed"
    );
}

#[test]
fn pathological_inputs_never_panic() {
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let anchors =
        "a: &a [1]\nb: &b [*a, *a, *a, *a]\nc: &c [*b, *b, *b, *b]\nd: [*c, *c, *c, *c]\n";
    for text in [
        "",
        "---",
        "~",
        "\0",
        "kind: JobSet",
        &deep,
        anchors,
        "apiVersion: jobset.x-k8s.io/v1alpha2\nkind: JobSet\nspec: 5",
    ] {
        exercise(text);
        let _ = parse_jobset_json(text);
    }
}
