//! segflow-pipeline: reads a pipeline file and turns it into a validated [`Pipeline`].
//!
//! Two phases, as the file is written and as the engine needs it: [`raw`] mirrors the YAML
//! exactly, [`resolve`] checks every rule (collecting all problems, not just the first),
//! substitutes variables, reads SQL files and resolves store URLs. This crate does no I/O
//! beyond reading the pipeline and its SQL files, and knows nothing about DataFusion.

mod checks;
mod contract;
mod error;
mod locate;
mod raw;
mod resolve;
mod schema;
mod segment;
mod step_tests;
mod threshold;
mod value;
mod vars;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

pub use checks::{Change, Check, CheckKind, Literal, Metric, Severity, Validate, column_type_name};
pub use contract::{Contract, ContractColumn, ContractType, OnDrift};
pub use error::{PipelineError, Problem, Problems, Result, located};
pub use locate::{DuplicateKey, KeyIndex};
pub use resolve::{did_you_mean, resolve};
pub use schema::json_schema;
pub use segment::{
    FeatureTransform, KMetric, KSelection, Role, ScalerKind, Segment, SegmentCheck,
    SegmentCheckKind, WarmStart,
};
pub use step_tests::{
    DEFAULT_TOLERANCE, Expected, ExpectedRejects, GivenRows, GivenTable, Row, SegmentOverride,
    StepTest, Target, TestFile, load_tests,
};
pub use threshold::{Comparison, Limit, Threshold};
pub use url::Url;
pub use value::{
    DAYS_PER_MONTH, Evaluate, PurchaseModelKind, SpendModelKind, TimeUnit, VALUE_COLUMNS, Value,
    ValueColumns, value_columns,
};

/// A pipeline ready to plan and run.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub name: String,
    /// The pipeline file, as given.
    pub file: PathBuf,
    /// `sha256:<hex>` of the pipeline file and the SQL files its steps read, in step order:
    /// which version of the pipeline produced an output.
    pub content_hash: String,
    /// The run id the pipeline asks for (`run_id:`, variables substituted), if any.
    pub run_id: Option<String>,
    /// Variable values after `--var` overrides.
    pub vars: BTreeMap<String, String>,
    /// Variables whose value came from the environment (`${env:NAME}`): never shown.
    pub secret_vars: BTreeSet<String>,
    /// What to hide wherever the pipeline's text is shown; see [`Masks`].
    pub masks: Masks,
    pub stores: Vec<Store>,
    pub sources: Vec<Source>,
    /// The pipeline's `partition_key`: the customer column of every source that has one
    /// of this name and no `partition_key` of its own.
    pub partition_key: Option<String>,
    /// How many buckets a run splits the sources with a partition key into (`buckets:`).
    pub buckets: Buckets,
    /// In the order written; the planner decides the order they run in.
    pub steps: Vec<Step>,
    /// The value stage, run before the segment stage.
    pub value: Option<Value>,
    /// The segment stage; a pipeline has it, a value stage or both.
    pub segment: Option<Segment>,
    /// The run's output folder (`segment.output`, or `value.output` without a segment
    /// stage).
    pub output: Location,
    /// How its tables are published (`output.format`).
    pub output_format: OutputFormat,
    pub resources: Resources,
    /// Where the SQL runs (`engine:`); `--engine` overrides it.
    pub engine: Option<Engine>,
    /// Where each key is written in the file.
    pub locations: KeyIndex,
}

/// What a run may use of the machine; unset values are the engine's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    /// Bytes.
    pub memory_limit: Option<u64>,
    pub spill_dir: Option<PathBuf>,
}

/// How many buckets a run splits its sources with a partition key into.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Buckets {
    /// As many as the input's size needs for one bucket to fit the memory limit.
    #[default]
    Auto,
    /// This many (1: the sources are never split).
    Count(std::num::NonZeroUsize),
}

impl Buckets {
    /// `auto` or a whole number of at least 1, as `buckets:` and `--buckets` take it.
    pub fn parse(text: &str) -> std::result::Result<Buckets, String> {
        let text = text.trim();
        if text == "auto" {
            return Ok(Buckets::Auto);
        }
        text.parse::<std::num::NonZeroUsize>()
            .map(Buckets::Count)
            .map_err(|_| format!("`{text}` is not a number of buckets; write `auto` or a whole number, at least 1"))
    }
}

