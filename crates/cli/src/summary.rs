//! What a person sees on stdout after a command: one screen, numbers aligned.

#![allow(clippy::print_stdout)]

use segflow_engine::{CheckReport, RunEntry, RunReport, RunStatus, SourceReport, StepReport};
use segflow_pipeline::Pipeline;
use segflow_plan::StepGraph;

pub fn print_run(report: &RunReport) {
    println!("{}", crate::redact(&render_run(report)));
}

pub fn render_run(report: &RunReport) -> String {
    let mut out = format!(
        "pipeline {} (run {})\n",
        report.pipeline,
        report.run_id.as_deref().unwrap_or_default()
    );
    if report.status == segflow_engine::RunOutcome::Unchanged {
        out.push_str(&format!(
            "unchanged: run {} is current (same pipeline, variables, segflow version and input files); nothing ran, nothing was published",
            report.latest_run.as_deref().unwrap_or_default()
        ));
        return out;
    }
    if let Some(changes) = &report.changes {
        out.push_str("runs because, since the latest published run (--if-changed):\n");
        for change in changes {
            out.push_str(&format!("  {change}\n"));
        }
    }
    out.push_str(&render_sources(&report.sources));
    let width = report
        .steps
        .iter()
        .map(|step| step.name.len())
        .max()
        .unwrap_or(0);
    out.push_str("steps\n");
    if let Some(buckets) = &report.buckets {
        out.push_str(&render_buckets(buckets));
    }
    for step in &report.steps {
        let (time, note) = match (&step.streamed_into, step.spilled) {
            (Some(reader), _) => ("-".to_string(), format!("  (streamed into {reader})")),
            (None, true) => (seconds(step.duration_ms), "  (spilled to disk)".to_string()),
            (None, false) => (seconds(step.duration_ms), String::new()),
        };
        out.push_str(&format!(
            "  {:<width$}  {:<8}  {:>11} rows in  {:>11} rows out  {time:>8}{note}\n",
            step.name,
            step.kind,
            thousands(step.rows_in),
            thousands(step.rows_out),
        ));
    }
    for step in &report.steps {
        if let Some(profile) = &step.profile {
            out.push_str(&format!("profile of step {}\n", step.name));
            for line in profile.lines() {
                out.push_str(&format!("  {line}\n"));
            }
        }
    }
    out.push_str(&render_checks(&report.steps));
    if report.segment.is_none() && report.value.is_none() {
        out.push_str("only the selected steps ran: no segments, nothing published\n");
        out.push_str(&format!("done in {}", seconds(report.duration_ms)));
        return out;
    }
    if let Some(segment) = &report.segment {
        out.push_str(&render_segments(segment));
    }
    if let Some(value) = &report.value {
        out.push_str(&render_value(value, report.segment.is_some()));
    }
    for check in report.segment.iter().flat_map(|segment| &segment.checks) {
        out.push_str(&format!(
            "  check {} ({}): {}  {}\n",
            check.name,
            check.severity,
            check.status,
            check.detail.as_deref().unwrap_or_default()
        ));
    }
    out.push_str("outputs\n");
    if let Some(latest) = report
        .latest_run
        .as_ref()
        .filter(|id| Some(*id) != report.run_id.as_ref())
    {
        out.push_str(&format!(
            "  a backfill: _LATEST.json still names run {latest}, later in run order\n"
        ));
    }
    for output in &report.outputs {
        match (output.kind.as_str(), output.rows) {
            ("folder", _) => out.push_str(&format!("  {}\n", output.url)),
            (_, Some(rows)) => out.push_str(&format!(
                "    {}  {} rows\n",
                relative(&output.url, &report.outputs[0].url),
                thousands(rows)
            )),
            _ => out.push_str(&format!(
                "    {}\n",
                relative(&output.url, &report.outputs[0].url)
            )),
        }
    }
    // The one file a person opens first, with its whole address to click or paste.
    if let Some(page) = report
        .outputs
        .iter()
        .find(|output| output.url.ends_with("/report.html"))
    {
        out.push_str(&format!("report  {}\n", page.url));
    }
    out.push_str(&format!("done in {}", seconds(report.duration_ms)));
    out
}

