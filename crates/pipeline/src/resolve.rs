//! Raw pipeline -> [`Pipeline`]: every rule checked, every problem collected.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Component, Path, PathBuf};

use url::Url;

use crate::checks::Validate;
use crate::raw::{
    RawColumn, RawCsvOptions, RawFeature, RawK, RawLocation, RawPipeline, RawResources, RawSegment,
    RawSource, RawWarmStart,
};
use crate::vars::expand;
use crate::{
    Column, ColumnType, CsvOptions, FeatureTransform, Format, KMetric, KSelection, Location,
    OnError, Pipeline, PipelineError, Problem, Resources, Result, Role, ScalerKind, Segment,
    Source, Step, StepKind, Store, WarmStart,
};

const SUPPORTED_SCHEMES: &[&str] = &["file", "s3", "gs", "az", "abfs", "http", "https"];

/// Checks `raw` and builds the pipeline; `file` locates relative paths and names errors.
pub fn resolve(
    raw: RawPipeline,
    file: &Path,
    overrides: &BTreeMap<String, String>,
) -> Result<Pipeline> {
    let base_dir = file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let mut resolver = Resolver {
        base_dir,
        problems: Vec::new(),
        vars: BTreeMap::new(),
        secret_vars: BTreeSet::new(),
        declared_stores: Vec::new(),
        secrets: BTreeSet::new(),
    };

    check_identifier(&mut resolver.problems, "name", "pipeline name", &raw.name);
    resolver.vars = resolver.resolve_vars(raw.vars, overrides);
    let declared_stores: Vec<String> = raw.stores.keys().cloned().collect();
    resolver.declared_stores = declared_stores;
    let stores = resolver.resolve_stores(raw.stores);
    let sources = resolver.resolve_sources(raw.sources, &stores);
    let steps = resolver.resolve_steps(raw.steps);
    resolver.check_unique_table_names(&sources, &steps);
    let segment = resolver.resolve_segment(raw.segment, &stores);
    let run_id = raw.run_id.and_then(|id| {
        let id = resolver.expand("run_id", &id)?;
        match crate::check_run_id(&id) {
            Ok(()) => Some(id),
            Err(message) => {
                resolver.problem("run_id", message);
                None
            }
        }
    });

    let resources = resolver.resolve_resources(raw.resources.unwrap_or_default());
    let engine = raw.engine.and_then(|text| {
        let text = resolver.expand("engine", &text)?;
        crate::Engine::parse(&text)
            .map_err(|message| resolver.problem("engine", message))
            .ok()
    });

    if !resolver.problems.is_empty() {
        return Err(PipelineError::Invalid {
            file: file.to_path_buf(),
            problems: resolver.problems,
        });
    }
    Ok(Pipeline {
        name: raw.name,
        file: file.to_path_buf(),
        content_hash: String::new(),
        run_id,
        vars: resolver.vars,
        secret_vars: resolver.secret_vars,
        secrets: resolver.secrets.into_iter().collect(),
        stores,
        sources,
        steps,
        segment: segment.expect("a segment without problems resolves"),
        resources,
        engine,
        locations: crate::KeyIndex::default(),
    })
}

pub(crate) struct Resolver {
    base_dir: PathBuf,
    pub(crate) problems: Vec<Problem>,
    pub(crate) vars: BTreeMap<String, String>,
    secret_vars: BTreeSet<String>,
    /// Every store name written, including those whose URL is broken (already reported).
    declared_stores: Vec<String>,
    /// Values read from the environment.
    secrets: BTreeSet<String>,
}

