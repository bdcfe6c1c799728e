//! `segment.checks`: the fitted segments judged before anything is published. Each check
//! reads the stage's report only (sizes and names), so it costs nothing.

use segflow_pipeline::{SegmentCheck, SegmentCheckKind, Severity};

use crate::report::{CheckReport, SegmentReport};

/// Each check's report, in the order declared: `pass`, or `warn` / `fail` by its severity.
pub fn judge(checks: &[SegmentCheck], segments: &SegmentReport) -> Vec<CheckReport> {
    checks
        .iter()
        .map(|check| {
            let (held, detail) = measure(check.kind, segments);
            let status = match (held, check.severity) {
                (true, _) => "pass",
                (false, Severity::Warn) => "warn",
                (false, _) => "fail",
            };
            CheckReport {
                name: check.name.clone(),
                check_type: check.kind.as_str().to_string(),
                severity: check.severity.as_str().to_string(),
                status: status.to_string(),
                failing_rows: u64::from(!held),
                samples: Vec::new(),
                detail: Some(detail),
            }
        })
        .collect()
}

/// Whether the check holds, and what it measured, naming the segment that decided it.
fn measure(kind: SegmentCheckKind, segments: &SegmentReport) -> (bool, String) {
    let share = |size: u64| size as f64 / segments.customers.max(1) as f64;
    let by_size = segments.sizes.iter().zip(&segments.names);
    let (limit, decisive, held, word) = match kind {
        SegmentCheckKind::MinShare(limit) => {
            let smallest = by_size.min_by_key(|(size, _)| **size);
            let held = smallest.is_none_or(|(size, _)| share(*size) >= limit);
            (limit, smallest, held, "at least")
        }
        SegmentCheckKind::MaxShare(limit) => {
            let largest = by_size.max_by_key(|(size, _)| **size);
            let held = largest.is_none_or(|(size, _)| share(*size) <= limit);
            (limit, largest, held, "at most")
        }
    };
    let which = if matches!(kind, SegmentCheckKind::MinShare(_)) {
        "smallest"
    } else {
        "largest"
    };
    let detail = match decisive {
        Some((size, name)) => format!(
            "{which} segment `{name}` holds {:.1}% ({size} of {} customers); {word} {:.1}% required",
            100.0 * share(*size),
            segments.customers,
            100.0 * limit
        ),
        None => "no segments".to_string(),
    };
    (held, detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(sizes: &[u64]) -> SegmentReport {
        SegmentReport {
            input: "f".into(),
            key: "id".into(),
            features: vec!["x".into()],
            customers: sizes.iter().sum(),
            customers_quarantined: 0,
            fitted_on: None,
            k: sizes.len(),
            seed: 0,
            iterations: 1,
            converged: true,
            inertia: 0.0,
            ids: (0..sizes.len() as u32).collect(),
            sizes: sizes.to_vec(),
            names: (0..sizes.len()).map(|id| format!("s{id}")).collect(),
            k_selection: None,
            warm_start_from: None,
            checks: Vec::new(),
            fit_ms: 0,
            duration_ms: 0,
        }
    }

    fn check(kind: SegmentCheckKind, severity: Severity) -> SegmentCheck {
        SegmentCheck {
            name: kind.as_str().into(),
            kind,
            severity,
        }
    }

    #[test]
    fn min_share_fails_on_the_smallest_segment_and_names_it() {
        let judged = judge(
            &[check(SegmentCheckKind::MinShare(0.03), Severity::Error)],
            &report(&[700, 245, 53, 2]),
        );
        assert_eq!(judged[0].status, "fail");
        assert_eq!(
            judged[0].detail.as_deref(),
            Some("smallest segment `s3` holds 0.2% (2 of 1000 customers); at least 3.0% required")
        );
        let exact = judge(
            &[check(SegmentCheckKind::MinShare(0.03), Severity::Error)],
            &report(&[970, 30]),
        );
        assert_eq!(exact[0].status, "pass", "the limit itself passes");
    }

    #[test]
    fn max_share_and_warn_severity() {
        let judged = judge(
            &[
                check(SegmentCheckKind::MaxShare(0.5), Severity::Warn),
                check(SegmentCheckKind::MaxShare(0.8), Severity::Error),
            ],
            &report(&[700, 300]),
        );
        let statuses: Vec<&str> = judged.iter().map(|check| check.status.as_str()).collect();
        assert_eq!(statuses, ["warn", "pass"]);
    }
}
