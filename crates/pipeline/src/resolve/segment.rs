//! The segment stage: input, key, features with their transforms and roles, k (or a range),
//! scaler, warm start, names and output.

use std::collections::{BTreeMap, HashSet};

use super::{Resolver, any_of};
use crate::raw::{RawFeature, RawK, RawLiteral, RawSegment, RawSegmentCheck, RawWarmStart};
use crate::{
    FeatureTransform, KMetric, KSelection, Location, OutputFormat, Role, ScalerKind, Segment,
    SegmentCheck, SegmentCheckKind, Severity, Store, WarmStart,
};

impl Resolver {
    /// The segment stage and the run's output folder (`segment.output`); `None` when a
    /// problem was reported.
    pub(super) fn resolve_segment(
        &mut self,
        raw: RawSegment,
        stores: &[Store],
    ) -> Option<(Segment, Location)> {
        let problems_before = self.problems.len();
        let (features, transforms) = self.resolve_features(&raw.features);
        let mut units = BTreeMap::new();
        for (index, feature) in raw.features.iter().enumerate() {
            if let crate::raw::RawFeature::Detailed(detailed) = feature
                && let Some(unit) = &detailed.unit
            {
                if unit.trim().is_empty() {
                    self.problem(
                        format!("segment.features[{index}].unit"),
                        "name the unit (`days`, `GBP`), or leave `unit` out",
                    );
                }
                units.insert(detailed.name.clone(), unit.clone());
            }
        }
        let scaler = match raw
            .scaler
            .as_deref()
            .map(|text| (text, ScalerKind::parse(text)))
        {
            None => ScalerKind::Standard,
            Some((_, Some(kind))) => kind,
            Some((other, None)) => {
                self.problem(
                    "segment.scaler",
                    format!(
                        "unknown scaler `{other}`; expected {}",
                        any_of(ScalerKind::ALL.map(ScalerKind::as_str))
                    ),
                );
                ScalerKind::Standard
            }
        };
        let raw_features = &features;
        if raw.features.is_empty() {
            self.problem("segment.features", "list at least one feature column");
        }
        let mut seen = HashSet::new();
        for (index, feature) in raw_features.iter().enumerate() {
            if !seen.insert(feature) {
                self.problem(
                    format!("segment.features[{index}]"),
                    format!("feature `{feature}` is listed twice"),
                );
            }
            if *feature == raw.key {
                self.problem(
                    format!("segment.features[{index}]"),
                    format!("`{feature}` is the key column; it cannot also be a feature"),
                );
            }
        }
        for (index, column) in raw.carry.iter().enumerate() {
            if *column == raw.key || raw_features.contains(column) {
                self.problem(
                    format!("segment.carry[{index}]"),
                    format!("`{column}` is already in the output as the key or a feature"),
                );
            }
        }
        let (k, k_selection) = self.resolve_k(&raw.k);
        // What kind of warm start is declared, even one with a mistake reported below, so
        // the checks that need one do not report its absence as well.
        let declared_warm_start = raw
            .model
            .as_ref()
            .or(raw.warm_start.as_ref())
            .map(|warm| matches!(warm, RawWarmStart::Model(_)));
        let fixed_model = raw.model.is_some();
        if fixed_model && raw.warm_start.is_some() {
            self.problem(
                "segment.model",
                "give either `model` (assign with an earlier model as it is) or `warm_start` (fit again, starting from it), not both",
            );
        }
        let warm_start = match (raw.model, raw.warm_start) {
            (Some(model), _) => self.earlier_model("segment.model", model, stores),
            (None, Some(warm)) => self.earlier_model("segment.warm_start", warm, stores),
            (None, None) => None,
        };
        let quarantine_invalid = match raw.on_invalid_features.as_deref() {
            None | Some("fail") => false,
            Some("quarantine") => true,
            Some(other) => {
                self.problem(
                    "segment.on_invalid_features",
                    format!("expected `fail` or `quarantine`, got `{other}`"),
                );
                false
            }
        };
        if let Some(size) = raw.fit_sample
            && size < k as i64
        {
            self.problem(
                "segment.fit_sample",
                format!("a sample of {size} customers cannot form k = {k} segments"),
            );
        }
        if warm_start.is_some() && k_selection.is_some() {
            let (key, message) = if fixed_model {
                (
                    "segment.model",
                    "the model's segments are the segments: k cannot be chosen from a range; set k to the model's number of segments",
                )
            } else {
                (
                    "segment.warm_start",
                    "a warm start keeps the previous segments' meaning, which needs a fixed k: choose k first, then warm-start",
                )
            };
            self.problem(key, message);
        }
        for id in raw.names.keys() {
            if k_selection.is_some() {
                self.problem(
                    format!("segment.names.{id}"),
                    "with k chosen from a range, segment ids are not known in advance: name segments by roles, or fix k",
                );
            } else if *id as usize >= k {
                self.problem(
                    format!("segment.names.{id}"),
                    format!(
                        "there is no segment {id}: ids go from 0 to k - 1 = {}",
                        k - 1
                    ),
                );
            }
        }
        for (name, action) in &raw.actions {
            if name.trim().is_empty() {
                self.problem("segment.actions", "a segment name cannot be empty");
            } else if action.trim().is_empty() {
                self.problem(
                    format!("segment.actions.{name}"),
                    "say what to do with the segment, or leave the name out for segflow's default",
                );
            }
        }
        let restarts = raw.restarts.unwrap_or(1);
        if restarts < 1 {
            self.problem("segment.restarts", "restarts must be at least 1");
        }
        let max_iterations = raw.max_iterations.unwrap_or(300);
        if max_iterations < 1 {
            self.problem(
                "segment.max_iterations",
                "max_iterations must be at least 1",
            );
        }
        let tolerance = raw.tolerance.unwrap_or(1e-4);
        if !(tolerance > 0.0 && tolerance.is_finite()) {
            self.problem("segment.tolerance", "tolerance must be a positive number");
        }
        let checks = self.segment_checks(raw.checks, declared_warm_start);
        let contract = raw.contract.and_then(|contract| {
            self.contract("segment.contract", contract, super::ContractOf::Segments)
        });
        let output = self.output_location("segment.output", raw.output, stores);
        if self.problems.len() > problems_before {
            return None;
        }
        let segment = Segment {
            input: raw.input,
            contract,
            key: raw.key,
            features,
            transforms,
            scaler,
            names: raw.names,
            actions: raw.actions,
            units,
            carry: raw.carry,
            k,
            k_selection,
            warm_start,
            fixed_model,
            quarantine_invalid,
            fit_sample: raw.fit_sample.map(|size| size.max(0) as usize),
            seed: raw.seed.unwrap_or(0),
            restarts: restarts as usize,
            max_iterations: max_iterations as usize,
            tolerance,
            checks,
        };
        Some((segment, output?))
    }

