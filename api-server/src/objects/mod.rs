//! The object store of attachments: S3 (or any S3-protocol server), reached with presigned
//! SigV4 requests built by `rusty-s3` and sent with `reqwest`.
//!
//! Clients upload and download straight to and from the store with URLs the API presigns;
//! the signed headers (content type, length, SHA-256 checksum, disposition) make the store
//! itself refuse any other body. The API only asks the store whether an upload arrived
//! (`HEAD`) and deletes objects through the [`janitor`].

pub mod janitor;

use std::collections::BTreeMap;
use std::time::Duration;

use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};

use crate::domain::Upload;
use crate::domain::attachments::content_disposition;
use crate::ports::{BoxFuture, ObjectInfo, ObjectStore, Presigned};
use crate::{Error, Result};

/// Where the bucket is and how to reach it (`S3_*` variables, see [`crate::config`]).
#[derive(Clone, PartialEq, Eq)]
pub struct S3Config {
    /// `S3_BUCKET`.
    pub bucket: String,
    /// `S3_ENDPOINT`: where the API reaches the store.
    pub endpoint: String,
    /// `S3_PUBLIC_ENDPOINT`: where clients reach it (presigned URLs); default `endpoint`.
    pub public_endpoint: String,
    /// `S3_REGION`.
    pub region: String,
    /// `S3_FORCE_PATH_STYLE`: `endpoint/bucket/key` instead of `bucket.endpoint/key`.
    pub path_style: bool,
    /// `S3_ACCESS_KEY_ID`.
    pub access_key_id: String,
    /// `S3_SECRET_ACCESS_KEY`.
    pub secret_access_key: String,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("public_endpoint", &self.public_endpoint)
            .field("region", &self.region)
            .field("path_style", &self.path_style)
            .finish_non_exhaustive()
    }
}

/// The S3 adapter of [`ObjectStore`].
pub struct S3Objects {
    /// The bucket as the API reaches it.
    internal: Bucket,
    /// The bucket as clients reach it.
    public: Bucket,
    credentials: Credentials,
    http: reqwest::Client,
}

impl std::fmt::Debug for S3Objects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Objects")
            .field("bucket", &self.internal.base_url().as_str())
            .field("public", &self.public.base_url().as_str())
            .finish_non_exhaustive()
    }
}

/// How long the API's own signed requests (HEAD, DELETE) stay valid.
const OWN_REQUEST_TTL: Duration = Duration::from_secs(60);

fn bucket(var: &'static str, endpoint: &str, config: &S3Config) -> Result<Bucket> {
    let url = url::Url::parse(endpoint).map_err(|e| Error::Config {
        var,
        reason: format!("{endpoint:?} is not a URL: {e}"),
    })?;
    let style = if config.path_style {
        UrlStyle::Path
    } else {
        UrlStyle::VirtualHost
    };
    Bucket::new(url, style, config.bucket.clone(), config.region.clone()).map_err(|e| {
        Error::Config {
            var,
            reason: format!(
                "cannot address bucket {:?} at {endpoint:?}: {e}. Fix: an http(s) URL with a \
                 host; with an IP address or a bucket name that is not a host name, set \
                 S3_FORCE_PATH_STYLE=true",
                config.bucket
            ),
        }
    })
}

impl S3Objects {
    /// The adapter for `config`; `timeout` bounds each of the API's own requests.
    pub fn new(config: &S3Config, timeout: Duration) -> Result<Self> {
        Ok(Self {
            internal: bucket("S3_ENDPOINT", &config.endpoint, config)?,
            public: bucket("S3_PUBLIC_ENDPOINT", &config.public_endpoint, config)?,
            credentials: Credentials::new(
                config.access_key_id.clone(),
                config.secret_access_key.clone(),
            ),
            http: reqwest::Client::builder()
                .timeout(timeout)
                .connect_timeout(timeout)
                .build()
                .map_err(|e| Error::ObjectStore {
                    context: "building the HTTP client",
                    reason: e.to_string(),
                })?,
        })
    }

    /// Sends one of the API's own signed requests with `headers` (each also signed).
    async fn send(
        &self,
        context: &'static str,
        method: reqwest::Method,
        url: url::Url,
        headers: &[(&str, &str)],
    ) -> Result<reqwest::Response> {
        let mut req = self.http.request(method, url.as_str());
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        req.send().await.map_err(|e| Error::ObjectStore {
            context,
            // Without the URL: it carries the access key id and a signature.
            reason: e.without_url().to_string(),
        })
    }
}

