//! One object store per pipeline store, registered with DataFusion under the store's
//! `scheme://bucket` so sources and outputs under it resolve to it.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use datafusion::prelude::SessionContext;
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::http::HttpBuilder;
use object_store::local::LocalFileSystem;
use object_store::{BackoffConfig, ObjectStore, RetryConfig};
use segflow_pipeline::{Pipeline, Store, Url};

use crate::{EngineError, Result};

/// Builds every store of the pipeline and registers it with `ctx`. A setting the store's
/// builder rejects is reported at its place in the pipeline file.
pub fn register_stores(ctx: &SessionContext, pipeline: &Pipeline) -> Result<()> {
    for store in &pipeline.stores {
        let object_store = build(store).map_err(|message| {
            let key = match message
                .strip_prefix("option `")
                .and_then(|rest| rest.split_once('`'))
            {
                Some((option, _)) => format!("stores.{}.options.{option}", store.name),
                None => format!("stores.{}", store.name),
            };
            EngineError::StoreSettings {
                at: pipeline.at(&key),
                message,
            }
        })?;
        ctx.register_object_store(&bucket_url(&store.url), object_store);
    }
    Ok(())
}

/// Before any step runs, one listing per remote store proves that its endpoint answers,
/// its bucket exists and the credentials are accepted, so such mistakes fail in a second
/// with a clear message instead of in the middle of a step.
pub async fn preflight(ctx: &SessionContext, stores: &[Store]) -> Result<()> {
    for store in stores {
        if matches!(store.url.scheme(), "file" | "http" | "https") {
            // A local folder is created on write; an HTTP server usually cannot list.
            continue;
        }
        let fail = |operation: &'static str, message: String| EngineError::StoreAccess {
            store: store.name.clone(),
            url: store.url.to_string(),
            operation,
            message,
        };
        let object_store = ctx
            .runtime_env()
            .object_store(
                datafusion::execution::object_store::ObjectStoreUrl::parse(
                    bucket_url(&store.url).as_str(),
                )
                .map_err(|error| fail("opening", error.to_string()))?,
            )
            .map_err(|error| fail("opening", error.to_string()))?;
        let root = store_root(&store.url).map_err(|message| fail("opening", message))?;
        object_store
            .list_with_delimiter(Some(&root))
            .await
            .map_err(|error| fail("listing", segflow_publish::explain(&error)))?;
    }
    Ok(())
}

/// The store's folder as an object-store path.
pub(crate) fn store_root(url: &Url) -> Result<object_store::path::Path, String> {
    object_store::path::Path::from_url_path(url.path()).map_err(|error| error.to_string())
}

/// `scheme://host/`: the part of a URL DataFusion keys object stores by.
pub(crate) fn bucket_url(url: &Url) -> Url {
    let mut base = url.clone();
    base.set_path("/");
    base.set_query(None);
    base
}

/// Credentials and defaults come from the environment (`AWS_*`, `GOOGLE_*`, `AZURE_*`), the
/// pipeline's `options` are applied on top.
pub(crate) fn build(store: &Store) -> Result<Arc<dyn ObjectStore>, String> {
    let url = store.url.as_str();
    let (retry, options) = retry_config(&store.options)?;
    let options = &options;
    let store: Arc<dyn ObjectStore> = match store.url.scheme() {
        "file" => {
            if let Some(key) = store.options.keys().next() {
                return Err(format!("file:// stores take no options, got `{key}`"));
            }
            Arc::new(LocalFileSystem::new())
        }
        "s3" => {
            let builder = s3_builder(store)?.with_retry(retry);
            Arc::new(builder.build().map_err(|error| error.to_string())?)
        }
        "gs" => {
            let builder = GoogleCloudStorageBuilder::from_env()
                .with_url(url)
                .with_retry(retry);
            let builder = configure(builder, options, |b, k, v| b.with_config(k, v))?;
            Arc::new(builder.build().map_err(|error| error.to_string())?)
        }
        "az" | "abfs" => {
            let builder = MicrosoftAzureBuilder::from_env()
                .with_url(url)
                .with_retry(retry);
            let builder = configure(builder, options, |b, k, v| b.with_config(k, v))?;
            Arc::new(builder.build().map_err(|error| error.to_string())?)
        }
        "http" | "https" => {
            let builder = HttpBuilder::new()
                .with_url(bucket_url(&store.url).as_str())
                .with_retry(retry);
            let builder = configure(builder, options, |b, k, v| b.with_config(k, v))?;
            Arc::new(builder.build().map_err(|error| error.to_string())?)
        }
        other => return Err(format!("unsupported scheme `{other}://`")),
    };
    Ok(store)
}

