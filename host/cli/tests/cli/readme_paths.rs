//! The commands the READMEs show name only files inside the repository (or
//! scratch files under `/tmp`), and the repository files they name exist: a
//! reader who has nothing but a clone can run every one of them.

use crate::common::repo;

/// The documents whose commands a newcomer runs from a clone.
const DOCUMENTS: [&str; 3] = [
    "README.md",
    "examples/README.md",
    "plugins/examples/README.md",
];

/// Top-level folders of the repository that a command may name as input.
const REPO_DIRS: [&str; 7] = [
    "examples/",
    "deploy/",
    "plugins/",
    "host/",
    "tests/",
    "wit/",
    ".ci/",
];

/// The command lines of `markdown`: every `$ ` line of a `console` block,
/// and every line of an unlabelled, `sh`, `bash` or `shell` block (comments
/// and continuation backslashes removed), with their line numbers.
fn command_lines(markdown: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut block: Option<&str> = None;
    for (i, line) in markdown.lines().enumerate() {
        let trimmed = line.trim_start();
        if let Some(info) = trimmed.strip_prefix("```") {
            block = match block {
                Some(_) => None,
                None => Some(info.trim()),
            };
            continue;
        }
        let command = match block {
            Some("console") => trimmed.strip_prefix("$ "),
            Some("" | "sh" | "bash" | "shell") => Some(trimmed),
            _ => None,
        };
        if let Some(c) = command {
            let c = c.split(" #").next().unwrap_or_default();
            let c = c.trim_end().trim_end_matches('\\').trim();
            if !c.is_empty() && !c.starts_with('#') {
                out.push((i + 1, c.to_string()));
            }
        }
    }
    out
}

/// What is wrong with the paths `command` names, if anything.
fn path_problems(command: &str, root: &std::path::Path) -> Vec<String> {
    let mut problems = Vec::new();
    for word in command.split_whitespace() {
        let word = word.trim_matches(|c| matches!(c, '\'' | '"' | '>' | '<' | '(' | ')' | ';'));
        // `--plugin outcome=PATH`, `--file=PATH`: the path is after `=`.
        let path = word.rsplit('=').next().unwrap_or(word);
        let outside = path.starts_with("../")
            || path.contains("/../")
            || path.starts_with('~')
            || path.starts_with("$HOME")
            || (path.starts_with('/') && !path.starts_with("/tmp/") && path != "/dev/null");
        if outside {
            problems.push(format!("`{path}` is outside the repository"));
        } else if REPO_DIRS.iter().any(|d| path.starts_with(d))
            && !path.contains(['*', '<', '$'])
            && !root.join(path).exists()
        {
            problems.push(format!("`{path}` is not in the repository"));
        }
    }
    problems
}

#[test]
fn readme_commands_name_only_files_in_the_repository() {
    let root = repo();
    let mut problems = Vec::new();
    let mut commands = 0;
    for doc in DOCUMENTS {
        let text = std::fs::read_to_string(root.join(doc)).unwrap_or_else(|e| panic!("{doc}: {e}"));
        for (line, command) in command_lines(&text) {
            commands += 1;
            for p in path_problems(&command, &root) {
                problems.push(format!("{doc}:{line}: {p}: {command}"));
            }
        }
    }
    assert!(
        commands >= 20,
        "only {commands} commands found; is the parser right?"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_check_finds_a_path_outside_or_missing() {
    let root = repo();
    let text = "```\njobset run ../shared/x.yaml --scenario examples/nope.yaml \\\n  --plugin outcome=/opt/p.wasm > /tmp/out.svg\n```\n\
                ```console\n$ jobset run examples/host-maintenance.yaml\noutput ../not/a/command\n```\n";
    let lines = command_lines(text);
    assert_eq!(lines.len(), 3, "{lines:?}");
    let found: Vec<String> = lines
        .iter()
        .flat_map(|(_, c)| path_problems(c, &root))
        .collect();
    assert_eq!(
        found,
        [
            "`../shared/x.yaml` is outside the repository",
            "`examples/nope.yaml` is not in the repository",
            "`/opt/p.wasm` is outside the repository",
        ],
    );
}