fn expires(ttl: Duration) -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now() + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::zero())
}

/// The headers a presigned upload signs, in the form the client sends them.
pub fn upload_headers(upload: &Upload) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("content-type".to_owned(), upload.content_type.clone()),
        ("content-length".to_owned(), upload.size_bytes.to_string()),
        ("x-amz-checksum-sha256".to_owned(), upload.sha256.clone()),
        (
            "content-disposition".to_owned(),
            content_disposition(&upload.name),
        ),
    ])
}

impl ObjectStore for S3Objects {
    fn presign_upload(&self, key: &str, upload: &Upload, ttl: Duration) -> Presigned {
        let headers = upload_headers(upload);
        let mut action = self.public.put_object(Some(&self.credentials), key);
        for (name, value) in &headers {
            action.headers_mut().insert(name.clone(), value.clone());
        }
        Presigned {
            method: "PUT",
            url: action.sign(ttl).to_string(),
            headers,
            expires_at: expires(ttl),
        }
    }

    fn presign_download(&self, key: &str, _file_name: &str, ttl: Duration) -> Presigned {
        // The name travels with the object (its Content-Disposition was signed at upload).
        let action = self.public.get_object(Some(&self.credentials), key);
        Presigned {
            method: "GET",
            url: action.sign(ttl).to_string(),
            headers: BTreeMap::new(),
            expires_at: expires(ttl),
        }
    }

    fn head<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<ObjectInfo>>> {
        Box::pin(async move {
            // Asks for the stored SHA-256 too (S3 answers it for objects uploaded with one).
            let mut action = self.internal.head_object(Some(&self.credentials), key);
            action
                .headers_mut()
                .insert("x-amz-checksum-mode", "ENABLED");
            let url = action.sign(OWN_REQUEST_TTL);
            let res = self
                .send(
                    "asking for an object (HEAD)",
                    reqwest::Method::HEAD,
                    url,
                    &[("x-amz-checksum-mode", "ENABLED")],
                )
                .await?;
            match res.status() {
                reqwest::StatusCode::NOT_FOUND => Ok(None),
                s if s.is_success() => {
                    let header = |name: &str| {
                        res.headers()
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned)
                    };
                    let size_bytes = header("content-length")
                        .and_then(|v| v.parse().ok())
                        .ok_or_else(|| Error::ObjectStore {
                            context: "asking for an object (HEAD)",
                            reason: "no Content-Length in the answer".to_owned(),
                        })?;
                    Ok(Some(ObjectInfo {
                        size_bytes,
                        content_type: header("content-type"),
                        sha256: header("x-amz-checksum-sha256"),
                    }))
                }
                // S3 answers 403 rather than 404 for a missing key to credentials without
                // s3:ListBucket: told apart by the fix, not guessed.
                reqwest::StatusCode::FORBIDDEN => Err(Error::ObjectStore {
                    context: "asking for an object (HEAD)",
                    reason: "HTTP 403: the credentials need s3:GetObject and s3:ListBucket on \
                             the bucket (without ListBucket a missing object answers 403)"
                        .to_owned(),
                }),
                s => Err(Error::ObjectStore {
                    context: "asking for an object (HEAD)",
                    reason: format!("HTTP {s}"),
                }),
            }
        })
    }

    fn ping(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let url = self
                .internal
                .head_bucket(Some(&self.credentials))
                .sign(OWN_REQUEST_TTL);
            let res = self
                .send(
                    "checking the bucket (HEAD)",
                    reqwest::Method::HEAD,
                    url,
                    &[],
                )
                .await?;
            if res.status().is_success() {
                Ok(())
            } else {
                Err(Error::ObjectStore {
                    context: "checking the bucket (HEAD)",
                    reason: format!("HTTP {}", res.status()),
                })
            }
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let url = self
                .internal
                .delete_object(Some(&self.credentials), key)
                .sign(OWN_REQUEST_TTL);
            let res = self
                .send("deleting an object", reqwest::Method::DELETE, url, &[])
                .await?;
            let status = res.status();
            if status.is_success() || status == reqwest::StatusCode::NOT_FOUND {
                Ok(())
            } else {
                let body = res.text().await.unwrap_or_default();
                Err(Error::ObjectStore {
                    context: "deleting an object",
                    reason: format!(
                        "HTTP {status}: {}",
                        body.chars().take(300).collect::<String>()
                    ),
                })
            }
        })
    }
}
