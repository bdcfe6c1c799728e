//! Running a pipeline's SQL on Apache DataFusion Ballista.
//!
//! A Ballista session is a DataFusion session whose query planner sends each plan to the
//! scheduler, which splits it into stages for its executors. Everything else in the engine
//! is the same; what differs is where data may live. Executors cannot read this process's
//! memory, so every table a plan reads must be files on a store they reach: step results are
//! written as Parquet under the run's staging folder (`crate::execution`), and tables built
//! in this process (rows kept from a quarantining source) are written there before a step
//! reads them.
//!
//! Object stores registered in this process are not sent to a cluster's executors: the
//! `ballista-executor` binary builds its own, for `s3://` from the `s3.*` settings each job
//! carries, which are filled in here from the pipeline's S3 store. It builds no `gs://` or
//! `az://` stores, so a run on a cluster with such a store stops before it starts.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ballista::prelude::SessionContextExt;
use ballista_core::execution_plans::DistributedQueryExec;
use ballista_core::extension::SessionConfigExt;
use ballista_core::object_store::S3Options;
use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
use ballista_core::serde::protobuf::{GetJobStatusParams, job_status};
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::{SessionState, SessionStateBuilder};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_proto::protobuf::LogicalPlanNode;
use object_store::ClientConfigKey;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use segflow_pipeline::{Engine, Store};
use tonic::transport::Channel;

use crate::progress::JobStates;
use crate::{EngineError, Result};

/// A session on the Ballista cluster `engine` names (or on a scheduler and executor started
/// in this process), checked with a trivial query so an unreachable scheduler is reported
/// now, naming its address, rather than by the first step.
///
/// Also returns where the state of its jobs can be asked, for progress.
pub async fn connect(
    engine: &Engine,
    config: SessionConfig,
    runtime: Arc<RuntimeEnv>,
    stores: &[Store],
) -> Result<(SessionContext, Arc<dyn JobStates>)> {
    let failed = |message: String| EngineError::Engine {
        engine: engine.describe(),
        message,
    };
    let config = match engine {
        Engine::Ballista { .. } => {
            let settings =
                executor_store_settings(stores).map_err(|message| EngineError::EngineSettings {
                    engine: engine.describe(),
                    message,
                })?;
            let mut config = config.with_option_extension(S3Options::default());
            for (key, value) in settings {
                config
                    .options_mut()
                    .set(&key, &value)
                    .map_err(|error| failed(error.strip_backtrace()))?;
            }
            config
        }
        _ => config,
    };
    let state = SessionStateBuilder::new()
        .with_default_features()
        .with_config(config)
        .with_runtime_env(runtime)
        .build();
    let scheduler = match engine {
        Engine::Ballista { scheduler } => scheduler.clone(),
        Engine::BallistaStandalone => start_standalone(&state)
            .await
            .map_err(|error| failed(error.to_string()))?,
        Engine::Local => unreachable!("a local run does not connect to a cluster"),
    };
    let ctx = SessionContext::remote_with_state(&scheduler, state)
        .await
        .map_err(|error| failed(error.strip_backtrace()))?;
    // A scheduler without executors accepts the query and holds it: say so in the log
    // soon, and give up after a while rather than hang a scheduled job.
    let answered = {
        let reached = async { ctx.sql("SELECT 1").await?.collect().await };
        tokio::pin!(reached);
        match tokio::time::timeout(FIRST_QUERY_PATIENCE, &mut reached).await {
            Ok(answered) => answered,
            Err(_) => {
                tracing::warn!(
                    engine = %engine.describe(),
                    "the scheduler has not run a first query yet; are executors registered with it?"
                );
                tokio::time::timeout(FIRST_QUERY_LIMIT - FIRST_QUERY_PATIENCE, reached)
                    .await
                    .map_err(|_| {
                        failed(format!(
                            "the scheduler took a first query but ran nothing in {} s; check that executors are registered with it",
                            FIRST_QUERY_LIMIT.as_secs()
                        ))
                    })?
            }
        }
    };
    if let Err(error) = answered {
        return Err(failed(format!(
            "the scheduler does not answer ({}); check that it runs and that this machine reaches it",
            first_line(&error.strip_backtrace())
        )));
    }
    Ok((
        ctx,
        Arc::new(SchedulerJobs {
            scheduler,
            client: Mutex::new(None),
        }),
    ))
}

