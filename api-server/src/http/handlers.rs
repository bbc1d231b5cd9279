//! The handlers: each parses its request and calls one use case.

use serde_json::json;
use warp::http::{HeaderValue, StatusCode};
use warp::hyper::body::Bytes;
use warp::reply::Response;

use super::State;
use super::request::{
    Credentials, ItemPatchBody, NameBody, NewAttachmentBody, NewItemBody, ReorderBody, Request,
    ShareBody, TransferBody, not_null, parse_json, query_i64,
};
use super::response::json_response;
use super::routes::{Op, Params, Route};
use super::{openapi, probes};
use crate::domain::{ItemPatch, UploadRequest};
use crate::error::AppError;
use crate::ports::TokenSubject;
use crate::usecases::NewItem;

/// The claim of the request's bearer token: signature, key, issuer, audience and expiry
/// checked (no I/O); its version not yet (see [`handle`]).
fn claim(state: &State, req: &Request) -> Result<TokenSubject, AppError> {
    let header = req.header("authorization").ok_or(AppError::Unauthorized(
        "an Authorization: Bearer token is required",
    ))?;
    let token = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .ok_or(AppError::Unauthorized(
            "the Authorization header must be 'Bearer <token>'",
        ))?;
    state.api.claim(token.trim())
}

pub(super) fn ok(status: StatusCode, body: &impl serde::Serialize) -> Result<Response, AppError> {
    Ok(json_response(status, body))
}

pub(super) fn no_content() -> Result<Response, AppError> {
    let mut res = Response::new(Bytes::new().into());
    *res.status_mut() = StatusCode::NO_CONTENT;
    Ok(res)
}

pub(super) async fn handle(
    state: &State,
    route: &Route,
    params: &Params,
    req: &Request,
) -> Result<Response, AppError> {
    // A route with `auth` needs a token whose claim holds (no I/O) and which is not revoked:
    // its version is checked by a read of its own before the handler runs (`user`), except
    // where the handler's one statement checks it (`reader`: `GET /v1/lists/{id}`, see
    // `UseCases::get_list`). Only that handler ever sees a claim whose version is unchecked.
    let (user, reader) = match route.auth.then(|| claim(state, req)).transpose()? {
        Some(claim) if route.op == Op::GetList => (None, Some(claim)),
        Some(claim) => (Some(state.api.user(claim).await?), None),
        None => (None, None),
    };
    let me = || user.ok_or(AppError::Unauthorized("authentication required"));
    let api = &state.api;
    match route.op {
        Op::Register => {
            let body: Credentials = parse_json(&req.body)?;
            state
                .rate_limits
                .auth(req.client, &body.email)
                .map_err(AppError::RateLimited)?;
            let registered = api.register(&body.email, &body.password).await?;
            ok(StatusCode::CREATED, &registered)
        }
        Op::Login => {
            let body: Credentials = parse_json(&req.body)?;
            state
                .rate_limits
                .auth(req.client, &body.email)
                .map_err(AppError::RateLimited)?;
            ok(
                StatusCode::OK,
                &api.login(&body.email, &body.password).await?,
            )
        }
        Op::Logout => {
            api.logout(me()?).await?;
            no_content()
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
            let reader = reader.ok_or(AppError::Unauthorized("authentication required"))?;
            // A revoked token is answered 401 before a malformed id's 400, as on every route.
            let list = match params.uuid("list_id") {
                Ok(list) => list,
                Err(malformed) => {
                    api.user(reader).await?;
                    return Err(malformed);
                }
            };
            ok(StatusCode::OK, &api.get_list(reader, list).await?)
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
        Op::TransferList => {
            let list = params.uuid("list_id")?;
            let body: TransferBody = parse_json(&req.body)?;
            ok(
                StatusCode::ACCEPTED,
                &api.offer_list(me()?, list, body.user_id).await?,
            )
        }
        Op::AcceptTransfer => {
            let list = params.uuid("list_id")?;
            ok(StatusCode::OK, &api.accept_list(me()?, list).await?)
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
            let changes = ItemPatch {
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
            let user = me()?;
            state
                .rate_limits
                .suggestions(user)
                .map_err(AppError::RateLimited)?;
            let view = api.request_suggestions(user, list).await?;
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
        Op::AnnounceAttachment => {
            let list = params.uuid("list_id")?;
            let b: NewAttachmentBody = parse_json(&req.body)?;
            let request = UploadRequest {
                name: b.name,
                content_type: b.content_type,
                size_bytes: b.size_bytes,
                sha256: b.sha256,
            };
            let announced = api
                .announce_attachment(me()?, list, b.item_id, &request)
                .await?;
            let mut res = json_response(StatusCode::CREATED, &announced);
            if let Ok(loc) = HeaderValue::from_str(&format!(
                "/v1/lists/{list}/attachments/{}",
                announced.attachment.id
            )) {
                res.headers_mut().insert("location", loc);
            }
            Ok(res)
        }
        Op::ListAttachments => {
            let list = params.uuid("list_id")?;
            ok(
                StatusCode::OK,
                &json!({ "attachments": api.attachments(me()?, list).await? }),
            )
        }
        Op::GetAttachment => {
            let list = params.uuid("list_id")?;
            let id = params.uuid("attachment_id")?;
            ok(
                StatusCode::OK,
                &api.download_attachment(me()?, list, id).await?,
            )
        }
        Op::ConfirmAttachment => {
            let list = params.uuid("list_id")?;
            let id = params.uuid("attachment_id")?;
            ok(
                StatusCode::OK,
                &api.confirm_attachment(me()?, list, id).await?,
            )
        }
        Op::DeleteAttachment => {
            let list = params.uuid("list_id")?;
            let id = params.uuid("attachment_id")?;
            api.delete_attachment(me()?, list, id).await?;
            no_content()
        }
        Op::Health => Ok(probes::health(&state.version)),
        Op::Ready => {
            probes::ready(
                &state.health,
                &state.version,
                req.header("x-healthcheck-token"),
            )
            .await
        }
        Op::Metrics => Ok(probes::metrics(&state.metrics)),
        Op::OpenApi => ok(StatusCode::OK, &openapi::document(&state.version)),
    }
}
