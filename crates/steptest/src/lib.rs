//! segflow-steptest: tests of a pipeline's SQL steps, run on the rows they give.
//!
//! Test files live beside the pipeline, in `tests/<pipeline file stem>/*.yaml`. Each test
//! runs one step, a range of steps or the whole pipeline in memory (no store, no source
//! file), then compares the rows produced, the rows quarantined and the segments with the
//! rows it expects.

mod compare;
mod generate;
mod literals;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use segflow_engine::EngineError;
use segflow_pipeline::{
    Expected, GivenRows, Literal, Pipeline, PipelineError, Problem, Problems, StepTest, Target,
    TestFile, did_you_mean,
};
use segflow_plan::{Selector, SelectorError, StepGraph};

pub use generate::generate;

#[derive(Debug, thiserror::Error)]
pub enum TestError {
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// The test file names a step, table or column the pipeline does not have, or gives
    /// rows that do not fit.
    #[error("{}", Problems { file, problems })]
    Invalid {
        file: PathBuf,
        problems: Vec<Problem>,
    },
    #[error("no test file under {}; write one, or start from `segflow test PIPELINE --generate STEP`", dir.display())]
    NoTests { dir: PathBuf },
    #[error("{option} {name}: no test, step or source is named so{hint}")]
    NothingSelected {
        option: &'static str,
        name: String,
        hint: String,
    },
    #[error("no test is left to run: the selected steps have no tests, or --exclude took them all")]
    NoneLeft,
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("{0}")]
    Generate(String),
}

/// One test's result: no failures means it passed.
#[derive(Debug)]
pub struct Outcome {
    pub file: PathBuf,
    pub name: String,
    /// What the test runs: `step NAME`, `steps FROM..TO` or `pipeline`.
    pub target: String,
    pub failures: Vec<String>,
    pub elapsed: std::time::Duration,
}

/// Where the tests of `pipeline` live: `tests/<stem>/` beside it.
pub fn tests_dir(pipeline: &Path) -> PathBuf {
    let stem = pipeline
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_default();
    pipeline
        .parent()
        .unwrap_or(Path::new("."))
        .join("tests")
        .join(stem)
}

/// The test files of `pipeline`, in name order.
pub fn discover(pipeline: &Path) -> Result<Vec<PathBuf>, TestError> {
    let dir = tests_dir(pipeline);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|_| TestError::NoTests { dir: dir.clone() })?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| {
            path.extension()
                .is_some_and(|ext| ext == "yaml" || ext == "yml")
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(TestError::NoTests { dir });
    }
    Ok(files)
}

/// Which tests run: those of the steps the selectors pick (`--select`, dbt's forms), and
/// those a plain selector names, less those `--exclude` picks the same ways.
#[derive(Debug, Clone, Default)]
pub struct TestSelection {
    pub select: Vec<Selector>,
    pub exclude: Vec<Selector>,
}

impl TestSelection {
    fn is_everything(&self) -> bool {
        self.select.is_empty() && self.exclude.is_empty()
    }
}

/// What a [`TestSelection`] picks, resolved against the pipeline's graph and tests.
struct Picked {
    /// `None`: every test, before exclusions.
    selected: Option<Picker>,
    excluded: Picker,
}

/// Tests picked by their name, or by a step they run.
#[derive(Default)]
struct Picker {
    names: HashSet<String>,
    steps: HashSet<String>,
}

impl Picker {
    fn picks(&self, test: &StepTest) -> bool {
        self.names.contains(&test.name)
            || match &test.target {
                Target::Step(step) => self.steps.contains(step),
                Target::Range { from, to } => self.steps.contains(from) || self.steps.contains(to),
                Target::Pipeline => false,
            }
    }

