//! `segflow`: the command line. Parses arguments, calls the engine, renders results and
//! errors, and maps failures to exit codes. The only crate that prints.

mod plan_view;
mod progress;
mod stopping;
mod summary;

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::OnceLock;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use segflow_engine::{EngineError, ErrorClass, RunOptions};
use segflow_pipeline::{Pipeline, PipelineError};

/// mimalloc rather than the system allocator, as datafusion-cli does: the system allocator
/// keeps much of what a run's many threads free, so a run under `--memory-limit` would
/// hold far more than DataFusion's pool accounts for.
///
/// Built without transparent huge pages (`no_thp`): a run frees and allocates large
/// buffers all the time, and with huge pages every fresh 2 MiB was zeroed by the kernel,
/// which took half the CPU time of the benchmark's 10M-line run.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit codes are an API for schedulers; keep them stable and in step with the README.
mod exit {
    pub const RUNTIME_ERROR: u8 = 1;
    pub const PIPELINE_INVALID: u8 = 3;
    pub const VALIDATION_FAILED: u8 = 4;
}

#[derive(Parser)]
#[command(
    name = "segflow",
    version,
    about = "Declarative data preparation and customer segmentation"
)]
struct Cli {
    /// More log output on stderr (-v: progress, -vv: debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Only errors on stderr, no summary on stdout.
    #[arg(short, long, global = true)]
    quiet: bool,
    /// Log lines on stderr as text for people or JSON objects for schedulers.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline: extract, clean, merge, segment, publish.
    Run {
        /// The pipeline file.
        pipeline: PathBuf,
        /// Override a variable declared under `vars:` (repeatable).
        #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
        vars: Vec<(String, String)>,
        /// Also write the run report as JSON to this file.
        #[arg(long, value_name = "FILE")]
        report_json: Option<PathBuf>,
        /// The run's id: outputs go to `<output>/run_id=<ID>/`, replacing an earlier run
        /// of the same id (default: the pipeline's `run_id:`, else start time and process id).
        #[arg(long, value_name = "ID", value_parser = parse_run_id)]
        run_id: Option<String>,
        /// Run only this step and the steps it reads from (nothing is published).
        #[arg(long, value_name = "STEP", conflicts_with = "until")]
        select: Option<String>,
        /// Run the steps up to and including this one (nothing is published).
        #[arg(long, value_name = "STEP")]
        until: Option<String>,
        /// How many independent steps may run at once.
        #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
        max_concurrent_steps: u16,
        /// The most memory the run may use, e.g. `2GB` (default: the pipeline's
        /// `resources.memory_limit`, else half the machine's memory). Past it, sorts,
        /// aggregations and step results spill to disk.
        #[arg(long, value_name = "SIZE", value_parser = segflow_pipeline::parse_size)]
        memory_limit: Option<u64>,
        /// Where spill files go (default: the pipeline's `resources.spill_dir`, else the
        /// system's temporary folder).
        #[arg(long, value_name = "DIR")]
        spill_dir: Option<PathBuf>,
        /// Add each step's executed plan with per-operator metrics (as EXPLAIN ANALYZE
        /// shows them) to the summary and the JSON report.
        #[arg(long)]
        profile: bool,
        /// Where the SQL runs: `local` (this process), `ballista://HOST:PORT` (a Ballista
        /// scheduler and its executors) or `ballista-standalone` (a Ballista scheduler and
        /// executor inside this process). Default: the pipeline's `engine:`, else local.
        #[arg(long, value_name = "ENGINE", value_parser = segflow_pipeline::Engine::parse)]
        engine: Option<segflow_pipeline::Engine>,
    },
    /// Show the step graph: what each step reads and writes, and the order steps run in.
    Plan {
        pipeline: PathBuf,
        #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
        vars: Vec<(String, String)>,
        #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
        format: PlanFormat,
    },
    /// Print each step's SQL as it will run: variables substituted (secrets masked), a
    /// validate step's checks compiled to the queries that flag its rows.
    ///
    /// Example: segflow compile pipelines/customer_segments.yaml customer_features --var as_of=2011-09-01
    Compile {
        pipeline: PathBuf,
        /// Only this step (default: every step, in run order).
        step: Option<String>,
        #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
        vars: Vec<(String, String)>,
    },
    /// Check a pipeline without reading any data: structure, SQL syntax, tables, cycles.
    Check {
        pipeline: PathBuf,
        #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
        vars: Vec<(String, String)>,
    },
    /// Run the pipeline's step tests (`tests/<pipeline>/*.yaml` beside it) on the rows
    /// they give, in memory: no store or source file is read.
    Test {
        pipeline: PathBuf,
        /// Only the tests with this name, or testing a step with this name.
        #[arg(long, value_name = "NAME", conflicts_with = "generate")]
        select: Option<String>,
        /// Write a starter test for STEP from a sample of its real input and its output today.
        #[arg(long, value_name = "STEP")]
        generate: Option<String>,
        /// Rows sampled per input table with --generate.
        #[arg(long, default_value_t = 5, requires = "generate")]
        rows: usize,
    },
    /// List the runs in an output folder: each run's published version, and superseded
    /// versions, incomplete ones and staging attempts.
    Runs {
        /// A pipeline file (its output folder and store settings), or an output folder's
        /// URL or local path (store settings from the environment).
        target: String,
        #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
        vars: Vec<(String, String)>,
        /// `json`: one object with every run folder, for schedulers and scripts.
        #[arg(long, value_enum, default_value_t = ListFormat::Text)]
        format: ListFormat,
    },
    /// Delete what dead attempts left in an output folder (staging folders, version folders
    /// no commit names) and superseded versions. A run's published version is never touched.
    Gc {
        /// A pipeline file, or an output folder's URL or local path.
        target: String,
        #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
        vars: Vec<(String, String)>,
        /// Only folders whose newest file is at least this old (a younger one may belong
        /// to a run still under way).
        #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = parse_age)]
        older_than: chrono::Duration,
        /// Show what would be deleted, delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Write synthetic, dirty retail transactions (for examples and benchmarks), streaming,
    /// to a local file or any store segflow reads (`s3://bucket/key.parquet`, ...; the
    /// store's settings come from the environment, e.g. `AWS_ENDPOINT_URL`).
    Generate {
        /// The file's path or URL.
        output: String,
        /// Invoice lines to write.
        #[arg(long, default_value_t = 30_000)]
        rows: u64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[arg(long, value_enum, default_value_t = GenerateFormat::Csv)]
        format: GenerateFormat,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ListFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum PlanFormat {
    Text,
    Json,
    Dot,
}

#[derive(Clone, Copy, ValueEnum)]
enum GenerateFormat {
    Csv,
    Parquet,
}

fn parse_var(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(name, value)| (name.trim().to_string(), value.to_string()))
        .ok_or_else(|| format!("expected NAME=VALUE, got `{text}`"))
}

fn parse_run_id(text: &str) -> Result<String, String> {
    segflow_pipeline::check_run_id(text).map(|()| text.to_string())
}

fn parse_age(text: &str) -> Result<chrono::Duration, String> {
    let duration = humantime::parse_duration(text)
        .map_err(|error| format!("`{text}` is not a duration like `24h` or `30m` ({error})"))?;
    chrono::Duration::from_std(duration).map_err(|error| error.to_string())
}

/// The output folder `segflow runs` and `gc` work on: a pipeline's, or one given by URL or
/// local path.
fn open_output(
    target: &str,
    vars: Vec<(String, String)>,
) -> anyhow::Result<segflow_engine::OutputFolder> {
    Ok(open_target(target, vars)?.0)
}

/// The output folder of `target` (see [`open_output`]), and where its runs spill: the
/// pipeline's `resources.spill_dir`, else (`None`) the system's temporary folder.
fn open_target(
    target: &str,
    vars: Vec<(String, String)>,
) -> anyhow::Result<(segflow_engine::OutputFolder, Option<PathBuf>)> {
    let path = std::path::Path::new(target);
    let is_pipeline = path.is_file()
        && path
            .extension()
            .is_some_and(|ext| ext == "yaml" || ext == "yml");
    if is_pipeline {
        let pipeline = load(path, vars)?;
        let folder = segflow_engine::open_output(&pipeline)?;
        return Ok((folder, pipeline.resources.spill_dir.clone()));
    }
    if !vars.is_empty() {
        anyhow::bail!("--var applies to a pipeline file, and `{target}` is an output folder");
    }
    Ok((
        segflow_engine::open_output_url(&url_of(target, true)?)?,
        None,
    ))
}

/// A URL as given, or a local path as a `file://` URL.
fn url_of(target: &str, folder: bool) -> anyhow::Result<segflow_pipeline::Url> {
    match segflow_pipeline::Url::parse(target) {
        Ok(url) if url.scheme().len() > 1 => Ok(url),
        // A path (a one-letter "scheme" is a Windows drive).
        _ => {
            let absolute = std::path::absolute(target)
                .with_context(|| format!("resolving the path {target}"))?;
            let url = if folder {
                segflow_pipeline::Url::from_directory_path(&absolute)
            } else {
                segflow_pipeline::Url::from_file_path(&absolute)
            };
            url.map_err(|()| anyhow::anyhow!("{target} is not a usable path"))
        }
    }
}

/// Where the loaded pipeline rendered its secrets; everything printed or written passes
/// through [`redact`] (or, for JSON, [`redact_json`]).
static SECRETS: OnceLock<segflow_pipeline::Masks> = OnceLock::new();

fn redact(text: &str) -> String {
    match SECRETS.get() {
        Some(masks) => masks.apply(text),
        None => text.to_string(),
    }
}

/// `value` with the masks applied to its strings only: keys and numbers are never a
/// secret's rendered place, and the JSON stays valid whatever a secret is.
fn redact_json(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(text) => *text = redact(text),
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact_json),
        serde_json::Value::Object(fields) => fields.values_mut().for_each(redact_json),
        _ => {}
    }
}

