//! JSON responses, and the status code of each use-case error.

use serde_json::json;
use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;

use crate::error::AppError;

pub(super) fn json_response(status: StatusCode, body: &impl serde::Serialize) -> Response {
    // Most answers fit in 1 KiB (serde_json's own buffer starts at 128 bytes and grows by
    // copying itself); the buffer is the response's body until it is sent, so not larger.
    let mut bytes = Vec::with_capacity(1024);
    let (status, bytes) = match serde_json::to_writer(&mut bytes, body) {
        Ok(()) => (status, bytes),
        // Our bodies are structs and maps with string keys: never in practice.
        Err(err) => {
            tracing::error!(error = %err, "an answer could not be written as JSON");
            let body = error_body("internal", "the answer could not be written", None);
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                body.to_string().into_bytes(),
            )
        }
    };
    let mut res = Response::new(bytes.into());
    *res.status_mut() = status;
    res.headers_mut().insert(
        warp::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

pub(super) fn error_body(code: &str, message: &str, field: Option<&str>) -> serde_json::Value {
    match field {
        Some(f) => json!({ "error": code, "message": message, "field": f }),
        None => json!({ "error": code, "message": message }),
    }
}

pub(super) fn error_response(err: &AppError) -> Response {
    let (status, body) = match err {
        AppError::Invalid(i) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            error_body("validation_failed", &i.message, Some(&i.field)),
        ),
        AppError::BadRequest(i) => (
            StatusCode::BAD_REQUEST,
            error_body("bad_request", &i.message, Some(&i.field)),
        ),
        AppError::Unauthorized(m) => (
            StatusCode::UNAUTHORIZED,
            error_body("unauthorized", m, None),
        ),
        AppError::InvalidToken => {
            let mut res = json_response(
                StatusCode::UNAUTHORIZED,
                &error_body(
                    "unauthorized",
                    "the token is invalid, expired or revoked",
                    None,
                ),
            );
            res.headers_mut().insert(
                "www-authenticate",
                HeaderValue::from_static(r#"Bearer error="invalid_token""#),
            );
            return res;
        }
        AppError::Forbidden(m) => (StatusCode::FORBIDDEN, error_body("forbidden", m, None)),
        AppError::NotFound(what) => (
            StatusCode::NOT_FOUND,
            error_body("not_found", &format!("{what} not found"), None),
        ),
        AppError::Conflict(m) => (StatusCode::CONFLICT, error_body("conflict", m, None)),
        AppError::CapReached(cap) => (
            StatusCode::CONFLICT,
            json!({
                "error": "limit_reached",
                "message": format!("at most {} {} ({})", cap.max, cap.what, cap.limit),
                "limit": cap.limit,
                "max": cap.max,
            }),
        ),
        AppError::RateLimited(limited) => {
            let secs = limited.retry_after_seconds();
            let message = format!(
                "too many requests: at most {} per minute ({}); retry in {secs} s",
                limited.per_minute, limited.limit
            );
            return retry_later(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                &message,
                limited.limit,
                secs,
            );
        }
        AppError::Overloaded {
            what,
            limit,
            retry_after,
        } => {
            let secs = crate::ratelimit::retry_after_seconds(*retry_after);
            let message = format!("{what} is at capacity ({limit}); retry in {secs} s");
            return retry_later(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                &message,
                limit,
                secs,
            );
        }
        AppError::NotConfigured(message) => (
            StatusCode::NOT_IMPLEMENTED,
            error_body("not_configured", message, None),
        ),
        AppError::Unavailable(message) => {
            tracing::error!(error = %message, "request refused: the server cannot serve it");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                error_body("unavailable", message, None),
            )
        }
        AppError::Internal(e) => {
            tracing::error!(error = %e, "request failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                error_body(
                    "internal",
                    "an internal error occurred; see the server log",
                    None,
                ),
            )
        }
    };
    let mut res = json_response(status, &body);
    if status == StatusCode::UNAUTHORIZED {
        res.headers_mut()
            .insert("www-authenticate", HeaderValue::from_static("Bearer"));
    }
    res
}

pub(super) fn too_large(max: usize) -> Response {
    json_response(
        StatusCode::PAYLOAD_TOO_LARGE,
        &json!({
            "error": "payload_too_large",
            "message": format!("the body must be at most {max} bytes (HTTP_MAX_BODY_BYTES)"),
            "field": "body",
            "limit": "HTTP_MAX_BODY_BYTES",
            "max": max,
        }),
    )
}

/// 408: the body did not arrive within `timeout`; hyper closes the connection after it, as
/// the rest of the body is never read.
pub(super) fn body_timeout(timeout: std::time::Duration) -> Response {
    let mut res = json_response(
        StatusCode::REQUEST_TIMEOUT,
        &error_body(
            "request_timeout",
            &format!(
                "the body was not received within {} s (HTTP_BODY_READ_TIMEOUT_SECONDS)",
                timeout.as_secs()
            ),
            Some("body"),
        ),
    );
    res.headers_mut()
        .insert("connection", HeaderValue::from_static("close"));
    res
}

/// 503 for a request not handled within `HTTP_REQUEST_TIMEOUT_SECONDS`.
pub(super) fn request_timeout(timeout: std::time::Duration) -> Response {
    retry_later(
        StatusCode::SERVICE_UNAVAILABLE,
        "request_timeout",
        &format!(
            "the request was not finished within {} s; a change it made may or may not have \
             been kept (it was cut, possibly while committing): read before retrying a write",
            timeout.as_secs()
        ),
        "HTTP_REQUEST_TIMEOUT_SECONDS",
        1,
    )
}

/// 429 or 503 with `Retry-After` and a body naming the limit and the wait.
fn retry_later(status: StatusCode, code: &str, message: &str, limit: &str, secs: u64) -> Response {
    let body = json!({
        "error": code,
        "message": message,
        "limit": limit,
        "retry_after_seconds": secs,
    });
    let mut res = json_response(status, &body);
    res.headers_mut()
        .insert("retry-after", HeaderValue::from(secs));
    res
}