/// A scheduler and an executor in this process, as Ballista's own standalone mode starts
/// them, but with the scheduler's address known here so its jobs can be watched. The
/// executor shares this session's runtime: its object stores (registered later, from the
/// pipeline's stores), memory pool and spill folder.
async fn start_standalone(
    state: &SessionState,
) -> std::result::Result<String, ballista_core::error::BallistaError> {
    let address =
        ballista_scheduler::standalone::new_standalone_scheduler_from_state(state).await?;
    let scheduler = format!("http://localhost:{}", address.port());
    let client = loop {
        match SchedulerGrpcClient::connect(scheduler.clone()).await {
            Ok(client) => break client,
            // The scheduler's server task is starting.
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let cores = state.config().ballista_standalone_parallelism();
    ballista_executor::new_standalone_executor_from_state(client, cores, state).await?;
    Ok(scheduler)
}

/// A cluster's jobs, as its scheduler reports them.
#[derive(Debug)]
struct SchedulerJobs {
    scheduler: String,
    /// Connected on the first question and kept: it is asked every few milliseconds.
    client: Mutex<Option<SchedulerGrpcClient<Channel>>>,
}

impl SchedulerJobs {
    async fn client(&self) -> Option<SchedulerGrpcClient<Channel>> {
        let kept = self
            .client
            .lock()
            .expect("no panic while holding the lock")
            .clone();
        if kept.is_some() {
            return kept;
        }
        let client = SchedulerGrpcClient::connect(self.scheduler.clone())
            .await
            .ok()?;
        *self.client.lock().expect("no panic while holding the lock") = Some(client.clone());
        Some(client)
    }
}

impl JobStates for SchedulerJobs {
    fn state<'a>(
        &'a self,
        plan: &'a Arc<dyn ExecutionPlan>,
    ) -> futures::future::BoxFuture<'a, Option<String>> {
        Box::pin(async move {
            let job = plan
                .downcast_ref::<DistributedQueryExec<LogicalPlanNode>>()?
                .job_id()?;
            let mut client = self.client().await?;
            let status = client
                .get_job_status(GetJobStatusParams {
                    job_id: job.as_str().to_string(),
                })
                .await
                .ok()?
                .into_inner()
                .status?
                .status?;
            let state = match status {
                job_status::Status::Queued(_) => "queued",
                job_status::Status::Running(_) => "running",
                job_status::Status::Failed(_) => "failed",
                job_status::Status::Successful(_) => "done",
            };
            Some(format!("{state} on the cluster (job {job})"))
        })
    }
}

/// How long the first query may wait before the log says so, and before the run stops.
const FIRST_QUERY_PATIENCE: Duration = Duration::from_secs(30);
const FIRST_QUERY_LIMIT: Duration = Duration::from_secs(600);

/// The stages a cluster ran for `plan` (a submitted job), with each operator's metrics as
/// the scheduler collected them; `None` for a plan that was not a cluster's job or whose
/// metrics cannot be had.
pub async fn executed_plan(ctx: &SessionContext, plan: &Arc<dyn ExecutionPlan>) -> Option<String> {
    let job = plan.downcast_ref::<DistributedQueryExec<LogicalPlanNode>>()?;
    match job.explain_executed_plan(&ctx.copied_config(), true).await {
        Ok(executed) => Some(executed),
        Err(error) => {
            tracing::warn!(%error, "could not read the job's metrics from the scheduler");
            None
        }
    }
}

/// The `s3.*` settings a Ballista executor builds its S3 stores from: the pipeline's S3
/// store's, as segflow reads them (environment, then the store's options). Executors take
/// one set for every bucket, so S3 stores that differ in them cannot share a run.
fn executor_store_settings(stores: &[Store]) -> std::result::Result<Vec<(String, String)>, String> {
    let mut chosen: Option<(&str, Vec<(String, String)>)> = None;
    for store in stores {
        match store.url.scheme() {
            "file" | "http" | "https" => {}
            "s3" => {
                let builder = crate::stores::s3_builder(store)
                    .map_err(|message| format!("store `{}`: {message}", store.name))?;
                let settings = s3_settings(&builder);
                match &chosen {
                    Some((first, taken)) if *taken != settings => {
                        return Err(format!(
                            "stores `{first}` and `{}` have different S3 settings; a Ballista cluster's executors take one set for every bucket",
                            store.name
                        ));
                    }
                    Some(_) => {}
                    None => chosen = Some((store.name.as_str(), settings)),
                }
            }
            other => {
                return Err(format!(
                    "store `{}`: Ballista's executors read `s3://`, `http(s)://` and `file://` stores, not `{other}://`",
                    store.name
                ));
            }
        }
    }
    Ok(chosen.map(|(_, settings)| settings).unwrap_or_default())
}

