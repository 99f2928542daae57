//! Output for people and scripts: tables that fit an 80-column terminal, CSV with a header row,
//! and pretty JSON whose shape is the API's (stable for scripts).

use std::fmt::Write;

/// The `--format` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for people (the default).
    #[value(alias = "text")]
    Table,
    /// JSON, the API's shapes.
    Json,
    /// Comma-separated values with a header row.
    Csv,
    /// One JSON value per line (event and finding streams; elsewhere the same as json).
    Ndjson,
    /// A self-contained HTML document (the compliance report; elsewhere the same as table).
    Html,
}

/// Renders rows as aligned columns no wider than `width`, shortening the widest columns
/// (with `…`) when needed. Columns named in `fixed` (ids people copy) are never shortened.
pub fn table(headers: &[&str], rows: &[Vec<String>], width: usize, fixed: &[&str]) -> String {
    let n = headers.len();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(n) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let gaps = 2 * n.saturating_sub(1);
    let mut total: usize = widths.iter().sum::<usize>() + gaps;
    while total > width {
        // Shrink the widest column, but never below its header or 6 characters.
        let Some((i, _)) = widths
            .iter()
            .enumerate()
            .filter(|(i, w)| !fixed.contains(&headers[*i]) && **w > headers[*i].chars().count().max(6))
            .max_by_key(|(_, w)| **w)
        else {
            break;
        };
        widths[i] -= 1;
        total -= 1;
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &mut dyn Iterator<Item = &str>| {
        let mut parts = Vec::with_capacity(n);
        for (i, cell) in cells.enumerate().take(n) {
            let shown = fit(cell, widths[i]);
            if i + 1 == n {
                parts.push(shown);
            } else {
                let pad = widths[i].saturating_sub(shown.chars().count());
                parts.push(format!("{shown}{}", " ".repeat(pad)));
            }
        }
        let _ = writeln!(out, "{}", parts.join("  ").trim_end());
    };
    line(&mut out, &mut headers.iter().copied());
    for row in rows {
        line(&mut out, &mut row.iter().map(String::as_str));
    }
    out
}

fn fit(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(width.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// Renders `key  value` lines (for one record) within `WIDTH` columns: long values are wrapped
/// at spaces (or anywhere, for long words) onto indented continuation lines, never cut.
pub fn pairs(items: &[(&str, String)]) -> String {
    const WIDTH: usize = 80;
    let w = items.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let room = WIDTH.saturating_sub(w + 2).max(20);
    let mut out = String::new();
    for (k, v) in items {
        let mut lines = wrap(v, room).into_iter();
        let _ = writeln!(out, "{k:<w$}  {}", lines.next().unwrap_or_default());
        for line in lines {
            let _ = writeln!(out, "{:w$}  {line}", "");
        }
    }
    out
}

/// Splits `s` into lines of at most `width` characters, at spaces where possible.
pub fn wrap(s: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for paragraph in s.split('\n') {
        let mut line = String::new();
        for word in paragraph.split(' ') {
            let mut word: Vec<char> = word.chars().collect();
            loop {
                let used = line.chars().count();
                let sep = usize::from(used > 0);
                if used + sep + word.len() <= width {
                    if sep == 1 {
                        line.push(' ');
                    }
                    line.extend(word.iter());
                    break;
                }
                if used > 0 {
                    lines.push(std::mem::take(&mut line));
                    continue;
                }
                let rest = word.split_off(width.min(word.len()));
                lines.push(word.iter().collect());
                word = rest;
                if word.is_empty() {
                    break;
                }
            }
        }
        lines.push(line);
    }
    lines
}

/// Renders rows as CSV (RFC 4180 quoting).
pub fn csv(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    let quote = |s: &str| {
        if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_owned() }
    };
    let _ = writeln!(out, "{}", headers.iter().map(|h| quote(h)).collect::<Vec<_>>().join(","));
    for row in rows {
        let _ = writeln!(out, "{}", row.iter().map(|c| quote(c)).collect::<Vec<_>>().join(","));
    }
    out
}

/// Pretty JSON of an API value.
pub fn json<T: serde::Serialize>(value: &T) -> String {
    let mut s = serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    s.push('\n');
    s
}

/// The date part of an RFC 3339 time, or a dash.
pub fn date(t: Option<&str>) -> String {
    t.map_or_else(|| "-".to_owned(), |t| t.get(..10).unwrap_or(t).to_owned())
}

/// An RFC 3339 time shortened to month, day and seconds (`11-27 19:46:31`).
pub fn seconds(t: &str) -> String {
    t.get(5..19).map_or_else(|| t.to_owned(), |s| s.replacen('T', " ", 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_fit_80_columns() {
        let rows = vec![
            vec![
                "0123456789abcdef".into(),
                "a very long token name that goes on".into(),
                "platform-team".into(),
                "orders:read, orders:write, users:admin, billing:read".into(),
            ],
            vec!["x".into(), "short".into(), "me".into(), "a:read".into()],
        ];
        let t = table(&["ID", "NAME", "OWNER", "SCOPES"], &rows, 80, &["ID"]);
        for line in t.lines() {
            assert!(line.chars().count() <= 80, "{line}");
        }
        assert!(t.contains('…'));
        assert!(t.starts_with("ID"));
        assert!(t.contains("0123456789abcdef"), "fixed columns keep their values whole");
    }

    #[test]
    fn pairs_wrap_long_values_within_80_columns() {
        let long = "word ".repeat(40) + &"x".repeat(130);
        let out = pairs(&[("description", long.clone()), ("id", "abc".into())]);
        for line in out.lines() {
            assert!(line.chars().count() <= 80, "{line}");
        }
        let rejoined: String =
            out.lines().take_while(|l| !l.starts_with("id")).map(|l| l[13..].to_owned()).collect::<Vec<_>>().join(" ");
        assert_eq!(rejoined.replace(' ', ""), long.replace(' ', ""), "nothing is lost");
        assert!(out.contains("\nid           abc\n"));
    }

    #[test]
    fn csv_quotes() {
        let out = csv(&["a", "b"], &[vec!["x,y".into(), "say \"hi\"".into()]]);
        assert_eq!(out, "a,b\n\"x,y\",\"say \"\"hi\"\"\"\n");
    }
}
