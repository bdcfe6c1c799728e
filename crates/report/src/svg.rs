//! The report's charts as plain SVG.
//!
//! Written by hand rather than with plotters' SVG backend: plotters lays text out with a
//! font it loads (font-kit or ab_glyph and a TTF file), which the report must not depend
//! on, and its output is not promised to be byte-stable across releases, which the
//! report's snapshot and rerender tests rely on. The charts here are a handful of bars,
//! lines and boxes; every coordinate is rounded to a tenth of a pixel and every label
//! uses the browser's own sans-serif font, so the same data always gives the same bytes.

use std::fmt::Write;

use crate::html::escape;

/// Segment colours, in segment order: Tableau 10, legible on white and for the common
/// colour-vision deficiencies.
pub const PALETTE: [&str; 10] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac",
];

pub fn colour(index: usize) -> &'static str {
    PALETTE[index % PALETTE.len()]
}

const WIDTH: f64 = 760.0;
const FONT: f64 = 12.0;
/// The width of a label character at [`FONT`], as the layout assumes it (no font is
/// measured: a generous average for sans-serif).
const CHAR_WIDTH: f64 = 7.0;

/// How values map to a length.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Axis {
    Linear {
        min: f64,
        max: f64,
    },
    /// `log10(1 + x)`: for skewed values that may be 0 (recency in days, spend).
    Log1p {
        max: f64,
    },
}

impl Axis {
    /// A linear axis over `values` (and 0 when `from_zero`), widened to nice ticks.
    pub fn linear(values: impl IntoIterator<Item = f64>, from_zero: bool) -> Axis {
        let (mut min, mut max) = bounds(values);
        if from_zero {
            min = min.min(0.0);
            max = max.max(0.0);
        }
        if min == max {
            max = min + 1.0;
        }
        let ticks = nice_ticks(min, max, 5);
        Axis::Linear {
            min: min.min(ticks[0]),
            max: max.max(*ticks.last().expect("ticks")),
        }
    }

    pub fn is_log(&self) -> bool {
        matches!(self, Axis::Log1p { .. })
    }

    /// Where `value` falls, from 0 to 1.
    fn fraction(&self, value: f64) -> f64 {
        match *self {
            Axis::Linear { min, max } => (value - min) / (max - min),
            Axis::Log1p { max } => (1.0 + value.max(0.0)).log10() / (1.0 + max).log10(),
        }
    }

    fn ticks(&self) -> Vec<f64> {
        match *self {
            Axis::Linear { min, max } => {
                // Only the ticks on the axis: a range widened to round ends can round
                // further out when its ticks are recomputed.
                let slack = (max - min) * 1e-9;
                nice_ticks(min, max, 5)
                    .into_iter()
                    .filter(|tick| (min - slack..=max + slack).contains(tick))
                    .collect()
            }
            Axis::Log1p { max } => {
                let mut ticks = vec![0.0];
                let mut decade = 1.0;
                while decade <= max {
                    for step in [1.0, 3.0] {
                        if decade * step <= max {
                            ticks.push(decade * step);
                        }
                    }
                    decade *= 10.0;
                }
                ticks
            }
        }
    }
}