fn s3_settings(builder: &AmazonS3Builder) -> Vec<(String, String)> {
    [
        ("s3.access_key_id", AmazonS3ConfigKey::AccessKeyId),
        ("s3.secret_access_key", AmazonS3ConfigKey::SecretAccessKey),
        ("s3.session_token", AmazonS3ConfigKey::Token),
        ("s3.region", AmazonS3ConfigKey::Region),
        ("s3.endpoint", AmazonS3ConfigKey::Endpoint),
        (
            "s3.allow_http",
            AmazonS3ConfigKey::Client(ClientConfigKey::AllowHttp),
        ),
    ]
    .into_iter()
    .filter_map(|(setting, key)| {
        builder
            .get_config_value(&key)
            .map(|value| (setting.to_string(), value))
    })
    .collect()
}

/// Transport errors from gRPC come as a struct dump over many lines; the first says what
/// happened.
fn first_line(message: &str) -> &str {
    message.lines().next().unwrap_or(message).trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(name: &str, url: &str, options: &[(&str, &str)]) -> Store {
        Store {
            name: name.to_string(),
            url: segflow_pipeline::Url::parse(url).unwrap(),
            options: options
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn executors_get_the_s3_store_settings() {
        let stores = [
            store("local", "file:///data/", &[]),
            store(
                "lake",
                "s3://lake/out/",
                &[
                    ("endpoint", "http://127.0.0.1:8333"),
                    ("allow_http", "true"),
                    ("region", "eu-west-1"),
                    ("access_key_id", "dev"),
                    ("secret_access_key", "devsecret"),
                ],
            ),
        ];
        let settings = executor_store_settings(&stores).unwrap();
        for expected in [
            ("s3.endpoint", "http://127.0.0.1:8333"),
            ("s3.allow_http", "true"),
            ("s3.region", "eu-west-1"),
            ("s3.access_key_id", "dev"),
            ("s3.secret_access_key", "devsecret"),
        ] {
            assert!(
                settings.contains(&(expected.0.to_string(), expected.1.to_string())),
                "{expected:?} in {settings:?}"
            );
        }
        // The session takes them as Ballista's S3 settings.
        let mut config = SessionConfig::new().with_option_extension(S3Options::default());
        for (key, value) in &settings {
            config.options_mut().set(key, value).unwrap();
        }
        let sent: Vec<String> = config
            .options()
            .entries()
            .into_iter()
            .filter(|entry| entry.key == "s3.endpoint")
            .filter_map(|entry| entry.value)
            .collect();
        assert_eq!(sent, ["http://127.0.0.1:8333"]);
    }

    #[test]
    fn stores_executors_cannot_build_stop_the_run() {
        let error = executor_store_settings(&[store("gcs", "gs://bucket/x/", &[])]).unwrap_err();
        assert!(
            error.contains("store `gcs`") && error.contains("`gs://`"),
            "{error}"
        );
        let error = executor_store_settings(&[
            store("a", "s3://one/", &[("region", "eu-west-1")]),
            store("b", "s3://two/", &[("region", "us-east-1")]),
        ])
        .unwrap_err();
        assert!(error.contains("different S3 settings"), "{error}");
    }
}

#[cfg(test)]
mod job_tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_job_state_comes_from_its_scheduler() {
        let (ctx, jobs) = connect(
            &Engine::BallistaStandalone,
            SessionConfig::new(),
            Arc::new(RuntimeEnv::default()),
            &[],
        )
        .await
        .unwrap();
        let plan = ctx
            .sql("SELECT 1 AS one")
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        assert_eq!(jobs.state(&plan).await, None, "not submitted yet");
        datafusion::physical_plan::collect(plan.clone(), ctx.task_ctx())
            .await
            .unwrap();
        let state = jobs.state(&plan).await.unwrap();
        assert!(
            state.starts_with("done on the cluster (job ") && state.ends_with(')'),
            "{state}"
        );

        // A plan run here is no cluster's job.
        let here = SessionContext::new()
            .sql("SELECT 1")
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        assert_eq!(jobs.state(&here).await, None);
    }
}
