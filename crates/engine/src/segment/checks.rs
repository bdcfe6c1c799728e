//! `segment.checks`: the fitted segments judged before anything is published. Shares read
//! the stage's report (sizes and names); stability checks read [`SincePrevious`], what the
//! stage measured against the run it warm-started from. Neither reads data again.

use std::collections::BTreeMap;

use segflow_pipeline::{SegmentCheck, SegmentCheckKind, Severity};

use crate::report::{CheckReport, SegmentReport};

/// How the segments moved since the run the warm start read (all empty without one).
#[derive(Debug, Clone, Default)]
pub struct SincePrevious {
    /// The run compared with: `None` on a first run or with no warm start.
    pub run_id: Option<String>,
    /// Customers segmented by both runs, and those of them whose segment id changed
    /// (`None` with a warm start from a model file, which holds no customers).
    pub moved: Option<(u64, u64)>,
    /// Per segment matched to a previous centroid: its name, id and how far its centroid
    /// moved, in model units.
    pub shifts: Vec<(String, u32, f64)>,
    /// The previous run's customers per segment id (`None` in a model file written before
    /// sizes were recorded).
    pub previous_sizes: Option<BTreeMap<u32, u64>>,
}

/// Each check's report, in the order declared: `pass`, or `warn` / `fail` by its severity.
pub fn judge(
    checks: &[SegmentCheck],
    segments: &SegmentReport,
    since: &SincePrevious,
) -> Vec<CheckReport> {
    checks
        .iter()
        .map(|check| {
            let (held, detail) = match check.kind {
                SegmentCheckKind::MinShare(_) | SegmentCheckKind::MaxShare(_) => {
                    measure_shares(check.kind, segments)
                }
                kind => match &since.run_id {
                    None => (
                        true,
                        "no baseline: no earlier published run to compare with".to_string(),
                    ),
                    Some(run_id) => measure_stability(kind, segments, since, run_id),
                },
            };
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
                rows_checked: None,
                failing_share: None,
                warn_if: None,
                error_if: None,
                samples: Vec::new(),
                detail: Some(detail),
                metric: None,
            }
        })
        .collect()
}

