//! `jobset run --timeline`: the run as an SVG picture. One row per Job,
//! grouped by the node pool its pods ran in; a bar per attempt over virtual
//! time; crosses where pods failed; numbered marks where a policy restarted
//! the JobSet or a Job, with the decision listed under the chart and as a
//! tooltip. Hand-written SVG, no dependencies.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::history::{Attempt, Ending, Record};
use crate::report::fmt_duration;

const LEFT: f64 = 300.0;
const CHART: f64 = 860.0;
const ROW: f64 = 22.0;
const TOP: f64 = 56.0;
const GROUP: f64 = 20.0;
/// The picture's width: the names, the chart, and room for the last tick.
const WIDTH: f64 = LEFT + CHART + 40.0;
/// White space between two attempts of one Job that follow each other, so
/// that two failed attempts read as two bars, not one.
const GAP: f64 = 3.0;
/// Height of a line of the legend.
const LINE: f64 = 18.0;
/// Average advance of a 12px sans-serif character; a little generous, so
/// that wrapped legend lines stay inside the picture.
const CHAR_WIDTH: f64 = 7.0;

/// `text` broken at spaces into lines of at most `max` characters (a word
/// longer than that gets a line of its own, cut where it must be).
fn wrap(text: &str, max: usize) -> Vec<String> {
    let max = max.max(8);
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let len = line.chars().count();
        if len > 0 && len + 1 + word.chars().count() > max {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
        while line.chars().count() > max {
            let cut: String = line.chars().take(max).collect();
            line = line.chars().skip(max).collect();
            lines.push(cut);
        }
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

/// Escapes text for XML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

/// A tick step that gives at most ten ticks over `total`.
fn tick_step(total: Duration) -> Duration {
    const STEPS: [u64; 14] = [
        1, 5, 10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200,
    ];
    let secs = total.as_secs().max(1);
    let step = STEPS
        .iter()
        .copied()
        .find(|s| secs / s <= 10)
        .unwrap_or(86400);
    Duration::from_secs(step)
}

struct Row<'a> {
    domain: String,
    jobset: &'a str,
    job: &'a str,
    attempts: Vec<&'a Attempt>,
}

/// The SVG of a run that lasted `end` (virtual).
pub fn render(record: &Record, end: Duration) -> String {
    let total = end.max(Duration::from_secs(1)).as_secs_f64();
    let x = |t: Duration| LEFT + CHART * (t.as_secs_f64() / total).min(1.0);

    // Rows: one per (JobSet, Job name), all attempts of that name on it.
    let mut by_job: BTreeMap<(&str, &str), Vec<&Attempt>> = BTreeMap::new();
    for a in record.attempts.values() {
        by_job
            .entry((a.jobset.as_str(), a.job.as_str()))
            .or_default()
            .push(a);
    }
    let mut rows: Vec<Row> = by_job
        .into_iter()
        .map(|((jobset, job), mut attempts)| {
            attempts.sort_by_key(|a| a.created);
            let domain = attempts
                .iter()
                .find_map(|a| a.domain.clone())
                .unwrap_or_else(|| "(not placed)".to_string());
            Row {
                domain,
                jobset,
                job,
                attempts,
            }
        })
        .collect();
    rows.sort_by(|a, b| (&a.domain, a.jobset, a.job).cmp(&(&b.domain, b.jobset, b.job)));

    let restarts: Vec<(usize, &crate::history::Decision)> = record
        .decisions
        .iter()
        // A custom plugin's words (`outcome by X says: …`) repeat a
        // decision already listed; whatever they say, they are not one.
        .filter(|d| d.text.contains(": restart ") && !d.text.contains(" says: "))
        .enumerate()
        .map(|(i, d)| (i + 1, d))
        .collect();

    let groups = {
        let mut g: Vec<&str> = rows.iter().map(|r| r.domain.as_str()).collect();
        g.dedup();
        g.len()
    };
    let chart_height = rows.len() as f64 * ROW + groups as f64 * GROUP;
    let legend_top = TOP + chart_height + 40.0;
    let width = WIDTH;
    // Each restart's legend entry, wrapped to the picture's width: the
    // first line starts after "R<n> ", the others under it.
    let legend: Vec<(usize, Vec<String>)> = restarts
        .iter()
        .map(|(n, d)| {
            let label = format!("R{n} ").chars().count();
            let text = format!("{} {}: {}", fmt_duration(d.at), d.jobset, d.text);
            let max = ((width - 20.0) / CHAR_WIDTH) as usize - label;
            (*n, wrap(&text, max))
        })
        .collect();
    // Where a shadow plugin would have decided otherwise (`--shadow`),
    // numbered S<n>, legend wrapped likewise.
    let shadow_legend: Vec<(usize, Vec<String>)> = record
        .divergences
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let label = format!("S{} ", i + 1).chars().count();
            let text = format!("{} {}: {}", fmt_duration(d.at), d.jobset, d.text);
            let max = ((width - 20.0) / CHAR_WIDTH) as usize - label;
            (i + 1, wrap(&text, max))
        })
        .collect();
    let legend_lines: usize = legend.iter().map(|(_, l)| l.len()).sum::<usize>()
        + if shadow_legend.is_empty() {
            0
        } else {
            2 + shadow_legend.iter().map(|(_, l)| l.len()).sum::<usize>()
        };
    let height = legend_top + LINE * (legend_lines as f64 + 2.0);

    let mut s = String::new();
    let _ = writeln!(
        s,
        r##"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">
<style>.ok{{fill:#4caf50}}.failed{{fill:#e53935}}.deleted{{fill:#9e9e9e}}.running{{fill:#42a5f5}}.podfail{{stroke:#b71c1c;stroke-width:2}}.restart{{stroke:#fb8c00;stroke-width:2;stroke-dasharray:3,2}}.grid{{stroke:#e0e0e0}}.resize{{fill:#fff;font-size:11px;font-weight:bold}}.inplace{{fill:#6a1b9a;font-size:15px;font-weight:bold}}.group{{font-weight:bold;fill:#37474f}}</style>
<rect width="{width}" height="{height}" fill="white"/>
<text x="10" y="20" font-size="15" font-weight="bold">jobset run: {} Job(s) over {} (virtual)</text>"##,
        rows.len(),
        fmt_duration(end)
    );

    // Axis and grid.
    let step = tick_step(end);
    let mut t = Duration::ZERO;
    while t <= end {
        let tx = x(t);
        let _ = writeln!(
            s,
            r##"<line class="grid" x1="{tx:.1}" y1="{}" x2="{tx:.1}" y2="{}"/><text x="{tx:.1}" y="{}" text-anchor="middle" fill="#546e7a">{}</text>"##,
            TOP - 6.0,
            TOP + chart_height,
            TOP + chart_height + 16.0,
            fmt_duration(t)
        );
        t += step;
    }
    let _ = writeln!(
        s,
        r##"<text x="{}" y="{}" text-anchor="middle" fill="#546e7a">virtual time</text>"##,
        LEFT + CHART / 2.0,
        TOP + chart_height + 32.0
    );

    // Shadow divergence marks over the axis, under the restart marks.
    for (i, d) in record.divergences.iter().enumerate() {
        let _ = writeln!(
            s,
            r##"<text class="shadow" x="{:.1}" y="{}" text-anchor="middle" fill="#6a1b9a" font-weight="bold">S{}<title>{}</title></text>"##,
            x(d.at),
            TOP - 24.0,
            i + 1,
            escape(&format!("{} {}: {}", fmt_duration(d.at), d.jobset, d.text))
        );
    }

    // Restart marks over the axis, numbered as in the legend.
    for (n, d) in &restarts {
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{}" text-anchor="middle" fill="#e65100" font-weight="bold">R{n}<title>{}</title></text>"##,
            x(d.at),
            TOP - 10.0,
            escape(&format!("{} {}: {}", fmt_duration(d.at), d.jobset, d.text))
        );
    }

    let mut y = TOP;
    let mut last_domain: Option<&str> = None;
    for row in &rows {
        if last_domain != Some(row.domain.as_str()) {
            let _ = writeln!(
                s,
                r##"<text class="group" x="10" y="{:.1}">{}</text>"##,
                y + 14.0,
                escape(&row.domain)
            );
            y += GROUP;
            last_domain = Some(row.domain.as_str());
        }
        let _ = writeln!(
            s,
            r##"<g class="job" data-job="{}"><text x="20" y="{:.1}">{}</text>"##,
            escape(row.job),
            y + 15.0,
            escape(row.job)
        );
        for a in &row.attempts {
            let (until, class, how) = match &a.ended {
                Some((t, Ending::Complete)) => (*t, "ok", "completed".to_string()),
                Some((t, Ending::Failed(reason))) => (*t, "failed", format!("failed ({reason})")),
                Some((t, Ending::Deleted)) => (*t, "deleted", "deleted".to_string()),
                None => (end, "running", "still running".to_string()),
            };
            // Each bar is inset by half the gap at both ends, so that an
            // attempt that starts where the previous one ended stands apart.
            let (x0, x1) = (x(a.created), x(until));
            let inset = if x1 - x0 > 2.0 * GAP { GAP / 2.0 } else { 0.0 };
            let (x0, x1) = (x0 + inset, x1 - inset);
            let _ = writeln!(
                s,
                r##"<rect class="{class}" x="{x0:.1}" y="{:.1}" width="{:.1}" height="{}" rx="2"><title>{}</title></rect>"##,
                y + 3.0,
                (x1 - x0).max(1.5),
                ROW - 6.0,
                escape(&format!(
                    "{} restart-attempt {}: {} to {}, {how}{}",
                    a.job,
                    a.restart_attempt,
                    fmt_duration(a.created),
                    fmt_duration(until),
                    a.domain
                        .as_ref()
                        .map(|d| format!(", in {d}"))
                        .unwrap_or_default()
                ))
            );
        }
        for a in &row.attempts {
            for (at, pods) in &a.resizes {
                let _ = writeln!(
                    s,
                    r##"<text class="resize" x="{:.1}" y="{:.1}">→{pods}<title>{}</title></text>"##,
                    x(*at) + 2.0,
                    y + ROW / 2.0 + 4.0,
                    escape(&format!(
                        "{} resized to {pods} pods at {}",
                        a.job,
                        fmt_duration(*at)
                    ))
                );
            }
        }
        for r in record
            .pod_restarts
            .iter()
            .filter(|r| row.attempts.iter().any(|a| a.uid == r.job_uid))
        {
            let why = r
                .exit_code
                .map(|c| format!(" after exit code {c}"))
                .unwrap_or_default();
            let _ = writeln!(
                s,
                r##"<text class="inplace" x="{:.1}" y="{:.1}" text-anchor="middle">↻<title>{}</title></text>"##,
                x(r.at),
                y + ROW / 2.0 + 5.0,
                escape(&format!(
                    "pod {} restarted in place{why} at {} (restart {})",
                    r.pod,
                    fmt_duration(r.at),
                    r.restarts
                ))
            );
        }
        for f in record
            .pod_failures
            .iter()
            .filter(|f| row.attempts.iter().any(|a| a.uid == f.job_uid))
        {
            let (fx, fy) = (x(f.at), y + ROW / 2.0);
            let _ = writeln!(
                s,
                r##"<g class="failure"><path class="podfail" d="M{:.1},{:.1}L{:.1},{:.1}M{:.1},{:.1}L{:.1},{:.1}"/><title>{}</title></g>"##,
                fx - 5.0,
                fy - 5.0,
                fx + 5.0,
                fy + 5.0,
                fx - 5.0,
                fy + 5.0,
                fx + 5.0,
                fy - 5.0,
                escape(&format!(
                    "pod {} failed at {}: {}",
                    f.pod,
                    fmt_duration(f.at),
                    f.why
                ))
            );
        }
        for (n, d) in &restarts {
            let whole = d.text.contains("restart jobset");
            let this_job = d.text.contains(&format!("restart job {} ", row.job));
            if d.jobset == row.jobset && (whole || this_job) {
                let rx = x(d.at);
                let _ = writeln!(
                    s,
                    r##"<line class="restart" x1="{rx:.1}" y1="{:.1}" x2="{rx:.1}" y2="{:.1}"><title>{}</title></line>"##,
                    y,
                    y + ROW,
                    escape(&format!("R{n} {}", d.text))
                );
            }
        }
        let _ = writeln!(s, "</g>");
        y += ROW;
    }

    // Legend: what each restart mark was decided by.
    let mut ly = legend_top;
    let _ = writeln!(
        s,
        r##"<text x="10" y="{ly:.1}" font-weight="bold">Restarts{}</text>"##,
        if restarts.is_empty() { ": none" } else { "" }
    );
    for (n, lines) in &legend {
        for (i, line) in lines.iter().enumerate() {
            ly += LINE;
            if i == 0 {
                let _ = writeln!(
                    s,
                    r##"<text x="10" y="{ly:.1}"><tspan fill="#e65100" font-weight="bold">R{n}</tspan> {}</text>"##,
                    escape(line)
                );
            } else {
                let _ = writeln!(
                    s,
                    r##"<text x="{:.1}" y="{ly:.1}">{}</text>"##,
                    10.0 + CHAR_WIDTH * format!("R{n} ").len() as f64,
                    escape(line)
                );
            }
        }
    }
    if !shadow_legend.is_empty() {
        ly += LINE * 2.0;
        let _ = writeln!(
            s,
            r##"<text x="10" y="{ly:.1}" font-weight="bold">Shadow divergences (never applied)</text>"##
        );
        for (n, lines) in &shadow_legend {
            for (i, line) in lines.iter().enumerate() {
                ly += LINE;
                let indent = if i == 0 {
                    format!(r##"<tspan fill="#6a1b9a" font-weight="bold">S{n}</tspan> "##)
                } else {
                    String::new()
                };
                let lx = if i == 0 {
                    10.0
                } else {
                    10.0 + CHAR_WIDTH * format!("S{n} ").len() as f64
                };
                let _ = writeln!(
                    s,
                    r##"<text x="{lx:.1}" y="{ly:.1}">{indent}{}</text>"##,
                    escape(line)
                );
            }
        }
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Decision;

    #[test]
    fn ticks_stay_at_ten_or_fewer() {
        for secs in [1, 59, 600, 3601, 86400] {
            let total = Duration::from_secs(secs);
            assert!(total.as_secs() / tick_step(total).as_secs() <= 10, "{secs}");
        }
    }

    fn attempt(uid: &str, attempt: &str, from: u64, to: u64) -> Attempt {
        Attempt {
            jobset: "default/js".to_string(),
            job: "js-worker-0".to_string(),
            uid: uid.to_string(),
            restart_attempt: attempt.to_string(),
            created: Duration::from_secs(from),
            ended: Some((
                Duration::from_secs(to),
                Ending::Failed("BackoffLimitExceeded".into()),
            )),
            domain: None,
            pods: 1,
            resizes: Vec::new(),
        }
    }

    /// The `x` and `width` of every bar, in order.
    fn bars(svg: &str) -> Vec<(f64, f64)> {
        let attr = |tag: &str, name: &str| -> f64 {
            let start = tag.find(&format!(" {name}=\"")).expect("attribute") + name.len() + 3;
            tag[start..]
                .split('"')
                .next()
                .unwrap_or_default()
                .parse()
                .expect("a number")
        };
        svg.split("<rect class=\"")
            .skip(1)
            .map(|tag| (attr(tag, "x"), attr(tag, "width")))
            .collect()
    }

    #[test]
    fn attempts_that_follow_each_other_are_separate_bars() {
        let mut record = Record::default();
        for a in [attempt("u1", "0", 0, 120), attempt("u2", "1", 120, 240)] {
            record.attempts.insert(a.uid.clone(), a);
        }
        let svg = render(&record, Duration::from_secs(600));
        let b = bars(&svg);
        assert_eq!(b.len(), 2, "{svg}");
        let gap = b[1].0 - (b[0].0 + b[0].1);
        assert!(gap >= GAP - 0.11, "bars {b:?} are {gap} apart");
    }

    #[test]
    fn a_resize_is_marked_on_its_bar_with_the_new_size() {
        let mut record = Record::default();
        let mut a = attempt("u1", "0", 0, 600);
        a.resizes.push((Duration::from_secs(300), 4));
        record.attempts.insert(a.uid.clone(), a);
        let svg = render(&record, Duration::from_secs(600));
        let b = bars(&svg)[0];
        let mark = svg
            .lines()
            .find(|l| l.starts_with("<text class=\"resize\""))
            .unwrap_or_else(|| panic!("no resize mark in {svg}"));
        assert!(
            mark.contains("→4<title>js-worker-0 resized to 4 pods at 00:05:00"),
            "{mark}"
        );
        let x: f64 = mark["<text class=\"resize\" x=\"".len()..]
            .split('"')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let middle = b.0 + b.1 / 2.0;
        assert!(
            (x - middle).abs() < 5.0,
            "mark at {x}, bar middle at {middle}"
        );
    }

    #[test]
    fn an_in_place_restart_is_marked_on_its_jobs_bar() {
        let mut record = Record::default();
        let a = attempt("u1", "0", 0, 600);
        record.attempts.insert(a.uid.clone(), a);
        record.pod_restarts.push(crate::history::PodRestart {
            at: Duration::from_secs(130),
            job_uid: "u1".into(),
            pod: "js-worker-0-1-abcde".into(),
            restarts: 1,
            exit_code: Some(1),
        });
        let svg = render(&record, Duration::from_secs(600));
        let mark = svg
            .lines()
            .find(|l| l.starts_with("<text class=\"inplace\""))
            .unwrap_or_else(|| panic!("no in-place mark in {svg}"));
        assert!(
            mark.contains("pod js-worker-0-1-abcde restarted in place after exit code 1 at 00:02:10 (restart 1)"),
            "{mark}"
        );
    }

    #[test]
    fn a_plugins_words_are_not_counted_as_another_restart() {
        let mut record = Record::default();
        let a = attempt("u1", "0", 0, 120);
        record.attempts.insert(a.uid.clone(), a);
        for text in [
            "outcome by x@1: restart jobset (R, rule -, first failed job js-worker-0)",
            "outcome by x@1 says: restart jobset: node n1 looks bad",
        ] {
            record.decisions.push(Decision {
                at: Duration::from_secs(120),
                jobset: "default/js".to_string(),
                text: text.to_string(),
            });
        }
        let svg = render(&record, Duration::from_secs(600));
        assert!(svg.contains("R1 outcome by x@1: restart jobset"), "{svg}");
        assert!(!svg.contains("R2"), "{svg}");
    }

    #[test]
    fn a_long_restart_decision_wraps_inside_the_picture() {
        let mut record = Record::default();
        let a = attempt("u1", "0", 0, 120);
        record.attempts.insert(a.uid.clone(), a);
        let text = format!(
            "outcome by default-outcome@0123456789ab: restart jobset (FailurePolicy_failurePolicyRule0, {} first failed job js-worker-0)",
            "the message of the Job's failure condition is long ".repeat(8)
        );
        record.decisions.push(Decision {
            at: Duration::from_secs(120),
            jobset: "default/js".to_string(),
            text,
        });
        let svg = render(&record, Duration::from_secs(600));
        let width = WIDTH;
        let legend: Vec<&str> = svg
            .lines()
            .filter(|l| l.starts_with("<text x=\"") && !l.contains("text-anchor"))
            .skip_while(|l| !l.contains(">Restarts<"))
            .skip(1)
            .collect();
        assert!(
            legend.len() >= 3,
            "the decision wraps onto several lines: {svg}"
        );
        for line in &legend {
            let x: f64 = line["<text x=\"".len()..]
                .split('"')
                .next()
                .unwrap_or_default()
                .parse()
                .expect("x");
            let visible: String = {
                let mut out = String::new();
                let mut in_tag = false;
                for c in line.chars() {
                    match c {
                        '<' => in_tag = true,
                        '>' => in_tag = false,
                        c if !in_tag => out.push(c),
                        _ => {}
                    }
                }
                // An entity is one character on the page.
                ["&apos;", "&quot;", "&amp;", "&lt;", "&gt;"]
                    .iter()
                    .fold(out, |t, e| t.replace(e, "'"))
            };
            let end = x + CHAR_WIDTH * visible.chars().count() as f64;
            assert!(end <= width, "{end} > {width}: {line}");
        }
        // Nothing of the decision is lost on the way.
        assert!(svg.contains("first failed job js-worker-0)"), "{svg}");
        let height: f64 = svg
            .split(" height=\"")
            .nth(1)
            .and_then(|h| h.split('"').next())
            .and_then(|h| h.parse().ok())
            .expect("height");
        let last_y: f64 = legend
            .last()
            .and_then(|l| l.split(" y=\"").nth(1))
            .and_then(|y| y.split('"').next())
            .and_then(|y| y.parse().ok())
            .expect("y");
        assert!(last_y < height, "{last_y} >= {height}");
    }

    #[test]
    fn wrapping_keeps_every_word_and_the_limit() {
        let text = "a bb ccc dddddddddddddddddddd e";
        let lines = wrap(text, 8);
        assert!(lines.iter().all(|l| l.chars().count() <= 8), "{lines:?}");
        assert_eq!(lines.concat().replace(' ', ""), text.replace(' ', ""));
        assert_eq!(wrap("", 10), [""]);
    }

    #[test]
    fn a_shadow_divergence_is_marked_at_its_time_and_explained_in_the_legend() {
        let mut record = Record::default();
        record
            .attempts
            .insert("u1".into(), attempt("u1", "0", 0, 600));
        record.divergences.push(crate::history::Decision {
            at: Duration::from_secs(300),
            jobset: "default/js".into(),
            text: "outcome shadow-x@1: RestartJobset where default-outcome@2 decided Fail".into(),
        });
        let svg = render(&record, Duration::from_secs(600));
        let mark = svg
            .lines()
            .find(|l| l.starts_with("<text class=\"shadow\""))
            .unwrap_or_else(|| panic!("no shadow mark in {svg}"));
        assert!(mark.contains(">S1<title>"), "{mark}");
        // Halfway through the run, halfway along the chart.
        assert!(
            mark.contains(&format!("x=\"{:.1}\"", LEFT + CHART / 2.0)),
            "{mark}"
        );
        assert!(svg.contains("Shadow divergences (never applied)"), "{svg}");
        assert!(
            svg.contains("05:00 default/js: outcome shadow-x@1: RestartJobset where default-outcome@2 decided Fail"),
            "{svg}"
        );
    }

    #[test]
    fn text_is_escaped_for_xml() {
        assert_eq!(escape("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
    }
}
