//! Small line and area charts drawn on the server as SVG, so traffic over time reads without any
//! script: axes with "nice" ticks and units, a legend, a `<title>` per point for hover, gaps where
//! there is no data, and an accessible summary (`role="img"` + `aria-label`) with the numbers in a
//! `<table>` inside `<details>`. Output is deterministic (fixed size and formatting) and every
//! text is escaped, as the names in it come from the mesh.

use std::fmt::Write;

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 28.0;
const MINUTE_US: i64 = 60_000_000;

/// One series of a chart. A `None` value is a step without data: the line breaks there.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub name: String,
    /// A CSS colour; also names the line in the legend.
    pub colour: &'static str,
    /// `(time in µs since the epoch, value)`, in time order.
    pub points: Vec<(i64, Option<f64>)>,
}

/// A chart of one quantity over `[start_us, end_us]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    /// Shown above the chart, e.g. "Request rate".
    pub title: String,
    /// The unit of the values, e.g. "req/s", "%", "ms".
    pub unit: &'static str,
    pub start_us: i64,
    pub end_us: i64,
    /// Points further apart than 1.5 steps are not joined: the data between them is missing.
    pub step_us: i64,
    /// Fill under the (first) line: for rates, where the area is the volume.
    pub area: bool,
    pub lines: Vec<Line>,
}

/// Escapes text for HTML/SVG content and attribute values.
pub fn escape(text: &str) -> String {
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

/// Heckbert's nice numbers: a tick step of 1, 2 or 5 × 10ⁿ giving about `count` ticks from 0 to
/// at least `max`. Returns the tick values, 0 first.
pub fn nice_ticks(max: f64, count: usize) -> Vec<f64> {
    let max = if max.is_finite() && max > 0.0 {
        max
    } else {
        1.0
    };
    let raw = max / count.max(1) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude);
    let n = (max / step).ceil() as usize;
    (0..=n).map(|i| i as f64 * step).collect()
}

/// A tick or value label with as many decimals as the tick step needs.
pub fn format_value(value: f64, step: f64) -> String {
    let decimals = if step >= 1.0 || step <= 0.0 {
        0
    } else {
        (-step.log10().floor()) as usize
    };
    format!("{value:.decimals$}")
}

/// A data value with three significant digits or so (tooltips and the table).
pub fn format_precise(value: f64) -> String {
    let decimals = match value.abs() {
        v if v >= 100.0 => 0,
        v if v >= 10.0 => 1,
        v if v >= 1.0 || v == 0.0 => 2,
        _ => 3,
    };
    format!("{value:.decimals$}")
}

