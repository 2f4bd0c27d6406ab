//! The results scatter plot, drawn on the server as SVG: x is the start time, y the duration,
//! the dot's size grows with the span count, and a trace with an error is red (and says so in
//! its title). Each dot links to its trace.

use super::results::trace_href;
use super::time::{format_clock, format_duration};
use crate::graph::svg::escape;
use crate::model::TraceSummary;
use std::fmt::Write;

const WIDTH: f64 = 800.0;
const HEIGHT: f64 = 220.0;
/// Room for the duration labels on the left and the time labels below.
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 28.0;

/// Where a trace's dot goes, in SVG units, and how big it is.
pub fn position(t: &TraceSummary, (t0, t1): (i64, i64), max_duration: u64) -> (f64, f64, f64) {
    let span = (t1 - t0).max(1) as f64;
    let x = LEFT + (t.start_us - t0) as f64 / span * (WIDTH - LEFT - RIGHT);
    let y = HEIGHT
        - BOTTOM
        - t.duration_us as f64 / max_duration.max(1) as f64 * (HEIGHT - TOP - BOTTOM);
    let r = (3.0 + (t.spans as f64).sqrt() * 1.5).min(14.0);
    (x, y, r)
}

/// The time range the x axis covers: the results' starts, widened when they are all equal.
fn time_range(traces: &[TraceSummary]) -> (i64, i64) {
    let t0 = traces.iter().map(|t| t.start_us).min().unwrap_or(0);
    let t1 = traces.iter().map(|t| t.start_us).max().unwrap_or(0);
    if t1 - t0 < 1_000 {
        (t0 - 500_000, t1 + 500_000)
    } else {
        (t0, t1)
    }
}

/// The SVG markup; every piece of text in it is escaped.
pub fn svg(traces: &[TraceSummary]) -> String {
    let range = time_range(traces);
    let max_duration = traces
        .iter()
        .map(|t| t.duration_us)
        .max()
        .unwrap_or(1)
        .max(1);
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg class="trace-scatter" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="scatter-title"><title id="scatter-title">Duration of {} traces over time</title>"#,
        traces.len()
    );
    let (x0, x1, y0, y1) = (LEFT, WIDTH - RIGHT, TOP, HEIGHT - BOTTOM);
    let _ = write!(
        out,
        r#"<line class="axis" x1="{x0}" y1="{y1}" x2="{x1}" y2="{y1}"/><line class="axis" x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}"/>"#
    );
    for (fraction, duration) in [(0.0, 0), (0.5, max_duration / 2), (1.0, max_duration)] {
        let y = y1 - fraction * (y1 - y0);
        let _ = write!(
            out,
            r#"<text class="tick" x="{}" y="{:.1}" text-anchor="end" dominant-baseline="middle">{}</text>"#,
            x0 - 6.0,
            y,
            escape(&format_duration(duration))
        );
    }
    for (x, time, anchor) in [(x0, range.0, "start"), (x1, range.1, "end")] {
        let _ = write!(
            out,
            r#"<text class="tick" x="{x}" y="{}" text-anchor="{anchor}">{}</text>"#,
            HEIGHT - 8.0,
            escape(&format_clock(time))
        );
    }
    for t in traces {
        let (x, y, r) = position(t, range, max_duration);
        let class = if t.errors > 0 { "dot dot-error" } else { "dot" };
        let errors = match t.errors {
            0 => String::new(),
            1 => ", 1 error".to_string(),
            n => format!(", {n} errors"),
        };
        let title = format!(
            "{}: {} — {}, {} spans{errors}",
            t.root_service,
            t.root_operation,
            format_duration(t.duration_us),
            t.spans
        );
        let _ = write!(
            out,
            r#"<a href="{}" aria-label="{}"><circle class="{class}" cx="{x:.1}" cy="{y:.1}" r="{r:.1}"><title>{}</title></circle></a>"#,
            escape(&trace_href(&t.trace_id)),
            escape(&title),
            escape(&title)
        );
    }
    out.push_str("</svg>");
    out
}
