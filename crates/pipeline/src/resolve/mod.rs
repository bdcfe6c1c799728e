//! Raw pipeline -> [`Pipeline`]: every rule checked, every problem collected.

mod checks;
mod segment;
mod sources;
mod value;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use url::Url;

pub(crate) use checks::CHECK_TYPES;

use crate::checks::Validate;
use crate::raw::{RawBuckets, RawOutput, RawPipeline, RawResources};
use crate::vars::expand;
use crate::{
    Contract, ContractColumn, ContractType, Location, OnDrift, OutputFormat, Pipeline,
    PipelineError, Problem, PublishedStep, Resources, Result, Source, Step, StepKind, Store,
};

/// Which table a contract is on: a step's result, or the published segments (which alone
/// has earlier runs to drift from).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ContractOf {
    Step,
    Segments,
}

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
        rendered: Vec::new(),
        output_format: OutputFormat::Parquet,
    };

    check_identifier(&mut resolver.problems, "name", "pipeline name", &raw.name);
    resolver.vars = resolver.resolve_vars(raw.vars, overrides);
    let declared_stores: Vec<String> = raw.stores.keys().cloned().collect();
    resolver.declared_stores = declared_stores;
    let stores = resolver.resolve_stores(raw.stores);
    let sources = resolver.resolve_sources(raw.sources, &stores);
    let steps = resolver.resolve_steps(raw.steps);
    resolver.check_unique_table_names(&sources, &steps);
    let partition_key = raw
        .partition_key
        .filter(|column| resolver.partition_key("partition_key", column));
    let buckets = raw
        .buckets
        .and_then(|written| resolver.resolve_buckets(written))
        .unwrap_or_default();
    let mut raw_value = raw.value;
    let value_output = raw_value.as_mut().and_then(|value| value.output.take());
    let value = raw_value.map(|value| resolver.resolve_value(value, raw.segment.as_ref()));
    let segment = raw
        .segment
        .map(|segment| resolver.resolve_segment(segment, &stores));
    let segment_output = segment
        .as_ref()
        .map(|segment| segment.as_ref().map(|(_, output)| output.clone()));
    let output = resolver.resolve_output(segment_output, value.is_some(), value_output, &stores);
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
        masks: crate::Masks::new(resolver.rendered),
        stores,
        sources,
        partition_key,
        buckets,
        steps,
        value: value.map(|value| value.expect("a value stage without problems resolves")),
        segment: segment.map(|segment| segment.expect("a segment without problems resolves").0),
        output: output.expect("an output without problems resolves"),
        output_format: resolver.output_format,
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
    /// Values rendered with a secret, and their shown forms.
    rendered: crate::vars::Rendered,
    /// The output's `format`, set where the output is resolved.
    output_format: OutputFormat,
}

impl Resolver {
    /// The run's output folder: `segment.output`, or `value.output` in a pipeline without a
    /// segment stage. `segment_output` is `None` without a segment stage, `Some(None)` when
    /// the segment stage had problems.
    fn resolve_output(
        &mut self,
        segment_output: Option<Option<Location>>,
        has_value: bool,
        value_output: Option<RawOutput>,
        stores: &[Store],
    ) -> Option<Location> {
        match (segment_output, value_output) {
            (Some(output), None) => output,
            (Some(output), Some(_)) => {
                self.problem(
                    "value.output",
                    "with a segment stage the run's outputs go to `segment.output`; remove `value.output`",
                );
                output
            }
            (None, Some(raw)) => self.output_location("value.output", raw, stores),
            (None, None) if has_value => {
                self.problem(
                    "value",
                    "without a segment stage, `value.output` says where the outputs go: add `output: {store: ..., path: ...}`",
                );
                None
            }
            (None, None) => {
                self.problem(
                    "segment",
                    "a pipeline has a `segment` stage, a `value` stage or both: add one",
                );
                None
            }
        }
    }

