//! Output folders: opening a pipeline's (or one given by URL) for `runs` and `gc`, removing
//! what dead runs left, and the local folders a file system keeps where object stores have
//! none.

use std::sync::Arc;

use datafusion::datasource::listing::ListingTableUrl;
use datafusion::prelude::SessionContext;
use object_store::ObjectStore;
use object_store::path::Path as StorePath;
use segflow_pipeline::{Pipeline, Url};
use segflow_publish::{OutputFolder, RunEntry, STAGING_DIR};

use crate::{EngineError, Result, stores};

/// The pipeline's output folder (where `segflow runs` and `gc` look), its store built from
/// the pipeline's settings.
pub fn open_output(pipeline: &Pipeline) -> Result<OutputFolder> {
    let location = &pipeline.output;
    let store = pipeline
        .store(&location.store)
        .expect("a resolved pipeline's output names one of its stores");
    folder_on(store, &location.url)
}

/// An output folder given by URL: its store takes credentials and settings from the
/// environment (e.g. `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`).
pub fn open_output_url(url: &Url) -> Result<OutputFolder> {
    folder_on(&store_from_environment(url), url)
}

/// The store and path of a URL (a file or folder), the store's credentials and settings
/// from the environment as for [`open_output_url`].
pub fn open_url(url: &Url) -> Result<(Arc<dyn ObjectStore>, StorePath)> {
    let store = store_from_environment(url);
    let (object_store, path) = built(&store, url)?;
    Ok((object_store, path))
}

/// Deletes the folders of dead runs (see [`OutputFolder::stale_runs`]), returning how many
/// files went.
pub async fn remove_runs(folder: &OutputFolder, runs: &[RunEntry]) -> Result<usize> {
    let deleted = folder.remove_runs(runs).await?;
    if let Ok(url) = Url::parse(&folder.url) {
        for run in runs {
            remove_empty_local_dirs(&url, run.path.trim_end_matches('/'));
            // A table partition emptied by this removal (an incomplete attempt's files).
            for file in &run.table_files {
                if let Some((partition, _)) = file.rsplit_once('/') {
                    remove_empty_local_dirs(&url, partition);
                }
            }
        }
        remove_empty_local_dirs(&url, STAGING_DIR);
    }
    Ok(deleted)
}

/// The pipeline's output folder on the store registered in `ctx`.
pub(crate) fn output_folder(ctx: &SessionContext, pipeline: &Pipeline) -> Result<OutputFolder> {
    let location = &pipeline.output;
    let invalid = |message: String| EngineError::Store {
        store: location.store.clone(),
        url: location.url.to_string(),
        message,
    };
    let store = ListingTableUrl::parse(location.url.as_str())
        .and_then(|url| ctx.runtime_env().object_store(url.object_store()))
        .map_err(|error| invalid(error.to_string()))?;
    let root = StorePath::from_url_path(location.url.path())
        .map_err(|error| invalid(error.to_string()))?;
    let folder = OutputFolder::new(store, root, location.url.as_str());
    match pipeline.output_format {
        segflow_pipeline::OutputFormat::Parquet => Ok(folder),
        segflow_pipeline::OutputFormat::Delta => folder
            .with_delta()
            .map_err(|error| invalid(error.to_string())),
    }
}

/// Folders of runs that died (a day or more without a write) are worth a word in the log:
/// they cost storage until `segflow gc` removes them.
pub(crate) async fn warn_about_stale_runs(folder: &OutputFolder) {
    match folder.stale_runs(chrono::Duration::hours(24)).await {
        Ok(stale) if !stale.is_empty() => {
            let paths: Vec<&str> = stale.iter().map(|run| run.path.as_str()).collect();
            tracing::warn!(
                output = %folder.url,
                stale = %paths.join(", "),
                "folders of runs that did not finish; `segflow gc` removes them"
            );
        }
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "could not list the output folder's runs"),
    }
}

/// Object stores have no folders, but a local file system keeps the empty directories the
/// staged files were in; remove them so a published folder holds only the outputs.
pub(crate) fn remove_empty_local_dirs(output: &Url, relative: &str) {
    let Ok(root) = output.to_file_path() else {
        return;
    };
    fn remove(dir: &std::path::Path) -> bool {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return false;
        };
        let mut empty = true;
        for entry in entries.flatten() {
            let path = entry.path();
            empty &= path.is_dir() && remove(&path);
        }
        empty && std::fs::remove_dir(dir).is_ok()
    }
    remove(&root.join(relative));
}

/// A store named after the URL's scheme, with no options of its own: its settings come from
/// the environment.
fn store_from_environment(url: &Url) -> segflow_pipeline::Store {
    segflow_pipeline::Store {
        name: url.scheme().to_string(),
        url: url.clone(),
        options: Default::default(),
    }
}

fn folder_on(store: &segflow_pipeline::Store, url: &Url) -> Result<OutputFolder> {
    let (object_store, root) = built(store, url)?;
    Ok(OutputFolder::new(object_store, root, url.as_str()))
}

/// `store` built, and the path of `url` on it.
fn built(store: &segflow_pipeline::Store, url: &Url) -> Result<(Arc<dyn ObjectStore>, StorePath)> {
    let invalid = |message: String| EngineError::Store {
        store: store.name.clone(),
        url: url.to_string(),
        message,
    };
    let object_store = stores::build(store).map_err(invalid)?;
    let root = stores::store_root(url).map_err(invalid)?;
    Ok((object_store, root))
}
