//! `segflow`: the command line. Parses arguments, calls the engine, renders results and
//! errors, and maps failures to exit codes. The only crate that prints.

mod args;
mod check_view;
mod init;
mod plan_view;
mod preview_view;
mod progress;
mod stopping;
mod summary;
mod test_report;

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::OnceLock;

use anyhow::Context;
use args::{Cli, Command, GenerateFormat, ListFormat, LogFormat, PlanFormat, Selection, Vars};
use clap::{CommandFactory, Parser};
use segflow_engine::{EngineError, ErrorClass, RunOptions, RunReport};
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
    pub const BAD_COMMAND_LINE: u8 = 2;
    pub const PIPELINE_INVALID: u8 = 3;
    pub const VALIDATION_FAILED: u8 = 4;
}

/// The output folder `segflow runs` and `gc` work on: a pipeline's, or one given by URL or
/// local path.
fn open_output(target: &str, vars: Vars) -> anyhow::Result<segflow_engine::OutputFolder> {
    Ok(open_target(target, vars)?.0)
}

/// The output folder of `target` (see [`open_output`]), and where its runs spill: the
/// pipeline's `resources.spill_dir`, else (`None`) the system's temporary folder.
fn open_target(
    target: &str,
    Vars { vars }: Vars,
) -> anyhow::Result<(segflow_engine::OutputFolder, Option<PathBuf>)> {
    let path = std::path::Path::new(target);
    let is_pipeline = path.is_file()
        && path
            .extension()
            .is_some_and(|ext| ext == "yaml" || ext == "yml");
    if is_pipeline {
        let pipeline = load(path, Vars { vars })?;
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

/// A run's folder (`.../run_id=<id>/`) as its output folder and run id; anything else as
/// it is.
fn split_run_folder(target: &str) -> (String, Option<String>) {
    let trimmed = target.trim_end_matches('/');
    match trimmed.rsplit_once('/') {
        Some((parent, last)) if last.starts_with(segflow_engine::RUN_DIR_PREFIX) => (
            format!("{parent}/"),
            Some(last[segflow_engine::RUN_DIR_PREFIX.len()..].to_string()),
        ),
        None if trimmed.starts_with(segflow_engine::RUN_DIR_PREFIX) => (
            ".".to_string(),
            Some(trimmed[segflow_engine::RUN_DIR_PREFIX.len()..].to_string()),
        ),
        _ => (target.to_string(), None),
    }
}

/// Writes a report page to `output` (`-`: standard output; default
/// `report-<run id>.html` here) whole: to a file beside it first, then renamed, so an
/// interrupted write never leaves half a page. Returns the file written.
fn write_page(
    output: Option<&std::path::Path>,
    run_id: &str,
    page: &str,
) -> anyhow::Result<Option<PathBuf>> {
    if output == Some(std::path::Path::new("-")) {
        use std::io::Write;
        std::io::stdout()
            .write_all(page.as_bytes())
            .context("writing the report to standard output")?;
        return Ok(None);
    }
    let path = match output {
        Some(path) => path.to_path_buf(),
        None => {
            let safe: String = run_id
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            PathBuf::from(format!("report-{safe}.html"))
        }
    };
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut partial = tempfile::NamedTempFile::new_in(&folder)
        .with_context(|| format!("writing the report in {}", folder.display()))?;
    std::io::Write::write_all(&mut partial, page.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    partial
        .persist(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(Some(path))
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

fn redact_json(value: &mut serde_json::Value) {
    if let Some(masks) = SECRETS.get() {
        masks.apply_json(value);
    }
}

/// Loads the pipeline and registers its secrets for redaction.
fn load(path: &std::path::Path, Vars { vars }: Vars) -> anyhow::Result<Pipeline> {
    let pipeline = segflow_pipeline::load(path, &vars.into_iter().collect::<BTreeMap<_, _>>())?;
    let _ = SECRETS.set(pipeline.masks.clone());
    Ok(pipeline)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.quiet, cli.log_format);
    let log_format = cli.log_format;
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let code = exit_code(&error);
            let message = redact(&format!("{error:#}"));
            #[allow(clippy::print_stderr)]
            match log_format {
                LogFormat::Text => eprintln!("error: {message}"),
                // The last line a log collector reads, in the shape of the log lines before
                // it, with the outcome a scheduler acts on.
                LogFormat::Json => eprintln!(
                    "{}",
                    serde_json::json!({
                        "timestamp": chrono::Utc::now()
                            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                        "level": "ERROR",
                        "fields": {
                            "message": message,
                            "status": run_outcome(code),
                            "exit_code": code,
                        },
                        "target": "segflow",
                    })
                ),
            }
            ExitCode::from(code)
        }
    }
}

/// Step tests ran and some failed: the data under test broke the expectations.
#[derive(Debug, thiserror::Error)]
#[error("{failed} test{} failed", if *failed == 1 { "" } else { "s" })]
struct TestsFailed {
    failed: usize,
}

/// Arguments that parse but do not go together, found past clap (exit code 2, as clap's).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct UsageError(String);

fn exit_code(error: &anyhow::Error) -> u8 {
    if error.downcast_ref::<UsageError>().is_some() {
        return exit::BAD_COMMAND_LINE;
    }
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

/// A report file (`run --report-json`, `test --junit`): a temporary file beside the path,
/// renamed over it once the report is written, so a reader never sees half a report.
struct ReportFile {
    path: PathBuf,
    /// What the file holds, for messages: "the run report".
    what: &'static str,
    file: tempfile::NamedTempFile,
}

impl ReportFile {
    fn create(path: &Path, what: &'static str) -> anyhow::Result<ReportFile> {
        let cannot = |error: &dyn std::fmt::Display| {
            anyhow::anyhow!("cannot write {what} to {}: {error}", path.display())
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
            what,
            file,
        })
    }

    fn write(self, text: String) -> anyhow::Result<()> {
        let ReportFile {
            path,
            what,
            mut file,
        } = self;
        let writing = || format!("writing {what} to {}", path.display());
        file.write_all(text.as_bytes()).with_context(writing)?;
        file.persist(&path).with_context(writing)?;
        Ok(())
    }
}

fn write_report(file: ReportFile, report: &RunReport) -> anyhow::Result<()> {
    let mut json = serde_json::to_value(report)?;
    redact_json(&mut json);
    file.write(serde_json::to_string_pretty(&json)? + "\n")
}

/// What `run --report-json` says of a run that fails: as much as is known when it fails.
struct FailureReport {
    file: Option<ReportFile>,
    /// The pipeline's name once loaded; its file before.
    pipeline: String,
    run_id: Option<String>,
    vars: BTreeMap<String, String>,
    started: std::time::Instant,
    started_at: chrono::DateTime<chrono::Utc>,
}

impl FailureReport {
    fn on_error<T>(&mut self, result: anyhow::Result<T>) -> anyhow::Result<T> {
        result.map_err(|error| self.write(error, Vec::new()))
    }

    /// Writes the report of `error` (when asked for) and returns the error to report; a
    /// report that cannot be written is said on stderr, the run's own error still wins.
    fn write(
        &mut self,
        error: anyhow::Error,
        steps: Vec<segflow_engine::StepReport>,
    ) -> anyhow::Error {
        let Some(file) = self.file.take() else {
            return error;
        };
        let report = RunReport::failed(segflow_engine::FailedRun {
            pipeline: self.pipeline.clone(),
            run_id: self.run_id.clone(),
            started_at: self
                .started_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            duration_ms: self.started.elapsed().as_millis() as u64,
            vars: self.vars.clone(),
            status: run_outcome(exit_code(&error)),
            error: redact(&format!("{error:#}")),
            steps,
        });
        if let Err(written) = write_report(file, &report) {
            tracing::error!("{written:#}");
        }
        error
    }
}

/// The outcome an exit code stands for.
fn run_outcome(code: u8) -> segflow_engine::RunOutcome {
    use segflow_engine::RunOutcome;
    match code {
        0 => RunOutcome::Success,
        exit::PIPELINE_INVALID | exit::BAD_COMMAND_LINE => RunOutcome::Invalid,
        exit::VALIDATION_FAILED => RunOutcome::ValidationFailed,
        _ => RunOutcome::RuntimeError,
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Runtime::new().context("starting the async runtime")
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run {
            pipeline,
            vars,
            report_json,
            run_id,
            selection: Selection { select, exclude },
            until,
            max_concurrent_steps,
            memory_limit,
            spill_dir,
            buckets,
            profile,
            engine,
            if_changed,
        } => {
            // Made before anything else, so a report path that cannot be written stops the
            // run before anything is published (a scheduler would retry a job whose output
            // is live), and a run that fails, even to load its pipeline, still gets its
            // report; written whole at the end.
            let report_file = report_json
                .as_deref()
                .map(|path| ReportFile::create(path, "the run report"))
                .transpose()?;
            let mut failure = FailureReport {
                file: report_file,
                pipeline: pipeline.display().to_string(),
                run_id: run_id.clone(),
                vars: BTreeMap::new(),
                started: std::time::Instant::now(),
                started_at: chrono::Utc::now(),
            };
            let pipeline = failure.on_error(load(&pipeline, vars))?;
            failure.pipeline = pipeline.name.clone();
            failure.vars = segflow_engine::shown_vars(&pipeline);
            // The id is settled here, not in the engine, so a report of a failure names it.
            let run_id = failure.on_error(
                segflow_engine::resolve_run_id(&pipeline, run_id.as_deref(), failure.started_at)
                    .map_err(anyhow::Error::from),
            )?;
            failure.run_id = Some(run_id.clone());
            let options = RunOptions {
                run_id: Some(run_id),
                max_concurrent_steps: usize::from(max_concurrent_steps),
                select,
                exclude,
                until,
                resources: segflow_pipeline::Resources {
                    memory_limit,
                    spill_dir,
                },
                profile,
                progress: progress::display(!cli.quiet && std::io::stderr().is_terminal()),
                engine,
                leftovers: Default::default(),
                if_changed,
                buckets,
            };
            let leftovers = options.leftovers.clone();
            let run = move || -> anyhow::Result<_> {
                Ok(runtime()?.block_on(segflow_engine::run(&pipeline, &options)))
            };
            let ran = stopping::run_until_stopped(run, &leftovers, || {
                let stopped = anyhow::anyhow!("stopped by a signal; nothing was published");
                let _ = failure.write(stopped, Vec::new());
            });
            let report = match ran {
                Ok(Ok(Ok(report))) => report,
                Ok(Ok(Err(error))) => {
                    if let (EngineError::ValidationFailed { steps, .. }, false) =
                        (&error, cli.quiet)
                    {
                        summary::print_checks(steps);
                    }
                    let steps = match &error {
                        EngineError::ValidationFailed { steps, .. } => steps.clone(),
                        _ => Vec::new(),
                    };
                    return Err(failure.write(error.into(), steps));
                }
                Ok(Err(error)) | Err(error) => return Err(failure.write(error, Vec::new())),
            };
            if let Some(file) = failure.file {
                write_report(file, &report)?;
            }
            if !cli.quiet {
                summary::print_run(&report);
            }
            Ok(())
        }
        Command::Show {
            pipeline,
            selectors,
            exclude,
            limit,
            filter,
            format,
            vars,
            memory_limit,
        } => {
            let pipeline = load(&pipeline, vars)?;
            let graph = segflow_engine::plan(&pipeline)?;
            let chosen =
                segflow_plan::choose(&graph, &selectors, &exclude).map_err(EngineError::from)?;
            preview_view::refuse_csv_of_many(format, &chosen)?;
            let options = segflow_engine::PreviewOptions {
                limit,
                filter,
                resources: segflow_pipeline::Resources {
                    memory_limit,
                    spill_dir: None,
                },
                progress: progress::display(!cli.quiet && std::io::stderr().is_terminal()),
            };
            let previewed =
                runtime()?.block_on(segflow_engine::preview(&pipeline, &chosen, &options))?;
            for failed in &previewed.failed_checks {
                tracing::warn!("{}", redact(failed));
            }
            preview_view::print(format, &previewed)
        }
        Command::Check {
            pipeline,
            vars,
            format,
        } => {
            let checked = load(&pipeline, vars).and_then(|pipeline| {
                let graph = runtime()?.block_on(segflow_engine::check(&pipeline))?;
                Ok((pipeline, graph))
            });
            match (format, checked) {
                // The problems go to stdout as JSON, and the error to stderr as text; the
                // exit code says which kind of problem.
                (ListFormat::Json, checked) => {
                    summary::print_json(check_view::json(&pipeline, &checked));
                    checked.map(|_| ())
                }
                (ListFormat::Text, Ok((pipeline, graph))) => {
                    if !cli.quiet {
                        summary::print_check(&pipeline, &graph);
                    }
                    Ok(())
                }
                (ListFormat::Text, Err(error)) => Err(error),
            }
        }
        Command::Compile {
            pipeline,
            step,
            vars,
        } => {
            let pipeline = load(&pipeline, vars)?;
            let mut compiled = runtime()?.block_on(segflow_engine::compile(&pipeline))?;
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
            selection: Selection { select, exclude },
            format,
        } => {
            let pipeline = load(&pipeline, vars)?;
            let graph = segflow_engine::plan(&pipeline)?;
            let chosen =
                segflow_plan::choose(&graph, &select, &exclude).map_err(EngineError::from)?;
            let mut shown = plan_view::Shown::new(&pipeline, &graph, &chosen);
            if pipeline.declares_partition_key() {
                // Which steps keep customers apart is proved from their plans, so it needs
                // the schemas `check` reads; a pipeline that does not check still shows
                // its graph.
                shown.bucketing = Some(
                    runtime()?
                        .block_on(segflow_engine::analyse_bucketing(&pipeline))
                        .map(|bucketing| bucketing.expect("a partition key is declared"))
                        .map_err(|error| error.to_string()),
                );
            }
            match format {
                PlanFormat::Text => summary::print_text(&plan_view::text(&shown)),
                PlanFormat::Json => summary::print_json(plan_view::json(&shown)),
                PlanFormat::Dot => summary::print_text(&plan_view::dot(&shown)),
            }
            Ok(())
        }
        Command::Test {
            pipeline,
            selection: Selection { select, exclude },
            generate,
            rows,
            format,
            junit,
        } => {
            let runtime = runtime()?;
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
            // Made first, so a path that cannot be written stops before any test runs.
            let junit_file = junit
                .as_deref()
                .map(|path| ReportFile::create(path, "the JUnit report"))
                .transpose()?;
            let selection = segflow_steptest::TestSelection { select, exclude };
            let started = std::time::Instant::now();
            let outcomes = runtime.block_on(segflow_steptest::run_all(&pipeline, &selection))?;
            let elapsed = started.elapsed();
            if let Some(file) = junit_file {
                file.write(redact(&test_report::junit(&pipeline, &outcomes, elapsed)))?;
            }
            let failed = outcomes.iter().filter(|o| !o.failures.is_empty()).count();
            match format {
                ListFormat::Json => summary::print_json(test_report::json(&pipeline, &outcomes)),
                ListFormat::Text if !cli.quiet || failed > 0 => summary::print_tests(&outcomes),
                ListFormat::Text => {}
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
            let runs = runtime()?
                .block_on(folder.runs())
                .with_context(|| format!("listing the runs in {}", folder.url))?;
            match format {
                ListFormat::Json => summary::print_json(summary::runs_json(&folder.url, &runs)),
                ListFormat::Text if !cli.quiet => summary::print_runs(&folder.url, &runs),
                ListFormat::Text => {}
            }
            Ok(())
        }
        Command::Report {
            target,
            vars,
            run_id,
            output,
        } => {
            let (target, run_of_folder) = split_run_folder(&target);
            let run_id = match (run_id, run_of_folder) {
                (Some(given), Some(of_folder)) if given != of_folder => {
                    return Err(UsageError(format!(
                        "--run-id {given} names another run than the folder given (run `{of_folder}`)"
                    ))
                    .into());
                }
                (given, of_folder) => given.or(of_folder),
            };
            let folder = open_output(&target, vars)?;
            let runtime = runtime()?;
            let run_id = match run_id {
                Some(run_id) => run_id,
                None => runtime
                    .block_on(segflow_engine::latest_run_id(&folder))
                    .map_err(anyhow::Error::from)?,
            };
            let page = runtime.block_on(segflow_engine::render_report(&folder, &run_id))?;
            let written = write_page(output.as_deref(), &run_id, &page)?;
            if !cli.quiet
                && let Some(path) = written
            {
                summary::print_report_written(&run_id, &path);
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
            let runtime = runtime()?;
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
            let written = runtime()?
                .block_on(segflow_datagen::write_to_store(
                    store, path, format, &config,
                ))
                .with_context(|| format!("writing {output}"))?;
            if !cli.quiet {
                summary::print_generated(&output, &written);
            }
            Ok(())
        }
        Command::Init { dir } => {
            let written = init::scaffold(&dir)?;
            if !cli.quiet {
                summary::print_text(&init::next_steps(&dir, &written));
            }
            Ok(())
        }
        Command::Schema => {
            summary::print_json(segflow_pipeline::json_schema());
            Ok(())
        }
        Command::Completions { shell } => {
            let mut out = std::io::stdout().lock();
            clap_complete::generate(shell, &mut Cli::command(), "segflow", &mut out);
            Ok(())
        }
    }
}
