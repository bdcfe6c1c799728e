//! The command line as clap parses it: every subcommand, argument, default and help text
//! (with an example each). `main.rs` dispatches on it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use segflow_plan::Selector;

/// Shown under every command's help: exit codes are an API for schedulers.
const EXIT_CODES: &str = "\
Exit codes:
  0        success
  1        runtime error (I/O, a store, SQL execution, out of memory)
  2        bad command line
  3        pipeline invalid (YAML, SQL or settings; a selector naming nothing)
  4        validation failed (a check of severity error, a bad source file) or a step test failed
  130/143  stopped by Ctrl-C or SIGTERM";

#[derive(Parser)]
#[command(
    name = "segflow",
    version,
    about = "Declarative data preparation and customer segmentation",
    after_help = format!(
        "Examples:\n  segflow init my_segments          # a new project that runs as it is\n  \
         segflow check pipelines/segments.yaml\n  \
         segflow run pipelines/segments.yaml\n\n{EXIT_CODES}"
    ),
)]
pub struct Cli {
    /// More log output on stderr (-v: progress, -vv: debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only errors on stderr, no summary on stdout.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Log lines on stderr as text for people or JSON objects for schedulers.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// `--var NAME=VALUE`, repeatable.
#[derive(Args)]
pub struct Vars {
    /// Override a variable declared under `vars:` (repeatable).
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
}

/// dbt's selectors, as `run`, `test` and `plan` take them.
#[derive(Args)]
pub struct Selection {
    /// Only what these select: NAME (a step or source), +NAME (with every table it reads),
    /// NAME+ (with every step that reads it), +NAME+; several in one value (space-separated)
    /// or repeated. Default: everything.
    #[arg(short, long, value_name = "SELECTOR", value_delimiter = ' ', value_parser = parse_selector)]
    pub select: Vec<Selector>,
    /// Leave out what these select (same forms as --select).
    #[arg(long, value_name = "SELECTOR", value_delimiter = ' ', value_parser = parse_selector)]
    pub exclude: Vec<Selector>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run a pipeline: extract, clean, merge, segment, publish.
    #[command(after_help = format!(
        "Examples:\n  segflow run pipelines/customer_segments.yaml\n  \
         segflow run pipelines/customer_segments.yaml --var as_of=2011-09-01 --run-id 2011-09-01\n  \
         segflow run pipelines/customer_segments.yaml --if-changed   \
         # nothing runs when the latest published run read the same\n  \
         segflow run pipelines/customer_segments.yaml --select +customer_features   \
         # that step and what it reads; nothing published\n\n{EXIT_CODES}"
    ))]
    Run {
        /// The pipeline file.
        pipeline: PathBuf,
        #[command(flatten)]
        vars: Vars,
        /// Also write the run report as JSON to this file.
        #[arg(long, value_name = "FILE")]
        report_json: Option<PathBuf>,
        /// The run's id: tables go to `<output>/<table>/run_id=<ID>/`, replacing an earlier run
        /// of the same id (default: the pipeline's `run_id:`, else start time and process id).
        #[arg(long, value_name = "ID", value_parser = parse_run_id)]
        run_id: Option<String>,
        /// Run only some steps: what --select picks, less what --exclude picks, with every
        /// step those read (a run computes them from the sources). No segment stage, nothing
        /// published.
        #[command(flatten)]
        selection: Selection,
        /// Run the steps up to and including this one in plan order (nothing is published).
        #[arg(long, value_name = "STEP", conflicts_with_all = ["select", "exclude"])]
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
        /// How many buckets the steps that keep customers apart on the `partition_key` run
        /// in, one bucket at a time: `auto` (as many as the input needs for a bucket to fit
        /// the memory limit) or a number (1: over whole tables). Default: the pipeline's
        /// `buckets:`, else auto.
        #[arg(long, value_name = "N|auto", value_parser = segflow_pipeline::Buckets::parse)]
        buckets: Option<segflow_pipeline::Buckets>,
        /// Add each step's executed plan with per-operator metrics (as EXPLAIN ANALYZE
        /// shows them) to the summary and the JSON report.
        #[arg(long)]
        profile: bool,
        /// Where the SQL runs: `local` (this process), `ballista://HOST:PORT` (a Ballista
        /// scheduler and its executors) or `ballista-standalone` (a Ballista scheduler and
        /// executor inside this process). Default: the pipeline's `engine:`, else local.
        #[arg(long, value_name = "ENGINE", value_parser = segflow_pipeline::Engine::parse)]
        engine: Option<segflow_pipeline::Engine>,
        /// Run only if something differs from the latest published run: the pipeline's
        /// content hash, a variable, segflow's version or an input file (its size, ETag or
        /// modification time, a local file's content). Else say which run is current and
        /// exit 0 without running.
        #[arg(long, conflicts_with_all = ["select", "exclude", "until"])]
        if_changed: bool,
    },
    /// Print the first rows of steps or sources: runs what they read, publishes nothing.
    /// A check that fails on the way is reported, and the rows are shown anyway.
    #[command(after_help = format!(
        "Examples:\n  segflow show pipelines/customer_segments.yaml customer_features\n  \
         segflow show pipelines/customer_segments.yaml raw_transactions --where \"quantity < 0\" --limit 5\n  \
         segflow show pipelines/customer_segments.yaml +customer_features --format json\n\n{EXIT_CODES}"
    ))]
    Show {
        /// The pipeline file.
        pipeline: PathBuf,
        /// The steps or sources to show: NAME, +NAME (and every table it reads), NAME+
        /// (and every step that reads it), +NAME+.
        #[arg(required = true, value_name = "SELECTOR", value_parser = parse_selector)]
        selectors: Vec<Selector>,
        /// Leave out what these select.
        #[arg(long, value_name = "SELECTOR", value_delimiter = ' ', value_parser = parse_selector)]
        exclude: Vec<Selector>,
        /// At most this many rows per table.
        #[arg(long, short = 'n', value_name = "N", default_value_t = 10)]
        limit: usize,
        /// Only rows meeting this SQL condition, e.g. `"country = 'France'"`.
        #[arg(long = "where", value_name = "SQL")]
        filter: Option<String>,
        /// `table` for people; `csv` (one table) and `json` for tools.
        #[arg(long, value_enum, default_value_t = ShowFormat::Table)]
        format: ShowFormat,
        #[command(flatten)]
        vars: Vars,
        /// The most memory the steps may use (as for `run`).
        #[arg(long, value_name = "SIZE", value_parser = segflow_pipeline::parse_size)]
        memory_limit: Option<u64>,
    },
    /// Show the step graph: what each step reads and writes, and the order steps run in.
    #[command(after_help = format!(
        "Examples:\n  segflow plan pipelines/customer_segments.yaml\n  \
         segflow plan pipelines/customer_segments.yaml --format dot | dot -Tsvg > plan.svg\n  \
         segflow plan pipelines/customer_segments.yaml --select raw_transactions+\n\n{EXIT_CODES}"
    ))]
    Plan {
        /// The pipeline file.
        pipeline: PathBuf,
        #[command(flatten)]
        vars: Vars,
        #[command(flatten)]
        selection: Selection,
        /// `text` for people, `json` for tools, `dot` for Graphviz.
        #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
        format: PlanFormat,
    },
    /// Print each step's SQL as it will run: variables substituted (secrets masked), a
    /// validate step's checks compiled to the queries that flag its rows.
    #[command(after_help = format!(
        "Example:\n  segflow compile pipelines/customer_segments.yaml customer_features --var as_of=2011-09-01\n\n{EXIT_CODES}"
    ))]
    Compile {
        /// The pipeline file.
        pipeline: PathBuf,
        /// Only this step (default: every step, in run order).
        step: Option<String>,
        #[command(flatten)]
        vars: Vars,
    },
    /// Check a pipeline without reading any data: structure, SQL syntax, tables, cycles,
    /// every step planned against its inputs' schemas.
    #[command(after_help = format!(
        "Examples:\n  segflow check pipelines/customer_segments.yaml\n  \
         segflow check pipelines/customer_segments.yaml --format json   # problems as objects, for editors and CI\n\n{EXIT_CODES}"
    ))]
    Check {
        /// The pipeline file.
        pipeline: PathBuf,
        #[command(flatten)]
        vars: Vars,
        /// `json`: one object, `ok` and every problem with its file, line and key.
        #[arg(long, value_enum, default_value_t = ListFormat::Text)]
        format: ListFormat,
    },
    /// Run the pipeline's step tests (`tests/<pipeline>/*.yaml` beside it) on the rows
    /// they give, in memory: no store or source file is read.
    #[command(after_help = format!(
        "Examples:\n  segflow test pipelines/customer_segments.yaml\n  \
         segflow test pipelines/customer_segments.yaml --select customer_features+ --junit test-results.xml\n  \
         segflow test pipelines/customer_segments.yaml --generate daily_purchases\n\n\
         A plain NAME in --select or --exclude may also be a test's name.\n\n{EXIT_CODES}"
    ))]
    Test {
        /// The pipeline file (its tests are in `tests/<file stem>/` beside it).
        pipeline: PathBuf,
        /// Only the tests of the steps these pick (or the tests so named).
        #[command(flatten)]
        selection: Selection,
        /// Write a starter test for STEP from a sample of its real input and its output today.
        #[arg(long, value_name = "STEP", conflicts_with_all = ["select", "exclude", "junit"])]
        generate: Option<String>,
        /// Rows sampled per input table with --generate.
        #[arg(long, default_value_t = 5, requires = "generate")]
        rows: usize,
        /// `json`: one object with every test's outcome.
        #[arg(long, value_enum, default_value_t = ListFormat::Text)]
        format: ListFormat,
        /// Also write the outcomes as JUnit XML to this file, for CI systems to show.
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
    },
    /// List the runs in an output folder: each run's published version, and superseded
    /// versions, incomplete ones and staging attempts.
    #[command(after_help = format!(
        "Examples:\n  segflow runs pipelines/customer_segments.yaml\n  \
         segflow runs s3://lake/segments/ --format json\n\n{EXIT_CODES}"
    ))]
    Runs {
        /// A pipeline file (its output folder and store settings), or an output folder's
        /// URL or local path (store settings from the environment).
        target: String,
        #[command(flatten)]
        vars: Vars,
        /// `json`: one object with every run folder, for schedulers and scripts.
        #[arg(long, value_enum, default_value_t = ListFormat::Text)]
        format: ListFormat,
    },
    /// Render a published run's report (`report.html`) again from its files alone: the
    /// manifest, `run.json`, `model.json` and the tables, as a warehouse would load them.
    /// Writes a local file; the published run is never changed.
    #[command(after_help = format!(
        "Examples:\n  segflow report pipelines/customer_segments.yaml                 # the latest run\n  \
         segflow report pipelines/customer_segments.yaml --run-id 2011-12-10 -o report.html\n  \
         segflow report s3://lake/segments/run_id=2011-12-10/ -o - > report.html\n\n\
         A run that is not published (no _SUCCESS) exits with 3; a run whose files are missing or\n\
         unreadable, or written by a newer segflow, with 1. Nothing is written then.\n\n{EXIT_CODES}"
    ))]
    Report {
        /// A pipeline file (its output folder), an output folder's URL or local path, or a
        /// run's folder in one (`.../run_id=<id>/`).
        target: String,
        #[command(flatten)]
        vars: Vars,
        /// The run (default: the one `_LATEST.json` names, or the run's folder given).
        #[arg(long, value_name = "ID")]
        run_id: Option<String>,
        /// Where to write the page (`-`: standard output). Default:
        /// `<pipeline>-<run id>.html` in the current folder.
        #[arg(short = 'o', long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Delete what dead attempts left in an output folder (staging folders, version folders
    /// no commit names) and superseded versions. A run's published version is never touched.
    #[command(after_help = format!(
        "Examples:\n  segflow gc pipelines/customer_segments.yaml --dry-run\n  \
         segflow gc s3://lake/segments/ --older-than 7d\n\n{EXIT_CODES}"
    ))]
    Gc {
        /// A pipeline file, or an output folder's URL or local path.
        target: String,
        #[command(flatten)]
        vars: Vars,
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
    #[command(after_help = format!(
        "Examples:\n  segflow generate fixtures/transactions.csv --rows 30000\n  \
         segflow generate s3://lake/raw/transactions.parquet --rows 10000000 --format parquet\n\n{EXIT_CODES}"
    ))]
    Generate {
        /// The file's path or URL.
        output: String,
        /// Invoice lines to write.
        #[arg(long, default_value_t = 30_000)]
        rows: u64,
        /// The same seed writes the same lines.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// `csv` (with a header line) or `parquet`.
        #[arg(long, value_enum, default_value_t = GenerateFormat::Csv)]
        format: GenerateFormat,
    },
    /// Start a project in DIR: a pipeline over a small generated data set, its SQL files,
    /// a step test and a README, which pass `check`, `run` and `test` as they are.
    #[command(after_help = format!(
        "Example:\n  segflow init my_segments && cd my_segments && segflow run pipelines/segments.yaml\n\n{EXIT_CODES}"
    ))]
    Init {
        /// The project's folder: new, or empty.
        dir: PathBuf,
    },
    /// Print the JSON Schema of the pipeline file, for editors to complete keys and flag
    /// mistakes as you type (see the README).
    #[command(after_help = format!(
        "Example:\n  segflow schema > segflow.schema.json\n\n{EXIT_CODES}"
    ))]
    Schema,
    /// Print a completion script for a shell.
    #[command(after_help = format!(
        "Examples:\n  segflow completions bash > ~/.local/share/bash-completion/completions/segflow\n  \
         segflow completions zsh > ~/.zfunc/_segflow\n  \
         segflow completions fish > ~/.config/fish/completions/segflow.fish\n\n{EXIT_CODES}"
    ))]
    Completions {
        /// The shell the script is for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum PlanFormat {
    Text,
    Json,
    Dot,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ShowFormat {
    Table,
    Csv,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum GenerateFormat {
    Csv,
    Parquet,
}

fn parse_var(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(name, value)| (name.trim().to_string(), value.to_string()))
        .ok_or_else(|| format!("expected NAME=VALUE, got `{text}`"))
}

fn parse_selector(text: &str) -> Result<Selector, String> {
    text.parse()
}

fn parse_run_id(text: &str) -> Result<String, String> {
    segflow_pipeline::check_run_id(text).map(|()| text.to_string())
}

fn parse_age(text: &str) -> Result<chrono::Duration, String> {
    let duration = humantime::parse_duration(text)
        .map_err(|error| format!("`{text}` is not a duration like `24h` or `30m` ({error})"))?;
    chrono::Duration::from_std(duration).map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_subcommand_has_an_example_and_the_exit_codes() {
        for sub in Cli::command().get_subcommands() {
            let help = sub
                .get_after_help()
                .map(|h| h.to_string())
                .unwrap_or_default();
            assert!(
                help.contains("segflow "),
                "{} has no example",
                sub.get_name()
            );
            assert!(
                help.contains("Exit codes:"),
                "{} has no exit codes",
                sub.get_name()
            );
        }
    }

    #[test]
    fn every_argument_says_what_it_is_for() {
        for sub in Cli::command().get_subcommands() {
            for arg in sub.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                assert!(
                    arg.get_help().is_some(),
                    "segflow {} {id} has no help",
                    sub.get_name()
                );
            }
        }
    }

    #[test]
    fn selectors_split_on_spaces_and_repeat() {
        let cli = Cli::try_parse_from([
            "segflow",
            "run",
            "p.yaml",
            "--select",
            "a +b",
            "--select",
            "c+",
            "--exclude",
            "d",
        ])
        .unwrap();
        let Command::Run { selection, .. } = cli.command else {
            panic!("not a run")
        };
        let picked: Vec<String> = selection.select.iter().map(ToString::to_string).collect();
        assert_eq!(picked, ["a", "+b", "c+"]);
        assert_eq!(selection.exclude[0].name, "d");
        assert!(
            Cli::try_parse_from(["segflow", "run", "p.yaml", "--select", "a", "--until", "b"])
                .is_err()
        );
        // A partial run publishes nothing, so there is nothing to compare it with.
        for partial in [["--select", "a"], ["--until", "b"]] {
            let args = [&["segflow", "run", "p.yaml", "--if-changed"][..], &partial].concat();
            assert!(Cli::try_parse_from(args).is_err());
        }
    }
}