    pub(crate) fn problem(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem::new(key, message));
    }

    /// A URL resolved from text that used secrets is shown as written nowhere (a relative
    /// path becomes absolute): record the resolved form too, with the secrets recorded
    /// since `rendered_before` masked in it.
    fn mask_resolved(&mut self, rendered_before: usize, resolved: &str) {
        let secrets: Vec<String> = self.rendered[rendered_before..]
            .iter()
            .filter(|(_, shown)| shown == "***")
            .map(|(secret, _)| secret.clone())
            .collect();
        let shown = secrets.iter().fold(resolved.to_string(), |text, secret| {
            text.replace(secret, "***")
        });
        if shown != resolved {
            self.rendered.push((resolved.to_string(), shown));
        }
    }

    /// Substitutes variables, recording a problem (and returning None) when one is unknown.
    pub(crate) fn expand(&mut self, key: &str, text: &str) -> Option<String> {
        match expand(text, &self.vars, &self.secret_vars, &mut self.rendered) {
            Ok(expanded) => Some(expanded),
            Err(message) => {
                self.problem(key, message);
                None
            }
        }
    }

    fn resolve_buckets(&mut self, written: RawBuckets) -> Option<crate::Buckets> {
        let text = match written {
            RawBuckets::Count(count) => count.to_string(),
            RawBuckets::Word(text) => self.expand("buckets", &text)?,
        };
        crate::Buckets::parse(&text)
            .map_err(|message| self.problem("buckets", message))
            .ok()
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
            match expand(
                value,
                &BTreeMap::new(),
                &BTreeSet::new(),
                &mut self.rendered,
            ) {
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
            let rendered_before = self.rendered.len();
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
                Ok(url) => {
                    self.mask_resolved(rendered_before, url.as_str());
                    stores.push(Store { name, url, options })
                }
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
        let rendered_before = self.rendered.len();
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
            Ok(url) => {
                self.mask_resolved(rendered_before, url.as_str());
                Some(Location {
                    store: store.name.clone(),
                    url,
                })
            }
            Err(error) => {
                self.problem(format!("{key}.path"), format!("not a valid path: {error}"));
                None
            }
        }
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
            let contract = step
                .contract
                .clone()
                .and_then(|raw| self.contract(&format!("{key}.contract"), raw, ContractOf::Step));
            let publish = step
                .publish
                .clone()
                .and_then(|raw| self.published_step(&key, &step.name, raw));
            if kind == Some(StepKind::Validate) {
                if let Some(contract) = &contract {
                    // A validate step's result is a view of its flagged input; a not_null
                    // check says the same, with the failing rows to show.
                    if let Some(index) = contract.columns.iter().position(|c| !c.nullable) {
                        self.problem(
                            format!("{key}.contract.columns[{index}].nullable"),
                            "a validate step's contract promises types only; add a `not_null` check for nulls",
                        );
                    }
                }
                if let Some(validate) = self.resolve_validate(&key, &step) {
                    steps.push(Step {
                        name: step.name,
                        kind: StepKind::Validate,
                        sql: String::new(),
                        sql_file: None,
                        validate: Some(validate),
                        contract,
                        publish,
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
                    contract,
                    publish,
                    key,
                });
            }
        }
        self.check_published_tables(&steps);
        steps
    }

    /// A step's `publish:`, its table named after the step unless it says otherwise.
    fn published_step(
        &mut self,
        key: &str,
        step: &str,
        raw: crate::raw::RawPublish,
    ) -> Option<PublishedStep> {
        let (table, partition_by) = match raw {
            crate::raw::RawPublish::Flag(false) => return None,
            crate::raw::RawPublish::Flag(true) => (step.to_string(), Vec::new()),
            crate::raw::RawPublish::Table(table) => (
                table.table.unwrap_or_else(|| step.to_string()),
                table.partition_by,
            ),
        };
        let valid = table.starts_with(|c: char| c.is_ascii_lowercase())
            && table
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !valid {
            self.problem(
                format!("{key}.publish.table"),
                format!("table name `{table}` must be lower-case letters, digits and `_`, starting with a letter (it names the table's folder)"),
            );
        } else if crate::OWN_TABLES.contains(&table.as_str()) {
            self.problem(
                format!("{key}.publish.table"),
                format!("`{table}` is a table segflow publishes itself; give the step's table another name with `publish: {{table: NAME}}`"),
            );
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, column) in partition_by.iter().enumerate() {
            if !seen.insert(column) {
                self.problem(
                    format!("{key}.publish.partition_by[{i}]"),
                    format!("`{column}` is listed twice"),
                );
            }
            if column == "run_id" || column == "as_of" {
                self.problem(
                    format!("{key}.publish.partition_by[{i}]"),
                    format!("every table is partitioned by `run_id` first, and `{column}` is one of the run's own columns; partition by a column of the step"),
                );
            }
        }
        Some(PublishedStep {
            table,
            partition_by,
        })
    }

    /// No two steps publish one table.
    fn check_published_tables(&mut self, steps: &[Step]) {
        let mut tables: BTreeMap<&str, &str> = BTreeMap::new();
        for step in steps {
            let Some(published) = &step.publish else {
                continue;
            };
            if let Some(first) = tables.insert(&published.table, &step.name) {
                self.problem(
                    format!("{}.publish", step.key),
                    format!(
                        "step `{first}` publishes table `{}` already; name this one with `publish: {{table: NAME}}`",
                        published.table
                    ),
                );
            }
        }
    }

    /// A contract's columns and, on the segment output, its drift rule.
    pub(super) fn contract(
        &mut self,
        key: &str,
        raw: crate::raw::RawContract,
        of: ContractOf,
    ) -> Option<Contract> {
        let before = self.problems.len();
        if raw.columns.is_empty() {
            self.problem(format!("{key}.columns"), "a contract lists its columns");
        }
        let mut columns: Vec<ContractColumn> = Vec::new();
        for (index, column) in raw.columns.into_iter().enumerate() {
            let column_key = format!("{key}.columns[{index}]");
            if columns.iter().any(|c| c.name == column.name) {
                self.problem(
                    format!("{column_key}.name"),
                    format!("column `{}` is in the contract twice", column.name),
                );
                continue;
            }
            match ContractType::parse(&column.data_type) {
                Ok(data_type) => columns.push(ContractColumn {
                    name: column.name,
                    data_type,
                    nullable: column.nullable.unwrap_or(true),
                }),
                Err(message) => self.problem(format!("{column_key}.type"), message),
            }
        }
        let on_drift = match (raw.on_drift.as_deref(), of) {
            (None, _) => None,
            (Some(_), ContractOf::Step) => {
                self.problem(
                    format!("{key}.on_drift"),
                    "a step's result is not published, so it has no earlier schema to drift from; `on_drift` belongs to `segment.contract`",
                );
                None
            }
            (Some(word), ContractOf::Segments) => match OnDrift::parse(word) {
                Some(rule) => Some(rule),
                None => {
                    self.problem(
                        format!("{key}.on_drift"),
                        format!(
                            "unknown drift rule `{word}`: use {}",
                            OnDrift::WORDS.join(" or ")
                        ),
                    );
                    None
                }
            },
        };
        (self.problems.len() == before).then(|| Contract {
            columns,
            on_drift,
            key: key.to_string(),
        })
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

/// `a, b or c`: the values a key takes, for messages.
fn any_of<const N: usize>(names: [&str; N]) -> String {
    match names.split_last() {
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}
