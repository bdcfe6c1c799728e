//! The one place sessions are built: the DataFusion session a run executes in (its memory
//! pool and where it spills, on this process or a Ballista cluster), and the session
//! `check` and step tests plan in, with the same configuration.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::common::config::SpillCompression;
use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::prelude::{SessionConfig, SessionContext};
use segflow_pipeline::{Engine, Resources, Store};

use crate::progress::JobStates;
use crate::results::StepResults;
use crate::{EngineError, Result};

/// Without a limit, a run may use this share of the machine's (or container's) memory.
/// DataFusion does not account for every byte it uses (I/O buffers, hash table overhead),
/// so the limit leaves room for what it misses.
const DEFAULT_MEMORY_SHARE: f64 = 0.5;

/// The resources a run gets: the command line's over the pipeline's over the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunResources {
    pub memory_limit: u64,
    /// Where the limit came from, for messages: `--memory-limit`, the pipeline key, or the
    /// default.
    pub memory_limit_from: String,
    pub spill_dir: Option<PathBuf>,
}

impl RunResources {
    pub fn new(pipeline: &Resources, overrides: &Resources) -> RunResources {
        let (memory_limit, memory_limit_from) =
            match (overrides.memory_limit, pipeline.memory_limit) {
                (Some(limit), _) => (limit, "--memory-limit".to_string()),
                (None, Some(limit)) => (limit, "resources.memory_limit".to_string()),
                (None, None) => (
                    default_memory_limit(),
                    "the default (half the machine's memory)".to_string(),
                ),
            };
        RunResources {
            memory_limit,
            memory_limit_from,
            spill_dir: overrides
                .spill_dir
                .clone()
                .or_else(|| pipeline.spill_dir.clone()),
        }
    }
}

/// A session whose operators share `resources.memory_limit` and spill to its folder.
///
/// The pool is DataFusion's fair spill pool: steps that run at once each get a fair part
/// of it, rather than the first sort or aggregation taking everything and the next one
/// failing. It is wrapped to name the largest consumers when it runs out.
pub fn session(resources: &RunResources) -> Result<SessionContext> {
    let (config, runtime) = session_parts(resources)?;
    Ok(SessionContext::new_with_config_rt(config, runtime))
}

/// A session on `engine`: this process, or a Ballista cluster reached (and checked) now.
/// On Ballista the memory pool and spill folder apply to this process and an in-process
/// executor, not to a cluster's executors, which have their own settings.
///
/// Also returns, for an engine that runs plans elsewhere, where their state can be asked.
pub async fn session_on(
    engine: &Engine,
    resources: &RunResources,
    stores: &[Store],
) -> Result<(SessionContext, Option<Arc<dyn JobStates>>)> {
    match engine {
        Engine::Local => Ok((session(resources)?, None)),
        #[cfg(feature = "ballista")]
        distributed => {
            let (config, runtime) = session_parts(resources)?;
            let (ctx, jobs) =
                crate::distributed::connect(distributed, config, runtime, stores).await?;
            Ok((ctx, Some(jobs)))
        }
        #[cfg(not(feature = "ballista"))]
        distributed => {
            let _ = stores;
            Err(EngineError::Engine {
                engine: distributed.describe(),
                message: "this segflow was built without Ballista: build it with `cargo build --features ballista` (or `cargo install --path crates/cli --features ballista`)"
                    .to_string(),
            })
        }
    }
}

/// A session to plan in (`check`, step tests): a run's configuration, `DATAFUSION_*`
/// settings included, so it plans as the run it stands for. No memory limit: it reads at
/// most what schema inference needs, or the few rows a test gives.
pub fn planning_session() -> Result<SessionContext> {
    Ok(SessionContext::new_with_config(session_config(None)?))
}

/// The results of one run's steps, with their scratch folder in the run's spill folder.
pub fn step_results(ctx: &SessionContext, resources: &RunResources) -> Result<StepResults> {
    StepResults::new(ctx, resources.spill_dir.as_deref()).map_err(|error| {
        let dir = resources
            .spill_dir
            .clone()
            .unwrap_or_else(std::env::temp_dir);
        spill_dir_error(&dir, error)
    })
}