impl std::fmt::Display for Buckets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Buckets::Auto => f.write_str("auto"),
            Buckets::Count(count) => write!(f, "{count}"),
        }
    }
}

/// Where a run's SQL executes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Engine {
    /// In this process (the default).
    Local,
    /// On a Ballista cluster: the scheduler's `http://host:port`.
    Ballista { scheduler: String },
    /// On a Ballista scheduler and executor started inside this process: the distributed
    /// path without a cluster, to try a pipeline before pointing it at one.
    BallistaStandalone,
}

/// Ballista's scheduler listens here unless told otherwise.
pub const BALLISTA_DEFAULT_PORT: u16 = 50050;

impl Engine {
    /// `local`, `ballista://HOST[:PORT]` or `ballista-standalone`.
    pub fn parse(text: &str) -> std::result::Result<Engine, String> {
        let text = text.trim();
        let expected = "write `local`, `ballista://HOST:PORT` or `ballista-standalone`";
        match text {
            "local" => return Ok(Engine::Local),
            "ballista-standalone" => return Ok(Engine::BallistaStandalone),
            _ => {}
        }
        let Some(address) = text.strip_prefix("ballista://") else {
            return Err(format!("`{text}` is not an engine; {expected}"));
        };
        let url = Url::parse(&format!("http://{address}"))
            .map_err(|error| format!("`{text}`: {error}; {expected}"))?;
        let host = url
            .host_str()
            .filter(|host| !host.is_empty())
            .ok_or_else(|| format!("`{text}` names no host; {expected}"))?;
        if url.path() != "/" || url.query().is_some() || !url.username().is_empty() {
            return Err(format!(
                "`{text}`: a scheduler address is a host and a port only; {expected}"
            ));
        }
        let port = url.port().unwrap_or(BALLISTA_DEFAULT_PORT);
        Ok(Engine::Ballista {
            scheduler: format!("http://{host}:{port}"),
        })
    }

    /// As written on the command line, for messages and reports.
    pub fn describe(&self) -> String {
        match self {
            Engine::Local => "local".to_string(),
            Engine::Ballista { scheduler } => {
                format!("ballista://{}", scheduler.trim_start_matches("http://"))
            }
            Engine::BallistaStandalone => "ballista-standalone".to_string(),
        }
    }
}

/// A size such as `2GB`, `1.5 GiB` or `512MiB`, in bytes.
pub fn parse_size(text: &str) -> std::result::Result<u64, String> {
    let size: bytesize::ByteSize = text.trim().parse().map_err(|_| {
        format!("`{text}` is not a size; write a number with a unit, e.g. `2GB` or `512MiB`")
    })?;
    if size.as_u64() == 0 {
        return Err(format!("`{text}` is no memory at all"));
    }
    Ok(size.as_u64())
}

impl Pipeline {
    /// `text` with every secret's rendered places masked (see [`Masks`]): for anything
    /// shown to people or written to logs and reports.
    pub fn redact(&self, text: &str) -> String {
        self.masks.apply(text)
    }

    /// `file:line:column: key` for messages about `key`.
    pub fn at(&self, key: &str) -> String {
        located(&self.file, self.locations.locate(key), key)
    }

    /// A problem with `key` of this pipeline, located in its file.
    pub fn problem(&self, key: &str, message: impl Into<String>) -> Problem {
        Problem {
            position: self.locations.locate(key),
            ..Problem::new(key, message)
        }
    }

    /// Whether a `partition_key` is written, on the pipeline or on a source.
    pub fn declares_partition_key(&self) -> bool {
        self.partition_key.is_some()
            || self
                .sources
                .iter()
                .any(|source| source.partition_key.is_some())
    }

    pub fn store(&self, name: &str) -> Option<&Store> {
        self.stores.iter().find(|store| store.name == name)
    }

    /// The tables the stages read, with the key each is written at: the segment stage's
    /// input, then the value stage's. A run keeps them after the steps end.
    /// The steps whose results are published with the run, and how.
    pub fn published_steps(&self) -> impl Iterator<Item = (&Step, &PublishedStep)> {
        self.steps
            .iter()
            .filter_map(|step| Some((step, step.publish.as_ref()?)))
    }

