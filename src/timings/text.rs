//! The timeline on a terminal, after the summary line: one line per bar, proportional to the
//! wall time. `·` waiting for what it needs, `█` restarting/rolling out (or a phase), `─` Ready; `*` marks
//! the critical path (also in colour when colour is on).

use super::{Bar, Kind, Timeline, secs};

const WAIT: char = '·';
const ROLL: char = '█';
const READY: char = '─';

fn paint(text: &str, code: &str, color: bool) -> String {
    if color && !text.is_empty() { format!("\x1b[{code}m{text}\x1b[0m") } else { text.to_string() }
}

/// The lines (no trailing newline), for a terminal `width` columns wide.
pub fn text(t: &Timeline, width: usize, color: bool) -> Vec<String> {
    let label_w = t.bars.iter().map(|b| b.label().chars().count()).max().unwrap_or(0).clamp(8, 28);
    // "  * " + label + " |" + bar + "| " + duration
    let cells = width.saturating_sub(label_w + 16).clamp(20, 120);
    let mut lines = vec![
        format!(
            "Timings: wall {} · {} kubectl spawns · critical path {} (*)",
            secs(t.wall_ms),
            t.kubectl(),
            secs(t.critical_ms),
        ),
        paint(
            &format!(
                "  ({WAIT} waiting for what it needs  {ROLL} restarting/rolling out  {READY} Ready  * critical path)"
            ),
            "2",
            color,
        ),
    ];
    for b in &t.bars {
        let label: String = b.label().chars().take(label_w).collect();
        let mark = if b.critical { paint("*", "33;1", color) } else { " ".to_string() };
        lines.push(format!(
            "  {mark} {label:<label_w$} |{}| {}",
            bar(t, b, cells, color),
            secs(b.took_ms(t.wall_ms))
        ));
    }
    lines
}

/// One bar as `cells` characters: each cell shows the segment that covers its middle, and a
/// rollout shorter than a cell still gets one.
fn bar(t: &Timeline, b: &Bar, cells: usize, color: bool) -> String {
    let wall = t.wall_ms.max(1) as f64;
    let cell_of = |ms: u64| (((ms as f64 / wall) * cells as f64) as usize).min(cells - 1);
    let end = b.ready_ms.unwrap_or(t.wall_ms);
    let mut chars: Vec<char> = (0..cells)
        .map(|c| {
            let at = ((c as f64 + 0.5) / cells as f64 * wall) as u64;
            if at < b.queued_ms {
                ' '
            } else if at < b.start_ms {
                WAIT
            } else if at < end {
                ROLL
            } else if b.ready_ms.is_some() && b.kind != Kind::Phase {
                READY
            } else {
                ' '
            }
        })
        .collect();
    if !chars.contains(&ROLL) {
        chars[cell_of(b.start_ms)] = ROLL;
    }
    // Runs of one character, painted.
    let roll = if b.failed {
        "31"
    } else if b.critical {
        "33;1"
    } else {
        "36"
    };
    let mut out = String::new();
    let mut run = String::new();
    let mut current = None;
    for c in chars.into_iter().chain(std::iter::once('\0')) {
        if Some(c) != current {
            if let Some(prev) = current {
                let code = match prev {
                    WAIT | READY => "2",
                    ROLL => roll,
                    _ => "",
                };
                out.push_str(&if code.is_empty() { run.clone() } else { paint(&run, code, color) });
            }
            run.clear();
            current = Some(c);
        }
        run.push(c);
    }
    out
}