fn bounds(values: impl IntoIterator<Item = f64>) -> (f64, f64) {
    let (min, max) = values
        .into_iter()
        .filter(|value| value.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if min.is_finite() {
        (min, max)
    } else {
        (0.0, 1.0)
    }
}

/// About `count` round tick values covering `min..=max` (Heckbert's nice numbers).
pub fn nice_ticks(min: f64, max: f64, count: usize) -> Vec<f64> {
    let nice = |range: f64, round: bool| {
        let exponent = range.log10().floor();
        let fraction = range / 10f64.powf(exponent);
        let nice = match (round, fraction) {
            (true, f) if f < 1.5 => 1.0,
            (true, f) if f < 3.0 => 2.0,
            (true, f) if f < 7.0 => 5.0,
            (true, _) => 10.0,
            (false, f) if f <= 1.0 => 1.0,
            (false, f) if f <= 2.0 => 2.0,
            (false, f) if f <= 5.0 => 5.0,
            (false, _) => 10.0,
        };
        nice * 10f64.powf(exponent)
    };
    let range = if max > min { max - min } else { 1.0 };
    let step = nice(nice(range, false) / (count.max(2) - 1) as f64, true);
    let first = (min / step).floor() * step;
    let last = (max / step).ceil() * step;
    let steps = ((last - first) / step).round() as usize;
    (0..=steps)
        .map(|index| {
            let tick = first + index as f64 * step;
            // Print 0.30000000000000004 as 0.3: ticks are round by construction.
            (tick / step).round() * step
        })
        .collect()
}

/// A number as a short label: `1.2M`, `45.3k`, `120`, `3.5`, `0.042`.
pub fn short(value: f64) -> String {
    let magnitude = value.abs();
    let trim = |text: String| {
        if text.contains('.') {
            text.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            text
        }
    };
    if magnitude >= 1e9 {
        format!("{}G", trim(format!("{:.1}", value / 1e9)))
    } else if magnitude >= 1e6 {
        format!("{}M", trim(format!("{:.1}", value / 1e6)))
    } else if magnitude >= 1e4 {
        format!("{}k", trim(format!("{:.1}", value / 1e3)))
    } else if magnitude >= 100.0 || magnitude == 0.0 {
        format!("{value:.0}")
    } else if magnitude >= 1.0 {
        trim(format!("{value:.2}"))
    } else {
        trim(format!("{value:.3}"))
    }
}

/// An SVG document being drawn: coordinates rounded to 0.1 px.
struct Canvas {
    body: String,
    width: f64,
    height: f64,
}

impl Canvas {
    fn new(width: f64, height: f64) -> Canvas {
        Canvas {
            body: String::new(),
            width,
            height,
        }
    }

    fn rect(&mut self, x: f64, y: f64, width: f64, height: f64, fill: &str, tip: &str) {
        let _ = write!(
            self.body,
            r#"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{fill}">"#,
            width.max(0.0),
            height.max(0.0)
        );
        if tip.is_empty() {
            self.body.push_str("</rect>");
        } else {
            let _ = write!(self.body, "<title>{}</title></rect>", escape(tip));
        }
    }

    fn line(&mut self, (x1, y1): (f64, f64), (x2, y2): (f64, f64), class: &str) {
        let _ = write!(
            self.body,
            r#"<line x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}" class="{class}"/>"#
        );
    }

    fn text(&mut self, x: f64, y: f64, anchor: &str, text: &str) {
        let _ = write!(
            self.body,
            r#"<text x="{x:.1}" y="{y:.1}" text-anchor="{anchor}">{}</text>"#,
            escape(text)
        );
    }

    fn rotated_text(&mut self, x: f64, y: f64, text: &str) {
        let _ = write!(
            self.body,
            r#"<text x="{x:.1}" y="{y:.1}" text-anchor="middle" transform="rotate(-90 {x:.1} {y:.1})">{}</text>"#,
            escape(text)
        );
    }

    fn polyline(&mut self, points: &[(f64, f64)], colour: &str) {
        let points: Vec<String> = points
            .iter()
            .map(|(x, y)| format!("{x:.1},{y:.1}"))
            .collect();
        let _ = write!(
            self.body,
            r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"/>"#,
            points.join(" ")
        );
    }

    fn dot(&mut self, x: f64, y: f64, colour: &str, tip: &str) {
        let _ = write!(
            self.body,
            r#"<circle cx="{x:.1}" cy="{y:.1}" r="3.5" fill="{colour}"><title>{}</title></circle>"#,
            escape(tip)
        );
    }

    /// The finished `<svg>`, labelled for screen readers by `title` (the figure's data
    /// table follows it in the page).
    fn finish(self, id: &str, title: &str) -> String {
        format!(
            r#"<svg id="{id}" class="chart" role="img" aria-labelledby="{id}-title" viewBox="0 0 {:.0} {:.0}" width="{:.0}" height="{:.0}" xmlns="http://www.w3.org/2000/svg"><title id="{id}-title">{}</title>{}</svg>"#,
            self.width,
            self.height,
            self.width,
            self.height,
            escape(title),
            self.body
        )
    }
}

fn label_width(labels: &[String]) -> f64 {
    labels
        .iter()
        .map(|label| label.chars().count())
        .max()
        .unwrap_or(0) as f64
        * CHAR_WIDTH
        + 12.0
}

/// A horizontal value axis from `left` to `right` at `y`, with ticks and gridlines up to
/// `top`, and its label under it.
fn value_axis(
    canvas: &mut Canvas,
    axis: &Axis,
    left: f64,
    right: f64,
    (top, y): (f64, f64),
    label: &str,
) {
    for tick in axis.ticks() {
        let x = left + axis.fraction(tick) * (right - left);
        canvas.line((x, top), (x, y), "grid");
        canvas.text(x, y + FONT + 4.0, "middle", &short(tick));
    }
    canvas.line((left, y), (right, y), "axis");
    let label = if axis.is_log() {
        format!("{label} (log scale)")
    } else {
        label.to_string()
    };
    canvas.text(
        (left + right) / 2.0,
        y + 2.0 * FONT + 10.0,
        "middle",
        &label,
    );
}

/// A vertical value axis from `bottom` to `top` at `x`, gridlines to `right`.
fn vertical_axis(
    canvas: &mut Canvas,
    axis: &Axis,
    (x, right): (f64, f64),
    (top, bottom): (f64, f64),
    label: &str,
) {
    for tick in axis.ticks() {
        let y = bottom - axis.fraction(tick) * (bottom - top);
        canvas.line((x, y), (right, y), "grid");
        canvas.text(x - 6.0, y + 4.0, "end", &short(tick));
    }
    canvas.line((x, top), (x, bottom), "axis");
    canvas.rotated_text(14.0, (top + bottom) / 2.0, label);
}

/// One bar per label, left to right in value.
pub fn bars(id: &str, title: &str, labels: &[String], values: &[f64], value_label: &str) -> String {
    let left = label_width(labels) + 4.0;
    let bar = 22.0;
    let top = 8.0;
    let height = top + labels.len() as f64 * (bar + 8.0) + 2.0 * FONT + 24.0;
    let mut canvas = Canvas::new(WIDTH, height);
    let right = WIDTH - 60.0;
    let axis = Axis::linear(values.iter().copied(), true);
    let bottom = top + labels.len() as f64 * (bar + 8.0);
    value_axis(&mut canvas, &axis, left, right, (top, bottom), value_label);
    let zero = left + axis.fraction(0.0) * (right - left);
    for (index, (label, &value)) in labels.iter().zip(values).enumerate() {
        let y = top + 4.0 + index as f64 * (bar + 8.0);
        let end = left + axis.fraction(value) * (right - left);
        let tip = format!("{label}: {}", short(value));
        canvas.rect(
            zero.min(end),
            y,
            (end - zero).abs(),
            bar,
            colour(index),
            &tip,
        );
        canvas.text(left - 6.0, y + bar / 2.0 + 4.0, "end", label);
        canvas.text(
            zero.max(end) + 4.0,
            y + bar / 2.0 + 4.0,
            "start",
            &short(value),
        );
    }
    canvas.finish(id, title)
}

/// A series of a line chart: its name and a value per category (`None`: no point).
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub values: Vec<Option<f64>>,
}

