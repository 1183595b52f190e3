//! The final results table in TorchRay's layout: one row per method, one column per
//! `<dataset>/<model>` setting (`… all` and `… difficult` for the Pointing Game, a
//! single column for mIoU, two for each faithfulness metric: deletion/insertion or
//! MoRF/LeRF), printed as aligned text and written as CSV and Markdown.
//!
//! Cells hold fractions in [0, 1] and are shown as percentages with a fixed number of
//! decimals (one by default, as in TorchRay's tables; `scale` 1 shows other scores as
//! they are); empty cells are shown as `-` in
//! text and Markdown and left empty in CSV. Files are written atomically (a temporary
//! file in the same directory, then a rename), so a reader never sees half a table.

use std::path::Path;

use anyhow::Result;

use super::miou::MiouScores;
use super::pointing::PointingScores;
use crate::files::write_atomic;

/// A method × setting table of scores.
#[derive(Clone, Debug, PartialEq)]
pub struct ResultTable {
    /// Caption printed above the text form and the Markdown table.
    pub title: String,
    /// Decimals of the percentages.
    pub decimals: usize,
    /// Factor a cell is shown with: 100 (percentages, the default) or 1.
    pub scale: f64,
    columns: Vec<String>,
    rows: Vec<(String, Vec<Option<f64>>)>,
}

impl ResultTable {
    /// An empty table with one-decimal percentages.
    pub fn new(title: &str) -> Self {
        Self {
            title: title.to_owned(),
            decimals: 1,
            scale: 100.0,
            columns: Vec::new(),
            rows: Vec::new(),
        }
    }

    /// The column names in order of first use.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// The method names in order of first use.
    pub fn methods(&self) -> Vec<&str> {
        self.rows
            .iter()
            .map(|(method, _)| method.as_str())
            .collect()
    }

    /// Adds a column (if new) without values, to fix the column order up front.
    pub fn add_column(&mut self, column: &str) {
        self.column_index(column);
    }

    /// Sets the cell of `method` × `column` (a fraction; `None` clears it), adding the
    /// row or column if new.
    pub fn set(&mut self, method: &str, column: &str, value: Option<f64>) {
        let column_index = self.column_index(column);
        let row_index = match self.rows.iter().position(|(name, _)| name == method) {
            Some(index) => index,
            None => {
                self.rows
                    .push((method.to_owned(), vec![None; self.columns.len()]));
                self.rows.len() - 1
            }
        };
        self.rows[row_index].1[column_index] = value;
    }

    /// The cell of `method` × `column`.
    pub fn get(&self, method: &str, column: &str) -> Option<f64> {
        let column_index = self.columns.iter().position(|c| c == column)?;
        let (_, values) = self.rows.iter().find(|(name, _)| name == method)?;
        values[column_index]
    }

    /// Sets the Pointing Game cells `<dataset>/<model> all` and `… difficult`.
    pub fn add_pointing(
        &mut self,
        method: &str,
        dataset: &str,
        model: &str,
        scores: &PointingScores,
    ) {
        let [all, difficult] = pointing_columns(dataset, model);
        self.set(method, &all, scores.accuracy_all());
        self.set(method, &difficult, scores.accuracy_difficult());
    }

    /// Sets the mIoU cell `<dataset>/<model>`.
    pub fn add_miou(&mut self, method: &str, dataset: &str, model: &str, scores: &MiouScores) {
        self.set(method, &miou_column(dataset, model), scores.miou());
    }

    fn column_index(&mut self, column: &str) -> usize {
        if let Some(index) = self.columns.iter().position(|c| c == column) {
            return index;
        }
        self.columns.push(column.to_owned());
        for (_, values) in &mut self.rows {
            values.push(None);
        }
        self.columns.len() - 1
    }

    /// A cell as text: the percentage with `decimals` decimals, `missing` when empty.
    fn cell(&self, value: Option<f64>, missing: &str) -> String {
        match value {
            Some(value) => format!("{:.*}", self.decimals, self.scale * value),
            None => missing.to_owned(),
        }
    }

