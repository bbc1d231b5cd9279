//! The HTTP edge (warp): one filter extracts the request, the route table dispatches it.
//!
//! The route table [`ROUTES`] is the router: the OpenAPI document is generated from the same
//! table, and the metrics' `route` label is the matched template, so they cannot drift.
//! Every outcome is a JSON response; no input can produce a 500.

pub mod openapi;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use tracing::Instrument;
use uuid::Uuid;
use warp::http::{HeaderMap, HeaderValue, Method, StatusCode};
use warp::hyper::body::Bytes;
use warp::reply::Response;
use warp::{Buf, Filter};

use crate::auth::{Argon2Hasher, Tokens};
use crate::domain::{Invalid, Role};
use crate::error::AppError;
use crate::fault::{self, FaultConfig};
use crate::health::{Health, TokenCheck};
use crate::metrics::Metrics;
use crate::store::PgStore;
use crate::usecases::{ItemChanges, NewItem, UseCases};

/// Largest accepted request body.
pub const MAX_BODY: usize = 64 * 1024;

/// The use cases over the production adapters.
pub type Api = UseCases<PgStore, Argon2Hasher, Tokens>;

/// What the handlers share.
#[derive(Debug)]
pub struct State {
    /// The use cases (the only way the edge reaches the data).
    pub api: Api,
    /// Metrics.
    pub metrics: Metrics,
    /// Dependency checks.
    pub health: Health,
    /// Fault injection.
    pub fault: FaultConfig,
    /// The running version.
    pub version: String,
}

/// Which handler a route runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// POST /v1/auth/register
    Register,
    /// POST /v1/auth/login
    Login,
    /// GET /v1/lists
    ListLists,
    /// POST /v1/lists
    CreateList,
    /// GET /v1/lists/{list_id}
    GetList,
    /// PATCH /v1/lists/{list_id}
    RenameList,
    /// DELETE /v1/lists/{list_id}
    DeleteList,
    /// POST /v1/lists/{list_id}/members
    Share,
    /// DELETE /v1/lists/{list_id}/members/{user_id}
    Unshare,
    /// POST /v1/lists/{list_id}/items
    AddItem,
    /// PATCH /v1/lists/{list_id}/items/{item_id}
    UpdateItem,
    /// DELETE /v1/lists/{list_id}/items/{item_id}
    DeleteItem,
    /// PUT /v1/lists/{list_id}/order
    Reorder,
    /// POST /v1/lists/{list_id}/suggestions
    RequestSuggestions,
    /// GET /v1/lists/{list_id}/suggestions/{suggestion_id}
    GetSuggestions,
    /// GET /health
    Health,
    /// GET /ready
    Ready,
    /// GET /metrics
    Metrics,
    /// GET /openapi.json
    OpenApi,
}

/// One route.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// HTTP method.
    pub method: &'static str,
    /// Path template; `{name}` segments are parameters.
    pub path: &'static str,
    /// The handler.
    pub op: Op,
    /// Whether a bearer token is required.
    pub auth: bool,
}

const fn r(method: &'static str, path: &'static str, op: Op, auth: bool) -> Route {
    Route {
        method,
        path,
        op,
        auth,
    }
}

/// The router.
pub const ROUTES: &[Route] = &[
    r("POST", "/v1/auth/register", Op::Register, false),
    r("POST", "/v1/auth/login", Op::Login, false),
    r("GET", "/v1/lists", Op::ListLists, true),
    r("POST", "/v1/lists", Op::CreateList, true),
    r("GET", "/v1/lists/{list_id}", Op::GetList, true),
    r("PATCH", "/v1/lists/{list_id}", Op::RenameList, true),
    r("DELETE", "/v1/lists/{list_id}", Op::DeleteList, true),
    r("POST", "/v1/lists/{list_id}/members", Op::Share, true),
    r(
        "DELETE",
        "/v1/lists/{list_id}/members/{user_id}",
        Op::Unshare,
        true,
    ),
    r("POST", "/v1/lists/{list_id}/items", Op::AddItem, true),
    r(
        "PATCH",
        "/v1/lists/{list_id}/items/{item_id}",
        Op::UpdateItem,
        true,
    ),
    r(
        "DELETE",
        "/v1/lists/{list_id}/items/{item_id}",
        Op::DeleteItem,
        true,
    ),
    r("PUT", "/v1/lists/{list_id}/order", Op::Reorder, true),
    r(
        "POST",
        "/v1/lists/{list_id}/suggestions",
        Op::RequestSuggestions,
        true,
    ),
    r(
        "GET",
        "/v1/lists/{list_id}/suggestions/{suggestion_id}",
        Op::GetSuggestions,
        true,
    ),
    r("GET", "/health", Op::Health, false),
    r("GET", "/ready", Op::Ready, false),
    r("GET", "/metrics", Op::Metrics, false),
    r("GET", "/openapi.json", Op::OpenApi, false),
];

