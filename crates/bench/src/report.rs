//! The results: sections of figures, each figure a set of samples with its
//! median, spread and ratios against baselines of the same section; printed
//! as a plain table and written as Markdown and JSON.
//!
//! Nothing here measures anything: every number comes from a scenario's run.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;
use serde_json::json;

use crate::stats::Summary;

/// Everything one run measured.
#[derive(Debug, Default)]
pub(crate) struct Report {
    /// The scenarios' results, in the order they ran.
    pub(crate) sections: Vec<Section>,
}

/// The results of one scenario (or one cell of a scenario).
#[derive(Debug)]
pub(crate) struct Section {
    /// A short file-name-safe key (charts are named after it).
    pub(crate) key: String,
    /// A title for people.
    pub(crate) title: String,
    /// What exactly was measured, and any caveat.
    pub(crate) notes: Vec<String>,
    /// The figures.
    pub(crate) rows: Vec<Row>,
}

/// One figure.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    /// What it is.
    pub(crate) label: String,
    /// Its unit, e.g. `s`, `MB/s`, `MiB`, `ms`, `req/s`.
    pub(crate) unit: &'static str,
    /// One value per repeat (or per node, or per request, as its section says).
    pub(crate) samples: Vec<f64>,
    /// Labels of rows in the same section it is given as a ratio against.
    pub(crate) vs: Vec<String>,
}

/// A row with its figures worked out.
#[derive(Debug)]
pub(crate) struct Computed<'a> {
    pub(crate) row: &'a Row,
    pub(crate) summary: Summary,
    /// `(baseline label, median ÷ baseline median)`.
    pub(crate) ratios: Vec<(&'a str, f64)>,
}

impl Row {
    /// A figure with no baseline.
    pub(crate) fn new(label: impl Into<String>, unit: &'static str, samples: Vec<f64>) -> Self {
        Self { label: label.into(), unit, samples, vs: Vec::new() }
    }

    /// Also given as a ratio against the row labelled `baseline`.
    pub(crate) fn vs(mut self, baseline: impl Into<String>) -> Self {
        self.vs.push(baseline.into());
        self
    }
}

impl Section {
    /// An empty section.
    pub(crate) fn new(key: impl Into<String>, title: impl Into<String>) -> Self {
        Self { key: key.into(), title: title.into(), notes: Vec::new(), rows: Vec::new() }
    }

    /// Adds a note.
    pub(crate) fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    /// Each row with its summary and ratios.
    pub(crate) fn computed(&self) -> Vec<Computed<'_>> {
        self.rows
            .iter()
            .map(|row| {
                let summary = Summary::of(&row.samples);
                let ratios = row
                    .vs
                    .iter()
                    .filter_map(|label| {
                        let base = self.rows.iter().find(|r| &r.label == label)?;
                        let base = Summary::of(&base.samples).median;
                        // No ratio against nothing: a zero baseline gives none rather than infinity.
                        (base != 0.0).then(|| (label.as_str(), summary.median / base))
                    })
                    .collect();
                Computed { row, summary, ratios }
            })
            .collect()
    }
}

/// A number with about four significant digits.
pub(crate) fn num(x: f64) -> String {
    if !x.is_finite() {
        return format!("{x}");
    }
    let a = x.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 1000.0 {
        format!("{x:.0}")
    } else if a >= 100.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

fn ratio_text(ratios: &[(&str, f64)]) -> String {
    ratios.iter().map(|(label, r)| format!("{}× {label}", num(*r))).collect::<Vec<_>>().join("; ")
}

impl Report {
    /// The results as a plain-text table, one block per section.
    pub(crate) fn table(&self) -> String {
        let mut out = String::new();
        for section in &self.sections {
            let rows = section.computed();
            let width = rows.iter().map(|c| c.row.label.chars().count()).max().unwrap_or(0).max(6);
            let _ = writeln!(out, "\n== {}", section.title);
            let _ = writeln!(out, "{:width$}  {:>10}  {:>21}  {:6}  ratio", "figure", "median", "min–max", "unit");
            for c in rows {
                let spread = format!("{}–{}", num(c.summary.min), num(c.summary.max));
                let _ = writeln!(
                    out,
                    "{:width$}  {:>10}  {:>21}  {:6}  {}",
                    c.row.label,
                    num(c.summary.median),
                    spread,
                    c.row.unit,
                    ratio_text(&c.ratios)
                );
            }
        }
        out
    }

    /// The results as Markdown; `header` goes first, charts are linked by
    /// section key from `charts`.
    pub(crate) fn markdown(&self, header: &str, charts: &[(String, String)]) -> String {
        let mut out = String::from(header);
        for section in &self.sections {
            let _ = writeln!(out, "\n## {}\n", section.title);
            for note in &section.notes {
                let _ = writeln!(out, "- {note}");
            }
            if !section.notes.is_empty() {
                out.push('\n');
            }
            let _ = writeln!(out, "| Figure | Median | Min–max | Unit | Ratio |\n|---|---:|---:|---|---|");
            for c in section.computed() {
                let _ = writeln!(
                    out,
                    "| {} | {} | {}–{} | {} | {} |",
                    c.row.label,
                    num(c.summary.median),
                    num(c.summary.min),
                    num(c.summary.max),
                    c.row.unit,
                    ratio_text(&c.ratios)
                );
            }
            for (key, file) in charts.iter().filter(|(key, _)| key == &section.key) {
                let _ = writeln!(out, "\n![{key}]({file})");
            }
        }
        out
    }

    /// The results as JSON (NaN becomes null, which the smoke test rejects).
    pub(crate) fn json(&self) -> serde_json::Value {
        let sections: Vec<_> = self
            .sections
            .iter()
            .map(|s| {
                let rows: Vec<_> = s
                    .computed()
                    .iter()
                    .map(|c| {
                        let ratios: Vec<_> = c.ratios.iter().map(|(vs, r)| json!({"vs": vs, "ratio": r})).collect();
                        json!({"label": c.row.label, "unit": c.row.unit, "median": c.summary.median,
                               "min": c.summary.min, "max": c.summary.max, "samples": c.row.samples,
                               "ratios": ratios})
                    })
                    .collect();
                json!({"key": s.key, "title": s.title, "notes": s.notes, "rows": rows})
            })
            .collect();
        json!({ "sections": sections })
    }

    /// Writes `report.md` and `report.json` into `dir`.
    pub(crate) fn write(&self, dir: &Path, header: &str, charts: &[(String, String)]) -> anyhow::Result<()> {
        std::fs::write(dir.join("report.md"), self.markdown(header, charts)).context("writing report.md")?;
        let json = serde_json::to_string_pretty(&self.json()).context("encoding report.json")?;
        std::fs::write(dir.join("report.json"), json).context("writing report.json")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_are_against_the_baseline_median() {
        let mut section = Section::new("s", "S");
        section.rows.push(Row::new("base", "s", vec![1.0, 2.0, 3.0]));
        section.rows.push(Row::new("new", "s", vec![4.0, 5.0, 6.0]).vs("base").vs("missing"));
        let computed = section.computed();
        assert_eq!(computed[1].ratios, vec![("base", 2.5)]);
        let report = Report { sections: vec![section] };
        assert!(report.table().contains("2.50× base"));
        assert!(report.markdown("# R\n", &[]).contains("| new | 5.00 | 4.00–6.00 | s | 2.50× base |"));
    }
}
