//! Progress on stderr in kind's style: ` ✓ step (1.2s)` / ` ✗ step`, a spinner only on a smart
//! terminal, plain ` • step ...` lines otherwise. With `--json`, the same events also go to stdout
//! as newline-delimited JSON (schema in the README); nothing else writes to stdout then.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::event::{Event, Outcome, Stamped};
use crate::secret;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Color {
    Auto,
    Always,
    Never,
}

#[derive(Clone)]
pub struct Ui {
    color: bool,
    smart: bool,
    json: bool,
    t0: Instant,
    state: Arc<Mutex<Active>>,
    /// With `--timings`: every event, redacted, in the order emitted (`Ui::recorded`).
    recorder: Option<Arc<Mutex<Vec<Stamped>>>>,
}

#[derive(Default)]
struct Active {
    title: Option<String>,
    started: Option<Instant>,
    drawn: bool,
}

const FRAMES: [&str; 8] = ["⠈⠁", "⠈⠑", "⠈⠱", "⠈⡱", "⢀⡱", "⢄⡱", "⢄⡱", "⢆⡱"];

impl Ui {
    pub fn new(color: Color, json: bool) -> Ui {
        let term = console::Term::stderr();
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let dumb = std::env::var("TERM").is_ok_and(|t| t == "dumb");
        let tty = term.is_term();
        let smart = tty && !dumb && !no_color;
        let color = match color {
            Color::Always => true,
            Color::Never => false,
            Color::Auto => tty && !dumb && !no_color,
        };
        let ui = Ui {
            color,
            smart,
            json,
            t0: Instant::now(),
            state: Arc::new(Mutex::new(Active::default())),
            recorder: None,
        };
        if smart {
            let state = Arc::clone(&ui.state);
            std::thread::spawn(move || spin(state));
        }
        ui
    }

    fn paint(&self, text: &str, code: u8) -> String {
        if self.color { format!("\x1b[{code}m{text}\x1b[0m") } else { text.to_string() }
    }

    pub fn json(&self) -> bool {
        self.json
    }

    /// Whether marks are coloured (`--color`, `NO_COLOR`, a terminal).
    pub fn color(&self) -> bool {
        self.color
    }

    /// Keep every event in memory from now on (`--timings`), whether or not `--json` prints it.
    pub fn record(mut self) -> Ui {
        self.recorder = Some(Arc::new(Mutex::new(Vec::new())));
        self
    }