/// Path parameters of a matched route, by name.
#[derive(Debug, Default)]
struct Params(Vec<(&'static str, String)>);

impl Params {
    fn uuid(&self, name: &'static str) -> Result<Uuid, AppError> {
        let raw = self
            .0
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_default();
        Uuid::parse_str(raw).map_err(|_| AppError::BadRequest(Invalid::new(name, "must be a UUID")))
    }
}

fn template_matches(template: &'static str, path: &str) -> Option<Params> {
    let mut params = Params::default();
    let mut t = template.trim_matches('/').split('/');
    let mut p = path
        .trim_end_matches('/')
        .trim_start_matches('/')
        .split('/');
    loop {
        match (t.next(), p.next()) {
            (None, None) => return Some(params),
            (Some(ts), Some(ps)) => {
                if let Some(name) = ts.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    if ps.is_empty() {
                        return None;
                    }
                    params.0.push((name, ps.to_owned()));
                } else if ts != ps {
                    return None;
                }
            }
            _ => return None,
        }
    }
}

/// The result of routing a request.
#[derive(Debug)]
enum Matched {
    Route(&'static Route, Params),
    WrongMethod(Vec<&'static str>),
    NoRoute,
}

fn route(method: &Method, path: &str) -> Matched {
    let mut allowed = Vec::new();
    for route in ROUTES {
        if let Some(params) = template_matches(route.path, path) {
            if route.method == method.as_str() || (method == Method::HEAD && route.method == "GET")
            {
                return Matched::Route(route, params);
            }
            allowed.push(route.method);
        }
    }
    if allowed.is_empty() {
        Matched::NoRoute
    } else {
        Matched::WrongMethod(allowed)
    }
}

/// The route template a request matches (the `route` label), or `unmatched`.
pub fn route_label(method: &Method, path: &str) -> &'static str {
    match route(method, path) {
        Matched::Route(route, _) => route.path,
        _ => "unmatched",
    }
}

// ----- responses ------------------------------------------------------------------------

fn json_response(status: StatusCode, body: &impl serde::Serialize) -> Response {
    let mut res = warp::Reply::into_response(warp::reply::json(body));
    *res.status_mut() = status;
    res
}

fn error_body(code: &str, message: &str, field: Option<&str>) -> serde_json::Value {
    match field {
        Some(f) => json!({ "error": code, "message": message, "field": f }),
        None => json!({ "error": code, "message": message }),
    }
}

fn error_response(err: &AppError) -> Response {
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
        AppError::Forbidden(m) => (StatusCode::FORBIDDEN, error_body("forbidden", m, None)),
        AppError::NotFound(what) => (
            StatusCode::NOT_FOUND,
            error_body("not_found", &format!("{what} not found"), None),
        ),
        AppError::Conflict(m) => (StatusCode::CONFLICT, error_body("conflict", m, None)),
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

// ----- request parsing ------------------------------------------------------------------

/// Parses a JSON body; malformed JSON is 400 (`body`), a wrong or missing field is 422
/// naming it.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, AppError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(AppError::BadRequest(Invalid::new(
            "body",
            "a JSON body is required",
        )));
    }
    // Syntax first (400), then shape (422): a body must be one JSON object.
    let value: serde_json::Value = match serde_json::from_slice(body) {
        Ok(value) => value,
        Err(e) if e.to_string().starts_with("number out of range") => {
            return Err(AppError::Invalid(out_of_range::<T>(body, &e)));
        }
        Err(e) => {
            return Err(AppError::BadRequest(Invalid::new(
                "body",
                format!("malformed JSON: {e}"),
            )));
        }
    };
    if !value.is_object() {
        return Err(AppError::Invalid(Invalid::new(
            "body",
            "must be a JSON object",
        )));
    }
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let msg = err.into_inner().to_string();
        // serde_path_to_error's path ends at the parent of a missing field, and at the
        // field itself otherwise.
        let missing = msg
            .split_once("missing field `")
            .and_then(|(_, rest)| rest.split_once('`'))
            .map(|(f, _)| f.to_owned());
        let field = match missing {
            Some(f) if path == "." => f,
            Some(f) => format!("{path}.{f}"),
            None if path == "." => "body".to_owned(),
            None => path,
        };
        AppError::Invalid(Invalid::new(field, msg))
    })
}

