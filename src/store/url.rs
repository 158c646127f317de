//! Store locations: a bare path, `file://...`, `memory://[name]`, and the object stores
//! `s3://bucket/prefix`, `gs://bucket/prefix` and `az://container/prefix`.
//!
//! Cloud credentials and options come from the ecosystem's environment variables (`AWS_*`,
//! `GOOGLE_*`, `AZURE_*`, read by `object_store`'s `from_env` builders) and from an
//! explicit map of `object_store` configuration keys, which wins over the environment.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};

use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::ObjectStore;
use parking_lot::Mutex;

use super::redact::{redact_urls, Redactor};
use super::StoreError;
use crate::error::Result;

/// How a store is opened.
#[derive(Clone, Default)]
pub struct StoreOptions {
    /// fsync every written file and its directory before a put returns (local disk only).
    pub fsync: bool,
    /// Object-store configuration (`object_store` key names such as `region`, `endpoint`,
    /// `allow_http`, `access_key_id`); wins over the environment. Values may be secrets:
    /// they are never shown.
    pub options: BTreeMap<String, String>,
}

impl std::fmt::Debug for StoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreOptions")
            .field("fsync", &self.fsync)
            .field("options", &self.options.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// An object-store service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cloud {
    S3,
    Gcs,
    Azure,
}

impl Cloud {
    fn scheme(self) -> &'static str {
        match self {
            Cloud::S3 => "s3",
            Cloud::Gcs => "gs",
            Cloud::Azure => "az",
        }
    }

    fn feature(self) -> &'static str {
        match self {
            Cloud::S3 => "s3",
            Cloud::Gcs => "gcs",
            Cloud::Azure => "azure",
        }
    }

    fn from_scheme(scheme: &str) -> Option<Cloud> {
        match scheme {
            "s3" | "s3a" => Some(Cloud::S3),
            "gs" | "gcs" => Some(Cloud::Gcs),
            "az" | "azure" => Some(Cloud::Azure),
            _ => None,
        }
    }
}

/// A parsed store location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    Local(std::path::PathBuf),
    Memory(String),
    /// `bucket` is the S3/GCS bucket or the Azure container; `prefix` has no surrounding
    /// slashes and may be empty.
    Cloud {
        cloud: Cloud,
        bucket: String,
        prefix: String,
    },
}

/// `memory://name` stores live as long as the process, shared by every handle on that name.
fn memory_stores() -> &'static Mutex<HashMap<String, Arc<InMemory>>> {
    static STORES: OnceLock<Mutex<HashMap<String, Arc<InMemory>>>> = OnceLock::new();
    STORES.get_or_init(|| Mutex::new(HashMap::new()))
}

const SUPPORTED: &str = "a directory path, file:///..., memory://name, s3://bucket/prefix, \
                         gs://bucket/prefix or az://container/prefix";