    /// An earlier model named at `key`: `previous`, `{run: ID}` or `{model: {store, path}}`.
    fn earlier_model(
        &mut self,
        key: &str,
        raw: RawWarmStart,
        stores: &[Store],
    ) -> Option<WarmStart> {
        match raw {
            RawWarmStart::Previous(word) if word == "previous" => Some(WarmStart::Previous),
            RawWarmStart::Previous(other) => {
                self.problem(
                    key,
                    format!("expected `previous`, `{{run: ID}}` or `{{model: {{store, path}}}}`, got `{other}`"),
                );
                None
            }
            RawWarmStart::Run(run) => {
                let id = self.expand(&format!("{key}.run"), &run.run)?;
                match crate::check_run_id(&id) {
                    Ok(()) => Some(WarmStart::Run(id)),
                    Err(message) => {
                        self.problem(format!("{key}.run"), message);
                        None
                    }
                }
            }
            RawWarmStart::Model(model) => self
                .location(
                    &format!("{key}.model"),
                    &model.model.store,
                    &model.model.path,
                    stores,
                )
                .map(WarmStart::Model),
        }
    }

    fn segment_checks(
        &mut self,
        raw: Vec<RawSegmentCheck>,
        // `Some(true)`: a warm start from a model file.
        warm_start: Option<bool>,
    ) -> Vec<SegmentCheck> {
        let mut checks: Vec<SegmentCheck> = Vec::new();
        for (index, raw) in raw.into_iter().enumerate() {
            let key = format!("segment.checks[{index}]");
            let check_type = raw.check_type.as_str();
            if !SegmentCheckKind::WORDS.contains(&check_type) {
                self.problem(
                    format!("{key}.type"),
                    format!(
                        "unknown segment check `{check_type}`{}; types: {}",
                        crate::did_you_mean(check_type, &SegmentCheckKind::WORDS),
                        SegmentCheckKind::WORDS.join(", ")
                    ),
                );
                continue;
            }
            let is_share = matches!(check_type, "min_share" | "max_share" | "max_moved_share");
            let value = match (&raw.value, is_share) {
                (RawLiteral::Integer(value), _) => Some(*value as f64),
                (RawLiteral::Float(value), _) => Some(*value),
                (RawLiteral::Text(text), true) => text
                    .trim()
                    .strip_suffix('%')
                    .and_then(|percent| percent.trim().parse::<f64>().ok())
                    .map(|percent| percent / 100.0),
                _ => None,
            };
            let value = match value {
                Some(share) if is_share && (0.0..=1.0).contains(&share) => share,
                Some(number) if !is_share && number.is_finite() && number >= 0.0 => number,
                _ if is_share => {
                    self.problem(
                        format!("{key}.value"),
                        "expected a share from 0 to 1 (`0.03`) or a percentage (`\"3%\"`)",
                    );
                    continue;
                }
                _ => {
                    self.problem(
                        format!("{key}.value"),
                        format!("expected a number at least 0 for `{check_type}`"),
                    );
                    continue;
                }
            };
            let kind = match check_type {
                "min_share" => SegmentCheckKind::MinShare(value),
                "max_share" => SegmentCheckKind::MaxShare(value),
                "max_moved_share" => SegmentCheckKind::MaxMovedShare(value),
                "max_centroid_shift" => SegmentCheckKind::MaxCentroidShift(value),
                _ => SegmentCheckKind::MaxSizePsi(value),
            };
            // Segment ids, and so "the same segment" across runs, are kept only by a warm
            // start; moved customers need the earlier run's segments, which a model file lacks.
            match (kind, warm_start) {
                (kind, None) if kind.needs_previous() => {
                    self.problem(
                        format!("{key}.type"),
                        format!(
                            "`{check_type}` compares each segment with the same segment of the previous run, and only `segment.warm_start` keeps segment ids across runs: add `warm_start: previous`"
                        ),
                    );
                    continue;
                }
                (SegmentCheckKind::MaxMovedShare(_), Some(true)) => {
                    self.problem(
                        format!("{key}.type"),
                        "`max_moved_share` counts customers against the previous run's segments, which a model file does not hold: warm start from `previous` or `{run: ID}`",
                    );
                    continue;
                }
                _ => {}
            }
            let severity = match raw.severity.as_deref().unwrap_or("error") {
                "error" => Severity::Error,
                "warn" => Severity::Warn,
                other => {
                    self.problem(
                        format!("{key}.severity"),
                        format!("a segment check is `error` or `warn`, got `{other}`"),
                    );
                    continue;
                }
            };
            let name = raw.name.unwrap_or_else(|| kind.as_str().to_string());
            if checks.iter().any(|check| check.name == name) {
                self.problem(
                    format!("{key}.name"),
                    format!("another segment check is named `{name}`; give this one a `name`"),
                );
                continue;
            }
            checks.push(SegmentCheck {
                name,
                kind,
                severity,
            });
        }
        checks
    }

