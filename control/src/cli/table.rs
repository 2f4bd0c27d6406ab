//! Plain-text tables and the small formatting helpers they need (ages, times, truncation), in
//! kubectl's look: upper-case headers, columns three spaces apart, no borders.

use trellis_api::time::parse_rfc3339;

/// A table built row by row and rendered once (column widths need every row).
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Table {
        Table {
            rows: vec![headers.iter().map(|h| h.to_string()).collect()],
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        // Cells are one line each; a newline would break the columns.
        let cells = cells
            .into_iter()
            .map(|c| c.replace(['\n', '\r', '\t'], " "))
            .collect();
        self.rows.push(cells);
    }

    /// Rows rendered with aligned columns, each line ending in `\n`; the last column is not padded.
    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut widths = vec![0; columns];
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                line.push_str(cell);
                if i + 1 < row.len() {
                    let pad = widths[i] - cell.chars().count() + 3;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// At most `max` characters, ending in `…` when cut.
pub fn truncate(text: &str, max: usize) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= max {
        one_line
    } else {
        let mut cut: String = one_line.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

/// A duration as kubectl shows ages: `45s`, `5m3s`, `42m`, `3h12m`, `20h`, `3d4h`, `45d`, `2y30d`.
pub fn human_age(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        if s % 60 == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{}s", s % 60)
        }
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        if m % 60 == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{}m", m % 60)
        }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 {
        if h % 24 == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{}h", h % 24)
        }
    } else if d < 365 * 2 {
        format!("{d}d")
    } else if d < 365 * 8 {
        format!("{}y{}d", d / 365, d % 365)
    } else {
        format!("{}y", d / 365)
    }
}

/// `2026-11-21 10:00:00` from the API's RFC 3339 UTC text (shown as given when it is not one).
pub fn short_time(rfc3339: &str) -> String {
    match rfc3339.get(..19) {
        Some(head) if parse_rfc3339(rfc3339).is_some() => head.replacen('T', " ", 1),
        _ => rfc3339.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align() {
        let mut t = Table::new(&["NAME", "HOSTS"]);
        t.row(vec!["reviews".into(), "[\"reviews\"]".into()]);
        t.row(vec!["a".into(), String::new()]);
        assert_eq!(t.render(), "NAME      HOSTS\nreviews   [\"reviews\"]\na\n");
    }

    #[test]
    fn ages() {
        assert_eq!(human_age(45_000), "45s");
        assert_eq!(human_age(303_000), "5m3s");
        assert_eq!(human_age(42 * 60_000), "42m");
        assert_eq!(human_age((3 * 3600 + 12 * 60) * 1000), "3h12m");
        assert_eq!(human_age(20 * 3_600_000), "20h");
        assert_eq!(human_age((3 * 24 + 4) * 3_600_000), "3d4h");
        assert_eq!(human_age(45 * 86_400_000), "45d");
        assert_eq!(human_age(-5), "0s");
    }

    #[test]
    fn rfc3339() {
        assert_eq!(
            short_time("2026-11-21T10:00:00.123Z"),
            "2026-11-21 10:00:00"
        );
        assert_eq!(short_time("yesterday"), "yesterday");
        assert_eq!(truncate("a\nlong message", 8), "a long …");
    }
}