/// Lines over categories (features, k, months), one per series, with a legend; `mark`
/// draws a dashed line at one category (the chosen k).
pub fn lines(
    id: &str,
    title: &str,
    categories: &[String],
    series: &[Series],
    (x_label, y_label): (&str, &str),
    mark: Option<usize>,
) -> String {
    // One series is named by the chart's title and axis: no legend.
    let legend = if series.len() > 1 {
        label_width(&series.iter().map(|s| s.name.clone()).collect::<Vec<_>>()) + 24.0
    } else {
        24.0
    };
    let (left, top, bottom) = (64.0, 12.0, 250.0);
    let right = WIDTH - legend;
    let mut canvas = Canvas::new(WIDTH, bottom + 2.0 * FONT + 28.0);
    let values = series
        .iter()
        .flat_map(|s| s.values.iter().flatten().copied());
    let axis = Axis::linear(values, false);
    vertical_axis(&mut canvas, &axis, (left, right), (top, bottom), y_label);
    let step = (right - left) / categories.len().max(1) as f64;
    let x_of = |index: usize| left + step * (index as f64 + 0.5);
    for (index, category) in categories.iter().enumerate() {
        canvas.text(x_of(index), bottom + FONT + 6.0, "middle", category);
    }
    canvas.line((left, bottom), (right, bottom), "axis");
    canvas.text(
        (left + right) / 2.0,
        bottom + 2.0 * FONT + 16.0,
        "middle",
        x_label,
    );
    if let Some(marked) = mark {
        canvas.line((x_of(marked), top), (x_of(marked), bottom), "mark");
    }
    let y_of = |value: f64| bottom - axis.fraction(value) * (bottom - top);
    for (index, one) in series.iter().enumerate() {
        let points: Vec<(f64, f64)> = one
            .values
            .iter()
            .enumerate()
            .filter_map(|(at, value)| Some((x_of(at), y_of((*value)?))))
            .collect();
        canvas.polyline(&points, colour(index));
        for (at, value) in one.values.iter().enumerate() {
            if let Some(value) = value {
                let tip = format!("{}, {}: {}", one.name, categories[at], short(*value));
                canvas.dot(x_of(at), y_of(*value), colour(index), &tip);
            }
        }
        if series.len() > 1 {
            let y = top + 10.0 + index as f64 * 18.0;
            canvas.rect(right + 16.0, y - 9.0, 12.0, 12.0, colour(index), "");
            canvas.text(right + 32.0, y + 1.0, "start", &one.name);
        }
    }
    canvas.finish(id, title)
}

