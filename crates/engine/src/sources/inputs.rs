//! The files each source matches as a run starts, as the manifest records them (`inputs`)
//! and `--if-changed` compares them: URL, size, modification time and ETag as the store
//! lists them, and a content hash for local files.

use std::sync::Arc;

use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use segflow_pipeline::Pipeline;
use segflow_publish::ManifestInput;
use sha2::{Digest, Sha256};

use crate::{EngineError, Result};

/// Bytes read per request while hashing: few enough requests that a large file is read at
/// disk speed, small enough that no request holds much memory.
const HASH_READ_BYTES: u64 = 8 * 1024 * 1024;

/// The sources' files as listed, sorted by source and URL.
pub struct InputFiles {
    files: Vec<InputFile>,
}

struct InputFile {
    described: ManifestInput,
    store: Arc<dyn ObjectStore>,
    path: Path,
    local: bool,
}

impl InputFiles {
    /// Lists every source's files the way DataFusion's listing tables will read them.
    pub async fn list(ctx: &SessionContext, pipeline: &Pipeline) -> Result<InputFiles> {
        let mut files = Vec::new();
        for source in &pipeline.sources {
            let super::parsed::Listed {
                store,
                base,
                files: listed,
            } = super::parsed::listed(ctx, source)
                .await
                .map_err(|error| EngineError::of_source(pipeline, source, error))?;
            let local = source.location.url.scheme() == "file";
            files.extend(listed.into_iter().map(|meta| {
                InputFile {
                    described: ManifestInput {
                        source: source.name.clone(),
                        url: pipeline.redact(&format!("{base}{}", meta.location)),
                        bytes: meta.size,
                        last_modified: meta
                            .last_modified
                            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                        e_tag: meta.e_tag,
                        content_hash: None,
                    },
                    store: store.clone(),
                    path: meta.location,
                    local,
                }
            }));
        }
        files.sort_by(|a, b| {
            (&a.described.source, &a.described.url).cmp(&(&b.described.source, &b.described.url))
        });
        Ok(InputFiles { files })
    }

    /// The files as listed, local ones not hashed yet.
    pub fn listed(&self) -> Vec<ManifestInput> {
        self.files
            .iter()
            .map(|file| file.described.clone())
            .collect()
    }

    /// Hashes the local files in a task of its own, so that the run's steps need not wait
    /// for it; [`Hashing::finish`] gives every file with its hash.
    pub fn hash(self) -> Hashing {
        Hashing::Running(tokio::spawn(async move {
            let mut hashed = Vec::with_capacity(self.files.len());
            for mut file in self.files {
                if file.local {
                    file.described.content_hash = Some(content_hash(&file).await?);
                }
                hashed.push(file.described);
            }
            Ok(hashed)
        }))
    }
}

/// The local files being hashed, or their hashes once known.
pub enum Hashing {
    Running(tokio::task::JoinHandle<Result<Vec<ManifestInput>>>),
    Done(Vec<ManifestInput>),
}

impl Hashing {
    /// Every file with its hash, waiting for the hashing to end.
    pub async fn finish(self) -> Result<Vec<ManifestInput>> {
        match self {
            Hashing::Done(files) => Ok(files),
            // The task is never aborted: it ends by returning or by panicking.
            Hashing::Running(task) => match task.await {
                Ok(hashed) => hashed,
                Err(error) => std::panic::resume_unwind(error.into_panic()),
            },
        }
    }
}

/// `sha256:<hex>` of the file's bytes, read in ranges; the file's listed size bounds them,
/// so a file that grew since the listing is hashed as it was listed (and fails to read
/// when it shrank).
async fn content_hash(file: &InputFile) -> Result<String> {
    let mut hasher = Sha256::new();
    let mut start = 0;
    while start < file.described.bytes {
        let end = (start + HASH_READ_BYTES).min(file.described.bytes);
        let bytes = file
            .store
            .get_range(&file.path, start..end)
            .await
            .map_err(|error| EngineError::Source {
                source_name: file.described.source.clone(),
                url: file.described.url.clone(),
                error: Box::new(DataFusionError::ObjectStore(Box::new(error))),
            })?;
        hasher.update(&bytes);
        start = end;
    }
    let hex: String = hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    Ok(format!("sha256:{hex}"))
}
