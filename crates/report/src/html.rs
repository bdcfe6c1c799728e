//! The page's building blocks: escaping, tables, figures, and how numbers are written.

use std::fmt::Write;

/// Text made safe for an HTML element or a quoted attribute.
pub fn escape(text: &str) -> String {
    html_escape::encode_quoted_attribute(text).into_owned()
}

/// A whole number with thousands separators: `30,000`.
pub fn count(value: u64) -> String {
    let digits = value.to_string();
    let mut grouped = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

/// A share as a percentage: `12.3%`.
pub fn percent(share: f64) -> String {
    if share.is_finite() {
        format!("{:.1}%", share * 100.0)
    } else {
        "–".to_string()
    }
}

/// A measured value: two decimals under 1,000, whole numbers with separators above.
pub fn number(value: f64) -> String {
    if !value.is_finite() {
        return "–".to_string();
    }
    if value.abs() >= 1000.0 {
        let rounded = value.round();
        let sign = if rounded < 0.0 { "-" } else { "" };
        format!("{sign}{}", count(rounded.abs() as u64))
    } else if value.abs() >= 1.0 || value == 0.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.4}")
    }
}

pub fn optional(value: Option<f64>, format: fn(f64) -> String) -> String {
    value.map(format).unwrap_or_else(|| "–".to_string())
}

/// A table: a caption, a header row and body rows of cells already formatted. Cells
/// whose text reads as a number are right-aligned.
#[derive(Debug, Default)]
pub struct Table {
    caption: String,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(caption: &str, header: &[&str]) -> Table {
        Table {
            caption: caption.to_string(),
            header: header.iter().map(|cell| cell.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn with_header(caption: &str, header: Vec<String>) -> Table {
        Table {
            caption: caption.to_string(),
            header,
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn html(&self) -> String {
        // A wide table scrolls in its own box, never the page sideways.
        let mut html = String::from("<div class=\"table\"><table>");
        let _ = write!(
            html,
            "<caption>{}</caption><thead><tr>",
            escape(&self.caption)
        );
        for cell in &self.header {
            let _ = write!(html, "<th scope=\"col\">{}</th>", escape(cell));
        }
        html.push_str("</tr></thead><tbody>");
        for row in &self.rows {
            html.push_str("<tr>");
            for cell in row {
                let numeric = cell
                    .trim_end_matches('%')
                    .replace(',', "")
                    .parse::<f64>()
                    .is_ok();
                let class = if numeric { " class=\"n\"" } else { "" };
                let _ = write!(html, "<td{class}>{}</td>", escape(cell));
            }
            html.push_str("</tr>");
        }
        html.push_str("</tbody></table></div>\n");
        html
    }
}

/// A chart under its title, a sentence on how to read it, and the table of the numbers
/// it draws (for screen readers, and for anyone who wants the figures).
pub fn figure(title: &str, svg: &str, note: &str, data: &Table) -> String {
    format!(
        "<figure><h3>{}</h3>{svg}<figcaption>{}</figcaption><details><summary>The numbers behind this chart</summary>{}</details></figure>\n",
        escape(title),
        escape(note),
        data.html()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_written_for_people() {
        assert_eq!(count(30_000), "30,000");
        assert_eq!(count(999), "999");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(percent(0.1234), "12.3%");
        assert_eq!(number(1234.5), "1,235");
        assert_eq!(number(-4321.0), "-4,321");
        assert_eq!(number(12.345), "12.35");
        assert_eq!(number(0.01234), "0.0123");
        assert_eq!(number(f64::NAN), "–");
    }

    #[test]
    fn tables_escape_and_align() {
        let mut table = Table::new("Segments", &["name", "customers"]);
        table.row(vec!["<b>".to_string(), "1,200".to_string()]);
        let html = table.html();
        assert!(
            html.contains("<td>&lt;b&gt;</td><td class=\"n\">1,200</td>"),
            "{html}"
        );
        assert!(html.contains("<caption>Segments</caption>"));
    }
}