impl StoreUrl {
    /// What kind of store the location names: "local", "memory" or "object".
    pub fn kind(&self) -> &'static str {
        match self {
            StoreUrl::Local(_) => "local",
            StoreUrl::Memory(_) => "memory",
            StoreUrl::Cloud { .. } => "object",
        }
    }

    pub fn parse(location: &str) -> Result<StoreUrl> {
        // Errors show the location without a query string or user info (they may hold keys).
        let invalid = |reason: &str| StoreError::InvalidUrl {
            url: redact_urls(location),
            reason: reason.to_string(),
        };
        let location_trimmed = location.trim();
        if location_trimmed.is_empty() {
            return Err(invalid(
                "it is empty; give a directory path or a URL such as file:///data/kitaru",
            )
            .into());
        }
        if location_trimmed.contains('\0') {
            return Err(invalid("it contains a NUL byte").into());
        }
        if let Some(rest) = location_trimmed.strip_prefix("memory://") {
            let name = rest.trim_end_matches('/');
            if !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            {
                return Err(
                    invalid("a memory:// store name may only use A-Z a-z 0-9 - _ .").into(),
                );
            }
            return Ok(StoreUrl::Memory(name.to_string()));
        }
        if let Some(rest) = location_trimmed.strip_prefix("file://") {
            if !rest.starts_with('/') {
                return Err(invalid(
                    "a file:// URL needs an absolute path, e.g. file:///home/me/kitaru-store",
                )
                .into());
            }
            return Ok(StoreUrl::Local(rest.into()));
        }
        if let Some((scheme, rest)) = location_trimmed.split_once("://") {
            let Some(cloud) = Cloud::from_scheme(&scheme.to_ascii_lowercase()) else {
                return Err(StoreError::UnsupportedScheme {
                    url: redact_urls(location),
                    scheme: scheme.to_string(),
                    supported: SUPPORTED,
                }
                .into());
            };
            return Self::parse_cloud(cloud, rest).map_err(|reason| invalid(&reason).into());
        }
        let path = std::path::Path::new(location_trimmed);
        let abs = if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(|e| StoreError::LocalDir {
                    path: location.to_string(),
                    source: e,
                })?
                .join(path)
        };
        Ok(StoreUrl::Local(abs))
    }

    fn parse_cloud(cloud: Cloud, rest: &str) -> std::result::Result<StoreUrl, String> {
        if rest.contains(['?', '#']) {
            return Err(format!(
                "a {}:// location takes no query string or fragment; pass settings as options \
                 (the stack's config or Store(..., options={{...}})) or environment variables",
                cloud.scheme()
            ));
        }
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.contains('@') {
            return Err(format!(
                "put no credentials or account in a {}:// location; use environment variables \
                 or options (for Azure: {}://container/prefix with AZURE_STORAGE_ACCOUNT_NAME)",
                cloud.scheme(),
                cloud.scheme()
            ));
        }
        if bucket.is_empty()
            || !bucket
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(format!(
                "the bucket name {bucket:?} is not valid: give {}://<bucket>/<prefix>, the \
                 bucket using only a-z 0-9 - _ .",
                cloud.scheme()
            ));
        }
        let prefix = prefix.trim_matches('/');
        if prefix
            .split('/')
            .any(|seg| !prefix.is_empty() && (seg.is_empty() || seg == "." || seg == ".."))
        {
            return Err("the prefix may not contain empty, \".\" or \"..\" segments".into());
        }
        Path::parse(prefix).map_err(|e| format!("the prefix is not a valid object key: {e}"))?;
        Ok(StoreUrl::Cloud {
            cloud,
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        })
    }

    /// The location as shown to users and recorded in errors.
    pub fn display(&self) -> String {
        match self {
            StoreUrl::Local(p) => format!("file://{}", p.display()),
            StoreUrl::Memory(name) => format!("memory://{name}"),
            StoreUrl::Cloud {
                cloud,
                bucket,
                prefix,
            } if prefix.is_empty() => format!("{}://{bucket}", cloud.scheme()),
            StoreUrl::Cloud {
                cloud,
                bucket,
                prefix,
            } => format!("{}://{bucket}/{prefix}", cloud.scheme()),
        }
    }

    /// Whether this is an object store reached over the network.
    pub fn is_cloud(&self) -> bool {
        matches!(self, StoreUrl::Cloud { .. })
    }

    /// Builds the backend and the key prefix under which the store lives.
    pub fn connect(
        &self,
        options: &StoreOptions,
        redactor: &Redactor,
    ) -> Result<(Arc<dyn ObjectStore>, Path)> {
        match self {
            StoreUrl::Local(dir) => {
                let local_err = |e: std::io::Error| StoreError::LocalDir {
                    path: dir.display().to_string(),
                    source: e,
                };
                if !dir.exists() {
                    // A store kitaru creates is private: outputs, prompts and answers are
                    // readable by their owner only (files inside keep the umask's mode,
                    // which the directory makes moot). An existing directory keeps its mode.
                    use std::os::unix::fs::DirBuilderExt;
                    std::fs::DirBuilder::new()
                        .recursive(true)
                        .mode(0o700)
                        .create(dir)
                        .map_err(local_err)?;
                }
                // A directory in which a new file "does not exist" right after it was
                // created (`/proc/self`, some virtual file systems) would make every write
                // retry forever; a read-only one is fine (it can still be read).
                let probe = dir.join(format!(".kitaru-probe-{}", std::process::id()));
                match std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&probe)
                {
                    Ok(_) => {
                        let _ = std::fs::remove_file(&probe);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return Err(StoreError::InvalidUrl {
                            url: self.display(),
                            reason: "files cannot be created in this directory (a virtual \
                                     file system?); point KITARU_STORE at a directory of your own"
                                .into(),
                        }
                        .into())
                    }
                    Err(_) => {}
                }
                let fs = LocalFileSystem::new_with_prefix(dir)
                    .map_err(|e| StoreError::InvalidUrl {
                        url: self.display(),
                        reason: e.to_string(),
                    })?
                    .with_fsync(options.fsync);
                Ok((Arc::new(fs), Path::default()))
            }
            StoreUrl::Memory(name) => {
                let store = memory_stores()
                    .lock()
                    .entry(name.clone())
                    .or_insert_with(|| Arc::new(InMemory::new()))
                    .clone();
                Ok((store, Path::default()))
            }
            StoreUrl::Cloud {
                cloud,
                bucket,
                prefix,
            } => {
                let os = build_cloud(*cloud, bucket, &options.options).map_err(|reason| {
                    StoreError::InvalidUrl {
                        url: self.display(),
                        reason: redactor.clean(&reason),
                    }
                })?;
                Ok((os, Path::from(prefix.as_str())))
            }
        }
    }

    /// What identifies the backend a store talks to (the probe of conditional writes is
    /// cached per identity): the location plus the endpoint settings.
    pub fn identity(&self, options: &StoreOptions) -> String {
        let endpoint: Vec<String> = options
            .options
            .iter()
            .filter(|(k, _)| {
                k.contains("endpoint")
                    || k.contains("conditional")
                    || k.contains("account_name")
                    || k.contains("emulator")
            })
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let env: Vec<String> = [
            "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT",
            "AWS_ENDPOINT_URL_S3",
            "AZURE_STORAGE_ACCOUNT_NAME",
            "AZURE_STORAGE_ENDPOINT",
            "AZURITE_BLOB_STORAGE_URL",
        ]
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .collect();
        format!(
            "{} {} {}",
            self.display(),
            endpoint.join(","),
            env.join(",")
        )
    }
}