    /// The events recorded so far, redacted (empty unless [`Ui::record`]).
    pub fn recorded(&self) -> Vec<Stamped> {
        self.recorder
            .as_ref()
            .map(|r| r.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .unwrap_or_default()
    }

    /// Milliseconds since the run began (an event's `t_ms`).
    pub fn elapsed_ms(&self) -> u64 {
        self.t0.elapsed().as_millis() as u64
    }

    /// One event, stamped with `t_ms`: on stdout with `--json`, kept in memory with `--timings`.
    pub fn emit(&self, event: Event) {
        if !self.json && self.recorder.is_none() {
            return;
        }
        let stamped = Stamped { event, t_ms: self.elapsed_ms() };
        let line = secret::redact(&serde_json::to_string(&stamped).unwrap_or_default());
        let _state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        // The redacted line read back, so what is kept holds no secret either.
        if let (Some(recorder), Ok(redacted)) = (&self.recorder, serde_json::from_str(&line)) {
            recorder.lock().unwrap_or_else(|e| e.into_inner()).push(redacted);
        }
        if self.json {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }

    fn write_line(&self, line: &str) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut err = std::io::stderr().lock();
        if state.drawn {
            let _ = write!(err, "\r\x1b[2K");
            state.drawn = false;
        }
        let _ = writeln!(err, "{}", secret::redact(line));
    }

    /// Start a step: a spinner on a smart terminal, ` • title ...` otherwise.
    pub fn start(&self, title: &str) -> Step {
        self.emit(Event::StepStarted { step: title.to_string() });
        if !self.smart {
            self.write_line(&format!(" • {title} ..."));
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.title = Some(title.to_string());
        state.started = Some(Instant::now());
        Step { ui: self.clone(), title: title.to_string(), started: Instant::now(), ended: false }
    }

    /// A detail line under the current step.
    pub fn info(&self, text: &str) {
        self.emit(Event::Info { message: text.to_string() });
        self.write_line(&format!("   {} {text}", self.paint("•", 2)));
    }

    pub fn warn(&self, text: &str) {
        self.emit(Event::Warning { message: text.to_string() });
        self.write_line(&format!("   {} {text}", self.paint("!", 33)));
    }

    /// The final error, printed once.
    pub fn error(&self, text: &str, exit_code: u8) {
        self.emit(Event::Error { message: text.to_string(), exit_code });
        self.write_line(&format!("{} {text}", self.paint("ERROR:", 31)));
    }

    /// A finished item inside a step (a workload ready, a check passing), with its event.
    pub fn ok_item(&self, text: &str, event: Event) {
        self.emit(event);
        self.write_line(&format!(" {} {text}", self.paint("✓", 32)));
    }

    /// A dry run's lines: pasteable, on stdout (results, not progress), or `plan` events with
    /// `--json`; through the redactor like every other line.
    pub fn plan(&self, lines: &[String]) {
        if self.json {
            for line in lines {
                self.emit(Event::Plan { line: line.clone() });
            }
            return;
        }
        let mut out = std::io::stdout().lock();
        for line in lines {
            let _ = writeln!(out, "{}", secret::redact(line));
        }
    }

    /// Ask a question on stderr (the caller checked that stdin is a terminal); the answer read
    /// from stdin, trimmed.
    pub fn ask(&self, question: &str) -> String {
        {
            let _state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "{} ", secret::redact(question));
            let _ = err.flush();
        }
        let mut answer = String::new();
        let _ = std::io::stdin().read_line(&mut answer);
        answer.trim().to_string()
    }

    /// A line on stderr as it is (the `--timings` text).
    pub fn plain(&self, text: &str) {
        self.write_line(text);
    }

    pub fn ok_line(&self, text: &str) {
        self.write_line(&format!(" {} {text}", self.paint("✓", 32)));
    }

    pub fn fail_line(&self, text: &str) {
        self.write_line(&format!(" {} {text}", self.paint("✗", 31)));
    }

    /// A warning mark (no event: the caller emits its own).
    pub fn warn_line(&self, text: &str) {
        self.write_line(&format!(" {} {text}", self.paint("!", 33)));
    }

    /// A plain line on stderr (detail under a mark), dimmed label first when given.
    pub fn detail(&self, label: &str, text: &str) {
        let label = if label.is_empty() { String::new() } else { self.paint(label, 2) };
        self.write_line(&format!("     {label}{text}"));
    }
}

/// A running step. End it with [`Step::done`] or [`Step::fail`]; dropping it marks a failure.
pub struct Step {
    ui: Ui,
    title: String,
    started: Instant,
    ended: bool,
}

impl Step {
    pub fn done(mut self, note: &str) {
        self.finish(true, note);
    }

    fn finish(&mut self, ok: bool, note: &str) {
        self.ended = true;
        {
            let mut state = self.ui.state.lock().unwrap_or_else(|e| e.into_inner());
            state.title = None;
            state.started = None;
        }
        let took = human(self.started.elapsed());
        self.ui.emit(Event::StepFinished {
            step: self.title.clone(),
            outcome: Outcome::of(ok),
            note: note.to_string(),
            duration_ms: self.started.elapsed().as_millis() as u64,
        });
        let note = if note.is_empty() { String::new() } else { format!(": {note}") };
        let line = format!("{}{note} ({took})", self.title);
        if ok { self.ui.ok_line(&line) } else { self.ui.fail_line(&line) }
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        if !self.ended {
            self.finish(false, "");
        }
    }
}

fn spin(state: Arc<Mutex<Active>>) {
    let mut frame = 0usize;
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
        if let (Some(title), Some(started)) = (&state.title, state.started) {
            let line = format!(
                "\x1b[?7l\r {} {title} {}\x1b[?7h",
                FRAMES[frame % FRAMES.len()],
                human(started.elapsed())
            );
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "{}", secret::redact(&line));
            let _ = err.flush();
            state.drawn = true;
            frame += 1;
        }
    }
}

/// A duration as people read it: 450ms, 6.1s, 1m30s.
pub fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        let s = d.as_secs();
        if s.is_multiple_of(60) { format!("{}m", s / 60) } else { format!("{}m{}s", s / 60, s % 60) }
    }
}

#[cfg(test)]
mod tests {
    use super::human;
    use std::time::Duration;

    #[test]
    fn durations_read_like_kinds() {
        assert_eq!(human(Duration::from_millis(450)), "450ms");
        assert_eq!(human(Duration::from_millis(6100)), "6.1s");
        assert_eq!(human(Duration::from_secs(90)), "1m30s");
        assert_eq!(human(Duration::from_secs(120)), "2m");
    }
}