/// The five numbers a box plot draws.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Boxed {
    pub low_whisker: f64,
    pub q1: f64,
    pub median: f64,
    pub q3: f64,
    pub high_whisker: f64,
}

/// A horizontal box plot per label on one value axis.
pub fn boxes(
    id: &str,
    title: &str,
    labels: &[String],
    boxes: &[Boxed],
    axis: Axis,
    value_label: &str,
) -> String {
    let left = label_width(labels) + 4.0;
    let (top, row) = (8.0, 30.0);
    let bottom = top + labels.len() as f64 * row;
    let mut canvas = Canvas::new(WIDTH, bottom + 2.0 * FONT + 24.0);
    let right = WIDTH - 24.0;
    value_axis(&mut canvas, &axis, left, right, (top, bottom), value_label);
    let x_of = |value: f64| left + axis.fraction(value) * (right - left);
    for (index, (label, one)) in labels.iter().zip(boxes).enumerate() {
        let y = top + index as f64 * row + row / 2.0;
        canvas.line((x_of(one.low_whisker), y), (x_of(one.q1), y), "whisker");
        canvas.line((x_of(one.q3), y), (x_of(one.high_whisker), y), "whisker");
        let tip = format!(
            "{label}: median {}, quartiles {} to {}, whiskers {} to {}",
            short(one.median),
            short(one.q1),
            short(one.q3),
            short(one.low_whisker),
            short(one.high_whisker)
        );
        canvas.rect(
            x_of(one.q1),
            y - 9.0,
            x_of(one.q3) - x_of(one.q1),
            18.0,
            colour(index),
            &tip,
        );
        canvas.line(
            (x_of(one.median), y - 9.0),
            (x_of(one.median), y + 9.0),
            "median",
        );
        canvas.text(left - 6.0, y + 4.0, "end", label);
    }
    canvas.finish(id, title)
}