fn not_built(cloud: Cloud) -> String {
    format!(
        "this build of kitaru was compiled without the `{}` feature, so {}:// stores are \
         unavailable; install the published wheel or build with `--features {}`",
        cloud.feature(),
        cloud.scheme(),
        cloud.feature()
    )
}

#[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
fn unknown_key(cloud: Cloud, key: &str) -> String {
    format!(
        "unknown {} option {key:?}; use object_store configuration keys (for example \
         region, endpoint, allow_http, access_key_id for s3://)",
        cloud.scheme()
    )
}

/// Whether the user set `key` (with or without the `aws_` prefix) or `env`.
#[cfg(feature = "s3")]
fn explicit(options: &BTreeMap<String, String>, key: &str, env: &str) -> bool {
    options.contains_key(key)
        || options.contains_key(&format!("aws_{key}"))
        || std::env::var_os(env).is_some()
}

/// How long one store operation may take in all, retries included: `KITARU_STORE_TIMEOUT`
/// seconds (default 60). A frozen server then fails a flow in about that long plus one
/// request's timeout (half of it, at most 30 s; object_store's `timeout` option overrides
/// it), instead of object_store's own 3 minutes of retries plus 30 s requests.
pub fn operation_timeout() -> std::time::Duration {
    let secs = std::env::var("KITARU_STORE_TIMEOUT")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 1.0)
        .unwrap_or(60.0)
        .min(3600.0);
    std::time::Duration::from_secs_f64(secs)
}

#[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
fn retry_config() -> object_store::RetryConfig {
    object_store::RetryConfig {
        retry_timeout: operation_timeout(),
        ..Default::default()
    }
}

