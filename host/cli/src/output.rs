//! Where `jobset run` writes: log lines, and on a terminal a block of
//! progress lines (one per JobSet) redrawn in place below them. Off a
//! terminal, or into a buffer, only the log lines are written.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};

struct Inner {
    sink: Box<dyn Write + Send>,
    live: bool,
    /// How many progress lines are drawn below the log right now.
    drawn: usize,
    /// When the progress block was last drawn (wall clock): virtual time
    /// runs far faster than a terminal needs redrawing.
    last_draw: Option<std::time::Instant>,
}

/// The least wall time between two progress redraws.
const REDRAW: std::time::Duration = std::time::Duration::from_millis(50);

/// A shared writer for a run's output; cheap to clone.
#[derive(Clone)]
pub struct Output {
    inner: Arc<Mutex<Inner>>,
}

/// The bytes written to a buffered [`Output`].
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// Everything written so far, as text.
    pub fn text(&self) -> String {
        self.0
            .lock()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut b) = self.0.lock() {
            b.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Output {
    /// Standard output; live progress when it is a terminal.
    pub fn stdout() -> Self {
        let live = std::io::stdout().is_terminal();
        Self::new(Box::new(std::io::stdout()), live)
    }

    /// A writer into `sink`, with live progress or plain lines.
    pub fn new(sink: Box<dyn Write + Send>, live: bool) -> Self {
        Output {
            inner: Arc::new(Mutex::new(Inner {
                sink,
                live,
                drawn: 0,
                last_draw: None,
            })),
        }
    }

    /// A plain (non-terminal) writer into a buffer, and the buffer.
    pub fn buffer() -> (Self, Captured) {
        let captured = Captured::default();
        (Self::new(Box::new(captured.clone()), false), captured)
    }

    /// Whether progress lines are drawn in place.
    pub fn is_live(&self) -> bool {
        self.inner.lock().is_ok_and(|i| i.live)
    }

    /// Writes one log line (above the progress block on a terminal).
    pub fn line(&self, text: &str) {
        if let Ok(mut i) = self.inner.lock() {
            let erase = erase(i.drawn);
            i.drawn = 0;
            let _ = writeln!(i.sink, "{erase}{text}");
            let _ = i.sink.flush();
        }
    }

    /// Redraws the progress block (at most every 50 ms unless `force`);
    /// does nothing off a terminal.
    pub fn progress(&self, lines: &[String], force: bool) {
        if let Ok(mut i) = self.inner.lock() {
            let recent = i.last_draw.is_some_and(|t| t.elapsed() < REDRAW);
            if !i.live || (recent && !force) {
                return;
            }
            i.last_draw = Some(std::time::Instant::now());
            let mut text = erase(i.drawn);
            for l in lines {
                text.push_str("\x1b[2K");
                text.push_str(l);
                text.push('\n');
            }
            i.drawn = lines.len();
            let _ = i.sink.write_all(text.as_bytes());
            let _ = i.sink.flush();
        }
    }

    /// Leaves the last progress block on screen as ordinary lines.
    pub fn end_progress(&self) {
        if let Ok(mut i) = self.inner.lock() {
            i.drawn = 0;
        }
    }
}

/// Moves the cursor up over `lines` drawn lines and clears to the end.
fn erase(lines: usize) -> String {
    if lines == 0 {
        String::new()
    } else {
        format!("\x1b[{lines}F\x1b[J")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_a_terminal_progress_is_not_written_and_lines_are_plain() {
        let (out, captured) = Output::buffer();
        out.progress(&["default/a  Running".to_string()], true);
        out.line("[00:00:05] default/a: created");
        assert_eq!(captured.text(), "[00:00:05] default/a: created\n");
    }

    #[test]
    fn on_a_terminal_a_log_line_erases_the_progress_block_first() {
        let captured = Captured::default();
        let out = Output::new(Box::new(captured.clone()), true);
        out.progress(&["a".to_string(), "b".to_string()], true);
        out.line("log");
        out.progress(&["x".to_string(), "y".to_string()], false);
        out.progress(&["a2".to_string(), "b2".to_string()], true);
        let t = captured.text();
        assert!(
            t.starts_with("\x1b[2Ka\n\x1b[2Kb\n\x1b[2F\x1b[Jlog\n"),
            "{t:?}"
        );
        assert!(t.ends_with("\x1b[2Ka2\n\x1b[2Kb2\n"), "{t:?}");
        assert!(!t.contains('x'), "a redraw within 50 ms is skipped: {t:?}");
    }
}