/// Counts in a grid of rows by columns, each cell shaded by its count and labelled with it.
pub fn heatmap(
    id: &str,
    title: &str,
    (rows, columns): (&[String], &[String]),
    counts: &[Vec<u64>],
    (row_title, column_title): (&str, &str),
) -> String {
    let left = label_width(rows).max(row_title.len() as f64 * CHAR_WIDTH) + 8.0;
    let top = 2.0 * FONT + 16.0;
    let cell_height = 28.0;
    let cell_width = ((WIDTH - left - 8.0) / columns.len().max(1) as f64).min(120.0);
    let bottom = top + rows.len() as f64 * cell_height;
    let mut canvas = Canvas::new(WIDTH, bottom + 8.0);
    let most = counts.iter().flatten().copied().max().unwrap_or(0).max(1) as f64;
    canvas.text(
        left + cell_width * columns.len() as f64 / 2.0,
        FONT + 2.0,
        "middle",
        column_title,
    );
    canvas.text(left - 6.0, top - 6.0, "end", row_title);
    for (at, column) in columns.iter().enumerate() {
        canvas.text(
            left + cell_width * (at as f64 + 0.5),
            top - 6.0,
            "middle",
            column,
        );
    }
    for (row_at, row) in rows.iter().enumerate() {
        let y = top + row_at as f64 * cell_height;
        canvas.text(left - 6.0, y + cell_height / 2.0 + 4.0, "end", row);
        for (at, column) in columns.iter().enumerate() {
            let count = counts[row_at][at];
            let x = left + at as f64 * cell_width;
            // White to the palette's blue, by the count's share of the largest cell.
            let shade = (count as f64 / most).sqrt();
            let channel =
                |full: f64, of: f64| (255.0 - shade * (255.0 - of)).round().min(full) as u8;
            let fill = format!(
                "#{:02x}{:02x}{:02x}",
                channel(255.0, 78.0),
                channel(255.0, 121.0),
                channel(255.0, 167.0)
            );
            let tip = format!("{row} to {column}: {count}");
            canvas.rect(x, y, cell_width - 2.0, cell_height - 2.0, &fill, &tip);
            let class_text = if shade > 0.6 { "light" } else { "" };
            let _ = write!(
                canvas.body,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" class="{class_text}">{count}</text>"#,
                x + cell_width / 2.0 - 1.0,
                y + cell_height / 2.0 + 3.0,
            );
        }
    }
    canvas.finish(id, title)
}

/// Counts of values in bins (`edges` has one more entry than `counts`), on `axis`.
pub fn histogram(
    id: &str,
    title: &str,
    edges: &[f64],
    counts: &[u64],
    axis: Axis,
    value_label: &str,
) -> String {
    let (left, top, bottom) = (64.0, 10.0, 170.0);
    let right = WIDTH - 24.0;
    let mut canvas = Canvas::new(WIDTH, bottom + 2.0 * FONT + 24.0);
    let count_axis = Axis::linear(counts.iter().map(|&count| count as f64), true);
    vertical_axis(
        &mut canvas,
        &count_axis,
        (left, right),
        (top, bottom),
        "customers",
    );
    value_axis(&mut canvas, &axis, left, right, (top, bottom), value_label);
    let x_of = |value: f64| left + axis.fraction(value) * (right - left);
    for (index, &count) in counts.iter().enumerate() {
        let (from, to) = (edges[index], edges[index + 1]);
        let height = count_axis.fraction(count as f64) * (bottom - top);
        let tip = format!("{} to {}: {count}", short(from), short(to));
        canvas.rect(
            x_of(from),
            bottom - height,
            (x_of(to) - x_of(from) - 1.0).max(0.5),
            height,
            colour(0),
            &tip,
        );
    }
    canvas.finish(id, title)
}