    /// The k to fit, or the largest of a range with how to choose within it.
    pub(super) fn resolve_k(&mut self, raw: &RawK) -> (usize, Option<KSelection>) {
        match raw {
            RawK::Fixed(k) => {
                if *k < 2 {
                    self.problem("segment.k", format!("k must be at least 2, got {k}"));
                }
                ((*k).max(2) as usize, None)
            }
            RawK::Range(range) => {
                if range.min < 2 || range.max <= range.min {
                    self.problem(
                        "segment.k",
                        format!(
                            "a range needs 2 <= min < max, got min {} and max {}",
                            range.min, range.max
                        ),
                    );
                }
                let metric = match range
                    .select_by
                    .as_deref()
                    .map(|text| (text, KMetric::parse(text)))
                {
                    None => KMetric::Silhouette,
                    Some((_, Some(metric))) => metric,
                    Some((other, None)) => {
                        self.problem(
                            "segment.k.select_by",
                            format!(
                                "unknown metric `{other}`; expected {}",
                                any_of(KMetric::ALL.map(KMetric::as_str))
                            ),
                        );
                        KMetric::Silhouette
                    }
                };
                let sample = range.sample.unwrap_or(5000);
                if sample < 2 {
                    self.problem("segment.k.sample", "the sample needs at least 2 customers");
                }
                (
                    range.max.max(2) as usize,
                    Some(KSelection {
                        min: range.min.max(2) as usize,
                        metric,
                        sample: sample.max(2) as usize,
                    }),
                )
            }
        }
    }