/// How the sources were split into buckets, the buckets' sizes, and which steps ran once
/// per bucket.
fn render_buckets(buckets: &segflow_engine::BucketsReport) -> String {
    let sources: Vec<String> = buckets
        .sources
        .iter()
        .map(|source| format!("{} by {}", source.name, source.key))
        .collect();
    let smallest = buckets.rows.iter().min().copied().unwrap_or(0);
    let largest = buckets.rows.iter().max().copied().unwrap_or(0);
    format!(
        "  in {} buckets ({}; {} to {} rows each, split in {}): {}\n",
        buckets.count,
        sources.join(", "),
        thousands(smallest),
        thousands(largest),
        seconds(buckets.split_ms),
        buckets.steps.join(", ")
    )
}

/// The segment stage's line, how it was fitted and every segment's size.
fn render_segments(segment: &segflow_engine::SegmentReport) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "segments  k={}  customers={}  iterations={}{}  inertia={:.1}  {}\n",
        segment.k,
        thousands(segment.customers),
        segment.iterations,
        if segment.converged {
            ""
        } else {
            " (not converged)"
        },
        segment.inertia,
        seconds(segment.duration_ms),
    ));
    if let Some(sample) = segment.fitted_on {
        out.push_str(&format!(
            "  fitted on a seeded sample of {} customers, every customer assigned by streaming\n",
            thousands(sample)
        ));
    }
    if segment.customers_quarantined > 0 {
        out.push_str(&format!(
            "  {} customers set aside for a null, NaN or infinite feature (rejects/segment/)\n",
            thousands(segment.customers_quarantined)
        ));
    }
    if let Some(run) = &segment.warm_start_from {
        out.push_str(&format!(
            "  warm start from run {run}: its scaler and centroids, its segment ids kept\n"
        ));
    }
    if let Some(run) = &segment.assigned_with_model_of {
        out.push_str(&format!(
            "  assigned with the model of run {run} as it is (segment.model): not refitted\n"
        ));
    }
    if let Some(selection) = &segment.k_selection {
        out.push_str(&render_k_selection(selection));
    }
    let name_width = segment.names.iter().map(String::len).max().unwrap_or(0);
    for (row, size) in segment.sizes.iter().enumerate() {
        let share = 100.0 * *size as f64 / segment.customers.max(1) as f64;
        let id = segment.ids.get(row).copied().unwrap_or(row as u32);
        let name = segment
            .names
            .get(row)
            .map(String::as_str)
            .unwrap_or_default();
        out.push_str(&format!(
            "  segment {id:<3} {name:<name_width$}  {:>11} customers  {share:5.1}%\n",
            thousands(*size)
        ));
    }
    out
}

/// Every k tried with its inertia (the elbow) and metrics; the kept one marked, and why.
fn render_k_selection(selection: &segflow_engine::KSelectionReport) -> String {
    let chosen = selection.scores.iter().find(|s| s.k == selection.chosen);
    let (direction, value) = match (selection.metric.as_str(), chosen) {
        ("davies_bouldin", Some(s)) => ("lowest", s.davies_bouldin),
        ("calinski_harabasz", Some(s)) => ("highest", s.calinski_harabasz),
        (_, Some(s)) => ("highest", s.silhouette),
        (_, None) => ("best", f64::NAN),
    };
    let mut out = format!(
        "  k={} chosen: {direction} {} ({value:.3}) of k={}..{}\n",
        selection.chosen,
        selection.metric,
        selection.scores.first().map_or(0, |s| s.k),
        selection.scores.last().map_or(0, |s| s.k),
    );
    out.push_str(&format!(
        "     {:>3}  {:>12}  {:>10}  {:>17}  {:>14}\n",
        "k", "inertia", "silhouette", "calinski_harabasz", "davies_bouldin"
    ));
    for score in &selection.scores {
        out.push_str(&format!(
            "  {} {:>3}  {:>12.1}  {:>10.3}  {:>17.1}  {:>14.3}\n",
            if score.k == selection.chosen {
                "*"
            } else {
                " "
            },
            score.k,
            score.inertia,
            score.silhouette,
            score.calinski_harabasz,
            score.davies_bouldin
        ));
    }
    out
}