/// Loads the pipeline and registers its secrets for redaction.
fn load(path: &std::path::Path, vars: Vec<(String, String)>) -> anyhow::Result<Pipeline> {
    let pipeline = segflow_pipeline::load(path, &vars.into_iter().collect::<BTreeMap<_, _>>())?;
    let _ = SECRETS.set(pipeline.masks.clone());
    Ok(pipeline)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.quiet, cli.log_format);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("error: {}", redact(&format!("{error:#}")));
            }
            ExitCode::from(exit_code(&error))
        }
    }
}

/// Step tests ran and some failed: the data under test broke the expectations.
#[derive(Debug, thiserror::Error)]
#[error("{failed} test{} failed", if *failed == 1 { "" } else { "s" })]
struct TestsFailed {
    failed: usize,
}

fn exit_code(error: &anyhow::Error) -> u8 {
    if error.downcast_ref::<TestsFailed>().is_some() {
        return exit::VALIDATION_FAILED;
    }
    if let Some(error) = error.downcast_ref::<segflow_steptest::TestError>() {
        return match error {
            segflow_steptest::TestError::Engine(engine) => match engine.class() {
                ErrorClass::PipelineInvalid => exit::PIPELINE_INVALID,
                ErrorClass::ValidationFailed => exit::VALIDATION_FAILED,
                ErrorClass::Runtime => exit::RUNTIME_ERROR,
            },
            segflow_steptest::TestError::Pipeline(PipelineError::Read { .. })
            | segflow_steptest::TestError::Generate(_) => exit::RUNTIME_ERROR,
            _ => exit::PIPELINE_INVALID,
        };
    }
    if let Some(error) = error.downcast_ref::<EngineError>() {
        return match error.class() {
            ErrorClass::PipelineInvalid => exit::PIPELINE_INVALID,
            ErrorClass::ValidationFailed => exit::VALIDATION_FAILED,
            ErrorClass::Runtime => exit::RUNTIME_ERROR,
        };
    }
    match error.downcast_ref::<PipelineError>() {
        Some(PipelineError::Read { .. }) | None => exit::RUNTIME_ERROR,
        Some(_) => exit::PIPELINE_INVALID,
    }
}