    /// A plain selector that names a test (and no source or step) picks that test; the
    /// others pick steps from the graph.
    fn new(
        graph: &StepGraph,
        option: &'static str,
        selectors: &[Selector],
        test_names: &HashSet<String>,
    ) -> Result<Picker, TestError> {
        let mut picker = Picker::default();
        let mut on_graph = Vec::new();
        for selector in selectors {
            let plain = !selector.upstream && !selector.downstream;
            let is_node =
                graph.step(&selector.name).is_some() || graph.sources.contains(&selector.name);
            if plain && !is_node && test_names.contains(&selector.name) {
                picker.names.insert(selector.name.clone());
            } else {
                on_graph.push(selector.clone());
            }
        }
        if !on_graph.is_empty() {
            let chosen =
                segflow_plan::choose(graph, &on_graph, &[]).map_err(|error| match error {
                    SelectorError::UnknownName { name, hint, .. } => {
                        TestError::NothingSelected { option, name, hint }
                    }
                    other => TestError::Engine(other.into()),
                })?;
            picker.steps.extend(chosen.steps);
        }
        Ok(picker)
    }
}

impl Picked {
    fn picks(&self, test: &StepTest) -> bool {
        self.selected
            .as_ref()
            .is_none_or(|picker| picker.picks(test))
            && !self.excluded.picks(test)
    }
}

/// Runs the tests of `pipeline` that `selection` picks.
pub async fn run_all(
    pipeline: &Path,
    selection: &TestSelection,
) -> Result<Vec<Outcome>, TestError> {
    let mut files = Vec::new();
    for path in discover(pipeline)? {
        files.push(segflow_pipeline::load_tests(&path)?);
    }
    let picked = if selection.is_everything() {
        None
    } else {
        let declared = segflow_pipeline::load(pipeline, &BTreeMap::new())?;
        let graph = segflow_plan::plan(&declared).map_err(EngineError::from)?;
        let names: HashSet<String> = files
            .iter()
            .flat_map(|file| file.tests.iter().map(|test| test.name.clone()))
            .collect();
        Some(Picked {
            selected: match selection.select.is_empty() {
                true => None,
                false => Some(Picker::new(&graph, "--select", &selection.select, &names)?),
            },
            excluded: Picker::new(&graph, "--exclude", &selection.exclude, &names)?,
        })
    };
    let mut outcomes = Vec::new();
    for file in &files {
        let picks = |test: &StepTest| picked.as_ref().is_none_or(|picked| picked.picks(test));
        outcomes.extend(run_file(pipeline, file, picks).await?);
    }
    if picked.is_some() && outcomes.is_empty() {
        return Err(TestError::NoneLeft);
    }
    Ok(outcomes)
}

