//! A run stopped by a signal: SIGTERM (a scheduler's timeout, `kill`) or Ctrl-C. The run
//! goes on a thread (and runtime) of its own, so that a signal is seen at once even while
//! a query holds every worker of the run's runtime; then what the run recorded as its leftovers (the attempt's staging folder, its
//! spill folder) is removed, within a deadline, and the process exits 143 (SIGTERM) or
//! 130 (Ctrl-C), as a shell reports a process those signals ended. A run stopped after its
//! commit stays published: the publish protocol makes any moment a safe one to stop at.

use std::time::Duration;

use segflow_engine::Leftovers;

/// How long removing the leftovers may take before the process exits anyway: a scheduler
/// that sent SIGTERM sends SIGKILL after its own grace period (Kubernetes: 30 s).
const CLEANUP_DEADLINE: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Copy)]
enum Stop {
    Interrupt,
    Terminate,
}

impl Stop {
    fn name(self) -> &'static str {
        match self {
            Stop::Interrupt => "SIGINT",
            Stop::Terminate => "SIGTERM",
        }
    }

    /// 128 + the signal's number.
    fn exit_code(self) -> i32 {
        match self {
            Stop::Interrupt => 130,
            Stop::Terminate => 143,
        }
    }
}

async fn signal() -> Stop {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => tokio::select! {
                _ = tokio::signal::ctrl_c() => Stop::Interrupt,
                _ = terminate.recv() => Stop::Terminate,
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                Stop::Interrupt
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        Stop::Interrupt
    }
}

/// Runs `job` (which builds its own runtime) on a thread of its own to its end, unless a
/// signal comes first: then removes `leftovers`, calls `before_exit` (to remove the
/// caller's own temporary files) and exits. A thread, not a task: the engine's futures
/// hold borrows the compiler cannot prove `Send` for every lifetime, and a task would also
/// share its workers with the wait for the signal.
pub fn run_until_stopped<T: Send + 'static>(
    job: impl FnOnce() -> T + Send + 'static,
    leftovers: &Leftovers,
    before_exit: impl FnOnce(),
) -> anyhow::Result<T> {
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("segflow-run".to_string())
        .spawn(move || {
            let _ = done.send(job());
        })
        .map_err(|error| anyhow::anyhow!("starting the run's thread: {error}"))?;
    let waiting = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| anyhow::anyhow!("starting the async runtime: {error}"))?;
    let stopped = waiting.block_on(async {
        let finished = tokio::task::spawn_blocking(move || finished.recv());
        tokio::select! {
            finished = finished => Ok(finished),
            stop = signal() => Err(stop),
        }
    });
    let stop = match stopped {
        Ok(Ok(Ok(value))) => return Ok(value),
        Ok(_) => anyhow::bail!("the run's thread ended without a result (a panic, above)"),
        Err(stop) => stop,
    };
    tracing::warn!(
        signal = stop.name(),
        "stopping: removing this run's staging and spill folders"
    );
    let removing = async { tokio::time::timeout(CLEANUP_DEADLINE, leftovers.remove()).await };
    match waiting.block_on(removing) {
        Ok((removed, failed)) => {
            for folder in removed {
                tracing::info!(%folder, "removed");
            }
            for problem in failed {
                tracing::warn!(%problem, "could not remove; `segflow gc` will");
            }
        }
        Err(_) => tracing::warn!(
            deadline = ?CLEANUP_DEADLINE,
            "removing the leftovers took too long; `segflow gc` removes what is left"
        ),
    }
    before_exit();
    tracing::error!(
        signal = stop.name(),
        "stopped: nothing was published by this run unless it had committed"
    );
    std::process::exit(stop.exit_code());
}
