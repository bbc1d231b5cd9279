//! The route table and the router: which handler a method and path reach.

use warp::http::Method;

use crate::domain::Invalid;
use crate::error::AppError;
use uuid::Uuid;

/// Which handler a route runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// POST /v1/auth/register
    Register,
    /// POST /v1/auth/login
    Login,
    /// POST /v1/auth/logout
    Logout,
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
    /// PUT /v1/lists/{list_id}/owner
    TransferList,
    /// POST /v1/lists/{list_id}/owner/accept
    AcceptTransfer,
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
    /// POST /v1/lists/{list_id}/attachments
    AnnounceAttachment,
    /// GET /v1/lists/{list_id}/attachments
    ListAttachments,
    /// GET /v1/lists/{list_id}/attachments/{attachment_id}
    GetAttachment,
    /// POST /v1/lists/{list_id}/attachments/{attachment_id}/confirm
    ConfirmAttachment,
    /// DELETE /v1/lists/{list_id}/attachments/{attachment_id}
    DeleteAttachment,
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

impl Route {
    /// Whether this is an API route (the latency KPI's subject), not an operational endpoint
    /// (`/health`, `/ready`, `/metrics`, `/openapi.json`).
    pub fn is_api(&self) -> bool {
        !matches!(self.op, Op::Health | Op::Ready | Op::Metrics | Op::OpenApi)
    }
}

pub(super) const fn r(method: &'static str, path: &'static str, op: Op, auth: bool) -> Route {
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
    r("POST", "/v1/auth/logout", Op::Logout, true),
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
    r("PUT", "/v1/lists/{list_id}/owner", Op::TransferList, true),
    r(
        "POST",
        "/v1/lists/{list_id}/owner/accept",
        Op::AcceptTransfer,
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
    r(
        "POST",
        "/v1/lists/{list_id}/attachments",
        Op::AnnounceAttachment,
        true,
    ),
    r(
        "GET",
        "/v1/lists/{list_id}/attachments",
        Op::ListAttachments,
        true,
    ),
    r(
        "GET",
        "/v1/lists/{list_id}/attachments/{attachment_id}",
        Op::GetAttachment,
        true,
    ),
    r(
        "POST",
        "/v1/lists/{list_id}/attachments/{attachment_id}/confirm",
        Op::ConfirmAttachment,
        true,
    ),
    r(
        "DELETE",
        "/v1/lists/{list_id}/attachments/{attachment_id}",
        Op::DeleteAttachment,
        true,
    ),
    r("GET", "/health", Op::Health, false),
    r("GET", "/ready", Op::Ready, false),
    r("GET", "/metrics", Op::Metrics, false),
    r("GET", "/openapi.json", Op::OpenApi, false),
];

/// Path parameters of a matched route, by name.
#[derive(Debug, Default)]
pub(super) struct Params(pub(super) Vec<(&'static str, String)>);

impl Params {
    pub(super) fn uuid(&self, name: &'static str) -> Result<Uuid, AppError> {
        let raw = self
            .0
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_default();
        Uuid::parse_str(raw).map_err(|_| AppError::BadRequest(Invalid::new(name, "must be a UUID")))
    }
}

pub(super) fn template_matches(template: &'static str, path: &str) -> Option<Params> {
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
pub(super) enum Matched {
    Route(&'static Route, Params),
    WrongMethod(Vec<&'static str>),
    NoRoute,
}

pub(super) fn route(method: &Method, path: &str) -> Matched {
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

/// The `method` label: a method of the route table (or `HEAD`, answered as `GET`), else
/// `other`, so that made-up methods cannot add label values.
pub fn method_label(method: &Method) -> &'static str {
    if method == Method::HEAD {
        return "HEAD";
    }
    ROUTES
        .iter()
        .find(|r| r.method == method.as_str())
        .map_or("other", |r| r.method)
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
    fn method_labels_come_from_the_route_table() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        assert_eq!(method_label(&Method::HEAD), "HEAD");
        assert_eq!(method_label(&Method::OPTIONS), "other");
        assert_eq!(method_label(&Method::from_bytes(b"ZZ1").unwrap()), "other");
    }
}
