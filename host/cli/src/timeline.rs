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
        .filter(|d| d.text.contains(": restart "))
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
    let height = legend_top + 18.0 * (restarts.len() as f64 + 2.0);
    let width = LEFT + CHART + 20.0;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r##"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">
<style>.ok{{fill:#4caf50}}.failed{{fill:#e53935}}.deleted{{fill:#9e9e9e}}.running{{fill:#42a5f5}}.podfail{{stroke:#b71c1c;stroke-width:2}}.restart{{stroke:#fb8c00;stroke-width:2;stroke-dasharray:3,2}}.grid{{stroke:#e0e0e0}}.group{{font-weight:bold;fill:#37474f}}</style>
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
            let (x0, x1) = (x(a.created), x(until));
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
    for (n, d) in &restarts {
        ly += 18.0;
        let _ = writeln!(
            s,
            r##"<text x="10" y="{ly:.1}"><tspan fill="#e65100" font-weight="bold">R{n}</tspan> {} {}: {}</text>"##,
            fmt_duration(d.at),
            escape(&d.jobset),
            escape(&d.text)
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_stay_at_ten_or_fewer() {
        for secs in [1, 59, 600, 3601, 86400] {
            let total = Duration::from_secs(secs);
            assert!(total.as_secs() / tick_step(total).as_secs() <= 10, "{secs}");
        }
    }

    #[test]
    fn text_is_escaped_for_xml() {
        assert_eq!(escape("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
    }
}