    /// Feature names, and each feature's transforms and role in the same order.
    pub(super) fn resolve_features(
        &mut self,
        raw: &[RawFeature],
    ) -> (Vec<String>, Vec<FeatureTransform>) {
        let mut names = Vec::new();
        let mut transforms = Vec::new();
        for (index, feature) in raw.iter().enumerate() {
            let key = format!("segment.features[{index}]");
            let detailed = match feature {
                RawFeature::Name(name) => {
                    names.push(name.clone());
                    transforms.push(FeatureTransform::default());
                    continue;
                }
                RawFeature::Detailed(detailed) => detailed,
            };
            let log1p = match detailed.transform.as_deref() {
                None | Some("none") => false,
                Some("log1p") => true,
                Some(other) => {
                    self.problem(
                        format!("{key}.transform"),
                        format!("unknown transform `{other}`; expected log1p or none"),
                    );
                    false
                }
            };
            let winsorize = match detailed.winsorize.as_deref() {
                None => None,
                Some([low, high]) if 0.0 <= *low && low < high && *high <= 1.0 => {
                    Some((*low, *high))
                }
                Some(_) => {
                    self.problem(
                        format!("{key}.winsorize"),
                        "give two percentiles `[low, high]` with 0 <= low < high <= 1, e.g. [0.01, 0.99]",
                    );
                    None
                }
            };
            let role = match detailed
                .role
                .as_deref()
                .map(|text| (text, Role::parse(text)))
            {
                None => None,
                Some((_, Some(role))) => Some(role),
                Some((other, None)) => {
                    self.problem(
                        format!("{key}.role"),
                        format!(
                            "unknown role `{other}`; expected {}",
                            any_of(Role::ALL.map(Role::as_str))
                        ),
                    );
                    None
                }
            };
            if let Some(role) = role
                && transforms
                    .iter()
                    .any(|t: &FeatureTransform| t.role == Some(role))
            {
                self.problem(
                    format!("{key}.role"),
                    format!("another feature already has the role `{}`", role.as_str()),
                );
            }
            names.push(detailed.name.clone());
            transforms.push(FeatureTransform {
                log1p,
                winsorize,
                role,
            });
        }
        (names, transforms)
    }

    /// The run's output folder, written at `at` (`segment.output` or `value.output`).
    pub(super) fn output_location(
        &mut self,
        at: &str,
        raw: crate::raw::RawOutput,
        stores: &[Store],
    ) -> Option<Location> {
        self.output_format = match raw.format.as_deref() {
            None | Some("parquet") => OutputFormat::Parquet,
            Some("delta") => OutputFormat::Delta,
            Some(other) => {
                self.problem(
                    format!("{at}.format"),
                    format!("expected `parquet` or `delta`, got `{other}`"),
                );
                OutputFormat::Parquet
            }
        };
        let mut location = self.location(at, &raw.store, &raw.path, stores)?;
        if location.url.path().contains(['*', '?', '[']) {
            self.problem(
                format!("{at}.path"),
                "an output location is a folder, not a glob",
            );
            return None;
        }
        // Outputs are folders: a trailing slash makes `Url::join` append rather than replace.
        if !location.url.path().ends_with('/') {
            let path = format!("{}/", location.url.path());
            location.url.set_path(&path);
        }
        Some(location)
    }
}