/// Every test of one file that `picks` is checked against the pipeline before any runs,
/// so a mistake in the file is reported whole rather than test by test.
pub async fn run_file(
    pipeline_path: &Path,
    file: &TestFile,
    picks: impl Fn(&StepTest) -> bool,
) -> Result<Vec<Outcome>, TestError> {
    let declared = segflow_pipeline::load(pipeline_path, &BTreeMap::new())?;
    let mut prepared = Vec::new();
    let mut problems = Vec::new();
    for test in file.tests.iter().filter(|test| picks(test)) {
        match prepare(pipeline_path, &declared, file, test).await {
            Ok(ready) => prepared.push(ready),
            Err(mut found) => problems.append(&mut found),
        }
    }
    if !problems.is_empty() {
        return Err(TestError::Invalid {
            file: file.file.clone(),
            problems,
        });
    }
    let mut outcomes = Vec::new();
    for ready in prepared {
        let started = std::time::Instant::now();
        let mut outcome = ready.run(file).await;
        outcome.elapsed = started.elapsed();
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// A test checked against its pipeline, with its input tables built.
struct Prepared<'a> {
    test: &'a StepTest,
    pipeline: Pipeline,
    graph: StepGraph,
    steps: Vec<String>,
    given: Vec<(String, RecordBatch)>,
    schemas: std::collections::HashMap<String, SchemaRef>,
}

async fn prepare<'a>(
    pipeline_path: &Path,
    declared: &Pipeline,
    file: &TestFile,
    test: &'a StepTest,
) -> Result<Prepared<'a>, Vec<Problem>> {
    let problem = |key: &str, message: String| file.problem(key, message);
    let mut problems = Vec::new();
    if let Some(expect) = &test.expect_values
        && declared.value.is_none()
    {
        problems.push(problem(
            &expect.key,
            "the pipeline has no value stage: nothing to compare these rows with".to_string(),
        ));
    }
    let names: Vec<&str> = declared.vars.keys().map(String::as_str).collect();
    for var in test.vars.keys() {
        if !declared.vars.contains_key(var) {
            problems.push(problem(
                &format!("{}.vars.{var}", test.key),
                format!(
                    "the pipeline declares no variable `{var}`{}",
                    did_you_mean(var, &names)
                ),
            ));
        }
    }
    // Go on with the variables the pipeline knows, to report the test's other problems too.
    let vars: BTreeMap<String, String> = test
        .vars
        .iter()
        .filter(|(name, _)| declared.vars.contains_key(*name))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    let pipeline = segflow_pipeline::load(pipeline_path, &vars)
        .map_err(|error| vec![problem(&test.key, error.to_string())])?;
    let graph = segflow_plan::plan(&pipeline)
        .map_err(|error| vec![problem(&test.key, error.to_string())])?;
    let step_names: Vec<&str> = graph.steps.iter().map(|p| p.step.name.as_str()).collect();
    let position = |key: String, name: &str, problems: &mut Vec<Problem>| {
        let found = step_names.iter().position(|s| *s == name);
        if found.is_none() {
            problems.push(problem(
                &key,
                format!(
                    "the pipeline has no step `{name}`{}",
                    did_you_mean(name, &step_names)
                ),
            ));
        }
        found
    };
    let steps: Vec<String> = match &test.target {
        Target::Step(name) => position(format!("{}.step", test.key), name, &mut problems)
            .map(|i| vec![step_names[i].to_string()])
            .unwrap_or_default(),
        Target::Range { from, to } => {
            let first = position(format!("{}.steps.from", test.key), from, &mut problems);
            let last = position(format!("{}.steps.to", test.key), to, &mut problems);
            match (first, last) {
                (Some(first), Some(last)) if first <= last => step_names[first..=last]
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
                (Some(_), Some(_)) => {
                    problems.push(problem(
                        &format!("{}.steps", test.key),
                        format!("`{from}` runs after `{to}` in plan order (see `segflow plan`)"),
                    ));
                    Vec::new()
                }
                _ => Vec::new(),
            }
        }
        Target::Pipeline => step_names.iter().map(|s| s.to_string()).collect(),
    };
    if steps.is_empty() {
        return Err(problems);
    }

    // The tables the steps read from outside what runs: exactly what the test must give.
    let running: HashSet<&str> = steps.iter().map(String::as_str).collect();
    let mut needed: Vec<String> = Vec::new();
    for planned in graph
        .steps
        .iter()
        .filter(|p| running.contains(p.step.name.as_str()))
    {
        for table in &planned.reads {
            if !running.contains(table.as_str()) && !needed.contains(table) {
                needed.push(table.clone());
            }
        }
    }
    if test.target == Target::Pipeline {
        for (_, input) in pipeline.stage_inputs() {
            if !running.contains(input) && !needed.iter().any(|table| table == input) {
                needed.push(input.to_string());
            }
        }
    }
    let given_names: Vec<&str> = test.given.iter().map(|g| g.table.as_str()).collect();
    for table in &needed {
        if !given_names.contains(&table.as_str()) {
            problems.push(problem(
                &format!("{}.given", test.key),
                format!(
                    "the steps under test read `{table}`: give its rows (`{table}: []` for none)"
                ),
            ));
        }
    }
    let needed_names: Vec<&str> = needed.iter().map(String::as_str).collect();
    for given in &test.given {
        if !needed.contains(&given.table) {
            problems.push(problem(
                &given.key,
                format!(
                    "no step under test reads `{}`{}; they read: {}",
                    given.table,
                    did_you_mean(&given.table, &needed_names),
                    if needed.is_empty() {
                        "nothing".to_string()
                    } else {
                        needed.join(", ")
                    }
                ),
            ));
        }
    }

    let schemas = segflow_engine::known_schemas(&pipeline, &graph)
        .await
        .map_err(|error| vec![problem(&test.key, error.to_string())])?;
    let mut given = Vec::new();
    for table in test.given.iter().filter(|g| needed.contains(&g.table)) {
        match given_batch(file, table, schemas.get(&table.table)) {
            Ok(batch) => given.push((table.table.clone(), batch)),
            Err(mut found) => problems.append(&mut found),
        }
    }
    check_expectations(file, test, &graph, &steps, &mut problems);
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Prepared {
        test,
        pipeline,
        graph,
        steps,
        given,
        schemas,
    })
}

