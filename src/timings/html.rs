//! The timeline as one self-contained HTML page: inline CSS and an inline SVG, no script, no
//! font, nothing fetched. Each bar is a `<g class="bar">` carrying its figures as `data-*`
//! attributes (the browser test reads them back) and its story as an SVG `<title>` (the hover).

use std::fmt::Write;

use super::{Bar, Kind, Timeline, secs, utc};

const LABEL_W: f64 = 260.0;
const CHART_W: f64 = 810.0;
const RIGHT_W: f64 = 60.0;
const ROW_H: f64 = 22.0;
const BAR_H: f64 = 14.0;
const AXIS_H: f64 = 24.0;

const CSS: &str = "
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, 'Segoe UI', Roboto, 'DejaVu Sans', sans-serif;
  color: #1f2430; background: #fff; margin: 24px auto; max-width: 1160px; padding: 0 16px; }
h1 { font-size: 22px; margin: 0 0 12px; }
h2 { font-size: 16px; margin: 28px 0 8px; }
.outcome { font-size: 13px; padding: 2px 8px; border-radius: 10px; vertical-align: middle; }
.outcome.ok { background: #d3f0dc; color: #1d6b35; }
.outcome.failed { background: #fbd9d9; color: #9b1c1c; }
table { border-collapse: collapse; }
.totals th { text-align: left; font-weight: 600; padding: 3px 18px 3px 0; vertical-align: top; white-space: nowrap; }
.totals td { padding: 3px 0; }
.dim { color: #667085; }
.error { color: #9b1c1c; white-space: pre-wrap; font-family: ui-monospace, 'DejaVu Sans Mono', monospace; font-size: 12px; }
.legend { margin: 18px 0 6px; color: #475467; font-size: 13px; }
.legend span.key { display: inline-block; width: 22px; height: 11px; margin: 0 5px 0 14px; vertical-align: -1px; border-radius: 2px; }
.legend span.key:first-child { margin-left: 0; }
.key.wait { background: repeating-linear-gradient(45deg, #e4e7ee 0 3px, #c3c9d5 3px 5px); }
.key.roll { background: #3d7cc9; }
.key.phase { background: #7b879e; }
.key.awaited { background: #4fa39a; }
.key.prep { background: #8e6cc4; }
.key.ready { background: #cdebd6; }
.key.critical { background: #e8590c; }
.key.failed { background: #d63a3a; }
svg { display: block; margin: 4px 0 0; }
svg text { font-size: 12px; fill: #1f2430; }
svg .axis text { fill: #667085; font-size: 11px; }
svg .grid { stroke: #eceef3; }
svg .stripe { fill: #f7f8fa; }
svg .label .ns { fill: #98a2b3; }
svg .bar.critical .label { font-weight: 700; fill: #b0440b; }
svg .seg.wait { fill: url(#hatch); }
svg .seg.roll { fill: #3d7cc9; }
svg .bar.phase .seg.roll { fill: #7b879e; }
svg .bar.awaited .seg.roll { fill: #4fa39a; }
svg .bar.prep .seg.roll { fill: #8e6cc4; }
svg .bar.critical .seg.roll { fill: #e8590c; }
svg .seg.ready { fill: #cdebd6; }
svg .bar.failed .seg.roll { fill: #d63a3a; }
svg .took { fill: #344054; font-size: 11px; }
svg .edge { fill: none; stroke: #e8590c; stroke-width: 1.5; stroke-dasharray: 3 2; }
svg .bar:hover .seg { filter: brightness(0.88); }
svg .bar:hover .label { text-decoration: underline; }
.units { margin-top: 4px; width: 100%; font-size: 13px; }
.units th { text-align: left; border-bottom: 2px solid #d0d5dd; padding: 4px 10px 4px 0; white-space: nowrap; }
.units td { border-bottom: 1px solid #eaecf0; padding: 3px 10px 3px 0; vertical-align: top; }
.units td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.units tr.critical td.name { font-weight: 700; color: #b0440b; }
.units tr.critical td.name::before { content: '◆ '; }
.units tr.kept td { color: #667085; }
footer { margin: 28px 0 0; color: #98a2b3; font-size: 12px; }
";

/// Escape text for HTML content and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A tick every 1, 2 or 5 × 10ⁿ seconds (or 15 s, 30 s, minutes), about eight across.
pub(super) fn tick_ms(wall_ms: u64) -> u64 {
    const STEPS: [u64; 17] = [
        50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000, 600_000,
        900_000, 1_800_000, 3_600_000,
    ];
    STEPS.iter().copied().find(|s| wall_ms / s <= 9).unwrap_or(3_600_000)
}

/// An axis label: 0s, 500ms, 10s, 1m, 1m30s.
pub(super) fn tick_label(ms: u64) -> String {
    match ms {
        0 => "0s".to_string(),
        ms if ms % 1000 == 0 && ms < 60_000 => format!("{}s", ms / 1000),
        ms => secs(ms),
    }
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(max - 1).collect::<String>())
    }
}

/// What the hover says about a bar.
fn story(t: &Timeline, b: &Bar) -> String {
    let mut lines = Vec::new();
    let ns = b.namespace.as_deref().map(|n| format!(" ({n})")).unwrap_or_default();
    lines.push(format!("{}{ns} · {}", b.name, b.kind.as_str()));
    if !b.needs.is_empty() {
        lines.push(format!("needs {}", b.needs.join(", ")));
    }
    if b.kind != Kind::Phase {
        lines.push(format!("waited {} ({})", secs(b.waited_ms()), b.released_text()));
    }
    let what = match b.kind {
        Kind::Workload => "restart sent",
        Kind::Applied => "applied",
        Kind::Awaited => "kept (not restarted), its rollout waited for since",
        Kind::Connector => "registration began",
        Kind::Prep => "began",
        Kind::Phase => "began",
    };
    let end = match (b.ready_ms, b.failed) {
        (Some(r), _) => format!("{} at {}", if b.kind == Kind::Phase { "done" } else { "Ready" }, secs(r)),
        (None, true) => "failed".to_string(),
        (None, false) => "never Ready".to_string(),
    };
    lines.push(format!("{what} at {}, {end}: took {}", secs(b.start_ms), secs(b.took_ms(t.wall_ms))));
    if !b.note.is_empty() {
        lines.push(b.note.clone());
    }
    if let Some(d) = &b.decision {
        lines.push(format!("{}: {}", d.action, d.reason));
    }
    if b.critical {
        lines.push("on the critical path".to_string());
    }
    lines.join("\n")
}

pub fn html(t: &Timeline) -> String {
    let mut out = String::new();
    let title = format!("bookstore {} · {} · {}", t.command, secs(t.wall_ms), utc(t.started_unix));
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <link rel=\"icon\" href=\"data:,\">\n<title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n",
        esc(&title)
    );
    let outcome = if t.outcome == "ok" { "ok" } else { "failed" };
    let _ = writeln!(
        out,
        "<h1>bookstore {} <span class=\"outcome {outcome}\">{} · exit {}</span></h1>",
        esc(&t.command),
        esc(&t.outcome),
        t.exit_code
    );
    totals(t, &mut out);
    out.push_str(
        "<div class=\"legend\"><span class=\"key wait\"></span>waiting for what it needs\
         <span class=\"key roll\"></span>restarting / rolling out\
         <span class=\"key awaited\"></span>kept, its rollout waited for\
         <span class=\"key prep\"></span>a bootstrap preparation\
         <span class=\"key phase\"></span>a phase\
         <span class=\"key ready\"></span>Ready\
         <span class=\"key critical\"></span>critical path\
         <span class=\"key failed\"></span>failed / never Ready</div>\n",
    );
    chart(t, &mut out);
    table(t, &mut out);
    let _ = writeln!(
        out,
        "<footer>bookstore {} · one self-contained page: no script, no font, nothing fetched · \
         the same data as JSON: <code>--timings=json</code></footer>\n</body>\n</html>",
        env!("CARGO_PKG_VERSION")
    );
    out
}

fn totals(t: &Timeline, out: &mut String) {
    out.push_str("<table class=\"totals\">\n");
    let _ = writeln!(out, "<tr><th>Started</th><td>{}</td></tr>", utc(t.started_unix));
    let _ = writeln!(
        out,
        "<tr><th>Wall</th><td id=\"wall\" data-ms=\"{}\">{}</td></tr>",
        t.wall_ms,
        secs(t.wall_ms)
    );
    let _ = writeln!(
        out,
        "<tr><th>kubectl spawns</th><td id=\"kubectl\" data-count=\"{}\">{} \
         <span class=\"dim\">of {} child processes ({})</span></td></tr>",
        t.kubectl(),
        t.kubectl(),
        t.commands,
        esc(&t.programs_text())
    );
    let slack = t.wall_ms.saturating_sub(t.critical_ms);
    let _ = writeln!(
        out,
        "<tr><th>Critical path</th><td id=\"critical\" data-ms=\"{}\">{}: {}<br>\
         <span class=\"dim\">The longest chain through this run's plan under the durations it \
         observed (bookstore knows no latencies beforehand): steps one after another, and inside a \
         step each workload after what it needs. The other {} of the wall time is bookstore's own \
         work between them (listing, watching, spawning).</span></td></tr>",
        t.critical_ms,
        secs(t.critical_ms),
        esc(&t.chain_text()),
        secs(slack)
    );
    let count = |kind: Kind| t.bars.iter().filter(|b| b.kind == kind).count();
    let kept = |kind: Kind| t.kept.iter().filter(|k| k.kind == kind).count();
    let bootstrap = if count(Kind::Applied) + count(Kind::Prep) > 0 {
        format!("{} workloads applied, {} preparations · ", count(Kind::Applied), count(Kind::Prep))
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "<tr><th>Bars</th><td>{bootstrap}{} workloads restarted, {} waited for, {} kept · {} connectors \
         registered, {} kept · {} phases</td></tr>",
        count(Kind::Workload),
        count(Kind::Awaited),
        kept(Kind::Workload),
        count(Kind::Connector),
        kept(Kind::Connector),
        count(Kind::Phase)
    );
    if let Some(e) = &t.error {
        let _ = writeln!(out, "<tr><th>Error</th><td class=\"error\">{}</td></tr>", esc(e));
    }
    out.push_str("</table>\n");
}

fn chart(t: &Timeline, out: &mut String) {
    let wall = t.wall_ms.max(1) as f64;
    let x = |ms: u64| LABEL_W + (ms as f64 / wall).min(1.0) * CHART_W;
    let rows = t.bars.len() as f64;
    let width = LABEL_W + CHART_W + RIGHT_W;
    let height = AXIS_H * 2.0 + rows * ROW_H;
    let y = |row: usize| AXIS_H + row as f64 * ROW_H;
    let _ = writeln!(
        out,
        "<svg id=\"timeline\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"timeline\">\n<defs><pattern id=\"hatch\" \
         width=\"5\" height=\"5\" patternUnits=\"userSpaceOnUse\" patternTransform=\"rotate(45)\">\
         <rect width=\"5\" height=\"5\" fill=\"#e4e7ee\"/><rect width=\"2\" height=\"5\" fill=\"#c3c9d5\"/>\
         </pattern></defs>"
    );
    for row in (0..t.bars.len()).step_by(2) {
        let _ = writeln!(
            out,
            "<rect class=\"stripe\" x=\"0\" y=\"{}\" width=\"{width}\" height=\"{ROW_H}\"/>",
            y(row)
        );
    }
    // The time axis, above and below.
    let tick = tick_ms(t.wall_ms);
    out.push_str("<g class=\"axis\">\n");
    let mut at = 0;
    while at <= t.wall_ms {
        let tx = x(at);
        let _ = writeln!(
            out,
            "<line class=\"grid\" x1=\"{tx:.1}\" y1=\"{}\" x2=\"{tx:.1}\" y2=\"{}\"/>\
             <text x=\"{tx:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>\
             <text x=\"{tx:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            AXIS_H - 4.0,
            height - AXIS_H + 4.0,
            AXIS_H - 8.0,
            tick_label(at),
            height - 6.0,
            tick_label(at)
        );
        at += tick;
    }
    out.push_str("</g>\n");
    for (row, b) in t.bars.iter().enumerate() {
        let top = y(row) + (ROW_H - BAR_H) / 2.0;
        let mid = y(row) + ROW_H / 2.0 + 4.0;
        let mut class = format!("bar {}", b.kind.as_str());
        if b.critical {
            class.push_str(" critical");
        }
        if b.failed {
            class.push_str(" failed");
        }
        let opt = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
        let _ = writeln!(
            out,
            "<g class=\"{class}\" data-name=\"{}\" data-kind=\"{}\" data-namespace=\"{}\" data-critical=\"{}\" \
             data-released-by=\"{}\" data-queued-ms=\"{}\" data-start-ms=\"{}\" data-ready-ms=\"{}\" \
             data-waited-ms=\"{}\" data-took-ms=\"{}\">\n<title>{}</title>",
            esc(&b.name),
            b.kind.as_str(),
            esc(b.namespace.as_deref().unwrap_or("")),
            b.critical,
            esc(b.released_by.as_deref().unwrap_or("")),
            b.queued_ms,
            b.start_ms,
            opt(b.ready_ms),
            b.waited_ms(),
            b.took_ms(t.wall_ms),
            esc(&story(t, b))
        );
        let ns = b
            .namespace
            .as_deref()
            .map(|n| format!(" <tspan class=\"ns\">{}</tspan>", esc(n)))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "<text class=\"label\" x=\"{:.1}\" y=\"{mid:.1}\" text-anchor=\"end\">{}{ns}</text>",
            LABEL_W - 8.0,
            esc(&shorten(b.label(), if ns.is_empty() { 32 } else { 24 }))
        );
        let end = b.ready_ms.unwrap_or(t.wall_ms);
        let seg = |out: &mut String, class: &str, from: u64, to: u64| {
            if to > from {
                let _ = writeln!(
                    out,
                    "<rect class=\"seg {class}\" x=\"{:.1}\" y=\"{top:.1}\" width=\"{:.1}\" height=\"{BAR_H}\"/>",
                    x(from),
                    (x(to) - x(from)).max(0.5)
                );
            }
        };
        seg(out, "wait", b.queued_ms, b.start_ms);
        // A rollout shorter than a pixel still shows.
        let _ = writeln!(
            out,
            "<rect class=\"seg roll\" x=\"{:.1}\" y=\"{top:.1}\" width=\"{:.1}\" height=\"{BAR_H}\"/>",
            x(b.start_ms),
            (x(end) - x(b.start_ms)).max(1.5)
        );
        if let (Some(ready), false) = (b.ready_ms, b.kind == Kind::Phase) {
            seg(out, "ready", ready, t.wall_ms);
        }
        let _ = writeln!(
            out,
            "<text class=\"took\" x=\"{:.1}\" y=\"{mid:.1}\">{}</text>\n</g>",
            x(end) + 4.0,
            secs(b.took_ms(t.wall_ms))
        );
    }
    // The critical path's hand-overs: from one bar's end to the next one's start.
    for pair in t.critical.windows(2) {
        let (a, b) = (&t.bars[pair[0]], &t.bars[pair[1]]);
        let (ra, rb) = (pair[0], pair[1]);
        let x1 = x(a.ready_ms.unwrap_or(t.wall_ms));
        let x2 = x(b.start_ms).max(x1);
        let _ = writeln!(
            out,
            "<path class=\"edge\" d=\"M{x1:.1} {:.1} V{:.1} H{x2:.1}\"/>",
            y(ra) + ROW_H / 2.0 + BAR_H / 2.0 - 1.0,
            y(rb) + ROW_H / 2.0
        );
    }
    out.push_str("</svg>\n");
}

fn table(t: &Timeline, out: &mut String) {
    out.push_str(
        "<h2>Workloads, connectors and phases</h2>\n<table class=\"units\">\n<thead><tr><th>#</th>\
         <th>workload / phase</th><th>namespace</th><th>needs</th><th>released by</th>\
         <th>waited</th><th>took</th><th>Ready / done at</th><th>why restarted or kept · note</th></tr></thead>\n<tbody>\n",
    );
    for (i, b) in t.bars.iter().enumerate() {
        let class = if b.critical { " class=\"critical\"" } else { "" };
        let released = match (&b.released_by, b.kind) {
            (_, Kind::Phase) => String::new(),
            (Some(by), _) => by.clone(),
            (None, _) => b.after_step.as_deref().map(|p| format!("(after {p})")).unwrap_or_default(),
        };
        let waited = if b.kind == Kind::Phase { String::new() } else { secs(b.waited_ms()) };
        let ready = match (b.ready_ms, b.failed) {
            (Some(r), _) => secs(r),
            (None, true) => "failed".into(),
            (None, false) => "never".into(),
        };
        let why = match &b.decision {
            Some(d) if b.note.is_empty() => format!("{}: {}", d.action, d.reason),
            Some(d) => format!("{}: {} · {}", d.action, d.reason, b.note),
            None => b.note.clone(),
        };
        let _ = writeln!(
            out,
            "<tr{class} data-name=\"{}\"><td class=\"num\">{}</td><td class=\"name\">{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td class=\"num\">{waited}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{ready}</td><td>{}</td></tr>",
            esc(&b.name),
            i + 1,
            esc(b.label()),
            esc(b.namespace.as_deref().unwrap_or("")),
            esc(&b.needs.join(", ")),
            esc(&released),
            secs(b.took_ms(t.wall_ms)),
            esc(&why)
        );
    }
    for k in &t.kept {
        let _ = writeln!(
            out,
            "<tr class=\"kept\" data-name=\"{}\"><td></td><td class=\"name\">{}</td><td>{}</td><td></td>\
             <td></td><td></td><td></td><td></td><td>keep: {}</td></tr>",
            esc(&k.name),
            esc(&k.name),
            esc(&k.namespace),
            esc(&k.reason)
        );
    }
    out.push_str("</tbody>\n</table>\n");
}