#[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
fn request_timeout() -> String {
    let secs = (operation_timeout().as_secs_f64() / 2.0).clamp(1.0, 30.0);
    format!("{}ms", (secs * 1000.0) as u64)
}

fn build_cloud(
    cloud: Cloud,
    bucket: &str,
    options: &BTreeMap<String, String>,
) -> std::result::Result<Arc<dyn ObjectStore>, String> {
    let _ = (bucket, options);
    match cloud {
        #[cfg(feature = "s3")]
        Cloud::S3 => build_s3(bucket, options),
        #[cfg(feature = "gcs")]
        Cloud::Gcs => build_gcs(bucket, options),
        #[cfg(feature = "azure")]
        Cloud::Azure => build_azure(bucket, options),
        #[allow(unreachable_patterns)]
        other => Err(not_built(other)),
    }
}

#[cfg(feature = "s3")]
fn build_s3(
    bucket: &str,
    options: &BTreeMap<String, String>,
) -> std::result::Result<Arc<dyn ObjectStore>, String> {
    use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey as K, S3ConditionalPut};
    use std::str::FromStr;

    let mut b = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_retry(retry_config());
    if let Ok(k) = K::from_str("timeout") {
        b = b.with_config(k, request_timeout()); // options below may override it
    }
    if !explicit(options, "conditional_put", "AWS_CONDITIONAL_PUT") {
        // `PutMode::Create` sends `If-None-Match: *`; the open-time probe checks the
        // server honours it.
        b = b.with_conditional_put(S3ConditionalPut::ETagMatch);
    }
    for (key, value) in options {
        let k = K::from_str(key).map_err(|_| unknown_key(Cloud::S3, key))?;
        if matches!(k, K::Bucket) {
            return Err("the bucket comes from the s3:// location, not from options".into());
        }
        b = b.with_config(k, value);
    }
    let endpoint = b
        .get_config_value(&K::S3Endpoint)
        .or_else(|| b.get_config_value(&K::Endpoint));
    if let Some(endpoint) = endpoint {
        // A non-AWS endpoint (MinIO, SeaweedFS, R2, a local server) wants path-style
        // requests, and an http:// endpoint given explicitly means plain HTTP is intended.
        if !explicit(
            options,
            "virtual_hosted_style_request",
            "AWS_VIRTUAL_HOSTED_STYLE_REQUEST",
        ) {
            b = b.with_virtual_hosted_style_request(false);
        }
        if endpoint.starts_with("http://") && !explicit(options, "allow_http", "AWS_ALLOW_HTTP") {
            b = b.with_allow_http(true);
        }
    }
    b.build()
        .map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
        .map_err(|e| format!("cannot configure S3: {e}"))
}

#[cfg(feature = "gcs")]
fn build_gcs(
    bucket: &str,
    options: &BTreeMap<String, String>,
) -> std::result::Result<Arc<dyn ObjectStore>, String> {
    use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey as K};
    use std::str::FromStr;

    let mut b = GoogleCloudStorageBuilder::from_env()
        .with_bucket_name(bucket)
        .with_retry(retry_config());
    if let Ok(k) = K::from_str("timeout") {
        b = b.with_config(k, request_timeout());
    }
    for (key, value) in options {
        let k = K::from_str(key).map_err(|_| unknown_key(Cloud::Gcs, key))?;
        if matches!(k, K::Bucket) {
            return Err("the bucket comes from the gs:// location, not from options".into());
        }
        b = b.with_config(k, value);
    }
    b.build()
        .map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
        .map_err(|e| format!("cannot configure Google Cloud Storage: {e}"))
}

