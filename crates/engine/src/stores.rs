//! One object store per pipeline store, registered with DataFusion under the store's
//! `scheme://bucket` so sources and outputs under it resolve to it.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use datafusion::prelude::SessionContext;
use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::http::HttpBuilder;
use object_store::local::LocalFileSystem;
use segflow_pipeline::{Store, Url};

use crate::{EngineError, Result};

/// Builds every store of the pipeline and registers it with `ctx`.
pub fn register_stores(ctx: &SessionContext, stores: &[Store]) -> Result<()> {
    for store in stores {
        let object_store = build(store).map_err(|message| EngineError::Store {
            store: store.name.clone(),
            url: store.url.to_string(),
            message,
        })?;
        ctx.register_object_store(&bucket_url(&store.url), object_store);
    }
    Ok(())
}

/// `scheme://host/`: the part of a URL DataFusion keys object stores by.
fn bucket_url(url: &Url) -> Url {
    let mut base = url.clone();
    base.set_path("/");
    base.set_query(None);
    base
}

/// Credentials and defaults come from the environment (`AWS_*`, `GOOGLE_*`, `AZURE_*`), the
/// pipeline's `options` are applied on top.
fn build(store: &Store) -> Result<Arc<dyn ObjectStore>, String> {
    let url = store.url.as_str();
    let options = &store.options;
    let store: Arc<dyn ObjectStore> = match store.url.scheme() {
        "file" => {
            if let Some(key) = options.keys().next() {
                return Err(format!("file:// stores take no options, got `{key}`"));
            }
            Arc::new(LocalFileSystem::new())
        }
        "s3" => {
            let builder = AmazonS3Builder::from_env().with_url(url);
            let builder = configure(builder, options, |b, k, v| b.with_config(k, v))?;
            Arc::new(builder.build().map_err(|error| error.to_string())?)
        }
        "gs" => {
            let builder = GoogleCloudStorageBuilder::from_env().with_url(url);
            let builder = configure(builder, options, |b, k, v| b.with_config(k, v))?;
            Arc::new(builder.build().map_err(|error| error.to_string())?)
        }
        "az" | "abfs" => {
            let builder = MicrosoftAzureBuilder::from_env().with_url(url);
            let builder = configure(builder, options, |b, k, v| b.with_config(k, v))?;
            Arc::new(builder.build().map_err(|error| error.to_string())?)
        }
        "http" | "https" => {
            let builder = HttpBuilder::new().with_url(bucket_url(&store.url).as_str());
            let builder = configure(builder, options, |b, k, v| b.with_config(k, v))?;
            Arc::new(builder.build().map_err(|error| error.to_string())?)
        }
        other => return Err(format!("unsupported scheme `{other}://`")),
    };
    Ok(store)
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
    fn stores_are_keyed_by_bucket() {
        assert_eq!(
            bucket_url(&Url::parse("s3://bucket/a/b/").unwrap()).as_str(),
            "s3://bucket/"
        );
    }
}