impl Resolver {
    pub(crate) fn problem(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem::new(key, message));
    }

    /// Substitutes variables, recording a problem (and returning None) when one is unknown.
    pub(crate) fn expand(&mut self, key: &str, text: &str) -> Option<String> {
        match expand(text, &self.vars, &mut self.secrets) {
            Ok(expanded) => Some(expanded),
            Err(message) => {
                self.problem(key, message);
                None
            }
        }
    }

    fn resolve_resources(&mut self, raw: RawResources) -> Resources {
        let memory_limit = raw.memory_limit.and_then(|text| {
            let text = self.expand("resources.memory_limit", &text)?;
            crate::parse_size(&text)
                .map_err(|message| self.problem("resources.memory_limit", message))
                .ok()
        });
        let spill_dir = raw.spill_dir.and_then(|text| {
            let text = self.expand("resources.spill_dir", &text)?;
            Some(normalize(&self.base_dir.join(text)))
        });
        Resources {
            memory_limit,
            spill_dir,
        }
    }

    fn resolve_vars(
        &mut self,
        defaults: BTreeMap<String, String>,
        overrides: &BTreeMap<String, String>,
    ) -> BTreeMap<String, String> {
        for name in defaults.keys() {
            check_identifier(
                &mut self.problems,
                &format!("vars.{name}"),
                "variable name",
                name,
            );
        }
        let mut values = BTreeMap::new();
        for (name, value) in &defaults {
            let value = overrides.get(name).unwrap_or(value);
            if value.contains("${env:") {
                self.secret_vars.insert(name.clone());
            }
            // A default may read the environment; it may not refer to other variables.
            match expand(value, &BTreeMap::new(), &mut self.secrets) {
                Ok(value) => {
                    values.insert(name.clone(), value);
                }
                Err(message) => self.problem(format!("vars.{name}"), message),
            }
        }
        for name in overrides.keys() {
            if !defaults.contains_key(name) {
                let declared: Vec<&str> = defaults.keys().map(String::as_str).collect();
                self.problem(
                    "vars",
                    format!(
                        "--var {name}=... sets a variable the pipeline does not declare (declared: {})",
                        if declared.is_empty() {
                            "none".to_string()
                        } else {
                            declared.join(", ")
                        }
                    ),
                );
            }
        }
        values
    }

    fn resolve_stores(&mut self, raw: BTreeMap<String, crate::raw::RawStore>) -> Vec<Store> {
        if raw.is_empty() {
            self.problem("stores", "declare at least one store");
        }
        let mut stores = Vec::new();
        for (name, store) in raw {
            let key = format!("stores.{name}");
            check_identifier(&mut self.problems, &key, "store name", &name);
            let Some(url_text) = self.expand(&format!("{key}.url"), &store.url) else {
                continue;
            };
            let mut options = BTreeMap::new();
            for (option, value) in store.options {
                if is_credential(&option) && !value.trim().starts_with("${env:") {
                    self.problem(
                        format!("{key}.options.{option}"),
                        format!(
                            "credentials do not belong in a pipeline file; write `{option}: \"${{env:NAME}}\"` and set NAME in the environment (or use the store's standard variables, e.g. AWS_SECRET_ACCESS_KEY)"
                        ),
                    );
                    continue;
                }
                if let Some(value) = self.expand(&format!("{key}.options.{option}"), &value) {
                    options.insert(option, value);
                }
            }
            match store_url(&self.base_dir, &url_text) {
                Ok(url) => stores.push(Store { name, url, options }),
                Err(message) => self.problem(format!("{key}.url"), message),
            }
        }
        stores
    }

    fn location(
        &mut self,
        key: &str,
        store_name: &str,
        path: &str,
        stores: &[Store],
    ) -> Option<Location> {
        let path = self.expand(&format!("{key}.path"), path)?;
        let Some(store) = stores.iter().find(|store| store.name == store_name) else {
            if self.declared_stores.iter().any(|name| name == store_name) {
                return None;
            }
            let names: Vec<&str> = stores.iter().map(|store| store.name.as_str()).collect();
            self.problem(
                format!("{key}.store"),
                format!(
                    "unknown store `{store_name}`{}",
                    did_you_mean(store_name, &names)
                ),
            );
            return None;
        };
        if path.starts_with('/') {
            self.problem(
                format!("{key}.path"),
                "a path is relative to its store: remove the leading `/`",
            );
            return None;
        }
        if path.split('/').any(|part| part == "..") {
            self.problem(
                format!("{key}.path"),
                "a path must stay under its store: `..` is not allowed",
            );
            return None;
        }
        match store.url.join(&path) {
            Ok(url) => Some(Location {
                store: store.name.clone(),
                url,
            }),
            Err(error) => {
                self.problem(format!("{key}.path"), format!("not a valid path: {error}"));
                None
            }
        }
    }

    fn resolve_sources(&mut self, raw: Vec<RawSource>, stores: &[Store]) -> Vec<Source> {
        if raw.is_empty() {
            self.problem("sources", "declare at least one source");
        }
        let mut sources = Vec::new();
        for (index, source) in raw.into_iter().enumerate() {
            let key = format!("sources[{index}]");
            check_identifier(
                &mut self.problems,
                &format!("{key}.name"),
                "source name",
                &source.name,
            );
            let format = Format::parse(&source.format);
            if format.is_none() {
                self.problem(
                    format!("{key}.format"),
                    format!(
                        "unknown format `{}`: use csv, ndjson or parquet",
                        source.format
                    ),
                );
            }
            if source.csv.is_some() && format != Some(Format::Csv) {
                self.problem(
                    format!("{key}.csv"),
                    "csv options apply only to `format: csv`",
                );
            }
            let csv = self.csv_options(&key, source.csv);
            let schema = source
                .schema
                .map(|columns| self.schema(&format!("{key}.schema"), columns));
            let on_error = match source.on_error.as_deref() {
                None | Some("fail") => OnError::Fail,
                Some("quarantine") => OnError::Quarantine,
                Some(other) => {
                    self.problem(
                        format!("{key}.on_error"),
                        format!("unknown value `{other}`: use fail or quarantine"),
                    );
                    OnError::Fail
                }
            };
            if on_error == OnError::Quarantine {
                if format.is_some_and(|format| format != Format::Csv) {
                    self.problem(
                        format!("{key}.on_error"),
                        "`on_error: quarantine` applies to csv sources (ndjson and parquet rows are typed by their writer)",
                    );
                }
                if schema.is_none() {
                    self.problem(
                        format!("{key}.on_error"),
                        "`on_error: quarantine` needs a `schema`: rows are checked against the declared columns and types",
                    );
                }
            }
            let location = self.location(&key, &source.store, &source.path, stores);
            if let (Some(location), Some(format)) = (location, format) {
                let extension = source
                    .extension
                    .unwrap_or_else(|| default_extension(&location.url, format));
                sources.push(Source {
                    name: source.name,
                    location,
                    format,
                    csv,
                    schema,
                    extension,
                    on_error,
                });
            }
        }
        sources
    }

    fn csv_options(&mut self, key: &str, raw: Option<RawCsvOptions>) -> CsvOptions {
        let mut options = CsvOptions::default();
        let Some(raw) = raw else {
            return options;
        };
        if let Some(has_header) = raw.has_header {
            options.has_header = has_header;
        }
        for (name, value, target) in [
            ("delimiter", raw.delimiter, &mut options.delimiter),
            ("quote", raw.quote, &mut options.quote),
        ] {
            let Some(value) = value else { continue };
            match value.as_bytes() {
                [byte] => *target = *byte,
                _ => self.problems.push(Problem::new(
                    format!("{key}.csv.{name}"),
                    format!("must be exactly one ASCII character, got `{value}`"),
                )),
            }
        }
        options.null_value = raw.null_value;
        options
    }

    pub(crate) fn schema(&mut self, key: &str, columns: Vec<RawColumn>) -> Vec<Column> {
        if columns.is_empty() {
            self.problem(key, "an explicit schema needs at least one column");
        }
        let mut seen = HashSet::new();
        let mut resolved = Vec::new();
        for (index, column) in columns.into_iter().enumerate() {
            let column_key = format!("{key}[{index}]");
            if !seen.insert(column.name.clone()) {
                self.problem(
                    format!("{column_key}.name"),
                    format!("column `{}` is declared twice", column.name),
                );
            }
            match ColumnType::parse(&column.data_type) {
                Some(data_type) => resolved.push(Column {
                    name: column.name,
                    data_type,
                    nullable: column.nullable.unwrap_or(true),
                }),
                None => {
                    let names: Vec<&str> =
                        ColumnType::NAMES.iter().map(|(name, _)| *name).collect();
                    self.problem(
                        format!("{column_key}.type"),
                        format!(
                            "unknown type `{}`{}; types: {}",
                            column.data_type,
                            did_you_mean(&column.data_type, &names),
                            names.join(", ")
                        ),
                    );
                }
            }
        }
        resolved
    }

    fn resolve_steps(&mut self, raw: Vec<crate::raw::RawStep>) -> Vec<Step> {
        let mut steps = Vec::new();
        for (index, step) in raw.into_iter().enumerate() {
            let key = format!("steps[{index}]");
            check_identifier(
                &mut self.problems,
                &format!("{key}.name"),
                "step name",
                &step.name,
            );
            let kind = StepKind::parse(&step.kind);
            if kind.is_none() {
                self.problem(
                    format!("{key}.kind"),
                    format!(
                        "unknown step kind `{}`: use clean, validate or merge",
                        step.kind
                    ),
                );
            }
            if kind == Some(StepKind::Validate) {
                if let Some(validate) = self.resolve_validate(&key, &step) {
                    steps.push(Step {
                        name: step.name,
                        kind: StepKind::Validate,
                        sql: String::new(),
                        sql_file: None,
                        validate: Some(validate),
                        key,
                    });
                }
                continue;
            }
            for (given, name) in [
                (step.input.is_some(), "input"),
                (!step.checks.is_empty(), "checks"),
                (!step.sample_key.is_empty(), "sample_key"),
            ] {
                if given {
                    self.problem(
                        format!("{key}.{name}"),
                        format!(
                            "`{name}` belongs to validate steps; this step is `{}`",
                            step.kind
                        ),
                    );
                }
            }
            let (sql, sql_file) = match (step.sql, step.sql_file) {
                (Some(sql), None) => (Some(sql), None),
                (None, Some(file)) => {
                    let path = normalize(&self.base_dir.join(&file));
                    match std::fs::read_to_string(&path) {
                        Ok(sql) => (Some(sql), Some(path)),
                        Err(error) => {
                            self.problem(
                                format!("{key}.sql_file"),
                                format!(
                                    "cannot read SQL file {} ({error}); the path is relative to the pipeline file",
                                    path.display()
                                ),
                            );
                            (None, None)
                        }
                    }
                }
                (Some(_), Some(_)) => {
                    self.problem(&key, "give either `sql` or `sql_file`, not both");
                    (None, None)
                }
                (None, None) => {
                    self.problem(&key, "a step needs its SQL: `sql` inline or `sql_file`");
                    (None, None)
                }
            };
            let sql_key = if sql_file.is_some() {
                format!("{key}.sql_file")
            } else {
                format!("{key}.sql")
            };
            let sql = sql.and_then(|sql| self.expand(&sql_key, &sql));
            if let (Some(kind), Some(sql)) = (kind, sql) {
                if sql.trim().is_empty() {
                    self.problem(sql_key, "the step's SQL is empty");
                    continue;
                }
                steps.push(Step {
                    name: step.name,
                    kind,
                    sql,
                    sql_file,
                    validate: None,
                    key,
                });
            }
        }
        steps
    }

    fn resolve_validate(&mut self, key: &str, step: &crate::raw::RawStep) -> Option<Validate> {
        if step.sql.is_some() || step.sql_file.is_some() {
            self.problem(
                key,
                "a validate step declares `input` and `checks`, not SQL (use a `sql` check for a custom query)",
            );
        }
        let Some(input) = step.input.clone() else {
            self.problem(key, "a validate step needs `input`, the table it checks");
            return None;
        };
        if step.checks.is_empty() {
            self.problem(
                key,
                "a validate step needs at least one check under `checks`",
            );
            return None;
        }
        let checks = self.resolve_checks(key, step.checks.clone());
        Some(Validate {
            input,
            sample_key: step.sample_key.clone(),
            checks,
        })
    }

    fn check_unique_table_names(&mut self, sources: &[Source], steps: &[Step]) {
        let mut seen: BTreeMap<&str, String> = BTreeMap::new();
        let tables = sources
            .iter()
            .enumerate()
            .map(|(index, source)| (source.name.as_str(), format!("sources[{index}]")))
            .chain(
                steps
                    .iter()
                    .map(|step| (step.name.as_str(), step.key.clone())),
            );
        for (name, key) in tables {
            if let Some(first) = seen.get(name) {
                let message = format!(
                    "table name `{name}` is already used by {first}; sources and steps share one namespace"
                );
                self.problem(format!("{key}.name"), message);
            } else {
                seen.insert(name, key);
            }
        }
    }

    fn resolve_segment(&mut self, raw: RawSegment, stores: &[Store]) -> Option<Segment> {
        let problems_before = self.problems.len();
        let (features, transforms) = self.resolve_features(&raw.features);
        let scaler = match raw.scaler.as_deref() {
            None | Some("standard") => ScalerKind::Standard,
            Some("robust") => ScalerKind::Robust,
            Some("minmax") => ScalerKind::MinMax,
            Some(other) => {
                self.problem(
                    "segment.scaler",
                    format!("unknown scaler `{other}`; expected standard, robust or minmax"),
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
        let warm_start = match raw.warm_start {
            None => None,
            Some(RawWarmStart::Previous(word)) if word == "previous" => Some(WarmStart::Previous),
            Some(RawWarmStart::Previous(other)) => {
                self.problem(
                    "segment.warm_start",
                    format!("expected `previous`, `{{run: ID}}` or `{{model: {{store, path}}}}`, got `{other}`"),
                );
                None
            }
            Some(RawWarmStart::Run(run)) => match self.expand("segment.warm_start.run", &run.run) {
                Some(id) => match crate::check_run_id(&id) {
                    Ok(()) => Some(WarmStart::Run(id)),
                    Err(message) => {
                        self.problem("segment.warm_start.run", message);
                        None
                    }
                },
                None => None,
            },
            Some(RawWarmStart::Model(model)) => self
                .location(
                    "segment.warm_start.model",
                    &model.model.store,
                    &model.model.path,
                    stores,
                )
                .map(WarmStart::Model),
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
            self.problem(
                "segment.warm_start",
                "a warm start keeps the previous segments' meaning, which needs a fixed k: choose k first, then warm-start",
            );
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
        let output = self.output_location(raw.output, stores);
        if self.problems.len() > problems_before {
            return None;
        }
        Some(Segment {
            input: raw.input,
            key: raw.key,
            features,
            transforms,
            scaler,
            names: raw.names,
            carry: raw.carry,
            k,
            k_selection,
            warm_start,
            quarantine_invalid,
            fit_sample: raw.fit_sample.map(|size| size.max(0) as usize),
            seed: raw.seed.unwrap_or(0),
            restarts: restarts as usize,
            max_iterations: max_iterations as usize,
            tolerance,
            output: output?,
        })
    }

    /// The k to fit, or the largest of a range with how to choose within it.
    fn resolve_k(&mut self, raw: &RawK) -> (usize, Option<KSelection>) {
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
                let metric = match range.select_by.as_deref() {
                    None | Some("silhouette") => KMetric::Silhouette,
                    Some("calinski_harabasz") => KMetric::CalinskiHarabasz,
                    Some("davies_bouldin") => KMetric::DaviesBouldin,
                    Some(other) => {
                        self.problem(
                            "segment.k.select_by",
                            format!("unknown metric `{other}`; expected silhouette, calinski_harabasz or davies_bouldin"),
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
    fn resolve_features(&mut self, raw: &[RawFeature]) -> (Vec<String>, Vec<FeatureTransform>) {
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
            let role = match detailed.role.as_deref() {
                None => None,
                Some("recency") => Some(Role::Recency),
                Some("frequency") => Some(Role::Frequency),
                Some("monetary") => Some(Role::Monetary),
                Some(other) => {
                    self.problem(
                        format!("{key}.role"),
                        format!("unknown role `{other}`; expected recency, frequency or monetary"),
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

    fn output_location(&mut self, raw: RawLocation, stores: &[Store]) -> Option<Location> {
        let mut location = self.location("segment.output", &raw.store, &raw.path, stores)?;
        if location.url.path().contains(['*', '?', '[']) {
            self.problem(
                "segment.output.path",
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

/// Table, store and variable names are lower-case identifiers so SQL can use them unquoted
/// (DataFusion folds unquoted identifiers to lower case).
pub(crate) fn check_identifier(problems: &mut Vec<Problem>, key: &str, what: &str, name: &str) {
    let mut chars = name.chars();
    let valid = matches!(chars.next(), Some('a'..='z' | '_'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'));
    if !valid {
        problems.push(Problem::new(
            key,
            format!(
                "{what} `{name}` must be lower-case letters, digits and `_`, starting with a letter or `_`"
            ),
        ));
    }
}

/// `file://` URLs are relative to the pipeline file unless absolute; other schemes are taken
/// as written. The result always ends in `/` so paths join under it.
fn store_url(base_dir: &Path, text: &str) -> Result<Url, String> {
    if let Some(path) = text.strip_prefix("file://") {
        let path = Path::new(path);
        let joined = if path.is_absolute() {
            path.to_path_buf()
        } else {
            base_dir.join(path)
        };
        let absolute = std::path::absolute(&joined)
            .map_err(|error| format!("cannot make {} absolute: {error}", joined.display()))?;
        return Url::from_directory_path(normalize(&absolute))
            .map_err(|()| format!("`{text}` is not a usable directory"));
    }
    let mut url = Url::parse(text).map_err(|error| {
        format!("`{text}` is not a URL ({error}); a store URL looks like s3://bucket/prefix or file://relative/path")
    })?;
    if !SUPPORTED_SCHEMES.contains(&url.scheme()) {
        return Err(format!(
            "unsupported scheme `{}://`; use one of {}",
            url.scheme(),
            SUPPORTED_SCHEMES
                .iter()
                .map(|scheme| format!("{scheme}://"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if url.host_str().unwrap_or_default().is_empty() {
        return Err(format!("`{text}` names no bucket or host"));
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

/// Removes `.` and `..` lexically: output folders need not exist yet, so no canonicalize.
/// A leading `..` of a relative path is kept.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// A single file is read whatever its ending; a folder or glob only yields files with the
/// format's usual extension.
fn default_extension(url: &Url, format: Format) -> String {
    let last = url.path().rsplit('/').next().unwrap_or_default();
    let is_file = !last.is_empty() && !last.contains(['*', '?', '[']) && last.contains('.');
    if is_file {
        let first_dot = last.find('.').unwrap_or(0);
        last[first_dot..].to_string()
    } else {
        format.default_extension().to_string()
    }
}

/// " (did you mean `x`?)" when one candidate is a near miss, else "". A near miss is at most
/// one edit (a swap of neighbours counts as one) per three characters, and never a
/// replacement of the whole name.
pub fn did_you_mean(name: &str, candidates: &[&str]) -> String {
    candidates
        .iter()
        .map(|candidate| (strsim::osa_distance(name, candidate), *candidate))
        .filter(|(distance, candidate)| {
            *distance <= 1.max(candidate.len() / 3) && *distance < name.len()
        })
        .min()
        .map(|(_, candidate)| format!(" (did you mean `{candidate}`?)"))
        .unwrap_or_default()
}

/// Store options that carry a secret (object_store's keys and their aliases).
fn is_credential(option: &str) -> bool {
    let option = option.to_ascii_lowercase();
    [
        "secret",
        "access_key",
        "token",
        "password",
        "account_key",
        "sas_key",
        "client_key",
    ]
    .iter()
    .any(|word| option.contains(word))
        || option == "service_account_key"
}