fn session_parts(resources: &RunResources) -> Result<(SessionConfig, Arc<RuntimeEnv>)> {
    let pool = TrackConsumersPool::new(
        FairSpillPool::new(usize::try_from(resources.memory_limit).unwrap_or(usize::MAX)),
        NonZeroUsize::new(5).expect("five is not zero"),
    );
    let mut runtime = RuntimeEnvBuilder::new().with_memory_pool(Arc::new(pool));
    if let Some(dir) = &resources.spill_dir {
        std::fs::create_dir_all(dir).map_err(|error| spill_dir_error(dir, error))?;
        runtime = runtime.with_temp_file_path(dir);
    }
    let runtime = runtime
        .build_arc()
        .map_err(|error| EngineError::Resources(format!("setting up the session: {error}")))?;
    Ok((session_config(Some(resources.memory_limit))?, runtime))
}

/// DataFusion's settings for a session: `DATAFUSION_*` variables as in datafusion-cli, over
/// segflow's defaults; with a memory limit, the merge reservation of sorts scaled to it.
fn session_config(memory_limit: Option<u64>) -> Result<SessionConfig> {
    let mut config = SessionConfig::from_env()
        .map_err(|error| EngineError::Resources(format!("DATAFUSION_* settings: {error}")))?;
    // Spill files (DataFusion's, and step results that do not fit) are compressed unless
    // asked otherwise: at 100M lines, uncompressed ones made the run slower, not faster, as
    // the kernel copied three times the bytes to disk, and they take disk space an input
    // larger than memory may not leave.
    if std::env::var_os(SPILL_COMPRESSION_VAR).is_none() {
        config.options_mut().execution.spill_compression = SpillCompression::Lz4Frame;
    }
    let mut config = config.with_information_schema(false);
    if let Some(limit) = memory_limit {
        // Each sorting partition sets this much aside to merge its spill files (10 MB by
        // default); under a small limit, two partitions' worth would leave nothing to sort with.
        let merge_reservation = (limit / 16).min(10 << 20) as usize;
        config = config.with_sort_spill_reservation_bytes(merge_reservation);
    }
    Ok(config)
}

const SPILL_COMPRESSION_VAR: &str = "DATAFUSION_EXECUTION_SPILL_COMPRESSION";

pub fn spill_dir_error(dir: &Path, error: std::io::Error) -> EngineError {
    EngineError::Resources(format!("spill folder {}: {error}", dir.display()))
}

fn default_memory_limit() -> u64 {
    let total = machine_memory().unwrap_or(8 << 30);
    (total as f64 * DEFAULT_MEMORY_SHARE) as u64
}

/// The memory this process may use: the machine's, or its container's limit when lower.
/// Read by hand from /proc and the cgroup files: a system-information crate would be a large
/// dependency for two numbers, and elsewhere than Linux the fallback is fine.
fn machine_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let total = meminfo_total(&meminfo)?;
    let limit = [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]
    .iter()
    .filter_map(|file| std::fs::read_to_string(file).ok())
    .filter_map(|text| text.trim().parse::<u64>().ok())
    .min();
    Some(limit.map_or(total, |limit| limit.min(total)))
}

/// `MemTotal` of /proc/meminfo, in bytes.
fn meminfo_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|line| line.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spill_files_are_compressed_unless_asked_otherwise() {
        if std::env::var_os(SPILL_COMPRESSION_VAR).is_some() {
            return;
        }
        let resources = RunResources::new(&Resources::default(), &Default::default());
        let ctx = session(&resources).unwrap();
        assert_eq!(
            ctx.copied_config().options().execution.spill_compression,
            SpillCompression::Lz4Frame
        );
    }

    #[test]
    fn reads_total_memory_from_meminfo() {
        let meminfo = "MemTotal:       24576000 kB\nMemFree:        20000000 kB\n";
        assert_eq!(meminfo_total(meminfo), Some(24_576_000 * 1024));
        assert_eq!(meminfo_total("MemFree: 1 kB\n"), None);
    }

    #[test]
    fn command_line_wins_over_pipeline_over_default() {
        let pipeline = Resources {
            memory_limit: Some(1 << 30),
            spill_dir: Some(PathBuf::from("/pipeline")),
        };
        let overrides = Resources {
            memory_limit: Some(2 << 30),
            spill_dir: None,
        };
        let resources = RunResources::new(&pipeline, &overrides);
        assert_eq!(resources.memory_limit, 2 << 30);
        assert_eq!(resources.memory_limit_from, "--memory-limit");
        assert_eq!(resources.spill_dir, Some(PathBuf::from("/pipeline")));
        let resources = RunResources::new(&pipeline, &Resources::default());
        assert_eq!(resources.memory_limit_from, "resources.memory_limit");
        let resources = RunResources::new(&Resources::default(), &Resources::default());
        assert!(resources.memory_limit > 0);
    }
}
