//! Where things are written: results on stdout (what a script reads, a table or `--json`), progress and
//! errors on stderr. Colour is used only on a terminal, and never when `NO_COLOR` is set (no-color.org).

use std::io::{IsTerminal, Write};

use clap::builder::styling::{AnsiColor, Style};

/// The styles keyturn uses; plain text when colour is off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// Headings and names worth finding at a glance.
    Strong,
    Good,
    Warn,
    Bad,
    /// Secondary detail.
    Dim,
}

impl Tone {
    fn style(self) -> Style {
        match self {
            Self::Strong => Style::new().bold(),
            Self::Good => AnsiColor::Green.on_default(),
            Self::Warn => AnsiColor::Yellow.on_default(),
            Self::Bad => AnsiColor::Red.on_default().bold(),
            Self::Dim => Style::new().dimmed(),
        }
    }
}

/// The process's two streams, each with its own colour decision.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    stdout_colour: bool,
    stderr_colour: bool,
}

impl Output {
    /// Colour where the stream is a terminal and `NO_COLOR` is unset or empty.
    pub fn detect() -> Self {
        let allowed = std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty());
        Self {
            stdout_colour: allowed && std::io::stdout().is_terminal(),
            stderr_colour: allowed && std::io::stderr().is_terminal(),
        }
    }

    /// No colour anywhere (tests).
    pub fn plain() -> Self {
        Self { stdout_colour: false, stderr_colour: false }
    }

    /// `text` in `tone`, for stdout.
    pub fn paint(&self, tone: Tone, text: &str) -> String {
        paint(self.stdout_colour, tone, text)
    }

    /// One result line on stdout.
    pub fn line(&self, text: &str) {
        // A closed pipe (`keyturn check | head`) is not an error worth reporting.
        let _ = writeln!(std::io::stdout().lock(), "{text}");
    }

    /// A JSON document on stdout.
    pub fn json(&self, value: &serde_json::Value) {
        let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
        self.line(&text);
    }

    /// A progress line on stderr, so stdout stays clean for results.
    pub fn status(&self, text: &str) {
        let _ = writeln!(std::io::stderr().lock(), "{} {text}", paint(self.stderr_colour, Tone::Dim, "·"));
    }

    /// A warning on stderr.
    pub fn warn(&self, text: &str) {
        let _ = writeln!(std::io::stderr().lock(), "{} {text}", paint(self.stderr_colour, Tone::Warn, "warning:"));
    }

    /// An error on stderr.
    pub fn error(&self, text: &str) {
        let _ = writeln!(std::io::stderr().lock(), "{} {text}", paint(self.stderr_colour, Tone::Bad, "error:"));
    }
}

fn paint(colour: bool, tone: Tone, text: &str) -> String {
    if colour {
        let style = tone.style();
        format!("{style}{text}{style:#}")
    } else {
        text.to_owned()
    }
}

/// A table with a header row, columns padded to their widest cell. Cells are `(text, tone)`; the tone is
/// applied after padding so escape codes do not skew the widths.
pub fn table(output: &Output, headers: &[&str], rows: &[Vec<(String, Option<Tone>)>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, (cell, _)) in row.iter().enumerate() {
            if let Some(width) = widths.get_mut(i) {
                *width = (*width).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().zip(&widths).map(|(h, w)| format!("{h:<w$}")).collect();
    out.push_str(&output.paint(Tone::Strong, header.join("  ").trim_end()));
    for row in rows {
        out.push('\n');
        let last = row.len().saturating_sub(1);
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, (cell, tone))| {
                let width = widths.get(i).copied().unwrap_or(0);
                // The last column is not padded: no trailing spaces.
                let padded = if i == last { cell.clone() } else { format!("{cell:<width$}") };
                match tone {
                    Some(tone) => output.paint(*tone, &padded),
                    None => padded,
                }
            })
            .collect();
        out.push_str(&cells.join("  "));
    }
    out
}

/// A byte count for people: `812 B`, `4.2 KiB`, `11.7 MiB`.
pub fn size(bytes: u64) -> String {
    const KIB: f64 = 1024.0;
    // Precision loss above 2^53 bytes does not matter for a displayed size.
    #[allow(clippy::cast_precision_loss)]
    let b = bytes as f64;
    if b < KIB {
        format!("{bytes} B")
    } else if b < KIB * KIB {
        format!("{:.1} KiB", b / KIB)
    } else {
        format!("{:.1} MiB", b / (KIB * KIB))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns_and_plain_output_has_no_escape_codes() {
        let rows = vec![
            vec![("secret".to_owned(), None), ("db-password".to_owned(), Some(Tone::Warn)), ("x".to_owned(), None)],
            vec![("key".to_owned(), None), ("k".to_owned(), None), ("longer".to_owned(), None)],
        ];
        let text = table(&Output::plain(), &["KIND", "NAME", "NOTE"], &rows);
        assert_eq!(text, "KIND    NAME         NOTE\nsecret  db-password  x\nkey     k            longer");
        assert!(!text.contains('\u{1b}'));
        let coloured = paint(true, Tone::Bad, "x");
        assert!(coloured.starts_with('\u{1b}') && coloured.contains('x'), "{coloured:?}");
    }

    #[test]
    fn sizes_read_like_a_person_would_write_them() {
        assert_eq!(size(812), "812 B");
        assert_eq!(size(4300), "4.2 KiB");
        assert_eq!(size(12_268_339), "11.7 MiB");
    }
}