/// The rows a test gives for one table, typed as the table is (or as the values suggest
/// when its schema is not declared).
fn given_batch(
    file: &TestFile,
    table: &segflow_pipeline::GivenTable,
    schema: Option<&SchemaRef>,
) -> Result<RecordBatch, Vec<Problem>> {
    let problem = |key: &str, message: String| file.problem(key, message);
    // Where a bad value is: its key in the file, and for a CSV file its line and column.
    type Locate = Box<dyn Fn(usize, &str) -> (String, String)>;
    let (columns, rows, locate): (Vec<String>, Vec<Vec<Option<Literal>>>, Locate) =
        match &table.rows {
            GivenRows::Inline(rows) => {
                let mut columns: Vec<String> = Vec::new();
                for row in rows {
                    for column in row.keys() {
                        if !columns.contains(column) {
                            columns.push(column.clone());
                        }
                    }
                }
                let values = rows
                    .iter()
                    .map(|row| {
                        columns
                            .iter()
                            .map(|c| row.get(c).cloned().flatten())
                            .collect()
                    })
                    .collect();
                let key = table.key.clone();
                (
                    columns,
                    values,
                    Box::new(move |row, column| (format!("{key}[{row}].{column}"), String::new())),
                )
            }
            GivenRows::Csv(path) => {
                let (columns, values) = read_csv(path)
                    .map_err(|message| vec![problem(&format!("{}.csv", table.key), message)])?;
                let key = format!("{}.csv", table.key);
                let shown = path.display().to_string();
                (
                    columns,
                    values,
                    Box::new(move |row, column| {
                        (
                            key.clone(),
                            format!("{shown} line {}, column `{column}`: ", row + 2),
                        )
                    }),
                )
            }
        };
    let schema = match schema {
        Some(schema) => {
            let known: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            let unknown: Vec<Problem> = columns
                .iter()
                .filter(|c| !known.contains(&c.as_str()))
                .map(|c| {
                    let key = match &table.rows {
                        GivenRows::Inline(rows) => rows
                            .iter()
                            .position(|row| row.contains_key(c))
                            .map(|row| format!("{}[{row}].{c}", table.key))
                            .unwrap_or_else(|| table.key.clone()),
                        GivenRows::Csv(_) => format!("{}.csv", table.key),
                    };
                    problem(
                        &key,
                        format!(
                            "`{}` has no column `{c}`{}; its columns: {}",
                            table.table,
                            did_you_mean(c, &known),
                            known.join(", ")
                        ),
                    )
                })
                .collect();
            if !unknown.is_empty() {
                return Err(unknown);
            }
            schema.clone()
        }
        None => literals::inferred_schema(&columns, &rows),
    };
    literals::literal_batch(&schema, &columns, &rows).map_err(|error| {
        let (key, detail) = locate(error.row, &error.column);
        vec![problem(&key, format!("{detail}{}", error.message))]
    })
}

/// Column names, then rows of values (null for an empty field).
type LiteralTable = (Vec<String>, Vec<Vec<Option<Literal>>>);

fn read_csv(path: &Path) -> Result<LiteralTable, String> {
    let mut reader = csv::Reader::from_path(path)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    let columns: Vec<String> = reader
        .headers()
        .map_err(|error| format!("{}: {error}", path.display()))?
        .iter()
        .map(str::to_string)
        .collect();
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|error| format!("{}: {error}", path.display()))?;
        rows.push(
            record
                .iter()
                .map(|value| (!value.is_empty()).then(|| Literal::Text(value.to_string())))
                .collect(),
        );
    }
    Ok((columns, rows))
}