    /// The tables a run reads after its steps: the stages' inputs and the published steps.
    pub fn read_after_steps(&self) -> Vec<&str> {
        let mut tables: Vec<&str> = self
            .stage_inputs()
            .into_iter()
            .map(|(_, input)| input)
            .collect();
        for (step, _) in self.published_steps() {
            if !tables.contains(&step.name.as_str()) {
                tables.push(&step.name);
            }
        }
        tables
    }

    pub fn stage_inputs(&self) -> Vec<(&'static str, &str)> {
        let segment = self
            .segment
            .as_ref()
            .map(|segment| ("segment.input", segment.input.as_str()));
        let value = self
            .value
            .as_ref()
            .map(|value| ("value.input", value.input.as_str()));
        segment.into_iter().chain(value).collect()
    }
}

#[derive(Debug, Clone)]
pub struct Store {
    pub name: String,
    /// The store's root, always ending in `/`; `file://` roots are absolute.
    pub url: Url,
    pub options: BTreeMap<String, String>,
}

/// A place under a store: a file, a folder or a glob.
#[derive(Debug, Clone, PartialEq)]
pub struct Location {
    pub store: String,
    pub url: Url,
}

#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub location: Location,
    pub format: Format,
    pub csv: CsvOptions,
    pub schema: Option<Vec<Column>>,
    /// Files read from a folder or glob end with this; a `.gz` ending means gzip.
    pub extension: String,
    pub on_error: OnError,
    /// The column identifying a customer (`partition_key`), as written on the source.
    pub partition_key: Option<String>,
}

/// What reading a source does with a row that does not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnError {
    /// The run fails, naming the file, line and column.
    #[default]
    Fail,
    /// The row goes to the source's rejects table with the reason; the run goes on.
    Quarantine,
}

impl OnError {
    pub(crate) const WORDS: [&'static str; 2] =
        [OnError::Fail.as_str(), OnError::Quarantine.as_str()];

    pub const fn as_str(self) -> &'static str {
        match self {
            OnError::Fail => "fail",
            OnError::Quarantine => "quarantine",
        }
    }

    pub fn parse(text: &str) -> Option<OnError> {
        [OnError::Fail, OnError::Quarantine]
            .into_iter()
            .find(|value| value.as_str() == text)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Ndjson,
    Parquet,
}

impl Format {
    /// What `format:` accepts (`json` is read as NDJSON).
    pub(crate) const WORDS: [&'static str; 4] = ["csv", "ndjson", "json", "parquet"];

    fn parse(text: &str) -> Option<Format> {
        match text {
            "csv" => Some(Format::Csv),
            "ndjson" | "json" => Some(Format::Ndjson),
            "parquet" => Some(Format::Parquet),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Ndjson => "ndjson",
            Format::Parquet => "parquet",
        }
    }

    pub fn default_extension(self) -> &'static str {
        match self {
            Format::Csv => ".csv",
            Format::Ndjson => ".json",
            Format::Parquet => ".parquet",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CsvOptions {
    pub has_header: bool,
    pub delimiter: u8,
    pub quote: u8,
    pub null_value: Option<String>,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            has_header: true,
            delimiter: b',',
            quote: b'"',
            null_value: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub data_type: ColumnType,
    pub nullable: bool,
}

/// The column types a pipeline can declare; the engine maps them to Arrow types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    String,
    Int32,
    Int64,
    Float64,
    Boolean,
    Date,
    Timestamp,
}

impl ColumnType {
    const NAMES: &'static [(&'static str, ColumnType)] = &[
        ("string", ColumnType::String),
        ("utf8", ColumnType::String),
        ("int32", ColumnType::Int32),
        ("int", ColumnType::Int32),
        ("int64", ColumnType::Int64),
        ("bigint", ColumnType::Int64),
        ("float64", ColumnType::Float64),
        ("double", ColumnType::Float64),
        ("boolean", ColumnType::Boolean),
        ("bool", ColumnType::Boolean),
        ("date", ColumnType::Date),
        ("timestamp", ColumnType::Timestamp),
    ];