/// One line per test, each failure's diff under it, and a count.
pub fn print_tests(outcomes: &[segflow_steptest::Outcome]) {
    println!("{}", crate::redact(&render_tests(outcomes)));
}

pub fn render_tests(outcomes: &[segflow_steptest::Outcome]) -> String {
    let mut out = String::new();
    for outcome in outcomes {
        let file = outcome
            .file
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let status = if outcome.failures.is_empty() {
            "ok  "
        } else {
            "FAIL"
        };
        out.push_str(&format!("{status}  {file}: {}\n", outcome.name));
        for failure in &outcome.failures {
            for line in failure.lines() {
                out.push_str(&format!("      {line}\n"));
            }
        }
    }
    let failed = outcomes.iter().filter(|o| !o.failures.is_empty()).count();
    out.push_str(&format!(
        "{} passed, {failed} failed",
        outcomes.len() - failed
    ));
    out
}

pub fn print_runs(url: &str, runs: &[RunEntry]) {
    println!("{}", crate::redact(&render_runs(url, runs)));
}

/// `segflow runs --format json`: the output folder and every run folder in it.
pub fn runs_json(url: &str, runs: &[RunEntry]) -> serde_json::Value {
    serde_json::json!({
        "output": url,
        "runs": runs.iter().map(|run| serde_json::json!({
            "run_id": run.run_id,
            "status": run.status.as_str(),
            "version": run.version,
            "path": run.path,
            "files": run.files,
            "bytes": run.bytes,
            "last_modified": run.last_modified.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "latest": run.latest,
        })).collect::<Vec<_>>(),
    })
}

pub fn render_runs(url: &str, runs: &[RunEntry]) -> String {
    if runs.is_empty() {
        return format!("{url}: no runs");
    }
    let width = runs.iter().map(|run| run.run_id.len()).max().unwrap_or(0);
    let mut out = format!("{url}\n");
    out.push_str(&format!(
        "  {:<width$}  {:<10}  {:>7}  {:<20}  {:>5}  {:>10}\n",
        "run", "status", "version", "last written (UTC)", "files", "size"
    ));
    for run in runs {
        out.push_str(&format!(
            "  {:<width$}  {:<10}  {:>7}  {:<20}  {:>5}  {:>10}{}\n",
            run.run_id,
            run.status.as_str(),
            run.version
                .map_or("-".to_string(), |version| version.to_string()),
            run.last_modified.format("%Y-%m-%d %H:%M:%S"),
            run.files,
            bytes(run.bytes),
            if run.latest { "  (latest)" } else { "" },
        ));
    }
    let dead = runs
        .iter()
        .filter(|run| run.status != RunStatus::Published)
        .count();
    if dead > 0 {
        out.push_str(&format!(
            "{dead} folder{} of superseded versions or unfinished attempts: an attempt under way, or leftovers `segflow gc` can remove\n",
            if dead == 1 { "" } else { "s" }
        ));
    }
    out.trim_end().to_string()
}

pub fn print_report_written(run_id: &str, path: &std::path::Path) {
    print_text(&format!(
        "report of run `{run_id}` written to {}",
        path.display()
    ));
}

