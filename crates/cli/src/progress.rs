//! The progress display of `segflow run` on a terminal: a live line per running step (rows
//! read, rows per second, elapsed; or, for a step on a cluster, its job's state), left as
//! one line per finished step.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use segflow_engine::{Progress, ProgressEvent};

/// A display on stderr when it is a terminal; nothing otherwise.
pub fn display(enabled: bool) -> Progress {
    if !enabled {
        return Progress::default();
    }
    let bars = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
    let running: Mutex<HashMap<String, ProgressBar>> = Mutex::new(HashMap::new());
    Progress::to(move |event| {
        let mut running = running.lock().expect("no panic while holding the lock");
        match event {
            ProgressEvent::StepStarted { step } => {
                let bar = bars.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("{spinner} {prefix:<24} {msg} {elapsed:>4}")
                        .expect("a valid template"),
                );
                bar.set_prefix(step.clone());
                bar.enable_steady_tick(Duration::from_millis(120));
                running.insert(step, bar);
            }
            ProgressEvent::StepRows { step, rows_read } => {
                if let Some(bar) = running.get(&step) {
                    let seconds = bar.elapsed().as_secs_f64().max(0.001);
                    bar.set_message(format!(
                        "{:>13} rows read  {:>11} rows/s",
                        crate::summary::thousands(rows_read),
                        crate::summary::thousands((rows_read as f64 / seconds) as u64)
                    ));
                }
            }
            ProgressEvent::StepState { step, state } => {
                if let Some(bar) = running.get(&step) {
                    bar.set_message(state);
                }
            }
            ProgressEvent::StepDone {
                step,
                rows_out,
                duration_ms,
            } => {
                if let Some(bar) = running.remove(&step) {
                    bar.set_style(
                        ProgressStyle::with_template("✓ {prefix:<24} {msg}")
                            .expect("a valid template"),
                    );
                    bar.finish_with_message(format!(
                        "{:>13} rows out  in {:.1}s",
                        crate::summary::thousands(rows_out),
                        duration_ms as f64 / 1000.0
                    ));
                }
            }
        }
    })
}