    fn parse(text: &str) -> Option<ColumnType> {
        let lower = text.to_ascii_lowercase();
        Self::NAMES
            .iter()
            .find(|(name, _)| *name == lower)
            .map(|(_, column_type)| *column_type)
    }

    /// The name a pipeline declares it by.
    pub fn as_str(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, column_type)| *column_type == self)
            .map(|(name, _)| *name)
            .expect("every type has a name")
    }

    /// Whether buckets can be made from a column of this type: integers and text compare
    /// exactly (floats have two zeros; dates and times belong to no one customer).
    pub fn can_key_buckets(self) -> bool {
        matches!(
            self,
            ColumnType::String | ColumnType::Int32 | ColumnType::Int64
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    Clean,
    Validate,
    Merge,
}

impl StepKind {
    const ALL: [StepKind; 3] = [StepKind::Clean, StepKind::Validate, StepKind::Merge];
    pub(crate) const WORDS: [&'static str; 3] = [
        StepKind::ALL[0].as_str(),
        StepKind::ALL[1].as_str(),
        StepKind::ALL[2].as_str(),
    ];

    fn parse(text: &str) -> Option<StepKind> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == text)
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            StepKind::Clean => "clean",
            StepKind::Validate => "validate",
            StepKind::Merge => "merge",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    pub kind: StepKind,
    /// The SQL with variables substituted.
    pub sql: String,
    /// The file the SQL came from, when it was not inline.
    pub sql_file: Option<PathBuf>,
    /// For validate steps (whose `sql` is empty): the input and checks.
    pub validate: Option<Validate>,
    /// The columns its result promises.
    pub contract: Option<Contract>,
    /// Whether and how its result is published with the run.
    pub publish: Option<PublishedStep>,
    /// Where the step is declared, e.g. `steps[2]`, for error messages.
    pub key: String,
}

/// How a run's tables are published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// Folders of Parquet files partitioned by run.
    #[default]
    Parquet,
    /// The same files, each table also a Delta Lake table committed once per run.
    Delta,
}

/// A step result published as a table of the run (`publish:`).
#[derive(Debug, Clone, PartialEq)]
pub struct PublishedStep {
    pub table: String,
    pub partition_by: Vec<String>,
}

/// The tables segflow publishes itself; no step may publish under their names (nor under
/// `rejects`).
pub const OWN_TABLES: [&str; 10] = [
    "segments",
    "centroids",
    "profile",
    "k_selection",
    "migration",
    "values",
    "value_by_segment",
    "ltv",
    "value_evaluation",
    "rejects",
];

impl Step {
    /// The key holding the SQL: `steps[i].sql` or `steps[i].sql_file`.
    pub fn sql_key(&self) -> String {
        match &self.sql_file {
            Some(_) => format!("{}.sql_file", self.key),
            None => format!("{}.sql", self.key),
        }
    }

    /// Where the SQL lives, for error messages: the SQL file, or the step's key in the pipeline.
    pub fn sql_origin(&self) -> String {
        match &self.sql_file {
            Some(file) => file.display().to_string(),
            None => format!("{}.sql", self.key),
        }
    }
}

/// Where a pipeline's secrets (values read with `${env:NAME}`) were rendered, and what to
/// show there instead.
///
/// Each value the pipeline rendered with a secret (a URL, a path, a SQL text, an option)
/// is recorded with its shown form when variables are substituted (`s3://lake-***/`), as
/// is each secret alone (`***`), for messages that quote a fragment. [`Masks::apply`]
/// replaces those, longest first. A value shorter than [`Masks::SHORTEST`] characters is
/// never searched for: it is no credential, and looking for `3` would mask every 3 in a
/// report (`rows_read: ***0000`) and tell the secret by where the masks fall. Such a value
/// is still hidden wherever it is part of a longer rendered value. Outputs that are JSON
/// apply the masks to their string values only, so they stay valid JSON.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Masks {
    /// (rendered, shown), longest rendered first.
    pairs: Vec<(String, String)>,
}

impl Masks {
    pub const SHORTEST: usize = 6;