    /// Header row and the formatted body rows.
    fn grid(&self, missing: &str) -> (Vec<String>, Vec<Vec<String>>) {
        let mut header = vec!["method".to_owned()];
        header.extend(self.columns.iter().cloned());
        let body = self
            .rows
            .iter()
            .map(|(method, values)| {
                let mut row = vec![method.clone()];
                row.extend(values.iter().map(|&v| self.cell(v, missing)));
                row
            })
            .collect();
        (header, body)
    }

    /// The table as aligned text: the title, then columns padded to a common width,
    /// method names left-aligned and numbers right-aligned.
    pub fn to_text(&self) -> String {
        let (header, body) = self.grid("-");
        let widths: Vec<usize> = (0..header.len())
            .map(|column| {
                std::iter::once(&header)
                    .chain(&body)
                    .map(|row| row[column].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let format_row = |row: &[String]| {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .enumerate()
                .map(|(column, (cell, &width))| {
                    if column == 0 {
                        format!("{cell:<width$}")
                    } else {
                        format!("{cell:>width$}")
                    }
                })
                .collect();
            cells.join("  ").trim_end().to_owned()
        };
        let mut text = String::new();
        if !self.title.is_empty() {
            text.push_str(&self.title);
            text.push('\n');
        }
        text.push_str(&format_row(&header));
        text.push('\n');
        let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
        text.push_str(&rule.join("  "));
        text.push('\n');
        for row in &body {
            text.push_str(&format_row(row));
            text.push('\n');
        }
        text
    }

    /// The table as CSV (RFC 4180 quoting; no title line).
    pub fn to_csv(&self) -> String {
        let (header, body) = self.grid("");
        std::iter::once(&header)
            .chain(&body)
            .map(|row| {
                row.iter()
                    .map(|cell| csv_field(cell))
                    .collect::<Vec<_>>()
                    .join(",")
                    + "\n"
            })
            .collect()
    }

    /// The table as GitHub-flavoured Markdown, title as a caption line, numbers
    /// right-aligned.
    pub fn to_markdown(&self) -> String {
        let (header, body) = self.grid("-");
        let row_text = |row: &[String]| {
            let cells: Vec<String> = row.iter().map(|cell| markdown_cell(cell)).collect();
            format!("| {} |\n", cells.join(" | "))
        };
        let mut text = String::new();
        if !self.title.is_empty() {
            text.push_str(&format!("**{}**\n\n", markdown_cell(&self.title)));
        }
        text.push_str(&row_text(&header));
        let alignment: Vec<&str> = (0..header.len())
            .map(|column| if column == 0 { ":---" } else { "---:" })
            .collect();
        text.push_str(&format!("| {} |\n", alignment.join(" | ")));
        for row in &body {
            text.push_str(&row_text(row));
        }
        text
    }

    /// Writes [`ResultTable::to_csv`] to `path` atomically.
    pub fn write_csv(&self, path: &Path) -> Result<()> {
        write_atomic(path, self.to_csv().as_bytes())
    }

    /// Writes [`ResultTable::to_markdown`] to `path` atomically.
    pub fn write_markdown(&self, path: &Path) -> Result<()> {
        write_atomic(path, self.to_markdown().as_bytes())
    }
}

/// The Pointing Game column names of one setting: `<dataset>/<model> all` and
/// `<dataset>/<model> difficult`.
pub fn pointing_columns(dataset: &str, model: &str) -> [String; 2] {
    [
        format!("{dataset}/{model} all"),
        format!("{dataset}/{model} difficult"),
    ]
}

/// The mIoU column name of one setting: `<dataset>/<model>`.
pub fn miou_column(dataset: &str, model: &str) -> String {
    format!("{dataset}/{model}")
}

fn csv_field(cell: &str) -> String {
    if cell.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", cell.replace('"', "\"\""))
    } else {
        cell.to_owned()
    }
}

fn markdown_cell(cell: &str) -> String {
    cell.replace('|', "\\|").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::pointing::{PointingPair, PointingScores};

    fn sample_table() -> ResultTable {
        let mut table = ResultTable::new("Pointing game (%)");
        let pairs = [
            PointingPair {
                class_index: 0,
                point: None,
                hit: true,
                difficult: Some(true),
            },
            PointingPair {
                class_index: 1,
                point: None,
                hit: true,
                difficult: Some(false),
            },
            PointingPair {
                class_index: 1,
                point: None,
                hit: false,
                difficult: Some(true),
            },
            PointingPair {
                class_index: 1,
                point: None,
                hit: false,
                difficult: Some(false),
            },
        ];
        let scores = PointingScores::from_pairs(&pairs, 2).unwrap();
        table.add_pointing("rsp", "voc07", "vgg16", &scores);
        table.set("center", "voc07/vgg16 all", Some(0.69634));
        table.set("center", "coco14/resnet50 all", Some(0.27862));
        table
    }

    #[test]
    fn cells_follow_first_use_order() {
        let table = sample_table();
        assert_eq!(
            table.columns(),
            &[
                "voc07/vgg16 all",
                "voc07/vgg16 difficult",
                "coco14/resnet50 all"
            ]
        );
        assert_eq!(table.methods(), vec!["rsp", "center"]);
        // rsp all: class 0 1/1, class 1 1/3; difficult: class 0 1/1, class 1 0/1.
        assert!((table.get("rsp", "voc07/vgg16 all").unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(table.get("rsp", "voc07/vgg16 difficult"), Some(0.5));
        assert_eq!(table.get("rsp", "coco14/resnet50 all"), None);
        assert_eq!(table.get("nobody", "voc07/vgg16 all"), None);
    }

    #[test]
    fn text_is_aligned() {
        let text = sample_table().to_text();
        let expected = "\
Pointing game (%)
method  voc07/vgg16 all  voc07/vgg16 difficult  coco14/resnet50 all
------  ---------------  ---------------------  -------------------
rsp                66.7                   50.0                    -
center             69.6                      -                 27.9
";
        assert_eq!(text, expected);
    }

    #[test]
    fn csv_and_markdown() {
        let mut table = sample_table();
        table.set("a, \"quoted\" method", "voc07/vgg16 all", Some(1.0));
        assert_eq!(
            table.to_csv(),
            "method,voc07/vgg16 all,voc07/vgg16 difficult,coco14/resnet50 all\n\
             rsp,66.7,50.0,\n\
             center,69.6,,27.9\n\
             \"a, \"\"quoted\"\" method\",100.0,,\n"
        );
        let markdown = table.to_markdown();
        assert!(markdown.starts_with("**Pointing game (%)**\n\n| method | voc07/vgg16 all |"));
        assert!(markdown.contains("| :--- | ---: | ---: | ---: |\n"));
        assert!(markdown.contains("| center | 69.6 | - | 27.9 |\n"));
    }

    #[test]
    fn miou_column_and_precision() {
        let mut table = ResultTable::new("");
        table.decimals = 2;
        let scores = crate::eval::miou::MiouScores::from_pairs(
            &[crate::eval::miou::IouPair {
                class_index: 0,
                intersection: 1,
                union: 3,
            }],
            1,
        )
        .unwrap();
        table.add_miou("rsp", "voc07seg", "vgg16", &scores);
        assert_eq!(table.columns(), &["voc07seg/vgg16"]);
        assert_eq!(table.to_csv(), "method,voc07seg/vgg16\nrsp,33.33\n");
        assert!(table.to_text().starts_with("method  voc07seg/vgg16\n"));
    }

    #[test]
    fn files_are_replaced_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("table.csv");
        let markdown = dir.path().join("table.md");
        std::fs::write(&csv, "old").unwrap();
        let table = sample_table();
        table.write_csv(&csv).unwrap();
        table.write_markdown(&markdown).unwrap();
        assert_eq!(std::fs::read_to_string(&csv).unwrap(), table.to_csv());
        assert_eq!(
            std::fs::read_to_string(&markdown).unwrap(),
            table.to_markdown()
        );
        // No temporary files are left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
        // A missing directory is an error, not a panic.
        assert!(table
            .write_csv(&dir.path().join("missing/table.csv"))
            .is_err());
    }
}