pub fn print_gc(
    url: &str,
    stale: &[RunEntry],
    spills: &[std::path::PathBuf],
    dry_run: bool,
    deleted: usize,
) {
    let mut out = String::new();
    let verb = if dry_run { "would delete" } else { "deleted" };
    if stale.is_empty() && spills.is_empty() {
        out.push_str(&format!("{url}: nothing to clean"));
    } else {
        for run in stale {
            out.push_str(&format!(
                "{verb} {}{}  ({}, {} files, last written {})\n",
                url,
                run.path,
                run.status.as_str(),
                run.files,
                run.last_modified.format("%Y-%m-%d %H:%M:%S UTC"),
            ));
        }
        for spill in spills {
            out.push_str(&format!(
                "{verb} {}  (spill folder of a segflow process that is gone)\n",
                spill.display()
            ));
        }
        if !dry_run {
            out.push_str(&format!("{deleted} files deleted"));
        }
    }
    println!("{}", crate::redact(out.trim_end()));
}

fn bytes(count: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = count as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{count} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Sources with rows read, passed on and quarantined.
fn render_sources(sources: &[SourceReport]) -> String {
    let width = sources.iter().map(|s| s.name.len()).max().unwrap_or(0);
    let mut out = String::from("sources\n");
    for source in sources {
        let notes: String = source
            .notes
            .iter()
            .map(|note| format!("    note: {note}\n"))
            .collect();
        let Some(read) = source.rows_read else {
            out.push_str(&format!("  {:<width$}  not read\n{notes}", source.name));
            continue;
        };
        out.push_str(&format!(
            "  {:<width$}  {:<8}  {:>11} rows read {:>11} rows out",
            source.name,
            source.format,
            thousands(read),
            thousands(source.rows_out.unwrap_or(read)),
        ));
        if source.on_error == "quarantine" {
            out.push_str(&format!(
                "  {} quarantined",
                thousands(source.rows_quarantined)
            ));
        }
        out.push('\n');
        out.push_str(&notes);
    }
    out
}

/// Every check of every validate step: its status, failing rows and a few samples.
pub fn render_checks(steps: &[StepReport]) -> String {
    let checks: Vec<(&StepReport, &CheckReport)> = steps
        .iter()
        .flat_map(|step| step.checks.iter().map(move |check| (step, check)))
        .collect();
    if checks.is_empty() {
        return String::new();
    }
    let name_width = checks
        .iter()
        .map(|(step, check)| step.name.len() + 1 + check.name.len())
        .max()
        .unwrap_or(0);
    let type_width = checks
        .iter()
        .map(|(_, check)| check.check_type.len())
        .max()
        .unwrap_or(0);
    let mut out = String::from("checks\n");
    for (step, check) in checks {
        let name = format!("{}.{}", step.name, check.name);
        let mut line = format!(
            "  {name:<name_width$}  {:<type_width$}  {:<11}  {:>9} failing",
            check.check_type,
            check.status,
            thousands(check.failing_rows),
        );
        if let (Some(share), Some(checked)) = (check.failing_share, check.rows_checked)
            && check.failing_rows > 0
        {
            let thresholds: Vec<String> =
                [("warn_if", &check.warn_if), ("error_if", &check.error_if)]
                    .into_iter()
                    .filter_map(|(name, threshold)| {
                        threshold
                            .as_ref()
                            .map(|threshold| format!("{name} {threshold}"))
                    })
                    .collect();
            line.push_str(&format!(
                " ({} of {}{}{})",
                percent(share),
                thousands(checked),
                if thresholds.is_empty() { "" } else { "; " },
                thresholds.join(", ")
            ));
        }
        if let Some(detail) = &check.detail {
            line.push_str(&format!("  {detail}"));
        } else if !check.samples.is_empty() {
            line.push_str(&format!("  e.g. {}", check.samples.join("; ")));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The value stage: its models' parameters, then per segment (`segmented`) or for all
/// customers the customers' chance of still being active and their expected value.
fn render_value(value: &segflow_engine::ValueReport, segmented: bool) -> String {
    let params = |params: &std::collections::BTreeMap<String, f64>, names: &[&str]| {
        names
            .iter()
            .filter_map(|name| params.get(*name).map(|v| format!("{name}={v:.4}")))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let names: &[&str] = if value.purchase_model == "pareto_nbd" {
        &["r", "alpha", "s", "beta"]
    } else {
        &["r", "alpha", "a", "b"]
    };
    let mut out = format!(
        "value  {} {}  log-likelihood={:.1}  customers={}  per {}  {}\n",
        value.purchase_model,
        params(&value.params, names),
        value.log_likelihood,
        thousands(value.customers),
        value.time_unit,
        seconds(value.duration_ms),
    );
    if let (Some(model), Some(spend)) = (&value.spend_model, &value.spend_params) {
        out.push_str(&format!("  {model} {}\n", params(spend, &["p", "q", "v"])));
    }
    if value.customers_quarantined > 0 {
        out.push_str(&format!(
            "  {} customers set aside: a history the models cannot read (rejects/value/)\n",
            thousands(value.customers_quarantined)
        ));
    }
    if let Some(evaluation) = &value.evaluation {
        out.push_str(&format!(
            "  over the later {:.0} days: {:.0} purchases predicted, {:.0} made, mean absolute error {:.3} per customer\n",
            evaluation.period_days,
            evaluation.predicted_purchases,
            evaluation.actual_purchases,
            evaluation.mean_absolute_error
        ));
    }
    let width = value
        .segments
        .iter()
        .map(|s| s.name.len())
        .max()
        .unwrap_or(0);
    for segment in &value.segments {
        let worth = match (segment.mean_clv, segment.total_clv, segment.value_share) {
            (Some(mean), Some(total), Some(share)) => format!(
                "  CLV {mean:>10.2} mean {:>12} total  {} of value",
                thousands(total.round() as u64),
                percent(share)
            ),
            _ => String::new(),
        };
        let group = if segmented {
            format!("segment {:<3} ", segment.segment_id)
        } else {
            String::new()
        };
        out.push_str(&format!(
            "  {group}{:<width$}  churn risk {:>5}  {:>9.1} purchases in {} months{worth}\n",
            segment.name,
            percent(1.0 - segment.mean_p_alive),
            segment.expected_purchases,
            value.horizon_months,
        ));
    }
    out
}

/// A share as a percentage people read: `3.0%`, and `<0.1%` rather than a misleading `0.0%`.
fn percent(share: f64) -> String {
    match 100.0 * share {
        p if p > 0.0 && p < 0.05 => "<0.1%".to_string(),
        p => format!("{p:.1}%"),
    }
}

pub fn print_checks(steps: &[StepReport]) {
    let table = render_checks(steps);
    if !table.is_empty() {
        print!("{}", crate::redact(&table));
    }
}

pub fn print_check(pipeline: &Pipeline, graph: &StepGraph) {
    println!(
        "{}: ok ({} sources, {} steps, every step plans against its inputs' schemas)",
        pipeline.file.display(),
        pipeline.sources.len(),
        graph.steps.len()
    );
}

pub fn print_text(text: &str) {
    println!("{}", crate::redact(text));
}

/// JSON, masked in its strings only (see `redact_json`), so that it stays JSON.
pub fn print_json(mut value: serde_json::Value) {
    crate::redact_json(&mut value);
    println!(
        "{}",
        serde_json::to_string_pretty(&value).expect("a JSON value serialises")
    );
}

pub fn print_generated(output: &str, summary: &segflow_datagen::Summary) {
    println!(
        "wrote {} rows ({} customers, {} invoices) to {}",
        thousands(summary.rows),
        thousands(summary.customers),
        thousands(summary.invoices),
        output
    );
}

fn relative<'a>(url: &'a str, folder: &str) -> &'a str {
    url.strip_prefix(folder).unwrap_or(url)
}

fn seconds(ms: u64) -> String {
    format!("{:.2}s", ms as f64 / 1000.0)
}

pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::thousands;

    #[test]
    fn groups_thousands() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }
}
