//! `--timings`' files: the one part of this room that writes (the rest is pure). The run's
//! recorded events and its summary become a [`Timeline`], shown on a terminal as text after the
//! summary line and written as the files asked for.

use std::io::IsTerminal;

use crate::config::TimingsOut;
use crate::event::{Event, Stamped};
use crate::secret;
use crate::ui::Ui;

use super::Timeline;

/// Write the timeline of this run; returns the paths written.
/// `summary`: the run's `summary` event (it comes last, after this).
pub fn write(ui: &Ui, out: &TimingsOut, summary: Event, started_unix: u64) -> Vec<String> {
    let mut events = ui.recorded();
    events.push(Stamped { event: summary, t_ms: ui.elapsed_ms() });
    let timeline = Timeline::from_events(&events, started_unix);
    if std::io::stderr().is_terminal() {
        let width = console::Term::stderr().size().1 as usize;
        for line in super::text(&timeline, width, ui.color()) {
            ui.plain(&line);
        }
    }
    let base = out.dir.join(format!("{}-{}", timeline.command, super::stamp(started_unix)));
    let mut written = Vec::new();
    for (wanted, ext) in [(out.html, "html"), (out.json, "json")] {
        if !wanted {
            continue;
        }
        let body = match ext {
            "html" => super::html(&timeline),
            _ => serde_json::to_string_pretty(&timeline.to_json()).unwrap_or_default() + "\n",
        };
        let path = base.with_extension(ext);
        match std::fs::create_dir_all(&out.dir).and_then(|()| std::fs::write(&path, secret::redact(&body))) {
            Ok(()) => {
                ui.ok_line(&format!("timings: {}", path.display()));
                written.push(path.display().to_string());
            }
            Err(e) => ui.warn(&format!(
                "cannot write the timings to {}: {e}; pass --timings-dir DIR to write them elsewhere",
                path.display()
            )),
        }
    }
    written
}
