//! A client of the API's attachments for the tests, the release story and the benchmark:
//! announce a file, send it straight to the object store with the presigned request the API
//! answers, confirm, and download it back.

use base64::Engine as _;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::Digest as _;

use crate::{Error, Result};

/// Base64 of the SHA-256 of `data` (what an announcement carries).
pub fn sha256(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(data))
}

fn http_error(action: &str) -> impl FnOnce(reqwest::Error) -> Error + '_ {
    move |source| Error::Http {
        action: action.to_owned(),
        source,
    }
}

fn check(ok: bool, message: impl FnOnce() -> String) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(Error::Check { message: message() })
    }
}

/// An API at `base_url`, called with a bearer `token`.
#[derive(Debug, Clone)]
pub struct Attachments {
    /// The HTTP client (also used for the object store).
    pub http: reqwest::Client,
    /// The API's base URL.
    pub base_url: String,
    /// The caller's token.
    pub token: String,
}

impl Attachments {
    /// A client of the API at `base_url` for the holder of `token`.
    pub fn new(base_url: &str, token: &str) -> Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(60))
                .build()
                .map_err(http_error("building an HTTP client"))?,
            base_url: base_url.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
        })
    }

    /// Calls the API; status and JSON body (`Null` when there is none).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, Value)> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base_url))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.map_err(http_error(path))?;
        let status = res.status();
        let text = res.text().await.map_err(http_error(path))?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// Announces `data` as `name` of `content_type` on `list`: status and body (the pending
    /// attachment and its presigned upload).
    pub async fn announce(
        &self,
        list: &str,
        name: &str,
        content_type: &str,
        data: &[u8],
    ) -> Result<(StatusCode, Value)> {
        self.call(
            Method::POST,
            &format!("/v1/lists/{list}/attachments"),
            Some(json!({
                "name": name,
                "content_type": content_type,
                "size_bytes": data.len(),
                "sha256": sha256(data),
            })),
        )
        .await
    }

    /// Sends `body` to the object store with a presigned request and its headers
    /// (`content-length` comes from the body), `header` replacing one of them when given:
    /// the store's status and answer.
    pub async fn send_presigned(
        &self,
        presigned: &Value,
        body: Vec<u8>,
        header: Option<(&str, &str)>,
    ) -> Result<(StatusCode, String)> {
        let method = presigned["method"]
            .as_str()
            .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
            .unwrap_or(Method::PUT);
        let url = presigned["url"].as_str().unwrap_or_default();
        let mut req = self.http.request(method, url);
        for (name, value) in presigned["headers"].as_object().into_iter().flatten() {
            if name == "content-length" || header.is_some_and(|(h, _)| h == name) {
                continue;
            }
            req = req.header(name, value.as_str().unwrap_or_default());
        }
        if let Some((name, value)) = header {
            req = req.header(name, value);
        }
        let res = req
            .body(body)
            .send()
            .await
            .map_err(http_error("sending to the object store"))?;
        let status = res.status();
        Ok((status, res.text().await.unwrap_or_default()))
    }

    /// Announces, uploads and confirms `data` on `list`; the attachment's id.
    pub async fn upload(
        &self,
        list: &str,
        name: &str,
        content_type: &str,
        data: &[u8],
    ) -> Result<String> {
        let (s, b) = self.announce(list, name, content_type, data).await?;
        check(s == StatusCode::CREATED, || format!("announce: {s} {b}"))?;
        let (s, text) = self
            .send_presigned(&b["upload"], data.to_vec(), None)
            .await?;
        check(s.is_success(), || {
            format!("upload to the object store: {s} {text}")
        })?;
        let id = b["attachment"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let (s, b) = self
            .call(
                Method::POST,
                &format!("/v1/lists/{list}/attachments/{id}/confirm"),
                None,
            )
            .await?;
        check(s == StatusCode::OK, || format!("confirm: {s} {b}"))?;
        Ok(id)
    }

    /// Downloads attachment `id` of `list` through its presigned URL: the bytes and the
    /// `Content-Disposition` the store answered.
    pub async fn download(&self, list: &str, id: &str) -> Result<(Vec<u8>, String)> {
        let (s, b) = self
            .call(
                Method::GET,
                &format!("/v1/lists/{list}/attachments/{id}"),
                None,
            )
            .await?;
        check(s == StatusCode::OK, || format!("get attachment: {s} {b}"))?;
        let url = b["download"]["url"].as_str().unwrap_or_default();
        let res = self
            .http
            .get(url)
            .send()
            .await
            .map_err(http_error("downloading from the object store"))?;
        let status = res.status();
        check(status == StatusCode::OK, || {
            format!("download from the object store: {status}")
        })?;
        let disposition = res
            .headers()
            .get("content-disposition")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let bytes = res
            .bytes()
            .await
            .map_err(http_error("reading a download"))?;
        Ok((bytes.to_vec(), disposition))
    }
}