    pub fn new(rendered: Vec<(String, String)>) -> Masks {
        let mut pairs: Vec<(String, String)> = rendered
            .into_iter()
            .filter(|(rendered, _)| rendered.chars().count() >= Masks::SHORTEST)
            .collect();
        pairs.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.cmp(b)));
        pairs.dedup_by(|a, b| a.0 == b.0);
        Masks { pairs }
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// `value` with the masks applied to its strings only: keys and numbers are never a
    /// secret's rendered place, and the JSON stays valid whatever a secret is.
    pub fn apply_json(&self, value: &mut serde_json::Value) {
        match value {
            serde_json::Value::String(text) => *text = self.apply(text),
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| self.apply_json(v)),
            serde_json::Value::Object(fields) => {
                fields.values_mut().for_each(|v| self.apply_json(v))
            }
            _ => {}
        }
    }

    /// `text` with every rendered value replaced by its shown form.
    pub fn apply(&self, text: &str) -> String {
        let mut text = text.to_string();
        for (rendered, shown) in &self.pairs {
            if text.contains(rendered.as_str()) {
                text = text.replace(rendered.as_str(), shown);
            }
        }
        text
    }
}

/// Reads and resolves the pipeline at `path`, with `overrides` replacing variable defaults.
pub fn load(path: &Path, overrides: &BTreeMap<String, String>) -> Result<Pipeline> {
    let bytes = std::fs::read(path).map_err(|error| PipelineError::Read {
        path: path.to_path_buf(),
        error,
    })?;
    let text = utf8_text(path, bytes)?;
    let raw = parse_yaml(path, &text)?;
    let locations = KeyIndex::new(&text);
    refuse_duplicate_keys(path, &locations)?;
    match resolve(raw, path, overrides) {
        Ok(pipeline) => Ok(Pipeline {
            content_hash: content_hash(&text, &pipeline.steps),
            locations,
            ..pipeline
        }),
        Err(PipelineError::Invalid { file, mut problems }) => {
            for problem in &mut problems {
                problem.position = locations.locate(&problem.key);
            }
            Err(PipelineError::Invalid { file, problems })
        }
        Err(other) => Err(other),
    }
}

/// A run id names a folder on every store: letters, digits, `.`, `_`, `-` and `=`, not
/// starting with `.` or `_` (those are segflow's own folders), at most 128 characters.
pub fn check_run_id(id: &str) -> std::result::Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '=');
    if id.is_empty() || id.len() > 128 {
        return Err(format!("run id `{id}` must be 1 to 128 characters long"));
    }
    if let Some(bad) = id.chars().find(|&c| !allowed(c)) {
        return Err(format!(
            "run id `{id}` contains `{bad}`; use letters, digits, `.`, `_`, `-` and `=`"
        ));
    }
    if id.starts_with(['.', '_']) {
        return Err(format!("run id `{id}` may not start with `.` or `_`"));
    }
    Ok(())
}

fn content_hash(pipeline_text: &str, steps: &[Step]) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(pipeline_text.as_bytes());
    for file in steps.iter().filter_map(|step| step.sql_file.as_ref()) {
        // Resolving already read each file; one that vanished since only changes the hash.
        let sql = std::fs::read(file).unwrap_or_default();
        hasher.update([0]);
        hasher.update(&sql);
    }
    let digest = hasher.finalize();
    let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("sha256:{hex}")
}

/// The one place that knows the YAML library (serde_yaml is deprecated upstream; replacing it
/// should touch nothing else).
/// The file's text; a file that is not UTF-8 is a pipeline mistake (a file saved in another
/// encoding, or not a pipeline at all), located at its first bad byte.
pub(crate) fn utf8_text(file: &Path, bytes: Vec<u8>) -> Result<String> {
    String::from_utf8(bytes).map_err(|error| {
        let offset = error.utf8_error().valid_up_to();
        let valid = &error.as_bytes()[..offset];
        let line = valid.iter().filter(|&&byte| byte == b'\n').count() + 1;
        let line_start = valid.iter().rposition(|&byte| byte == b'\n').map_or(0, |i| i + 1);
        let column = String::from_utf8_lossy(&valid[line_start..]).chars().count() + 1;
        PipelineError::Syntax {
            file: file.to_path_buf(),
            line,
            column,
            key: "(document)".to_string(),
            message: format!(
                "the file is not UTF-8 text: byte {offset} (0x{:02x}) is not valid UTF-8; save it as UTF-8",
                error.as_bytes()[offset]
            ),
        }
    })
}