/// An S3 store's settings: the environment's (`AWS_*`), the pipeline's options on top.
pub(crate) fn s3_builder(store: &Store) -> Result<AmazonS3Builder, String> {
    let (_, options) = retry_config(&store.options)?;
    let builder = AmazonS3Builder::from_env().with_url(store.url.as_str());
    configure(builder, &options, |b, k, v| b.with_config(k, v))
}

/// segflow's own options for object_store's retry policy (the builders take it as a struct,
/// not as config keys); the other options are returned for the builder.
fn retry_config(
    options: &BTreeMap<String, String>,
) -> Result<(RetryConfig, BTreeMap<String, String>), String> {
    let mut retry = RetryConfig::default();
    let mut backoff = BackoffConfig::default();
    let duration = |key: &str, value: &str| {
        humantime::parse_duration(value).map_err(|error| {
            format!("option `{key}`: `{value}` is not a duration like `30s` ({error})")
        })
    };
    let mut rest = BTreeMap::new();
    for (key, value) in options {
        match key.as_str() {
            "max_retries" => {
                retry.max_retries = value
                    .parse()
                    .map_err(|_| format!("option `{key}`: `{value}` is not a whole number"))?;
            }
            "retry_timeout" => retry.retry_timeout = duration(key, value)?,
            "backoff_initial" => backoff.init_backoff = duration(key, value)?,
            "backoff_max" => backoff.max_backoff = duration(key, value)?,
            "backoff_base" => {
                backoff.base = value
                    .parse::<f64>()
                    .ok()
                    .filter(|base| *base >= 1.0)
                    .ok_or_else(|| format!("option `{key}`: `{value}` is not a number >= 1"))?;
            }
            _ => {
                rest.insert(key.clone(), value.clone());
            }
        }
    }
    retry.backoff = backoff;
    Ok((retry, rest))
}

/// Applies the pipeline's options with the builder's own config keys, naming a key the
/// builder does not know.
fn configure<B, K>(
    builder: B,
    options: &BTreeMap<String, String>,
    set: impl Fn(B, K, &String) -> B,
) -> Result<B, String>
where
    K: FromStr<Err = object_store::Error>,
{
    options.iter().try_fold(builder, |builder, (key, value)| {
        let parsed = key
            .parse()
            .map_err(|error| format!("option `{key}`: {error}"))?;
        Ok(set(builder, parsed, value))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(url: &str, options: &[(&str, &str)]) -> Store {
        Store {
            name: "s".to_string(),
            url: Url::parse(url).unwrap(),
            options: options
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    #[test]
    fn s3_options_are_applied_and_unknown_ones_named() {
        let ok = store(
            "s3://bucket/prefix/",
            &[
                ("endpoint", "http://127.0.0.1:8333"),
                ("allow_http", "true"),
                ("region", "us-east-1"),
            ],
        );
        assert!(build(&ok).is_ok());
        let bad = store("s3://bucket/", &[("endpiont", "x")]);
        let error = build(&bad).err().unwrap();
        assert!(error.starts_with("option `endpiont`"), "{error}");
    }

    #[test]
    fn retry_settings_are_segflow_options() {
        let options: BTreeMap<String, String> = [
            ("max_retries", "2"),
            ("retry_timeout", "5s"),
            ("backoff_initial", "50ms"),
            ("region", "us-east-1"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let (retry, rest) = retry_config(&options).unwrap();
        assert_eq!(retry.max_retries, 2);
        assert_eq!(retry.retry_timeout, std::time::Duration::from_secs(5));
        assert_eq!(
            retry.backoff.init_backoff,
            std::time::Duration::from_millis(50)
        );
        assert_eq!(rest.keys().collect::<Vec<_>>(), ["region"]);
        let bad = store("s3://bucket/", &[("retry_timeout", "soon")]);
        let error = build(&bad).err().unwrap();
        assert!(
            error.starts_with("option `retry_timeout`: `soon`"),
            "{error}"
        );
        let timeout = store(
            "s3://bucket/",
            &[("timeout", "30s"), ("connect_timeout", "2s")],
        );
        assert!(
            build(&timeout).is_ok(),
            "client timeouts are builder options"
        );
    }

    #[test]
    fn stores_are_keyed_by_bucket() {
        assert_eq!(
            bucket_url(&Url::parse("s3://bucket/a/b/").unwrap()).as_str(),
            "s3://bucket/"
        );
    }
}