#[cfg(feature = "azure")]
fn build_azure(
    container: &str,
    options: &BTreeMap<String, String>,
) -> std::result::Result<Arc<dyn ObjectStore>, String> {
    use object_store::azure::{AzureConfigKey as K, MicrosoftAzureBuilder};
    use std::str::FromStr;

    let mut b = MicrosoftAzureBuilder::from_env()
        .with_container_name(container)
        .with_retry(retry_config());
    if let Ok(k) = K::from_str("timeout") {
        b = b.with_config(k, request_timeout());
    }
    for (key, value) in options {
        let k = K::from_str(key).map_err(|_| unknown_key(Cloud::Azure, key))?;
        if matches!(k, K::ContainerName) {
            return Err("the container comes from the az:// location, not from options".into());
        }
        b = b.with_config(k, value);
    }
    b.build()
        .map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
        .map_err(|e| format!("cannot configure Azure Blob Storage: {e}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn cloud_locations_parse() {
        let u = StoreUrl::parse("s3://bucket/a/b/").unwrap();
        assert_eq!(
            u,
            StoreUrl::Cloud {
                cloud: Cloud::S3,
                bucket: "bucket".into(),
                prefix: "a/b".into()
            }
        );
        assert_eq!(u.display(), "s3://bucket/a/b");
        assert_eq!(StoreUrl::parse("gs://b").unwrap().display(), "gs://b");
        assert_eq!(
            StoreUrl::parse("azure://c/p").unwrap().display(),
            "az://c/p"
        );
    }

    #[test]
    fn bad_cloud_locations_are_refused_without_echoing_secrets() {
        for bad in [
            "s3://bucket/p?X-Amz-Signature=TOPSECRET99",
            "s3://AKIA:TOPSECRET99@bucket/p",
            "s3:///p",
            "s3://bucket/a//b",
            "s3://bucket/../b",
        ] {
            let err = StoreUrl::parse(bad).unwrap_err().to_string();
            assert!(!err.contains("TOPSECRET99"), "{err}");
            assert!(err.contains("s3://"), "{err}");
        }
        let err = StoreUrl::parse("ftp://x/y").unwrap_err().to_string();
        assert!(
            err.contains("ftp://") && err.contains("s3://bucket/prefix"),
            "{err}"
        );
    }

    #[test]
    fn debug_of_options_shows_keys_only() {
        let opts = StoreOptions {
            fsync: false,
            options: [("secret_access_key".to_string(), "TOPSECRET99".to_string())].into(),
        };
        let shown = format!("{opts:?}");
        assert!(shown.contains("secret_access_key") && !shown.contains("TOPSECRET99"));
    }

    #[cfg(feature = "s3")]
    #[test]
    fn s3_option_errors_hide_values() {
        let url = StoreUrl::parse("s3://bucket/p").unwrap();
        let opts = StoreOptions {
            fsync: false,
            options: [
                ("secret_access_key".to_string(), "TOPSECRET99".to_string()),
                ("disable_bulk_delete".to_string(), "TOPSECRET99".to_string()),
            ]
            .into(),
        };
        let redactor = Redactor::new(opts.options.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let err = url.connect(&opts, &redactor).err().unwrap().to_string();
        assert!(!err.contains("TOPSECRET99"), "{err}");
        assert!(err.contains("s3://bucket/p"), "{err}");
        let opts = StoreOptions {
            fsync: false,
            options: [("no_such_key".to_string(), "TOPSECRET99".to_string())].into(),
        };
        let err = url.connect(&opts, &redactor).err().unwrap().to_string();
        assert!(
            err.contains("no_such_key") && !err.contains("TOPSECRET99"),
            "{err}"
        );
    }

    #[cfg(feature = "azure")]
    #[test]
    fn azure_needs_an_account() {
        // (assumes AZURE_STORAGE_ACCOUNT_NAME is not set in the test environment)
        let url = StoreUrl::parse("az://container/p").unwrap();
        let opts = StoreOptions {
            fsync: false,
            options: [("account_key".to_string(), "TOPSECRET99".to_string())].into(),
        };
        let redactor = Redactor::new([("account_key", "TOPSECRET99")]);
        let err = url.connect(&opts, &redactor).err().unwrap().to_string();
        assert!(
            err.contains("az://container/p") && err.contains("Azure"),
            "{err}"
        );
        assert!(!err.contains("TOPSECRET99"), "{err}");
        // with an account the client is built (nothing is sent until the store is used)
        let opts = StoreOptions {
            fsync: false,
            options: [("account_name".to_string(), "acct".to_string())].into(),
        };
        assert!(url.connect(&opts, &redactor).is_ok());
    }
}
