//! The report page, top to bottom: headline, segments, charts, the data behind the
//! segments, data quality, provenance. Each section is a function of the run's data alone.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::account::{CheckAccount, RunAccount};
use crate::actions::action_for;
use crate::html::{Table, count, escape, figure, number, optional, percent};
use crate::run_data::{Frame, RunData, total};
use crate::stats::Summary;
use crate::svg::{self, Series};

const STYLE: &str = r#"
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#1d1d1f;margin:0;background:#f6f6f4}
main{max-width:1040px;margin:0 auto;padding:24px 32px 64px;background:#fff}
h1{font-size:26px;margin:8px 0 4px}h2{font-size:20px;margin:40px 0 8px;border-bottom:2px solid #4e79a7;padding-bottom:4px}
h3{font-size:15px;margin:20px 0 6px}p.lede{color:#555;margin:0 0 16px}
dl.facts{display:grid;grid-template-columns:repeat(4,1fr);gap:8px 16px;margin:16px 0}
dl.facts div{background:#f1f4f8;border-radius:6px;padding:8px 10px}dt{font-size:12px;color:#555}dd{margin:2px 0 0;font-size:18px;font-weight:600;overflow-wrap:anywhere}
div.table{overflow-x:auto;max-width:100%}table{border-collapse:collapse;margin:8px 0 16px;font-size:13px;width:100%}caption{text-align:left;font-weight:600;padding:4px 0}
th,td{border-bottom:1px solid #ddd;padding:4px 6px;text-align:left;vertical-align:top}th{background:#f1f4f8}td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
figure{margin:12px 0 24px}figcaption{font-size:13px;color:#555}details{font-size:13px}summary{cursor:pointer;color:#4e79a7}
svg.chart{max-width:100%;height:auto;display:block}svg.chart text{font:12px system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;fill:#222}
svg.chart text.light{fill:#fff}.grid{stroke:#e6e6e6}.axis{stroke:#444}.whisker{stroke:#444}.median{stroke:#111;stroke-width:2}.mark{stroke:#c0392b;stroke-dasharray:4 3;stroke-width:1.5}
.note{color:#555;font-size:13px}code{background:#f1f4f8;padding:0 3px;border-radius:3px}
"#;

/// The whole page.
pub fn render(run: &RunData) -> String {
    let overall = feature_summaries(run);
    let mut body = String::new();
    body.push_str(&headline(run));
    body.push_str(&segments(run));
    body.push_str(&charts(run, &overall));
    body.push_str(&data_behind(run, &overall));
    body.push_str(&data_quality(run));
    body.push_str(&provenance(run));
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{} · run {}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n{body}</main>\n</body>\n</html>\n",
        escape(&run.manifest.pipeline),
        escape(&run.manifest.run_id)
    )
}

fn section(id: &str, title: &str, lede: &str, content: &str) -> String {
    format!(
        "<section id=\"{id}\">\n<h2>{}</h2>\n<p class=\"lede\">{}</p>\n{content}</section>\n",
        escape(title),
        escape(lede)
    )
}

fn seconds(ms: u64) -> String {
    if ms >= 60_000 {
        format!("{} min {:.0} s", ms / 60_000, (ms % 60_000) as f64 / 1000.0)
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

const NOT_RECORDED: &str = "not recorded";

/// Rows set aside anywhere in the run: by sources, validate steps and the stages.
fn set_aside_rows(account: &RunAccount) -> u64 {
    account
        .sources
        .iter()
        .map(|s| s.rows_quarantined)
        .sum::<u64>()
        + account
            .steps
            .iter()
            .map(|s| s.rows_quarantined)
            .sum::<u64>()
        + account
            .segment
            .as_ref()
            .map_or(0, |s| s.customers_quarantined)
        + account
            .value
            .as_ref()
            .map_or(0, |v| v.customers_quarantined)
}

fn headline(run: &RunData) -> String {
    let manifest = &run.manifest;
    let account = run.account.as_ref();
    let customers = account
        .and_then(|a| a.segment.as_ref().map(|s| s.customers))
        .or_else(|| run.profile.as_ref().map(|p| total(p, "customers") as u64));
    let facts = [
        ("Pipeline", manifest.pipeline.clone()),
        ("Run id", manifest.run_id.clone()),
        ("As of", run.as_of().unwrap_or("–").to_string()),
        ("Started", manifest.started_at.clone()),
        (
            "Duration",
            account.map_or(NOT_RECORDED.to_string(), |a| seconds(a.duration_ms)),
        ),
        (
            "Customers segmented",
            customers.map_or("–".to_string(), count),
        ),
        (
            "Lines read",
            account.map_or(NOT_RECORDED.to_string(), |a| {
                count(a.sources.iter().filter_map(|s| s.rows_read).sum())
            }),
        ),
        (
            "Lines set aside",
            account.map_or(NOT_RECORDED.to_string(), |a| count(set_aside_rows(a))),
        ),
    ];
    let mut html = format!(
        "<header>\n<h1>{}</h1>\n<p class=\"lede\">Run <code>{}</code> of the segflow pipeline <code>{}</code>: who the customers are, how they group, what they are worth, and whether the data behind it was sound.</p>\n<dl class=\"facts\">",
        escape(&format!("Customer segments: {}", manifest.pipeline)),
        escape(&manifest.run_id),
        escape(&manifest.pipeline)
    );
    for (term, value) in facts {
        let _ = write!(
            html,
            "<div><dt>{}</dt><dd>{}</dd></div>",
            escape(term),
            escape(&value)
        );
    }
    html.push_str("</dl>\n");
    if account.is_none() {
        html.push_str("<p class=\"note\">This run was published before segflow kept each run's account (<code>run.json</code>): its step counts, checks and times are not shown.</p>\n");
    }
    html.push_str("</header>\n");
    html
}

/// One segment of the run, in the profile's order (largest first).
struct SegmentRow {
    id: i64,
    name: String,
    customers: u64,
}

fn segment_rows(profile: &Frame) -> Vec<SegmentRow> {
    let ids = profile.floats("segment_id").unwrap_or_default();
    let names = profile.labels("name").unwrap_or_default();
    let customers = profile.floats("customers").unwrap_or_default();
    ids.iter()
        .zip(names)
        .zip(customers)
        .map(|((id, name), customers)| SegmentRow {
            id: id.unwrap_or_default() as i64,
            name,
            customers: customers.unwrap_or_default() as u64,
        })
        .collect()
}

/// A frame's rows by segment id: each column's value for it.
fn by_segment(frame: &Frame, column: &str) -> BTreeMap<i64, f64> {
    let ids = frame.floats("segment_id").unwrap_or_default();
    let values = frame.floats(column).unwrap_or_default();
    ids.into_iter()
        .zip(values)
        .filter_map(|(id, value)| Some((id? as i64, value?)))
        .collect()
}

fn segments(run: &RunData) -> String {
    let Some(profile) = &run.profile else {
        return section("segments", "Segments", "This run has no segment stage.", "");
    };
    let rows = segment_rows(profile);
    let value = run.value_by_segment.as_ref();
    let value_columns: Vec<(&str, &str)> = [
        ("mean_clv", "mean CLV"),
        ("mean_p_alive", "mean p_alive"),
        ("expected_purchases", "expected purchases"),
        ("value_share", "share of predicted value"),
    ]
    .into_iter()
    .filter(|(column, _)| value.is_some_and(|frame| frame.has(column)))
    .collect();
    let mut header: Vec<String> = ["segment", "customers", "share", "revenue share"]
        .map(String::from)
        .to_vec();
    header.extend(value_columns.iter().map(|(_, label)| label.to_string()));
    header.push("suggested action".to_string());
    let mut table = Table::with_header("Segments, largest first", header);
    let share = by_segment(profile, "share");
    let revenue = by_segment(profile, "revenue_share");
    let values: Vec<BTreeMap<i64, f64>> = value_columns
        .iter()
        .map(|(column, _)| {
            value
                .map(|frame| by_segment(frame, column))
                .unwrap_or_default()
        })
        .collect();
    let no_actions = BTreeMap::new();
    let actions = run
        .account
        .as_ref()
        .and_then(|a| a.segment.as_ref())
        .map_or(&no_actions, |s| &s.actions);
    for row in &rows {
        let mut cells = vec![
            row.name.clone(),
            count(row.customers),
            optional(share.get(&row.id).copied(), percent),
            optional(revenue.get(&row.id).copied(), percent),
        ];
        for ((column, _), by_id) in value_columns.iter().zip(&values) {
            let format: fn(f64) -> String = if column.ends_with("share") {
                percent
            } else {
                number
            };
            cells.push(optional(by_id.get(&row.id).copied(), format));
        }
        cells.push(action_for(&row.name, actions).unwrap_or("–").to_string());
        table.row(cells);
    }
    let mut header = vec!["segment".to_string()];
    for feature in &run.features {
        header.push(format!("median {}", run.labelled(feature)));
        header.push(format!("mean {}", run.labelled(feature)));
    }
    let mut features = Table::with_header("What each segment's customers are like", header);
    let medians: Vec<BTreeMap<i64, f64>> = run
        .features
        .iter()
        .map(|f| by_segment(profile, &format!("median_{f}")))
        .collect();
    let means: Vec<BTreeMap<i64, f64>> = run
        .features
        .iter()
        .map(|f| by_segment(profile, &format!("mean_{f}")))
        .collect();
    for row in &rows {
        let mut cells = vec![row.name.clone()];
        for (median, mean) in medians.iter().zip(&means) {
            cells.push(optional(median.get(&row.id).copied(), number));
            cells.push(optional(mean.get(&row.id).copied(), number));
        }
        features.row(cells);
    }
    section(
        "segments",
        "Segments",
        "Each segment's size, what it is worth and what to do with its customers, then what they are like (each feature's median and mean in its own units). Actions are segflow's defaults for the segment's name unless the pipeline sets its own under segment.actions.",
        &format!("{}{}", table.html(), features.html()),
    )
}

/// Each feature's figures over every segmented customer, computed once for the charts
/// and the data section.
fn feature_summaries(run: &RunData) -> BTreeMap<String, Summary> {
    let Some(segments) = &run.segments else {
        return BTreeMap::new();
    };
    run.features
        .iter()
        .filter_map(|feature| {
            let values = segments.values(feature)?;
            Some((feature.clone(), Summary::of(values)))
        })
        .collect()
}

fn charts(run: &RunData, overall: &BTreeMap<String, Summary>) -> String {
    let mut html = String::new();
    if let Some(profile) = &run.profile {
        let rows = segment_rows(profile);
        html.push_str(&sizes_chart(&rows));
        html.push_str(&profile_chart(run, profile, &rows));
        html.push_str(&distribution_charts(run, &rows, overall));
    }
    if let Some(k_selection) = &run.k_selection {
        html.push_str(&k_selection_charts(run, k_selection));
    }
    if let Some(migration) = &run.migration {
        html.push_str(&migration_chart(run, migration));
    }
    if let Some(value) = &run.value_by_segment {
        html.push_str(&value_charts(run, value));
    }
    if html.is_empty() {
        return String::new();
    }
    section(
        "charts",
        "What sets the segments apart",
        "Sizes, profiles and distributions of the segments; with a range of k, how k was chosen; since the warm start's run, how customers moved; with a value stage, what each segment is worth.",
        &html,
    )
}

fn names(rows: &[SegmentRow]) -> Vec<String> {
    rows.iter().map(|row| row.name.clone()).collect()
}

fn sizes_chart(rows: &[SegmentRow]) -> String {
    let values: Vec<f64> = rows.iter().map(|row| row.customers as f64).collect();
    let title = "Customers per segment";
    let svg = svg::bars("chart-sizes", title, &names(rows), &values, "customers");
    let mut data = Table::new(title, &["segment", "customers"]);
    for row in rows {
        data.row(vec![row.name.clone(), count(row.customers)]);
    }
    figure(title, &svg, "One bar per segment, largest first.", &data)
}

fn profile_chart(run: &RunData, profile: &Frame, rows: &[SegmentRow]) -> String {
    let title = "Segment profiles: centroids in scaled units";
    let columns: Vec<BTreeMap<i64, f64>> = run
        .features
        .iter()
        .map(|f| by_segment(profile, &format!("{f}_centroid_scaled")))
        .collect();
    let series: Vec<Series> = rows
        .iter()
        .map(|row| Series {
            name: row.name.clone(),
            values: columns.iter().map(|c| c.get(&row.id).copied()).collect(),
        })
        .collect();
    let svg = svg::lines(
        "chart-profile",
        title,
        &run.features,
        &series,
        ("feature", "centroid (scaled units)"),
        None,
    );
    let mut header = vec!["segment".to_string()];
    header.extend(run.features.iter().cloned());
    let mut data = Table::with_header(title, header);
    for one in &series {
        let mut cells = vec![one.name.clone()];
        cells.extend(one.values.iter().map(|v| optional(*v, number)));
        data.row(cells);
    }
    figure(
        title,
        &svg,
        "One line per segment across the features, after the transforms and scaling the clustering used: 0 is the average customer, and the further a point is from 0 the more that feature sets the segment apart.",
        &data,
    )
}

/// Each feature's values per segment, from the segments table.
fn feature_values(run: &RunData, rows: &[SegmentRow]) -> Option<Vec<(String, Vec<Vec<f64>>)>> {
    let segments = run.segments.as_ref()?;
    let ids = segments.floats("segment_id")?;
    let position: BTreeMap<i64, usize> = rows
        .iter()
        .enumerate()
        .map(|(at, row)| (row.id, at))
        .collect();
    let mut features = Vec::new();
    for feature in &run.features {
        let values = segments.values(feature)?;
        let mut per_segment = vec![Vec::new(); rows.len()];
        for (id, value) in ids.iter().zip(values) {
            if let Some(&at) = id.and_then(|id| position.get(&(id as i64))) {
                per_segment[at].push(value);
            }
        }
        features.push((feature.clone(), per_segment));
    }
    Some(features)
}

fn distribution_charts(
    run: &RunData,
    rows: &[SegmentRow],
    overall: &BTreeMap<String, Summary>,
) -> String {
    let Some(features) = feature_values(run, rows) else {
        return String::new();
    };
    let mut html = String::new();
    for (index, (feature, per_segment)) in features.iter().enumerate() {
        let Some(all) = overall.get(feature) else {
            continue;
        };
        let axis = all.axis();
        let summaries: Vec<Summary> = per_segment
            .iter()
            .map(|v| Summary::of(v.iter().copied()))
            .collect();
        let title = format!("{feature} per segment");
        let svg = svg::boxes(
            &format!("chart-distribution-{index}"),
            &title,
            &names(rows),
            &summaries.iter().map(Summary::boxed).collect::<Vec<_>>(),
            axis,
            &run.labelled(feature),
        );
        let mut data = Table::new(
            &title,
            &["segment", "customers", "min", "q1", "median", "q3", "max"],
        );
        for (row, summary) in rows.iter().zip(&summaries) {
            data.row(vec![
                row.name.clone(),
                count(summary.count as u64),
                number(summary.min),
                number(summary.q1),
                number(summary.median),
                number(summary.q3),
                number(summary.max),
            ]);
        }
        let scale = if axis.is_log() {
            " The axis is logarithmic (log10(1 + x)): the values are skewed."
        } else {
            ""
        };
        let note = format!(
            "Box plots of {feature} in its own units: the box spans the middle half of the segment's customers, the line is the median, the whiskers reach the furthest values within 1.5 box lengths.{scale}"
        );
        html.push_str(&figure(&title, &svg, &note, &data));
    }
    html
}

fn k_selection_charts(run: &RunData, frame: &Frame) -> String {
    let ks: Vec<String> = frame
        .floats("k")
        .unwrap_or_default()
        .iter()
        .map(|k| k.map_or("–".to_string(), |k| format!("{k:.0}")))
        .collect();
    let chosen = frame
        .floats("chosen")
        .unwrap_or_default()
        .iter()
        .position(|chosen| *chosen == Some(1.0));
    let metric = run
        .account
        .as_ref()
        .and_then(|a| a.segment.as_ref()?.k_selection.as_ref())
        .map(|k| k.metric.clone());
    let metrics = [
        ("inertia", "inertia (lower is tighter)"),
        ("silhouette", "silhouette (higher is better)"),
        ("calinski_harabasz", "Calinski-Harabasz (higher is better)"),
        ("davies_bouldin", "Davies-Bouldin (lower is better)"),
    ];
    let mut html = String::new();
    let mut data = Table::new(
        "Scores per k",
        &[
            "k",
            "inertia",
            "silhouette",
            "calinski_harabasz",
            "davies_bouldin",
            "chosen",
        ],
    );
    for (at, k) in ks.iter().enumerate() {
        let mut cells = vec![k.clone()];
        for (column, _) in metrics {
            let value = frame
                .floats(column)
                .unwrap_or_default()
                .get(at)
                .copied()
                .flatten();
            cells.push(optional(value, number));
        }
        cells.push(if Some(at) == chosen { "yes" } else { "" }.to_string());
        data.row(cells);
    }
    for (column, label) in metrics {
        let Some(values) = frame.floats(column) else {
            continue;
        };
        let title = format!("{label} against k");
        let svg = svg::lines(
            &format!("chart-k-{column}"),
            &title,
            &ks,
            &[Series {
                name: column.to_string(),
                values,
            }],
            ("k (segments)", column),
            chosen,
        );
        html.push_str(&format!("<h3>{}</h3>{svg}\n", escape(&title)));
    }
    let chosen_k = chosen.map_or("–".to_string(), |at| ks[at].clone());
    let note = format!(
        "Each k of the range was fitted and scored; the dashed line marks the k kept (k = {chosen_k}, by {}).",
        metric.unwrap_or_else(|| "the pipeline's metric".to_string())
    );
    format!(
        "<figure class=\"k-selection\">{html}<figcaption>{}</figcaption><details><summary>The numbers behind these charts</summary>{}</details></figure>\n",
        escape(&note),
        data.html()
    )
}

fn migration_chart(run: &RunData, frame: &Frame) -> String {
    let before = frame.floats("previous_segment_id").unwrap_or_default();
    let before_names = frame.texts("previous_name").unwrap_or_default();
    let after = frame.floats("segment_id").unwrap_or_default();
    let after_names = frame.texts("name").unwrap_or_default();
    let customers = frame.floats("customers").unwrap_or_default();
    let label = |id: Option<f64>, name: Option<&String>, none: &str| match (id, name) {
        (Some(id), Some(name)) => format!("{id:.0} {name}"),
        (Some(id), None) => format!("{id:.0}"),
        (None, _) => none.to_string(),
    };
    let mut rows: Vec<(Option<i64>, String)> = Vec::new();
    let mut columns: Vec<(Option<i64>, String)> = Vec::new();
    let mut cells: BTreeMap<(Option<i64>, Option<i64>), u64> = BTreeMap::new();
    for at in 0..frame.rows {
        let from = before.get(at).copied().flatten();
        let to = after.get(at).copied().flatten();
        let row = (
            from.map(|v| v as i64),
            label(
                from,
                before_names.get(at).and_then(Option::as_ref),
                "new customers",
            ),
        );
        let column = (
            to.map(|v| v as i64),
            label(to, after_names.get(at).and_then(Option::as_ref), "gone"),
        );
        if !rows.contains(&row) {
            rows.push(row.clone());
        }
        if !columns.contains(&column) {
            columns.push(column.clone());
        }
        *cells.entry((row.0, column.0)).or_default() +=
            customers.get(at).copied().flatten().unwrap_or_default() as u64;
    }
    // Segments in id order, new customers last among the rows, the gone last among the columns.
    let order = |a: &(Option<i64>, String), b: &(Option<i64>, String)| match (a.0, b.0) {
        (None, None) => std::cmp::Ordering::Equal,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (Some(_), None) => std::cmp::Ordering::Less,
        (Some(x), Some(y)) => x.cmp(&y),
    };
    rows.sort_by(order);
    columns.sort_by(order);
    let counts: Vec<Vec<u64>> = rows
        .iter()
        .map(|row| {
            columns
                .iter()
                .map(|column| cells.get(&(row.0, column.0)).copied().unwrap_or(0))
                .collect()
        })
        .collect();
    let from_run = run
        .account
        .as_ref()
        .and_then(|a| a.segment.as_ref()?.warm_start_from.clone())
        .unwrap_or_else(|| "the warm start's run".to_string());
    let title = format!("Customers moved since {from_run}");
    let row_labels: Vec<String> = rows.iter().map(|r| r.1.clone()).collect();
    let column_labels: Vec<String> = columns.iter().map(|c| c.1.clone()).collect();
    let svg = svg::heatmap(
        "chart-migration",
        &title,
        (&row_labels, &column_labels),
        &counts,
        ("segment before", "segment now"),
    );
    let mut data = Table::new(&title, &["segment before", "segment now", "customers"]);
    for (row, line) in row_labels.iter().zip(&counts) {
        for (column, cell) in column_labels.iter().zip(line) {
            if *cell > 0 {
                data.row(vec![row.clone(), column.clone(), count(*cell)]);
            }
        }
    }
    figure(
        &title,
        &svg,
        "Rows are the segments customers were in at the warm start's run, columns the segments they are in now; the diagonal stayed. New customers were not in the earlier run; gone ones are not in this one.",
        &data,
    )
}

fn value_charts(run: &RunData, value: &Frame) -> String {
    let labels = value.labels("name").unwrap_or_default();
    let mut html = String::new();
    let clv_label = match run.currency() {
        Some(currency) => format!("CLV per customer ({currency})"),
        None => "CLV per customer".to_string(),
    };
    for (column, title, unit, id) in [
        (
            "mean_clv",
            "Mean customer lifetime value per segment",
            clv_label.as_str(),
            "chart-clv",
        ),
        (
            "mean_p_alive",
            "Mean probability a customer is still active, per segment",
            "p_alive",
            "chart-p-alive",
        ),
    ] {
        let Some(values) = value.values(column) else {
            continue;
        };
        let svg = svg::bars(id, title, &labels, &values, unit);
        let mut data = Table::new(title, &["segment", column]);
        for (label, v) in labels.iter().zip(&values) {
            data.row(vec![label.clone(), number(*v)]);
        }
        let note = match column {
            "mean_clv" => {
                "The discounted value each segment's customers are expected to bring over the horizon, on average."
            }
            _ => {
                "The chance, by the purchase model, that a customer of the segment has not churned; 1 - p_alive is the churn risk."
            }
        };
        html.push_str(&figure(title, &svg, note, &data));
    }
    if let Some(ltv) = &run.ltv {
        html.push_str(&ltv_chart(run, ltv));
    }
    if let Some(evaluation) = &run.value_evaluation {
        html.push_str(&evaluation_chart(run, evaluation));
    }
    html
}

fn ltv_chart(run: &RunData, ltv: &Frame) -> String {
    let names = ltv.labels("name").unwrap_or_default();
    let months = ltv.floats("month").unwrap_or_default();
    let measure = if ltv.has("cumulative_value") {
        "cumulative_value"
    } else {
        "expected_active"
    };
    let values = ltv.floats(measure).unwrap_or_default();
    let mut series: Vec<Series> = Vec::new();
    let mut month_labels: Vec<String> = Vec::new();
    for (at, name) in names.iter().enumerate() {
        let month = months.get(at).copied().flatten().unwrap_or_default();
        let label = format!("{month:.0}");
        let column = match month_labels.iter().position(|m| *m == label) {
            Some(column) => column,
            None => {
                month_labels.push(label);
                month_labels.len() - 1
            }
        };
        let line = match series.iter().position(|s| s.name == *name) {
            Some(line) => line,
            None => {
                series.push(Series {
                    name: name.clone(),
                    values: Vec::new(),
                });
                series.len() - 1
            }
        };
        let line = &mut series[line].values;
        line.resize(line.len().max(column + 1), None);
        line[column] = values.get(at).copied().flatten();
    }
    for line in &mut series {
        line.values.resize(month_labels.len(), None);
    }
    let title = if measure == "cumulative_value" {
        "Cumulative discounted value per segment, month by month"
    } else {
        "Expected active customers per segment, month by month"
    };
    let y_label = match (measure, run.currency()) {
        ("cumulative_value", Some(currency)) => format!("{measure} ({currency})"),
        _ => measure.to_string(),
    };
    let svg = svg::lines(
        "chart-ltv",
        title,
        &month_labels,
        &series,
        ("month of the horizon", &y_label),
        None,
    );
    let shown: Vec<&String> = ltv
        .names()
        .iter()
        .filter(|name| !matches!(name.as_str(), "segment_id" | "run_id" | "as_of"))
        .collect();
    let header: Vec<String> = shown.iter().map(|name| name.to_string()).collect();
    let mut data = Table::with_header("The LTV table", header);
    let columns: Vec<Vec<String>> = shown
        .iter()
        .map(|name| match ltv.floats(name) {
            Some(values) if name.as_str() != "month" => {
                values.iter().map(|v| optional(*v, number)).collect()
            }
            _ => ltv.labels(name).unwrap_or_default(),
        })
        .collect();
    for at in 0..ltv.rows {
        data.row(
            columns
                .iter()
                .map(|column| column.get(at).cloned().unwrap_or_default())
                .collect(),
        );
    }
    figure(
        title,
        &svg,
        "Per segment and month of the horizon: the value its customers are expected to bring, discounted to the run's day and added up (revenue is booked at the end of each month). The table gives every column of ltv/.",
        &data,
    )
}

fn evaluation_chart(run: &RunData, frame: &Frame) -> String {
    let frequencies = frame.labels("frequency").unwrap_or_default();
    let actual = frame.floats("mean_actual_purchases").unwrap_or_default();
    let predicted = frame.floats("mean_predicted_purchases").unwrap_or_default();
    let title = "Predicted against actual purchases in the later period";
    let svg = svg::lines(
        "chart-evaluation",
        title,
        &frequencies,
        &[
            Series {
                name: "actual".to_string(),
                values: actual.clone(),
            },
            Series {
                name: "predicted".to_string(),
                values: predicted.clone(),
            },
        ],
        (
            "repeat purchases in the calibration period",
            "mean purchases per customer",
        ),
        None,
    );
    let customers = frame.floats("customers").unwrap_or_default();
    let mut data = Table::new(
        title,
        &[
            "calibration purchases",
            "customers",
            "mean actual",
            "mean predicted",
        ],
    );
    for (at, frequency) in frequencies.iter().enumerate() {
        data.row(vec![
            frequency.clone(),
            optional(customers.get(at).copied().flatten(), |v| count(v as u64)),
            optional(actual.get(at).copied().flatten(), number),
            optional(predicted.get(at).copied().flatten(), number),
        ]);
    }
    let summary = run
        .account
        .as_ref()
        .and_then(|a| a.value.as_ref()?.evaluation.as_ref())
        .map(|e| {
            format!(
                " Over {} customers and {:.0} days: {} purchases predicted, {} made; mean absolute error {} per customer.",
                count(e.customers),
                e.period_days,
                number(e.predicted_purchases),
                number(e.actual_purchases),
                number(e.mean_absolute_error)
            )
        })
        .unwrap_or_default();
    figure(
        title,
        &svg,
        &format!(
            "The purchase model judged on a period it did not see, by how many repeat purchases customers made before it.{summary}"
        ),
        &data,
    )
}

fn data_behind(run: &RunData, overall: &BTreeMap<String, Summary>) -> String {
    if run.segments.is_none() {
        return String::new();
    }
    let model_features: BTreeMap<&str, &crate::account::ModelFeature> = run
        .model
        .iter()
        .flat_map(|model| &model.features)
        .map(|f| (f.name.as_str(), f))
        .collect();
    let clips: BTreeMap<&str, _> = model_features
        .iter()
        .filter_map(|(name, f)| Some((*name, f.winsorize?)))
        .collect();
    let mut table = Table::new(
        "The segment input, per feature",
        &[
            "feature",
            "role",
            "transforms",
            "count",
            "nulls",
            "min",
            "q1",
            "median",
            "q3",
            "max",
            "skew",
            "clipped low",
            "clipped high",
        ],
    );
    let mut charts = String::new();
    for (index, feature) in run.features.iter().enumerate() {
        let Some(summary) = overall.get(feature) else {
            continue;
        };
        let values = summary.values();
        let shown_name = run.labelled(feature);
        let rejected = run.segment_rejects.as_ref().and_then(|r| r.floats(feature));
        let nulls = rejected
            .iter()
            .flatten()
            .filter(|v| v.is_none_or(|v| !v.is_finite()))
            .count() as u64;
        let (low, high) = match clips.get(feature.as_str()) {
            Some(clip) => (
                count(values.iter().filter(|&&v| v < clip.low).count() as u64),
                count(values.iter().filter(|&&v| v > clip.high).count() as u64),
            ),
            None => ("–".to_string(), "–".to_string()),
        };
        let model_feature = model_features.get(feature.as_str());
        let mut transforms = Vec::new();
        if let Some(clip) = model_feature.and_then(|f| f.winsorize) {
            transforms.push(format!(
                "winsorize [{}, {}]",
                clip.low_percentile, clip.high_percentile
            ));
        }
        if model_feature.is_some_and(|f| f.log1p) {
            transforms.push("log1p".to_string());
        }
        table.row(vec![
            shown_name,
            model_feature
                .and_then(|f| f.role.clone())
                .unwrap_or_else(|| "–".to_string()),
            if transforms.is_empty() {
                "–".to_string()
            } else {
                transforms.join(", ")
            },
            count(summary.count as u64 + rejected.as_ref().map_or(0, |r| r.len() as u64)),
            count(nulls),
            number(summary.min),
            number(summary.q1),
            number(summary.median),
            number(summary.q3),
            number(summary.max),
            optional(summary.skew, |s| format!("{s:.2}")),
            low,
            high,
        ]);
        let axis = summary.axis();
        let (edges, counts) = summary.histogram(axis, 24);
        let title = format!("Distribution of {feature}");
        let svg = svg::histogram(
            &format!("chart-histogram-{index}"),
            &title,
            &edges,
            &counts,
            axis,
            &run.labelled(feature),
        );
        let mut data = Table::new(&title, &["from", "to", "customers"]);
        for (at, customers) in counts.iter().enumerate() {
            data.row(vec![
                number(edges[at]),
                number(edges[at + 1]),
                count(*customers),
            ]);
        }
        charts.push_str(&figure(
            &title,
            &svg,
            "Every segmented customer's value, in 24 bins of equal width on the axis shown.",
            &data,
        ));
    }
    let clipped = if clips.is_empty() {
        String::new()
    } else {
        let mut text = String::from(
            "<p class=\"note\">Clipped: values the winsorize transform moved to its bounds before clustering (",
        );
        let bounds: Vec<String> = clips
            .iter()
            .map(|(name, clip)| {
                format!(
                    "{} to [{}, {}], the {} and {} percentiles",
                    escape(name),
                    number(clip.low),
                    number(clip.high),
                    percentile(clip.low_percentile),
                    percentile(clip.high_percentile)
                )
            })
            .collect();
        text.push_str(&bounds.join("; "));
        text.push_str(").</p>\n");
        text
    };
    section(
        "data",
        "The data behind the segments",
        &format!(
            "The segment stage's input{} as the clustering saw it, in raw units: every customer counted, the nulls it set aside, the spread and skew of each feature, and the transforms applied before scaling.",
            run.account
                .as_ref()
                .and_then(|a| a.segment.as_ref())
                .map(|s| format!(" ({}, one row per {})", s.input, s.key))
                .unwrap_or_default()
        ),
        &format!("{}{clipped}{charts}", table.html()),
    )
}

fn percentile(fraction: f64) -> String {
    let value = fraction * 100.0;
    if value.fract() == 0.0 {
        format!("{value:.0}th")
    } else {
        format!("{value}th")
    }
}

fn data_quality(run: &RunData) -> String {
    let Some(account) = &run.account else {
        return section(
            "quality",
            "Data quality",
            "This run did not record its steps' counts.",
            &set_aside_table(run),
        );
    };
    let mut labels = Vec::new();
    let mut parts = Vec::new();
    let mut flow = Table::new(
        "Rows from each source to the segments",
        &[
            "stage",
            "kind",
            "rows in",
            "rows out",
            "fewer rows out of the SQL",
            "set aside",
        ],
    );
    for source in &account.sources {
        let read = source.rows_read.unwrap_or_default();
        labels.push(format!("source {}", source.name));
        parts.push(vec![
            source.rows_out.unwrap_or(read),
            source.rows_quarantined,
            0,
        ]);
        flow.row(vec![
            source.name.clone(),
            format!("source ({})", source.format),
            optional(source.rows_read.map(|r| r as f64), |r| count(r as u64)),
            optional(source.rows_out.map(|r| r as f64), |r| count(r as u64)),
            "–".to_string(),
            count(source.rows_quarantined),
        ]);
    }
    for step in &account.steps {
        labels.push(step.name.clone());
        let removed = step.rows_removed.unwrap_or_default();
        parts.push(vec![step.rows_out, step.rows_quarantined, removed]);
        flow.row(vec![
            step.name.clone(),
            step.kind.clone(),
            count(step.rows_in),
            count(step.rows_out),
            optional(step.rows_removed.map(|r| r as f64), |r| count(r as u64)),
            count(step.rows_quarantined),
        ]);
    }
    // The stages: customers in, valued or segmented, set aside.
    let stages = [
        account
            .value
            .as_ref()
            .map(|v| ("value", v.customers, v.customers_quarantined)),
        account
            .segment
            .as_ref()
            .map(|s| ("segment", s.customers, s.customers_quarantined)),
    ];
    for (stage, customers, quarantined) in stages.into_iter().flatten() {
        labels.push(format!("{stage} stage"));
        parts.push(vec![customers, quarantined, 0]);
        flow.row(vec![
            stage.to_string(),
            format!("{stage} stage"),
            count(customers + quarantined),
            count(customers),
            "–".to_string(),
            count(quarantined),
        ]);
    }
    let title = "Rows kept, set aside and removed, stage by stage";
    let svg = svg::stacked(
        "chart-flow",
        title,
        &labels,
        &parts,
        (
            &[
                "passed on",
                "set aside (rejects)",
                "fewer rows out of the SQL (filtered or grouped)",
            ],
            &[svg::PALETTE[0], svg::PALETTE[1], svg::PALETTE[9]],
        ),
        "rows",
    );
    let mut html = figure(
        title,
        &svg,
        "One bar per source, step and stage, in the order they ran: the rows it passed on, those it set aside with a reason (in rejects/), and for a step reading one table how many fewer rows its SQL returned: rows it filtered out, or rows it grouped (one row per customer or day loses no data).",
        &flow,
    );
    let mut checks = Table::new(
        "Checks",
        &[
            "step",
            "check",
            "type",
            "severity",
            "status",
            "failing rows",
            "sample keys",
            "detail",
        ],
    );
    let check_row = |step: &str, check: &CheckAccount| {
        vec![
            step.to_string(),
            check.name.clone(),
            check.check_type.clone(),
            check.severity.clone(),
            check.status.clone(),
            count(check.failing_rows),
            check
                .samples
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
            check.detail.clone().unwrap_or_default(),
        ]
    };
    for step in &account.steps {
        for check in &step.checks {
            checks.row(check_row(&step.name, check));
        }
    }
    if let Some(segment) = &account.segment {
        for check in &segment.checks {
            checks.row(check_row("segment", check));
        }
    }
    if checks.is_empty() {
        html.push_str("<p class=\"note\">The pipeline has no checks.</p>\n");
    } else {
        html.push_str(&checks.html());
    }
    html.push_str(&set_aside_table(run));
    section(
        "quality",
        "Data quality",
        "Where every row went: read, passed on, set aside with a reason, or filtered out by a step's SQL; each check's outcome with a few failing keys.",
        &html,
    )
}

fn set_aside_table(run: &RunData) -> String {
    if run.set_aside.is_empty() {
        return "<p class=\"note\">No rows were set aside.</p>\n".to_string();
    }
    let mut table = Table::new(
        "Rows set aside, per reason",
        &["rejects table", "reason", "rows"],
    );
    for line in &run.set_aside {
        table.row(vec![
            line.table.clone(),
            line.reason.clone(),
            count(line.rows),
        ]);
    }
    table.html()
}

fn provenance(run: &RunData) -> String {
    let manifest = &run.manifest;
    let mut facts = Table::new("The run", &["what", "value"]);
    facts.row(vec![
        "pipeline content hash".to_string(),
        manifest.pipeline_hash.clone(),
    ]);
    facts.row(vec![
        "segflow version".to_string(),
        manifest.segflow_version.clone(),
    ]);
    facts.row(vec![
        "version folder (in the output folder)".to_string(),
        run.version_path.clone(),
    ]);
    if let Some(model) = &manifest.segment_model {
        facts.row(vec![
            "segments assigned with the model of".to_string(),
            model.clone(),
        ]);
    }
    if let Some(segment) = run.account.as_ref().and_then(|a| a.segment.as_ref()) {
        let how = match (&segment.assigned_with_model_of, segment.fitted_on) {
            (Some(model), _) => format!("assigned with the model of {model}, not refitted"),
            (None, Some(sample)) => format!(
                "fitted on a sample of {} customers, then every customer assigned",
                count(sample)
            ),
            (None, None) => "fitted on every customer".to_string(),
        };
        facts.row(vec![
            "segment model".to_string(),
            format!(
                "k-means, k = {}: {}; {} iterations ({}), inertia {}",
                segment.k,
                how,
                segment.iterations,
                if segment.converged {
                    "converged"
                } else {
                    "not converged"
                },
                number(segment.inertia)
            ),
        ]);
    }
    if let Some(value) = run.account.as_ref().and_then(|a| a.value.as_ref()) {
        let params = |params: &BTreeMap<String, f64>| {
            params
                .iter()
                .map(|(name, v)| format!("{name} = {v:.4}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        facts.row(vec![
            "purchase model".to_string(),
            format!(
                "{} ({}; per {}): {}; log-likelihood {:.2}{}",
                value.purchase_model,
                if value.converged {
                    "converged"
                } else {
                    "not converged"
                },
                value.time_unit,
                params(&value.params),
                value.log_likelihood,
                value
                    .spend_model
                    .as_ref()
                    .zip(value.spend_params.as_ref())
                    .map(|(model, p)| format!("; {model}: {}", params(p)))
                    .unwrap_or_default()
            ),
        ]);
        facts.row(vec![
            "value horizon".to_string(),
            format!(
                "{} months, discounted at {} per month",
                value.horizon_months, value.discount_rate
            ),
        ]);
    }
    let mut html = facts.html();
    let mut inputs = Table::new(
        "Inputs",
        &["source", "file", "bytes", "last modified", "content"],
    );
    for input in &manifest.inputs {
        inputs.row(vec![
            input.source.clone(),
            input.url.clone(),
            count(input.bytes),
            input.last_modified.clone(),
            input
                .content_hash
                .clone()
                .or_else(|| input.e_tag.as_ref().map(|tag| format!("ETag {tag}")))
                .unwrap_or_default(),
        ]);
    }
    if !inputs.is_empty() {
        html.push_str(&inputs.html());
    }
    let mut vars = Table::new("Variables (secrets masked)", &["variable", "value"]);
    for (name, value) in &manifest.vars {
        vars.row(vec![name.clone(), value.clone()]);
    }
    if !vars.is_empty() {
        html.push_str(&vars.html());
    }
    if let Some(account) = &run.account {
        let mut times = Table::new("Time per step", &["step", "kind", "SQL", "seconds", "note"]);
        for step in &account.steps {
            times.row(vec![
                step.name.clone(),
                step.kind.clone(),
                step.sql.clone(),
                format!("{:.3}", step.duration_ms as f64 / 1000.0),
                step.streamed_into
                    .as_ref()
                    .map(|into| format!("streamed into {into}, timed with it"))
                    .unwrap_or_default(),
            ]);
        }
        let stages = [
            account.value.as_ref().map(|v| ("value", v.duration_ms)),
            account.segment.as_ref().map(|s| ("segment", s.duration_ms)),
        ];
        for (stage, ms) in stages.into_iter().flatten() {
            times.row(vec![
                stage.to_string(),
                format!("{stage} stage"),
                String::new(),
                format!("{:.3}", ms as f64 / 1000.0),
                String::new(),
            ]);
        }
        html.push_str(&times.html());
    }
    let mut tables = Table::new("Tables of the run", &["table", "rows", "columns"]);
    for table in &manifest.tables {
        tables.row(vec![
            table.name.clone(),
            count(table.rows),
            table.columns.len().to_string(),
        ]);
    }
    html.push_str(&tables.html());
    section(
        "provenance",
        "Provenance",
        "What produced this run: the pipeline's content hash, its inputs and variables, the segflow version, and the time each step took.",
        &html,
    )
}