/// `HH:MM` in UTC.
pub fn clock(t_us: i64) -> String {
    let minutes = t_us.div_euclid(MINUTE_US).rem_euclid(24 * 60);
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

/// Time ticks on whole multiples of a round interval, about five across the range.
fn time_ticks(start_us: i64, end_us: i64) -> Vec<i64> {
    let span = (end_us - start_us).max(1);
    let interval = [1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440]
        .into_iter()
        .map(|m| m * MINUTE_US)
        .find(|i| span / i <= 6)
        .unwrap_or(1440 * MINUTE_US);
    let first = start_us.div_euclid(interval) * interval;
    (0..)
        .map(|i| first + i * interval)
        .skip_while(|t| *t < start_us)
        .take_while(|t| *t <= end_us)
        .collect()
}

/// The runs of consecutive points with data, split at `None` values and at holes in time.
fn segments(points: &[(i64, Option<f64>)], step_us: i64) -> Vec<Vec<(i64, f64)>> {
    let mut runs: Vec<Vec<(i64, f64)>> = Vec::new();
    let mut current: Vec<(i64, f64)> = Vec::new();
    for (t, value) in points {
        let joined = current
            .last()
            .is_some_and(|(prev, _)| (t - prev) as f64 <= step_us as f64 * 1.5);
        if !joined && !current.is_empty() {
            runs.push(std::mem::take(&mut current));
        }
        if let Some(v) = value.filter(|v| v.is_finite()) {
            current.push((*t, v));
        } else if !current.is_empty() {
            runs.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        runs.push(current);
    }
    runs
}

/// The chart as HTML: a `<figure>` with the heading, legend, SVG and the data table.
pub fn render(chart: &Chart) -> String {
    let values = || {
        chart
            .lines
            .iter()
            .flat_map(|l| l.points.iter().filter_map(|(_, v)| *v))
            .filter(|v| v.is_finite())
    };
    let max = values().fold(0.0, f64::max);
    let ticks = nice_ticks(max, 4);
    let top = ticks.last().copied().unwrap_or(1.0).max(f64::MIN_POSITIVE);
    let tick_step = ticks.get(1).copied().unwrap_or(1.0);
    let span = (chart.end_us - chart.start_us).max(1) as f64;
    let x = |t: i64| LEFT + (t - chart.start_us) as f64 / span * (WIDTH - LEFT - RIGHT);
    let y = |v: f64| HEIGHT - BOTTOM - v / top * (HEIGHT - TOP - BOTTOM);
    let unit = escape(chart.unit);

    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart-svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" role="img" aria-label="{}" font-family="system-ui, sans-serif" font-size="11">"#,
        escape(&summary(chart))
    );
    // Y grid and ticks.
    for v in &ticks {
        let yy = y(*v);
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="#d0d4da" stroke-width="1"/><text x="{}" y="{:.1}" text-anchor="end" fill="#4a5160">{}</text>"##,
            WIDTH - RIGHT,
            LEFT - 6.0,
            yy + 4.0,
            format_value(*v, tick_step)
        );
    }
    let _ = write!(
        svg,
        r##"<text x="4" y="{TOP}" dominant-baseline="hanging" fill="#4a5160">{unit}</text>"##
    );
    // X axis and time ticks.
    let base = HEIGHT - BOTTOM;
    let _ = write!(
        svg,
        r##"<line x1="{LEFT}" x2="{}" y1="{base}" y2="{base}" stroke="#4a5160" stroke-width="1"/>"##,
        WIDTH - RIGHT
    );
    for t in time_ticks(chart.start_us, chart.end_us) {
        let xx = x(t);
        let _ = write!(
            svg,
            r##"<line x1="{xx:.1}" x2="{xx:.1}" y1="{base}" y2="{}" stroke="#4a5160"/><text x="{xx:.1}" y="{}" text-anchor="middle" fill="#4a5160">{}</text>"##,
            base + 4.0,
            base + 16.0,
            clock(t)
        );
    }
    // Lines, areas and points.
    for (index, line) in chart.lines.iter().enumerate() {
        let name = escape(&line.name);
        let colour = escape(line.colour);
        let _ = write!(svg, r#"<g class="series" data-series="{name}">"#);
        for run in segments(&line.points, chart.step_us) {
            let path: Vec<String> = run
                .iter()
                .enumerate()
                .map(|(i, (t, v))| {
                    format!(
                        "{}{:.1},{:.1}",
                        if i == 0 { 'M' } else { 'L' },
                        x(*t),
                        y(*v)
                    )
                })
                .collect();
            if chart.area && index == 0 {
                let (first, last) = (run[0].0, run[run.len() - 1].0);
                let _ = write!(
                    svg,
                    r#"<path d="{}L{:.1},{base}L{:.1},{base}Z" fill="{colour}" fill-opacity="0.15" stroke="none"/>"#,
                    path.join(""),
                    x(last),
                    x(first)
                );
            }
            let _ = write!(
                svg,
                r#"<path d="{}" fill="none" stroke="{colour}" stroke-width="2" stroke-linejoin="round"/>"#,
                path.join("")
            );
            for (t, v) in &run {
                let _ = write!(
                    svg,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{colour}"><title>{name} at {} UTC: {} {unit}</title></circle>"#,
                    x(*t),
                    y(*v),
                    clock(*t),
                    format_precise(*v)
                );
            }
        }
        svg.push_str("</g>");
    }
    if values().next().is_none() {
        let _ = write!(
            svg,
            r##"<text x="{}" y="{}" text-anchor="middle" fill="#4a5160">No data in this window</text>"##,
            (LEFT + WIDTH - RIGHT) / 2.0,
            (TOP + base) / 2.0
        );
    }
    svg.push_str("</svg>");

    let legend: String = chart
        .lines
        .iter()
        .map(|l| {
            format!(
                r#"<li><span class="swatch" style="display:inline-block;width:1em;height:3px;vertical-align:middle;background:{}" aria-hidden="true"></span> {}</li>"#,
                escape(l.colour),
                escape(&l.name)
            )
        })
        .collect();
    format!(
        r#"<figure class="chart" style="margin:0"><figcaption><strong>{}</strong> <span class="unit">({unit})</span></figcaption><ul class="legend" style="list-style:none;display:flex;gap:1em;padding:0;margin:0.25em 0">{legend}</ul>{svg}{}</figure>"#,
        escape(&chart.title),
        table(chart)
    )
}

/// What a screen reader says for the chart: the range and each line's latest, lowest and
/// highest values.
pub fn summary(chart: &Chart) -> String {
    let mut text = format!(
        "{} in {}, {} to {} UTC.",
        chart.title,
        chart.unit,
        clock(chart.start_us),
        clock(chart.end_us)
    );
    for line in &chart.lines {
        let values: Vec<f64> = line.points.iter().filter_map(|(_, v)| *v).collect();
        match (values.last(), values.iter().copied().reduce(f64::min)) {
            (Some(latest), Some(min)) => {
                let max = values.iter().copied().fold(f64::MIN, f64::max);
                let _ = write!(
                    text,
                    " {}: latest {latest:.2}, lowest {min:.2}, highest {max:.2}.",
                    line.name
                );
            }
            _ => {
                let _ = write!(text, " {}: no data.", line.name);
            }
        }
    }
    text
}

/// The numbers behind the chart, one row per time, "no data" where a line has none.
fn table(chart: &Chart) -> String {
    let mut times: Vec<i64> = chart
        .lines
        .iter()
        .flat_map(|l| l.points.iter().map(|(t, _)| *t))
        .collect();
    times.sort_unstable();
    times.dedup();
    let head: String = chart
        .lines
        .iter()
        .map(|l| {
            format!(
                r#"<th scope="col">{} ({})</th>"#,
                escape(&l.name),
                escape(chart.unit)
            )
        })
        .collect();
    let rows: String = times
        .iter()
        .map(|t| {
            let cells: String = chart
                .lines
                .iter()
                .map(|l| {
                    let value = l
                        .points
                        .iter()
                        .find(|(pt, _)| pt == t)
                        .and_then(|(_, v)| *v)
                        .map_or("no data".to_string(), format_precise);
                    format!("<td>{value}</td>")
                })
                .collect();
            format!(r#"<tr><th scope="row">{}</th>{cells}</tr>"#, clock(*t))
        })
        .collect();
    format!(
        r#"<details class="chart-data"><summary>{} as a table</summary><div class="table-wrap"><table><thead><tr><th scope="col">Time (UTC)</th>{head}</tr></thead><tbody>{rows}</tbody></table></div></details>"#,
        escape(&chart.title)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_763_719_200_000_000; // 10:00 UTC

    fn chart(points: Vec<(i64, Option<f64>)>) -> Chart {
        Chart {
            title: "Request rate".into(),
            unit: "req/s",
            start_us: T0,
            end_us: T0 + 15 * MINUTE_US,
            step_us: MINUTE_US,
            area: true,
            lines: vec![Line {
                name: "requests <all>".into(),
                colour: "#1f6feb",
                points,
            }],
        }
    }

    #[test]
    fn nice_ticks_are_round_and_cover_the_max() {
        assert_eq!(nice_ticks(7.3, 4), [0.0, 2.0, 4.0, 6.0, 8.0]);
        assert_eq!(nice_ticks(42.0, 4), [0.0, 20.0, 40.0, 60.0]);
        assert_eq!(nice_ticks(0.0, 4), [0.0, 0.5, 1.0]);
        assert_eq!(nice_ticks(f64::NAN, 4), [0.0, 0.5, 1.0]);
        let small = nice_ticks(0.033, 4);
        assert!((small[1] - 0.01).abs() < 1e-12, "{small:?}");
        assert_eq!(format_value(0.01, 0.01), "0.01");
        assert_eq!(format_value(250.0, 50.0), "250");
    }

    #[test]
    fn time_ticks_fall_on_round_minutes() {
        let ticks: Vec<String> = time_ticks(T0 + 30_000_000, T0 + 15 * MINUTE_US)
            .into_iter()
            .map(clock)
            .collect();
        assert_eq!(ticks, ["10:05", "10:10", "10:15"]);
        assert_eq!(clock(T0 + 6 * 60 * MINUTE_US), "16:00");
    }

    #[test]
    fn gaps_split_the_line_at_none_and_at_missing_steps() {
        let m = MINUTE_US;
        let points = vec![
            (T0 + m, Some(1.0)),
            (T0 + 2 * m, Some(2.0)),
            (T0 + 3 * m, None),
            (T0 + 4 * m, Some(3.0)),
            (T0 + 8 * m, Some(4.0)),
            (T0 + 9 * m, Some(5.0)),
        ];
        let runs = segments(&points, m);
        assert_eq!(runs.len(), 3, "{runs:?}");
        assert_eq!(runs[0].len(), 2);
        assert_eq!(runs[1], [(T0 + 4 * m, 3.0)]);
        let html = render(&chart(points));
        // One area and one line path per run.
        assert_eq!(html.matches("fill=\"none\" stroke=").count(), 3, "{html}");
        assert_eq!(html.matches("fill-opacity").count(), 3);
        assert_eq!(html.matches("<circle").count(), 5);
    }

    #[test]
    fn renders_axes_legend_titles_summary_and_table_escaped() {
        let html = render(&chart(vec![
            (T0 + MINUTE_US, Some(2.5)),
            (T0 + 2 * MINUTE_US, Some(7.25)),
            (T0 + 3 * MINUTE_US, None),
        ]));
        assert!(html.contains(r#"role="img""#), "{html}");
        assert!(
            html.contains(
                "aria-label=\"Request rate in req/s, 10:00 to 10:15 UTC. requests &lt;all&gt;: \
                 latest 7.25, lowest 2.50, highest 7.25.\""
            ),
            "{html}"
        );
        assert!(html.contains("<title>requests &lt;all&gt; at 10:02 UTC: 7.25 req/s</title>"));
        assert!(
            html.contains(">8</text>"),
            "y axis reaches the nice max: {html}"
        );
        assert!(html.contains(">10:05</text>") && html.contains(">10:15</text>"));
        assert!(html.contains("<li><span class=\"swatch\""));
        assert!(html.contains("<details class=\"chart-data\"><summary>Request rate as a table"));
        assert!(html.contains("<tr><th scope=\"row\">10:03</th><td>no data</td></tr>"));
        assert!(!html.contains("<all>"), "unescaped name: {html}");
        assert_eq!(
            html,
            render(&chart(vec![
                (T0 + MINUTE_US, Some(2.5)),
                (T0 + 2 * MINUTE_US, Some(7.25)),
                (T0 + 3 * MINUTE_US, None),
            ])),
            "deterministic"
        );
    }

    #[test]
    fn empty_chart_says_so() {
        let html = render(&chart(vec![]));
        assert!(html.contains("No data in this window"));
        assert!(html.contains("requests &lt;all&gt;: no data."));
        assert!(!html.contains("<circle"));
    }
}