/// Whether a share check holds, and what it measured, naming the segment that decided it.
fn measure_shares(kind: SegmentCheckKind, segments: &SegmentReport) -> (bool, String) {
    let share = |size: u64| size as f64 / segments.customers.max(1) as f64;
    let by_size = segments.sizes.iter().zip(&segments.names);
    let (limit, decisive, held, word, which) = match kind {
        SegmentCheckKind::MinShare(limit) => {
            let smallest = by_size.min_by_key(|(size, _)| **size);
            let held = smallest.is_none_or(|(size, _)| share(*size) >= limit);
            (limit, smallest, held, "at least", "smallest")
        }
        SegmentCheckKind::MaxShare(limit) => {
            let largest = by_size.max_by_key(|(size, _)| **size);
            let held = largest.is_none_or(|(size, _)| share(*size) <= limit);
            (limit, largest, held, "at most", "largest")
        }
        _ => unreachable!("stability checks are measured by measure_stability"),
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

/// A share of zero in either run counts as this in the index (its logarithm would be
/// infinite): the usual floor, small enough that an empty segment still weighs heavily.
const PSI_FLOOR: f64 = 1e-4;

fn measure_stability(
    kind: SegmentCheckKind,
    segments: &SegmentReport,
    since: &SincePrevious,
    run_id: &str,
) -> (bool, String) {
    match kind {
        SegmentCheckKind::MaxMovedShare(limit) => match since.moved {
            Some((returning, moved)) => {
                let share = moved as f64 / returning.max(1) as f64;
                (
                    share <= limit,
                    format!(
                        "{:.1}% ({moved} of {returning}) of the customers also in run {run_id} changed segment; at most {:.1}% allowed",
                        100.0 * share,
                        100.0 * limit
                    ),
                )
            }
            None => (
                true,
                format!("no baseline: run {run_id} is a model file, with no customers to follow"),
            ),
        },
        SegmentCheckKind::MaxCentroidShift(limit) => {
            let largest = since.shifts.iter().max_by(|a, b| a.2.total_cmp(&b.2));
            match largest {
                Some((name, id, shift)) => (
                    *shift <= limit,
                    format!(
                        "segment `{name}` (id {id}) moved furthest from its centroid in run {run_id}: {shift:.3} in model units; at most {limit} allowed"
                    ),
                ),
                None => (true, format!("no segment matches one of run {run_id}")),
            }
        }
        SegmentCheckKind::MaxSizePsi(limit) => match &since.previous_sizes {
            Some(previous) => {
                let psi = size_psi(segments, previous);
                (
                    psi <= limit,
                    format!(
                        "population stability index of segment shares against run {run_id}: {psi:.4}; at most {limit} allowed"
                    ),
                )
            }
            None => (
                true,
                format!("no baseline: the model of run {run_id} does not record segment sizes"),
            ),
        },
        SegmentCheckKind::MinShare(_) | SegmentCheckKind::MaxShare(_) => {
            unreachable!("share checks are measured by measure_shares")
        }
    }
}

/// PSI = sum over segment ids of (current share - previous share) * ln(current / previous),
/// over the ids of either run (a segment new or gone counts with the floor share).
fn size_psi(segments: &SegmentReport, previous: &BTreeMap<u32, u64>) -> f64 {
    let current: BTreeMap<u32, u64> = segments
        .ids
        .iter()
        .copied()
        .zip(segments.sizes.iter().copied())
        .collect();
    let total = |sizes: &BTreeMap<u32, u64>| sizes.values().sum::<u64>().max(1) as f64;
    let (now_total, then_total) = (total(&current), total(previous));
    let ids: std::collections::BTreeSet<u32> =
        current.keys().chain(previous.keys()).copied().collect();
    ids.into_iter()
        .map(|id| {
            let share = |sizes: &BTreeMap<u32, u64>, total: f64| {
                (sizes.get(&id).copied().unwrap_or(0) as f64 / total).max(PSI_FLOOR)
            };
            let (now, then) = (share(&current, now_total), share(previous, then_total));
            (now - then) * (now / then).ln()
        })
        .sum()
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
            assigned_with_model_of: None,
            checks: Vec::new(),
            actions: Default::default(),
            units: Default::default(),
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
            &SincePrevious::default(),
        );
        assert_eq!(judged[0].status, "fail");
        assert_eq!(
            judged[0].detail.as_deref(),
            Some("smallest segment `s3` holds 0.2% (2 of 1000 customers); at least 3.0% required")
        );
        let exact = judge(
            &[check(SegmentCheckKind::MinShare(0.03), Severity::Error)],
            &report(&[970, 30]),
            &SincePrevious::default(),
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
            &SincePrevious::default(),
        );
        let statuses: Vec<&str> = judged.iter().map(|check| check.status.as_str()).collect();
        assert_eq!(statuses, ["warn", "pass"]);
    }

    fn since(previous_sizes: &[u64]) -> SincePrevious {
        SincePrevious {
            run_id: Some("2011-12-09".into()),
            moved: Some((800, 120)),
            shifts: vec![("s0".into(), 0, 0.12), ("s1".into(), 1, 0.51)],
            previous_sizes: Some((0..).zip(previous_sizes.iter().copied()).collect()),
        }
    }

    #[test]
    fn stability_checks_compare_with_the_previous_run() {
        let checks = [
            check(SegmentCheckKind::MaxMovedShare(0.2), Severity::Error),
            check(SegmentCheckKind::MaxMovedShare(0.1), Severity::Warn),
            check(SegmentCheckKind::MaxCentroidShift(0.5), Severity::Error),
            check(SegmentCheckKind::MaxSizePsi(0.1), Severity::Error),
        ];
        let judged = judge(&checks, &report(&[700, 300]), &since(&[700, 300]));
        let statuses: Vec<&str> = judged.iter().map(|check| check.status.as_str()).collect();
        assert_eq!(statuses, ["pass", "warn", "fail", "pass"]);
        assert_eq!(
            judged[0].detail.as_deref(),
            Some(
                "15.0% (120 of 800) of the customers also in run 2011-12-09 changed segment; at most 20.0% allowed"
            )
        );
        assert_eq!(
            judged[2].detail.as_deref(),
            Some(
                "segment `s1` (id 1) moved furthest from its centroid in run 2011-12-09: 0.510 in model units; at most 0.5 allowed"
            )
        );
        assert!(judged[3].detail.as_deref().unwrap().contains(": 0.0000;"));
    }

    #[test]
    fn size_psi_is_the_textbook_index_and_counts_segments_gone() {
        // Shares 0.5/0.5 -> 0.7/0.3: 0.2 ln(0.7/0.5) + (-0.2) ln(0.3/0.5) = 0.16946.
        let psi = size_psi(&report(&[700, 300]), &[(0, 500), (1, 500)].into());
        assert!((psi - 0.169_46).abs() < 1e-5, "{psi}");
        // A previous segment with no customers now weighs by the floor share.
        let gone = size_psi(&report(&[500, 500]), &[(0, 400), (1, 400), (2, 200)].into());
        let expected =
            2.0 * (0.1 * (0.5f64 / 0.4).ln()) + (PSI_FLOOR - 0.2) * (PSI_FLOOR / 0.2).ln();
        assert!((gone - expected).abs() < 1e-9, "{gone} vs {expected}");
    }

    #[test]
    fn without_a_previous_run_stability_checks_pass_and_say_so() {
        let judged = judge(
            &[check(SegmentCheckKind::MaxSizePsi(0.1), Severity::Error)],
            &report(&[700, 300]),
            &SincePrevious::default(),
        );
        assert_eq!(judged[0].status, "pass");
        assert_eq!(
            judged[0].detail.as_deref(),
            Some("no baseline: no earlier published run to compare with")
        );
    }
}