/// Each expectation names something the test produces.
fn check_expectations(
    file: &TestFile,
    test: &StepTest,
    graph: &StepGraph,
    steps: &[String],
    problems: &mut Vec<Problem>,
) {
    let problem = |key: &str, message: String| file.problem(key, message);
    if let Some(expect) = &test.expect
        && let Some(table) = &expect.table
    {
        let produced: Vec<&str> = steps.iter().map(String::as_str).collect();
        if !produced.contains(&table.as_str()) {
            problems.push(problem(
                &format!("{}.table", expect.key),
                format!(
                    "`{table}` is not a step under test{}",
                    did_you_mean(table, &produced)
                ),
            ));
        }
    }
    for rejects in &test.expect_rejects {
        let quarantines = graph
            .steps
            .iter()
            .find(|p| p.step.name == rejects.step && steps.contains(&p.step.name))
            .and_then(|p| p.step.validate.as_ref())
            .is_some_and(|validate| {
                validate
                    .checks
                    .iter()
                    .any(|check| check.severity == segflow_pipeline::Severity::Quarantine)
            });
        if !quarantines {
            let validate_steps: Vec<&str> = graph
                .steps
                .iter()
                .filter(|p| p.step.validate.is_some() && steps.contains(&p.step.name))
                .map(|p| p.step.name.as_str())
                .collect();
            problems.push(problem(
                &rejects.expected.key,
                format!(
                    "`{}` is not a validate step with quarantine checks under test{}",
                    rejects.step,
                    did_you_mean(&rejects.step, &validate_steps)
                ),
            ));
        }
    }
}

impl Prepared<'_> {
    async fn run(self, file: &TestFile) -> Outcome {
        let test = self.test;
        let mut outcome = Outcome {
            file: file.file.clone(),
            name: test.name.clone(),
            target: match &test.target {
                Target::Step(step) => format!("step {step}"),
                Target::Range { from, to } => format!("steps {from}..{to}"),
                Target::Pipeline => "pipeline".to_string(),
            },
            failures: Vec::new(),
            elapsed: std::time::Duration::ZERO,
        };
        let segment = match (&test.target, &self.pipeline.segment) {
            (Target::Pipeline, Some(segment)) => {
                let mut segment = segment.clone();
                segment.k = test.segment.k.unwrap_or(segment.k);
                segment.seed = test.segment.seed.unwrap_or(segment.seed);
                segment.restarts = test.segment.restarts.unwrap_or(segment.restarts);
                Some(segment)
            }
            _ => None,
        };
        let value = match test.target {
            Target::Pipeline => self.pipeline.value.as_ref(),
            _ => None,
        };
        let run = match segflow_engine::run_in_memory(
            &self.graph,
            &self.steps,
            self.given,
            value,
            segment.as_ref(),
        )
        .await
        {
            Ok(run) => run,
            Err(error) => {
                outcome.failures.push(format!("the run failed: {error}"));
                return outcome;
            }
        };
        if let Some(expect) = &test.expect {
            let table = expect.table.clone().unwrap_or_else(|| match &test.target {
                Target::Pipeline => self
                    .pipeline
                    .stage_inputs()
                    .first()
                    .map(|(_, input)| input.to_string())
                    .unwrap_or_default(),
                _ => self.steps.last().cloned().unwrap_or_default(),
            });
            let batches = run.tables.get(&table).cloned().unwrap_or_default();
            outcome.failures.extend(compare_batches(
                &table,
                expect,
                &batches,
                self.schemas.get(&table),
            ));
        }
        for rejects in &test.expect_rejects {
            let batches = run.rejects.get(&rejects.step).cloned().unwrap_or_default();
            let name = format!("{} rejects", rejects.step);
            outcome
                .failures
                .extend(compare_batches(&name, &rejects.expected, &batches, None));
        }
        if let (Some(expect), Some(segments)) = (&test.expect_segments, &run.segments) {
            outcome
                .failures
                .extend(compare_batches("segments", expect, segments, None));
        }
        if let (Some(expect), Some(values)) = (&test.expect_values, &run.values) {
            outcome
                .failures
                .extend(compare_batches("values", expect, values, None));
        }
        outcome
    }
}

fn compare_batches(
    table: &str,
    expected: &Expected,
    batches: &[RecordBatch],
    schema: Option<&SchemaRef>,
) -> Option<String> {
    let schema = batches
        .first()
        .map(RecordBatch::schema)
        .or_else(|| schema.cloned());
    match schema {
        Some(schema) => compare::compare(table, expected, batches, &schema),
        None if expected.rows.is_empty() => None,
        None => Some(format!(
            "table `{table}`: {} expected, none found",
            expected.rows.len()
        )),
    }
}
