//! segflow-publish: puts a run's outputs where a warehouse loader will find them, whole.
//!
//! Files are first written under `<output>/_staging/<run_id>/`. Only when every file of the
//! run is written does [`Staging::publish`] remove the previous outputs, move the new ones
//! into place and write `_SUCCESS` last, so a loader that waits for `_SUCCESS` never reads a
//! half-written or mixed result, and a rerun leaves exactly one copy of each output.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use futures::TryStreamExt;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::AsyncArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

pub type Result<T, E = PublishError> = std::result::Result<T, E>;

pub const SUCCESS_MARKER: &str = "_SUCCESS";
pub const STAGING_DIR: &str = "_staging";

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    // The underlying errors are part of the message (not a `source`), so that a report of
    // the whole chain does not repeat them.
    #[error("{operation} {url}: {error}")]
    Store {
        operation: &'static str,
        url: String,
        error: object_store::Error,
    },
    #[error("writing Parquet to {url}: {error}")]
    Parquet {
        url: String,
        error: parquet::errors::ParquetError,
    },
}

/// A file the run wrote, with where it ended up.
#[derive(Debug, Clone, PartialEq)]
pub struct WrittenFile {
    /// Relative to the output folder, e.g. `segments/part-00000.parquet`.
    pub name: String,
    pub rows: u64,
    pub bytes: u64,
}

/// An output folder on a store: `root` is the folder's path in the store, `url` its URL
/// (for messages and reports).
#[derive(Clone)]
pub struct OutputFolder {
    pub store: Arc<dyn ObjectStore>,
    pub root: Path,
    pub url: String,
}

impl std::fmt::Debug for OutputFolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OutputFolder({})", self.url)
    }
}

impl OutputFolder {
    fn path(&self, name: &str) -> Path {
        join(&self.root, name)
    }

    fn url_of(&self, name: &str) -> String {
        format!("{}{name}", self.url)
    }

    /// Starts a run's staging area; nothing in the published location changes until
    /// [`Staging::publish`].
    pub fn stage(&self, run_id: &str) -> Staging {
        Staging {
            folder: self.clone(),
            prefix: format!("{STAGING_DIR}/{run_id}"),
            files: Vec::new(),
        }
    }
}

/// Files written for one run, not yet visible to loaders.
#[derive(Debug)]
pub struct Staging {
    folder: OutputFolder,
    prefix: String,
    files: Vec<WrittenFile>,
}

impl Staging {
    pub fn files(&self) -> &[WrittenFile] {
        &self.files
    }

    /// Writes `batches` as one Snappy-compressed Parquet file named `name` (relative to the
    /// output folder), streaming through a multipart upload.
    pub async fn write_parquet(
        &mut self,
        name: &str,
        schema: SchemaRef,
        batches: &[RecordBatch],
    ) -> Result<&WrittenFile> {
        let staged = format!("{}/{name}", self.prefix);
        let url = self.folder.url_of(&staged);
        let parquet_error = |error| PublishError::Parquet {
            url: url.clone(),
            error,
        };
        let writer = BufWriter::new(self.folder.store.clone(), self.folder.path(&staged));
        let properties = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build();
        let mut writer =
            AsyncArrowWriter::try_new(writer, schema, Some(properties)).map_err(parquet_error)?;
        let mut rows = 0;
        for batch in batches {
            rows += batch.num_rows() as u64;
            writer.write(batch).await.map_err(parquet_error)?;
        }
        writer.close().await.map_err(parquet_error)?;
        let meta = self
            .folder
            .store
            .head(&self.folder.path(&staged))
            .await
            .map_err(|error| PublishError::Store {
                operation: "reading the size of",
                url: url.clone(),
                error,
            })?;
        self.files.push(WrittenFile {
            name: name.to_string(),
            rows,
            bytes: meta.size,
        });
        Ok(self.files.last().expect("just pushed"))
    }

    /// Makes the staged files the published output: withdraws `_SUCCESS`, deletes every
    /// previously published file outside `_staging/`, moves the staged files into place and
    /// writes `_SUCCESS` last. Returns the published files.
    pub async fn publish(self) -> Result<Vec<WrittenFile>> {
        let folder = &self.folder;
        delete_if_present(folder, SUCCESS_MARKER).await?;
        for name in published_files(folder).await? {
            delete_if_present(folder, &name).await?;
        }
        for file in &self.files {
            let from = folder.path(&format!("{}/{}", self.prefix, file.name));
            let to = folder.path(&file.name);
            folder
                .store
                .rename(&from, &to)
                .await
                .map_err(|error| PublishError::Store {
                    operation: "moving a staged file to",
                    url: folder.url_of(&file.name),
                    error,
                })?;
        }
        self.discard().await?;
        folder
            .store
            .put(&folder.path(SUCCESS_MARKER), Vec::new().into())
            .await
            .map_err(|error| PublishError::Store {
                operation: "writing",
                url: folder.url_of(SUCCESS_MARKER),
                error,
            })?;
        Ok(self.files)
    }