fn init_logging(verbose: u8, quiet: bool, format: LogFormat) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, _) => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SEGFLOW_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("segflow={level},segflow_engine={level},warn"))
    });
    // Colours only for people: schedulers store stderr as text.
    let logs = tracing_subscriber::fmt()
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(filter)
        .with_writer(move || RedactingStderr {
            json: format == LogFormat::Json,
        });
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
}

/// stderr for log lines, with secrets masked (the formatter writes one whole line per
/// call); a JSON line is masked in its strings, so it stays JSON.
struct RedactingStderr {
    json: bool,
}

impl Write for RedactingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let line = match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(mut value) if self.json => {
                redact_json(&mut value);
                format!("{value}\n")
            }
            _ => redact(&text),
        };
        std::io::stderr().write_all(line.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// `--report-json`'s file: a temporary file beside the path, renamed over it once the
/// report is written, so a reader never sees half a report.
struct ReportFile {
    path: PathBuf,
    file: tempfile::NamedTempFile,
}

impl ReportFile {
    fn create(path: &Path) -> anyhow::Result<ReportFile> {
        let cannot = |error: &dyn std::fmt::Display| {
            anyhow::anyhow!("cannot write the run report to {}: {error}", path.display())
        };
        if path.is_dir() {
            return Err(cannot(&"it is a folder"));
        }
        let folder = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        let mut builder = tempfile::Builder::new();
        builder.prefix(".segflow-report-");
        // Readable as a plainly written file would be, not only by its owner.
        #[cfg(unix)]
        builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644));
        let file = builder
            .tempfile_in(folder)
            .map_err(|error| cannot(&error))?;
        Ok(ReportFile {
            path: path.to_path_buf(),
            file,
        })
    }

    fn write(self, json: String) -> anyhow::Result<()> {
        let ReportFile { path, mut file } = self;
        let writing = || format!("writing the run report to {}", path.display());
        file.write_all(json.as_bytes()).with_context(writing)?;
        file.persist(&path).with_context(writing)?;
        Ok(())
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run {
            pipeline,
            vars,
            report_json,
            run_id,
            select,
            until,
            max_concurrent_steps,
            memory_limit,
            spill_dir,
            profile,
            engine,
        } => {
            let pipeline = load(&pipeline, vars)?;
            // Made before the run, so a report path that cannot be written stops the run
            // before anything is published (a scheduler would retry a job whose output is
            // live); written whole at the end.
            let report_file = report_json.as_deref().map(ReportFile::create).transpose()?;
            let options = RunOptions {
                run_id,
                max_concurrent_steps: usize::from(max_concurrent_steps),
                select,
                until,
                resources: segflow_pipeline::Resources {
                    memory_limit,
                    spill_dir,
                },
                profile,
                progress: progress::display(!cli.quiet && std::io::stderr().is_terminal()),
                engine,
                leftovers: Default::default(),
            };
            let leftovers = options.leftovers.clone();
            let run = move || -> anyhow::Result<_> {
                let runtime =
                    tokio::runtime::Runtime::new().context("starting the async runtime")?;
                Ok(runtime.block_on(segflow_engine::run(&pipeline, &options)))
            };
            let mut report_file = report_file;
            let ran = stopping::run_until_stopped(run, &leftovers, || {
                drop(report_file.take());
            })??;
            let report = match ran {
                Ok(report) => report,
                Err(error) => {
                    if let (EngineError::ValidationFailed { steps, .. }, false) =
                        (&error, cli.quiet)
                    {
                        summary::print_checks(steps);
                    }
                    return Err(error.into());
                }
            };
            if let Some(file) = report_file {
                let mut json = serde_json::to_value(&report)?;
                redact_json(&mut json);
                file.write(serde_json::to_string_pretty(&json)? + "\n")?;
            }
            if !cli.quiet {
                summary::print_run(&report);
            }
            Ok(())
        }
        Command::Check { pipeline, vars } => {
            let pipeline = load(&pipeline, vars)?;
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            let graph = runtime.block_on(segflow_engine::check(&pipeline))?;
            if !cli.quiet {
                summary::print_check(&pipeline, &graph);
            }
            Ok(())
        }
        Command::Compile {
            pipeline,
            step,
            vars,
        } => {
            let pipeline = load(&pipeline, vars)?;
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            let mut compiled = runtime.block_on(segflow_engine::compile(&pipeline))?;
            if let Some(name) = &step {
                let names: Vec<&str> = compiled.iter().map(|step| step.name.as_str()).collect();
                if !names.contains(&name.as_str()) {
                    return Err(EngineError::UnknownStep {
                        option: "compile",
                        name: name.clone(),
                        hint: segflow_pipeline::did_you_mean(name, &names),
                    }
                    .into());
                }
                compiled.retain(|compiled| &compiled.name == name);
            }
            summary::print_text(&plan_view::compiled(&compiled));
            Ok(())
        }
        Command::Plan {
            pipeline,
            vars,
            format,
        } => {
            let pipeline = load(&pipeline, vars)?;
            let graph = segflow_engine::plan(&pipeline)?;
            match format {
                PlanFormat::Text => summary::print_text(&plan_view::text(&pipeline, &graph)),
                PlanFormat::Json => summary::print_json(plan_view::json(&pipeline, &graph)),
                PlanFormat::Dot => summary::print_text(&plan_view::dot(&pipeline, &graph)),
            }
            Ok(())
        }
        Command::Test {
            pipeline,
            select,
            generate,
            rows,
        } => {
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            if let Some(step) = generate {
                let path = runtime.block_on(segflow_steptest::generate(&pipeline, &step, rows))?;
                if !cli.quiet {
                    summary::print_text(&format!(
                        "wrote {}: review its expected rows, then run `segflow test {}`",
                        path.display(),
                        pipeline.display()
                    ));
                }
                return Ok(());
            }
            let outcomes =
                runtime.block_on(segflow_steptest::run_all(&pipeline, select.as_deref()))?;
            let failed = outcomes.iter().filter(|o| !o.failures.is_empty()).count();
            if !cli.quiet || failed > 0 {
                summary::print_tests(&outcomes);
            }
            if failed > 0 {
                return Err(TestsFailed { failed }.into());
            }
            Ok(())
        }
        Command::Runs {
            target,
            vars,
            format,
        } => {
            let folder = open_output(&target, vars)?;
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            let runs = runtime
                .block_on(folder.runs())
                .with_context(|| format!("listing the runs in {}", folder.url))?;
            match format {
                ListFormat::Json => summary::print_json(summary::runs_json(&folder.url, &runs)),
                ListFormat::Text if !cli.quiet => summary::print_runs(&folder.url, &runs),
                ListFormat::Text => {}
            }
            Ok(())
        }
        Command::Gc {
            target,
            vars,
            older_than,
            dry_run,
        } => {
            let (folder, spill_dir) = open_target(&target, vars)?;
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            let stale = runtime
                .block_on(folder.stale_runs(older_than))
                .with_context(|| format!("listing the runs in {}", folder.url))?;
            let spills = segflow_engine::dead_spill_folders(
                spill_dir.as_deref(),
                older_than.to_std().unwrap_or_default(),
            );
            let deleted = if dry_run {
                0
            } else {
                for spill in &spills {
                    std::fs::remove_dir_all(spill)
                        .with_context(|| format!("deleting {}", spill.display()))?;
                }
                runtime
                    .block_on(segflow_engine::remove_runs(&folder, &stale))
                    .with_context(|| format!("deleting dead runs in {}", folder.url))?
            };
            if !cli.quiet {
                summary::print_gc(&folder.url, &stale, &spills, dry_run, deleted);
            }
            Ok(())
        }
        Command::Generate {
            output,
            rows,
            seed,
            format,
        } => {
            let format = match format {
                GenerateFormat::Csv => segflow_datagen::OutputFormat::Csv,
                GenerateFormat::Parquet => segflow_datagen::OutputFormat::Parquet,
            };
            let config = segflow_datagen::GeneratorConfig::new(rows, seed);
            let url = url_of(&output, false)?;
            let (store, path) = segflow_engine::open_url(&url)?;
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            let written = runtime
                .block_on(segflow_datagen::write_to_store(
                    store, path, format, &config,
                ))
                .with_context(|| format!("writing {output}"))?;
            if !cli.quiet {
                summary::print_generated(&output, &written);
            }
            Ok(())
        }
    }
}