/// Well-formed JSON with a number too large for a double: names the field it is in.
fn out_of_range<T: DeserializeOwned>(body: &[u8], err: &serde_json::Error) -> Invalid {
    let mut de = serde_json::Deserializer::from_slice(body);
    let field = serde_path_to_error::deserialize::<_, T>(&mut de)
        .err()
        .map(|e| e.path().to_string())
        .filter(|p| p != ".")
        .unwrap_or_else(|| "body".to_owned());
    Invalid::new(field, err.to_string())
}

fn query_i64(query: &str, name: &'static str) -> Result<Option<i64>, AppError> {
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == name {
            return v
                .parse::<i64>()
                .map(Some)
                .map_err(|_| AppError::BadRequest(Invalid::new(name, "must be an integer")));
        }
    }
    Ok(None)
}

/// Deserialises a present field (even `null`) as `Some(value)`; absent stays `None`.
fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Credentials {
    email: String,
    password: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NameBody {
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShareBody {
    email: String,
    #[serde(default = "member")]
    role: Role,
}

fn member() -> Role {
    Role::Member
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewItemBody {
    name: String,
    quantity: Option<f64>,
    unit: Option<String>,
    category: Option<String>,
    note: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ItemPatchBody {
    #[serde(default, deserialize_with = "double_option")]
    name: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    quantity: Option<Option<f64>>,
    #[serde(default, deserialize_with = "double_option")]
    unit: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    category: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    note: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    checked: Option<Option<bool>>,
}

/// A field that may be absent but not `null`.
fn not_null<T>(field: &'static str, value: Option<Option<T>>) -> Result<Option<T>, Invalid> {
    match value {
        Some(None) => Err(Invalid::new(field, "must not be null")),
        Some(Some(v)) => Ok(Some(v)),
        None => Ok(None),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReorderBody {
    item_ids: Vec<Uuid>,
}

// ----- handlers -------------------------------------------------------------------------

/// One request, extracted.
#[derive(Debug)]
struct Request {
    method: Method,
    path: String,
    query: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

fn authenticate(state: &State, req: &Request) -> Result<Uuid, AppError> {
    let header = req.header("authorization").ok_or(AppError::Unauthorized(
        "an Authorization: Bearer token is required",
    ))?;
    let token = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .ok_or(AppError::Unauthorized(
            "the Authorization header must be 'Bearer <token>'",
        ))?;
    state.api.authenticate(token.trim())
}

fn ok(status: StatusCode, body: &impl serde::Serialize) -> Result<Response, AppError> {
    Ok(json_response(status, body))
}

fn no_content() -> Result<Response, AppError> {
    let mut res = Response::new(Bytes::new().into());
    *res.status_mut() = StatusCode::NO_CONTENT;
    Ok(res)
}

async fn handle(
    state: &State,
    route: &Route,
    params: &Params,
    req: &Request,
) -> Result<Response, AppError> {
    let user = if route.auth {
        Some(authenticate(state, req)?)
    } else {
        None
    };
    let me = || user.ok_or(AppError::Unauthorized("authentication required"));
    let api = &state.api;
    match route.op {
        Op::Register => {
            let body: Credentials = parse_json(&req.body)?;
            let registered = api.register(&body.email, &body.password).await?;
            ok(StatusCode::CREATED, &registered)
        }
        Op::Login => {
            let body: Credentials = parse_json(&req.body)?;
            ok(
                StatusCode::OK,
                &api.login(&body.email, &body.password).await?,
            )
        }
        Op::ListLists => {
            let limit = query_i64(&req.query, "limit")?;
            let offset = query_i64(&req.query, "offset")?;
            ok(StatusCode::OK, &api.my_lists(me()?, limit, offset).await?)
        }
        Op::CreateList => {
            let body: NameBody = parse_json(&req.body)?;
            ok(
                StatusCode::CREATED,
                &api.create_list(me()?, &body.name).await?,
            )
        }
        Op::GetList => {
            let list = params.uuid("list_id")?;
            ok(StatusCode::OK, &api.get_list(me()?, list).await?)
        }
        Op::RenameList => {
            let list = params.uuid("list_id")?;
            let body: NameBody = parse_json(&req.body)?;
            ok(
                StatusCode::OK,
                &api.rename_list(me()?, list, &body.name).await?,
            )
        }
        Op::DeleteList => {
            let list = params.uuid("list_id")?;
            api.delete_list(me()?, list).await?;
            no_content()
        }
        Op::Share => {
            let list = params.uuid("list_id")?;
            let body: ShareBody = parse_json(&req.body)?;
            ok(
                StatusCode::CREATED,
                &api.share(me()?, list, &body.email, body.role).await?,
            )
        }
        Op::Unshare => {
            let list = params.uuid("list_id")?;
            let member = params.uuid("user_id")?;
            api.unshare(me()?, list, member).await?;
            no_content()
        }
        Op::AddItem => {
            let list = params.uuid("list_id")?;
            let b: NewItemBody = parse_json(&req.body)?;
            let item = NewItem {
                name: b.name,
                quantity: b.quantity,
                unit: b.unit,
                category: b.category,
                note: b.note,
            };
            ok(
                StatusCode::CREATED,
                &api.add_item(me()?, list, &item).await?,
            )
        }
        Op::UpdateItem => {
            let list = params.uuid("list_id")?;
            let item = params.uuid("item_id")?;
            let b: ItemPatchBody = parse_json(&req.body)?;
            let changes = ItemChanges {
                name: not_null("name", b.name)?,
                quantity: not_null("quantity", b.quantity)?,
                unit: b.unit,
                category: b.category,
                note: b.note,
                checked: not_null("checked", b.checked)?,
            };
            ok(
                StatusCode::OK,
                &api.update_item(me()?, list, item, &changes).await?,
            )
        }
        Op::DeleteItem => {
            let list = params.uuid("list_id")?;
            let item = params.uuid("item_id")?;
            api.delete_item(me()?, list, item).await?;
            no_content()
        }
        Op::Reorder => {
            let list = params.uuid("list_id")?;
            let b: ReorderBody = parse_json(&req.body)?;
            ok(
                StatusCode::OK,
                &json!({ "items": api.reorder(me()?, list, &b.item_ids).await? }),
            )
        }
        Op::RequestSuggestions => {
            let list = params.uuid("list_id")?;
            let view = api.request_suggestions(me()?, list).await?;
            let mut res = json_response(StatusCode::ACCEPTED, &view);
            if let Ok(loc) =
                HeaderValue::from_str(&format!("/v1/lists/{list}/suggestions/{}", view.id))
            {
                res.headers_mut().insert("location", loc);
            }
            Ok(res)
        }
        Op::GetSuggestions => {
            let list = params.uuid("list_id")?;
            let id = params.uuid("suggestion_id")?;
            ok(StatusCode::OK, &api.get_suggestions(me()?, list, id).await?)
        }
        Op::Health => ok(
            StatusCode::OK,
            &json!({ "status": "ok", "version": state.version }),
        ),
        Op::Ready => {
            let token = state.health.token(req.header("x-healthcheck-token"));
            if token == TokenCheck::Invalid {
                return Err(AppError::Unauthorized("wrong X-Healthcheck-Token"));
            }
            let readiness = state.health.readiness().await;
            let status = if readiness.ready() {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            let word = if readiness.ready() {
                "ready"
            } else {
                "not_ready"
            };
            if token == TokenCheck::Valid {
                ok(
                    status,
                    &json!({ "status": word, "version": state.version, "checks": readiness }),
                )
            } else {
                ok(status, &json!({ "status": word }))
            }
        }
        Op::Metrics => {
            let mut res = Response::new(state.metrics.render().into());
            res.headers_mut().insert(
                "content-type",
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            Ok(res)
        }
        Op::OpenApi => ok(StatusCode::OK, &openapi::document(&state.version)),
    }
}

async fn dispatch(state: Arc<State>, req: Request) -> Response {
    let start = Instant::now();
    let request_id = req
        .header("x-request-id")
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map_or_else(|| Uuid::new_v4().to_string(), str::to_owned);
    let span = tracing::info_span!("request", request_id = %request_id, method = %req.method, path = %req.path);
    let (label, mut res) = async {
        match route(&req.method, &req.path) {
            Matched::Route(route, params) => {
                if state.fault.matches(route.path, &req.path) {
                    if !state.fault.latency.is_zero() {
                        tokio::time::sleep(state.fault.latency).await;
                    }
                    if state.fault.fails(fault::roll()) {
                        let body =
                            error_body("fault_injected", "injected fault (FAULT_ERROR_RATE)", None);
                        return (
                            route.path,
                            json_response(StatusCode::INTERNAL_SERVER_ERROR, &body),
                        );
                    }
                }
                let res = handle(&state, route, &params, &req)
                    .await
                    .unwrap_or_else(|e| error_response(&e));
                (route.path, res)
            }
            Matched::WrongMethod(allowed) => {
                let body = error_body(
                    "method_not_allowed",
                    &format!("allowed: {}", allowed.join(", ")),
                    None,
                );
                let mut res = json_response(StatusCode::METHOD_NOT_ALLOWED, &body);
                if let Ok(v) = HeaderValue::from_str(&allowed.join(", ")) {
                    res.headers_mut().insert("allow", v);
                }
                ("unmatched", res)
            }
            Matched::NoRoute => (
                "unmatched",
                json_response(
                    StatusCode::NOT_FOUND,
                    &error_body("route_not_found", "no such route", None),
                ),
            ),
        }
    }
    .instrument(span.clone())
    .await;
    let status = res.status();
    let elapsed = start.elapsed();
    state
        .metrics
        .http_duration
        .with_label_values(&[label, req.method.as_str(), status.as_str()])
        .observe(elapsed.as_secs_f64());
    span.in_scope(|| {
        tracing::info!(
            status = status.as_u16(),
            route = label,
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            "request"
        );
    });
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        res.headers_mut().insert("x-request-id", v);
    }
    res
}

fn too_large() -> Response {
    json_response(
        StatusCode::PAYLOAD_TOO_LARGE,
        &error_body(
            "payload_too_large",
            &format!("the body must be at most {MAX_BODY} bytes"),
            Some("body"),
        ),
    )
}

async fn read_body<S, B>(body: S) -> Result<Vec<u8>, Response>
where
    S: futures::Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let mut body = std::pin::pin!(body);
    let mut buf = Vec::new();
    while let Some(chunk) = body.next().await {
        let Ok(mut chunk) = chunk else {
            return Err(json_response(
                StatusCode::BAD_REQUEST,
                &error_body("bad_request", "the body could not be read", Some("body")),
            ));
        };
        if buf.len() + chunk.remaining() > MAX_BODY {
            return Err(too_large());
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            buf.extend_from_slice(part);
            let n = part.len();
            chunk.advance(n);
        }
    }
    Ok(buf)
}

/// The whole HTTP API as one warp filter that never rejects.
pub fn api(
    state: Arc<State>,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static {
    let extract = warp::method()
        .and(warp::path::full())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .then(
            move |method: Method,
                  path: warp::path::FullPath,
                  query: String,
                  headers: HeaderMap,
                  body| {
                let state = state.clone();
                async move {
                    let declared = headers
                        .get("content-length")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<usize>().ok());
                    if declared.is_some_and(|n| n > MAX_BODY) {
                        return too_large();
                    }
                    let buf = match read_body(body).await {
                        Ok(buf) => buf,
                        Err(res) => return res,
                    };
                    let req = Request {
                        method,
                        path: path.as_str().to_owned(),
                        query,
                        headers,
                        body: Bytes::from(buf),
                    };
                    dispatch(state, req).await
                }
            },
        );
    // None of the extractors above rejects a well-formed HTTP request; should one ever do,
    // the answer is still JSON.
    extract
        .recover(|rejection: warp::Rejection| async move {
            let message = format!("{rejection:?}");
            Ok::<_, Infallible>(json_response(
                StatusCode::BAD_REQUEST,
                &error_body("bad_request", &message, None),
            ))
        })
        .unify()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_segment_by_segment() {
        let p =
            template_matches("/v1/lists/{list_id}/items/{item_id}", "/v1/lists/a/items/b").unwrap();
        assert_eq!(
            p.0,
            vec![("list_id", "a".to_owned()), ("item_id", "b".to_owned())]
        );
        assert!(template_matches("/v1/lists/{list_id}", "/v1/lists/").is_none());
        assert!(template_matches("/v1/lists", "/v1/lists/x").is_none());
        assert!(template_matches("/v1/lists", "/v1/lists/").is_some());
    }

    #[test]
    fn routing_tells_wrong_methods_from_missing_routes() {
        assert!(
            matches!(route(&Method::GET, "/v1/lists"), Matched::Route(r, _) if r.op == Op::ListLists)
        );
        assert!(
            matches!(route(&Method::PUT, "/v1/lists"), Matched::WrongMethod(m) if m == ["GET", "POST"])
        );
        assert!(matches!(route(&Method::GET, "/nope"), Matched::NoRoute));
        assert_eq!(
            route_label(&Method::GET, "/v1/lists/123"),
            "/v1/lists/{list_id}"
        );
        assert_eq!(route_label(&Method::GET, "/v1/nope"), "unmatched");
    }

    #[test]
    fn json_errors_name_the_field() {
        let field = |body: &str| match parse_json::<NewItemBody>(body.as_bytes()) {
            Err(AppError::Invalid(i)) => (422, i.field),
            Err(AppError::BadRequest(i)) => (400, i.field),
            other => panic!("{other:?}"),
        };
        assert_eq!(field("{"), (400, "body".to_owned()));
        assert_eq!(field(""), (400, "body".to_owned()));
        assert_eq!(field(r#"{"name": "x"} x"#), (400, "body".to_owned()));
        assert_eq!(field("{}"), (422, "name".to_owned()));
        assert_eq!(field(r#"{"name": 3}"#), (422, "name".to_owned()));
        assert_eq!(
            field(r#"{"name": "x", "quantity": "2"}"#),
            (422, "quantity".to_owned())
        );
        assert_eq!(
            field(r#"{"name": "x", "colour": "red"}"#),
            (422, "colour".to_owned())
        );
        assert_eq!(field("[]"), (422, "body".to_owned()));
        assert_eq!(
            field(r#"{"name": "x", "quantity": 1e400}"#),
            (422, "quantity".to_owned())
        );
        assert_eq!(
            field(r#"{"name": "x", "note": -1e999}"#),
            (422, "note".to_owned())
        );
    }

    #[test]
    fn query_integers_are_named_when_bad() {
        assert_eq!(query_i64("limit=5&offset=2", "offset").unwrap(), Some(2));
        assert_eq!(query_i64("", "limit").unwrap(), None);
        assert!(
            matches!(query_i64("limit=x", "limit"), Err(AppError::BadRequest(i)) if i.field == "limit")
        );
    }
}