    /// Deletes whatever this run staged; the published location is untouched.
    pub async fn discard(&self) -> Result<()> {
        let prefix = self.folder.path(&self.prefix);
        let staged: Vec<Path> = list(&self.folder, &prefix).await?;
        for path in staged {
            self.folder
                .store
                .delete(&path)
                .await
                .map_err(|error| PublishError::Store {
                    operation: "deleting staged file",
                    url: format!("{}{}", self.folder.url, path),
                    error,
                })?;
        }
        Ok(())
    }
}

/// Every file under the output folder except the staging area, relative to the folder.
async fn published_files(folder: &OutputFolder) -> Result<Vec<String>> {
    let root = folder.root.as_ref();
    let names = list(folder, &folder.root)
        .await?
        .into_iter()
        .map(|path| {
            let full = path.as_ref();
            full.strip_prefix(root)
                .unwrap_or(full)
                .trim_start_matches('/')
                .to_string()
        })
        .filter(|name| !name.starts_with(&format!("{STAGING_DIR}/")))
        .collect();
    Ok(names)
}

async fn list(folder: &OutputFolder, prefix: &Path) -> Result<Vec<Path>> {
    folder
        .store
        .list(Some(prefix))
        .map_ok(|meta| meta.location)
        .try_collect()
        .await
        .map_err(|error| PublishError::Store {
            operation: "listing",
            url: folder.url.clone(),
            error,
        })
}

async fn delete_if_present(folder: &OutputFolder, name: &str) -> Result<()> {
    match folder.store.delete(&folder.path(name)).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(error) => Err(PublishError::Store {
            operation: "deleting",
            url: folder.url_of(name),
            error,
        }),
    }
}

fn join(root: &Path, name: &str) -> Path {
    name.split('/')
        .filter(|part| !part.is_empty())
        .fold(root.clone(), |path, part| path.join(part))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use object_store::memory::InMemory;

    use super::*;

    fn batch(values: Vec<i64>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(values))]).unwrap()
    }

    async fn names(folder: &OutputFolder) -> Vec<String> {
        let mut names = published_files(folder).await.unwrap();
        names.sort();
        names
    }

    #[tokio::test]
    async fn nothing_is_visible_until_publish_and_reruns_replace() {
        let folder = OutputFolder {
            store: Arc::new(InMemory::new()),
            root: Path::from("out/run"),
            url: "memory:///out/run/".to_string(),
        };
        let mut first = folder.stage("a");
        let b = batch(vec![1, 2, 3]);
        first
            .write_parquet(
                "segments/part-00000.parquet",
                b.schema(),
                std::slice::from_ref(&b),
            )
            .await
            .unwrap();
        first
            .write_parquet(
                "segments/part-00001.parquet",
                b.schema(),
                std::slice::from_ref(&b),
            )
            .await
            .unwrap();
        assert!(
            names(&folder).await.is_empty(),
            "staged files are not published"
        );
        let files = first.publish().await.unwrap();
        assert_eq!(files[0].rows, 3);
        assert_eq!(
            names(&folder).await,
            [
                "_SUCCESS",
                "segments/part-00000.parquet",
                "segments/part-00001.parquet"
            ]
        );

        // A rerun with fewer files leaves no stale file behind.
        let mut second = folder.stage("b");
        second
            .write_parquet("segments/part-00000.parquet", b.schema(), &[b])
            .await
            .unwrap();
        second.publish().await.unwrap();
        assert_eq!(
            names(&folder).await,
            ["_SUCCESS", "segments/part-00000.parquet"]
        );
        let all = list(&folder, &folder.root).await.unwrap();
        assert_eq!(all.len(), 2, "staging is cleaned: {all:?}");
    }

    #[tokio::test]
    async fn discard_leaves_published_output_alone() {
        let folder = OutputFolder {
            store: Arc::new(InMemory::new()),
            root: Path::from("out"),
            url: "memory:///out/".to_string(),
        };
        let b = batch(vec![1]);
        let mut first = folder.stage("a");
        first
            .write_parquet("x.parquet", b.schema(), std::slice::from_ref(&b))
            .await
            .unwrap();
        first.publish().await.unwrap();
        let mut failed = folder.stage("b");
        failed
            .write_parquet("x.parquet", b.schema(), &[b])
            .await
            .unwrap();
        failed.discard().await.unwrap();
        assert_eq!(names(&folder).await, ["_SUCCESS", "x.parquet"]);
        assert_eq!(list(&folder, &folder.root).await.unwrap().len(), 2);
    }
}
