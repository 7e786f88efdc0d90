//! A progress line on stderr for long operations (audit export, chain
//! verification), drawn only when stderr is a terminal so that scripts and
//! logs get nothing but the result.

use std::io::{IsTerminal as _, Write as _};
use std::time::{Duration, Instant};

/// Redrawing more often than this only costs time.
const REDRAW_EVERY: Duration = Duration::from_millis(100);

#[derive(Debug)]
pub struct Progress {
    shown: bool,
    drawn: Option<Instant>,
}

impl Progress {
    /// A progress line, shown when stderr is a terminal.
    pub fn on_terminal() -> Self {
        Self {
            shown: std::io::stderr().is_terminal(),
            drawn: None,
        }
    }

    /// Replaces the line with `text` (at most every [`REDRAW_EVERY`]).
    pub fn update(&mut self, text: impl FnOnce() -> String) {
        if !self.shown || self.drawn.is_some_and(|at| at.elapsed() < REDRAW_EVERY) {
            return;
        }
        self.drawn = Some(Instant::now());
        let mut stderr = std::io::stderr().lock();
        // \r to the line's start, then the text, then erase the rest (ANSI EL).
        let _ = write!(stderr, "\r{}\x1b[K", text());
        let _ = stderr.flush();
    }

    /// Clears the line, so the result is printed on a clean terminal.
    pub fn finish(self) {
        if self.shown && self.drawn.is_some() {
            let mut stderr = std::io::stderr().lock();
            let _ = write!(stderr, "\r\x1b[K");
            let _ = stderr.flush();
        }
    }
}