/// One horizontal bar per label made of parts (rows kept, set aside, fewer), with a
/// legend naming the parts, each part in its colour.
pub fn stacked(
    id: &str,
    title: &str,
    labels: &[String],
    parts: &[Vec<u64>],
    (part_names, colours): (&[&str], &[&str]),
    value_label: &str,
) -> String {
    let left = label_width(labels) + 4.0;
    let (top, row) = (30.0, 26.0);
    let bottom = top + labels.len() as f64 * row;
    let mut canvas = Canvas::new(WIDTH, bottom + 2.0 * FONT + 24.0);
    let right = WIDTH - 24.0;
    let totals: Vec<f64> = parts
        .iter()
        .map(|bar| bar.iter().sum::<u64>() as f64)
        .collect();
    let axis = Axis::linear(totals.iter().copied(), true);
    value_axis(&mut canvas, &axis, left, right, (top, bottom), value_label);
    let mut x = left;
    for (index, name) in part_names.iter().enumerate() {
        canvas.rect(x, 6.0, 12.0, 12.0, colours[index], "");
        canvas.text(x + 16.0, 16.0, "start", name);
        x += 16.0 + name.len() as f64 * CHAR_WIDTH + 16.0;
    }
    for (index, (label, bar)) in labels.iter().zip(parts).enumerate() {
        let y = top + index as f64 * row + 4.0;
        let mut from = 0u64;
        for (part, &count) in bar.iter().enumerate() {
            let x0 = left + axis.fraction(from as f64) * (right - left);
            let x1 = left + axis.fraction((from + count) as f64) * (right - left);
            let tip = format!("{label}: {} {count}", part_names[part]);
            if count > 0 {
                canvas.rect(x0, y, x1 - x0, row - 8.0, colours[part], &tip);
            }
            from += count;
        }
        canvas.text(left - 6.0, y + row / 2.0, "end", label);
    }
    canvas.finish(id, title)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(
            nice_ticks(0.0, 97.0, 5),
            [0.0, 20.0, 40.0, 60.0, 80.0, 100.0]
        );
        assert_eq!(nice_ticks(-1.3, 2.2, 5), [-2.0, -1.0, 0.0, 1.0, 2.0, 3.0]);
        assert_eq!(nice_ticks(0.0, 0.3, 4), [0.0, 0.2, 0.4]);
    }

    #[test]
    fn an_axis_draws_only_the_ticks_on_it() {
        let axis = Axis::linear([0.992, 1.034], false);
        let Axis::Linear { min, max } = axis else {
            panic!("a linear axis");
        };
        let ticks = axis.ticks();
        assert!(
            ticks.iter().all(|t| (min..=max).contains(t)),
            "{ticks:?} in {min}..{max}"
        );
        assert!(ticks.len() >= 3, "{ticks:?}");
    }

    #[test]
    fn short_labels() {
        assert_eq!(short(1_234_567.0), "1.2M");
        assert_eq!(short(45_300.0), "45.3k");
        assert_eq!(short(120.4), "120");
        assert_eq!(short(3.5), "3.5");
        assert_eq!(short(0.0421), "0.042");
        assert_eq!(short(0.0), "0");
        assert_eq!(short(-2000.0), "-2000");
    }

    #[test]
    fn the_same_data_draws_the_same_bytes_and_labels_are_escaped() {
        let labels = vec!["<VIP> & co".to_string(), "Lost".to_string()];
        let one = bars(
            "sizes",
            "Customers per segment",
            &labels,
            &[10.0, 3.0],
            "customers",
        );
        let two = bars(
            "sizes",
            "Customers per segment",
            &labels,
            &[10.0, 3.0],
            "customers",
        );
        assert_eq!(one, two);
        assert!(one.contains("&lt;VIP&gt; &amp; co"));
        assert!(!one.contains("<VIP>"));
        assert!(one.starts_with("<svg") && one.ends_with("</svg>"));
    }
}