/// A key written twice in one mapping (two `as_of` under `vars:`) is a mistake YAML readers
/// hide by keeping the last; every such key is reported, at its second place. (Keys of
/// the file's own structure are caught by the parser before this.)
pub(crate) fn refuse_duplicate_keys(file: &Path, locations: &KeyIndex) -> Result<()> {
    if locations.duplicates().is_empty() {
        return Ok(());
    }
    let problems = locations
        .duplicates()
        .iter()
        .map(|duplicate| Problem {
            position: Some(duplicate.second),
            ..Problem::new(
                duplicate.path.clone(),
                format!(
                    "written twice, on lines {} and {}; keep one (YAML would silently use the last)",
                    duplicate.first.0, duplicate.second.0
                ),
            )
        })
        .collect();
    Err(PipelineError::Invalid {
        file: file.to_path_buf(),
        problems,
    })
}

fn parse_yaml<T: serde::de::DeserializeOwned>(file: &Path, text: &str) -> Result<T> {
    let deserializer = serde_yaml::Deserializer::from_str(text);
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let key = match error.path().to_string() {
            path if path == "." || path == "?" => "(document)".to_string(),
            path => path,
        };
        let inner = error.inner();
        let (line, column) = inner
            .location()
            .map(|location| (location.line(), location.column()))
            .unwrap_or((1, 1));
        let message = shorten_quoted(&describe(&inner.to_string(), &key));
        PipelineError::Syntax {
            file: file.to_path_buf(),
            line,
            column,
            key,
            message,
        }
    })
}

/// serde_yaml appends " at line L column C", reported in its own fields here; an unknown key
/// gains a "did you mean" when one of the expected keys is a near miss.
/// `message` with each quoted value (between `"` or backticks) longer than
/// `QUOTED_VALUE_SHOWN` characters cut: a value the parser quotes back can be the whole file.
fn shorten_quoted(message: &str) -> String {
    const QUOTED_VALUE_SHOWN: usize = 60;
    let mut shortened = String::with_capacity(message.len().min(1024));
    let mut rest = message;
    while let Some(start) = rest.find(['"', '`']) {
        let quote = rest[start..].chars().next().expect("found a quote");
        let Some(length) = rest[start + 1..].find(quote) else {
            break;
        };
        let value = &rest[start + 1..start + 1 + length];
        shortened.push_str(&rest[..=start]);
        let characters = value.chars().count();
        if characters > QUOTED_VALUE_SHOWN {
            shortened.extend(value.chars().take(QUOTED_VALUE_SHOWN));
            shortened.push_str(&format!(
                "… ({} more characters)",
                characters - QUOTED_VALUE_SHOWN
            ));
        } else {
            shortened.push_str(value);
        }
        shortened.push(quote);
        rest = &rest[start + 1 + length + 1..];
    }
    shortened.push_str(rest);
    shortened
}

fn describe(message: &str, key: &str) -> String {
    let message = match message.rfind(" at line ") {
        Some(index) => &message[..index],
        None => message,
    };
    // serde_yaml names the enclosing key itself ("segment: unknown field ..."); the key is
    // reported in its own field.
    let message = match message.split_once(": ") {
        Some((prefix, rest)) if key.starts_with(prefix) => rest,
        _ => message,
    };
    let Some(rest) = message.strip_prefix("unknown field `") else {
        // Say it in the pipeline's terms, not Rust's.
        return message
            .replace("missing field", "missing required key")
            .replace("expected i64", "expected a whole number")
            .replace("expected u64", "expected a whole number >= 0")
            .replace("expected f64", "expected a number");
    };
    let Some((field, expected)) = rest.split_once('`') else {
        return message.to_string();
    };
    let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    let hint = resolve::did_you_mean(field, &candidates);
    format!(
        "unknown key `{field}`{hint}; expected one of {}",
        candidates.join(", ")
    )
}

#[cfg(test)]
mod tests;
