//! The OpenAPI 3.1 document, generated from the route table so that it matches the router.

use serde_json::{Value, json};

use super::{Op, ROUTES, Route};

fn error_ref() -> Value {
    json!({ "$ref": "#/components/schemas/Error" })
}

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn describe(
    op: Op,
) -> (
    &'static str,
    &'static str,
    Option<&'static str>,
    &'static str,
    Option<Value>,
) {
    // (operationId, summary, request schema, success status, success schema)
    match op {
        Op::Register => (
            "register",
            "Register a user (a taken e-mail gets the same answer and leaves its account as it is)",
            Some("Credentials"),
            "201",
            Some(schema_ref("UserCreated")),
        ),
        Op::Login => (
            "login",
            "Log in and get a bearer token",
            Some("Credentials"),
            "200",
            Some(schema_ref("Token")),
        ),
        Op::Logout => (
            "logout",
            "Log out everywhere: every token issued to the caller so far stops working",
            None,
            "204",
            None,
        ),
        Op::ListLists => (
            "listLists",
            "My lists, newest first (paginated)",
            None,
            "200",
            Some(schema_ref("ListPage")),
        ),
        Op::CreateList => (
            "createList",
            "Create a list",
            Some("ListName"),
            "201",
            Some(schema_ref("List")),
        ),
        Op::GetList => (
            "getList",
            "A list with its items and members",
            None,
            "200",
            Some(schema_ref("ListDetail")),
        ),
        Op::RenameList => (
            "renameList",
            "Rename a list (owners)",
            Some("ListName"),
            "200",
            Some(schema_ref("List")),
        ),
        Op::DeleteList => (
            "deleteList",
            "Delete a list (its creator only; co-owners and members may leave it instead)",
            None,
            "204",
            None,
        ),
        Op::Share => (
            "shareList",
            "Share a list by e-mail (owners). An e-mail without an account gets the same answer \
             and becomes a pending invitation, listed among the members like one (with the \
             user_id answered here; DELETE it to withdraw) until it registers and joins, so \
             neither the answer nor the list tells who has an account",
            Some("Share"),
            "201",
            Some(schema_ref("Member")),
        ),
        Op::Unshare => (
            "unshareList",
            "Remove a member (owners), or leave the list (any member but its creator)",
            None,
            "204",
            None,
        ),
        Op::TransferList => (
            "transferList",
            "Offer the list to another member (its creator only); nothing changes until they \
             accept, and a new offer replaces the earlier one. A pending invitation's id gets \
             the same answer as a member's, so it tells nobody who has an account",
            Some("Transfer"),
            "202",
            Some(schema_ref("TransferOffer")),
        ),
        Op::AcceptTransfer => (
            "acceptTransfer",
            "Accept the list's offer made to the caller: they become its creator and an owner \
             (the list counts towards their MAX_LISTS_PER_USER); the former creator stays an \
             owner and may then leave. 404 without an offer to the caller",
            None,
            "200",
            Some(schema_ref("List")),
        ),
        Op::AddItem => (
            "addItem",
            "Add an item",
            Some("NewItem"),
            "201",
            Some(schema_ref("Item")),
        ),
        Op::UpdateItem => (
            "updateItem",
            "Edit, check or uncheck an item",
            Some("ItemPatch"),
            "200",
            Some(schema_ref("Item")),
        ),
        Op::DeleteItem => ("deleteItem", "Remove an item", None, "204", None),
        Op::Reorder => (
            "reorderItems",
            "Put the items in a new order",
            Some("Reorder"),
            "200",
            Some(
                json!({ "type": "object", "required": ["items"], "properties": { "items": { "type": "array", "items": schema_ref("Item") } } }),
            ),
        ),
        Op::RequestSuggestions => (
            "requestSuggestions",
            "Request AI suggestions (asynchronous)",
            None,
            "202",
            Some(schema_ref("SuggestionRequest")),
        ),
        Op::GetSuggestions => (
            "getSuggestions",
            "Fetch a suggestion request and its results",
            None,
            "200",
            Some(schema_ref("SuggestionRequest")),
        ),
        Op::AnnounceAttachment => (
            "announceAttachment",
            "Announce an upload to a list: records the attachment pending (counted against the \
             uploader's ATTACHMENT_QUOTA_BYTES) and answers a presigned PUT. Send the file's \
             bytes straight to the object store with that method, URL and exactly the headers \
             given (content type, length and SHA-256 are signed: the store refuses any other \
             body) before expires_at, then confirm. Unconfirmed uploads are swept after expiry",
            Some("NewAttachment"),
            "201",
            Some(schema_ref("AnnouncedAttachment")),
        ),
        Op::ListAttachments => (
            "listAttachments",
            "The list's attachments whose upload is confirmed, oldest first",
            None,
            "200",
            Some(
                json!({ "type": "object", "required": ["attachments"], "properties": { "attachments": { "type": "array", "items": schema_ref("Attachment") } } }),
            ),
        ),
        Op::GetAttachment => (
            "getAttachment",
            "An attachment and a presigned GET that downloads it from the object store \
             (409 while its upload is not confirmed)",
            None,
            "200",
            Some(schema_ref("DownloadableAttachment")),
        ),
        Op::ConfirmAttachment => (
            "confirmAttachment",
            "Confirm an upload once the file is in the object store (409 when nothing arrived); \
             confirming again answers the attachment unchanged",
            None,
            "200",
            Some(schema_ref("Attachment")),
        ),
        Op::DeleteAttachment => (
            "deleteAttachment",
            "Delete an attachment; its object is removed from the store after the commit \
             (retried until the store confirms)",
            None,
            "204",
            None,
        ),
        Op::Health => (
            "health",
            "Liveness (no dependencies)",
            None,
            "200",
            Some(
                json!({ "type": "object", "properties": { "status": { "type": "string" }, "version": { "type": "string" } } }),
            ),
        ),
        Op::Ready => (
            "ready",
            "Readiness: PostgreSQL reachable and its schema revision at least the minimum this build serves (503 otherwise; Redis, RabbitMQ and object store outages show as degraded); detail with X-Healthcheck-Token",
            None,
            "200",
            Some(schema_ref("Readiness")),
        ),
        Op::Metrics => (
            "metrics",
            "Prometheus metrics (text format)",
            None,
            "200",
            None,
        ),
        Op::OpenApi => (
            "openapi",
            "This document",
            None,
            "200",
            Some(json!({ "type": "object" })),
        ),
    }
}

fn parameters(route: &Route) -> Vec<Value> {
    let mut params: Vec<Value> = route
        .path
        .split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| {
            json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string", "format": "uuid" } })
        })
        .collect();
    if route.op == Op::ListLists {
        params.push(json!({ "name": "limit", "in": "query", "required": false, "schema": { "type": "integer", "minimum": 1, "maximum": 100, "default": 20 } }));
        params.push(json!({ "name": "offset", "in": "query", "required": false, "schema": { "type": "integer", "minimum": 0, "maximum": 1000000, "default": 0 } }));
    }
    if route.op == Op::Ready {
        params.push(json!({ "name": "X-Healthcheck-Token", "in": "header", "required": false, "schema": { "type": "string" } }));
    }
    params
}

fn operation(route: &Route) -> Value {
    let (id, summary, request, status, schema) = describe(route.op);
    let mut responses = serde_json::Map::new();
    let success = match (&schema, route.op) {
        (_, Op::Metrics) => {
            json!({ "description": "OK", "content": { "text/plain": { "schema": { "type": "string" } } } })
        }
        (Some(s), _) => {
            json!({ "description": "OK", "content": { "application/json": { "schema": s } } })
        }
        (None, _) => json!({ "description": "Done" }),
    };
    responses.insert(status.to_owned(), success);
    let err = |d: &str| json!({ "description": d, "content": { "application/json": { "schema": error_ref() } } });
    let has_query = route.op == Op::ListLists;
    if request.is_some() || has_query || route.path.contains('{') {
        responses.insert(
            "400".to_owned(),
            err("Malformed request (the field is named)"),
        );
    }
    if request.is_some() {
        responses.insert(
            "413".to_owned(),
            err("Body larger than HTTP_MAX_BODY_BYTES"),
        );
        responses.insert(
            "408".to_owned(),
            err("The body did not arrive within HTTP_BODY_READ_TIMEOUT_SECONDS"),
        );
    }
    let retry_later = |d: &str| {
        json!({
            "description": d,
            "headers": { "Retry-After": { "description": "Seconds to wait before retrying", "schema": { "type": "integer", "minimum": 1 } } },
            "content": { "application/json": { "schema": error_ref() } },
        })
    };
    if matches!(route.op, Op::Register | Op::Login) {
        responses.insert(
            "429".to_owned(),
            retry_later(
                "Too many requests from this client address (RATE_LIMIT_AUTH_PER_ADDRESS_PER_MINUTE) \
                 or for this account (RATE_LIMIT_AUTH_PER_ACCOUNT_PER_MINUTE); `limit` names which. \
                 Sent after a hold of up to RATE_LIMIT_DELAY_MS",
            ),
        );
        responses.insert(
            "503".to_owned(),
            retry_later(
                "Every password-hashing slot is busy (PASSWORD_HASH_CONCURRENCY) and none came free \
                 within PASSWORD_HASH_QUEUE_TIMEOUT_MS",
            ),
        );
    }
    if route.op == Op::RequestSuggestions {
        responses.insert(
            "429".to_owned(),
            retry_later(
                "Too many suggestion requests (RATE_LIMIT_SUGGESTIONS_PER_USER_PER_MINUTE); sent \
                 after a hold of up to RATE_LIMIT_DELAY_MS",
            ),
        );
    }
    if request.is_some() || has_query {
        responses.insert("422".to_owned(), err("Invalid field (the field is named)"));
    }
    if route.op == Op::Login || route.op == Op::Ready {
        responses.insert("401".to_owned(), err("Missing or invalid credentials"));
    }
    if route.auth {
        responses.insert(
            "401".to_owned(),
            json!({
                "description": "Missing, forged, expired or revoked bearer token",
                "headers": { "WWW-Authenticate": { "description": "`Bearer`, or `Bearer error=\"invalid_token\"` for a token that was sent (RFC 6750)", "schema": { "type": "string" } } },
                "content": { "application/json": { "schema": error_ref() } },
            }),
        );
        responses.insert(
            "503".to_owned(),
            err("The database is at an older schema revision than this server needs (`migrate --to` the revision named)"),
        );
    }
    if route.auth && route.path.contains("{list_id}") {
        responses.insert("403".to_owned(), err("Only an owner may do this"));
        if route.op == Op::DeleteList {
            responses.insert(
                "403".to_owned(),
                err("Only the list's creator may delete it (a co-owner may leave instead)"),
            );
        }
        responses.insert(
            "404".to_owned(),
            err("Not found, or not visible to the caller"),
        );
    }
    if matches!(
        route.op,
        Op::Share | Op::Unshare | Op::TransferList | Op::AcceptTransfer
    ) {
        responses.insert("409".to_owned(), err("Conflicts with the current state"));
    }
    if matches!(
        route.op,
        Op::Share | Op::AddItem | Op::CreateList | Op::AcceptTransfer
    ) {
        responses.insert(
            "409".to_owned(),
            err(
                "Conflicts with the current state, or one more would exceed a cap \
                 (MAX_MEMBERS_PER_LIST, MAX_ITEMS_PER_LIST, MAX_LISTS_PER_USER; `limit` names it)",
            ),
        );
    }
    if route.path.contains("/attachments") {
        responses.insert(
            "501".to_owned(),
            err("Attachments are not configured on this server (S3_BUCKET is not set)"),
        );
        responses.insert(
            "503".to_owned(),
            err("The object store did not answer, or the database is at a schema revision before attachments (10)"),
        );
        responses.insert(
            "409".to_owned(),
            err(
                "The upload is not confirmed (or nothing arrived), or one more would exceed \
                 ATTACHMENT_QUOTA_BYTES (`limit` names it)",
            ),
        );
    }
    if route.op == Op::Ready {
        responses.insert("503".to_owned(), json!({ "description": "PostgreSQL is unreachable", "content": { "application/json": { "schema": schema_ref("Readiness") } } }));
    }
    // Every route has a deadline.
    let timeout = "the request was not handled within HTTP_REQUEST_TIMEOUT_SECONDS \
                   (error `request_timeout`, Retry-After)";
    match responses.get_mut("503") {
        Some(existing) => {
            let said = existing["description"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            existing["description"] = json!(format!("{said}; or {timeout}"));
        }
        None => {
            responses.insert(
                "503".to_owned(),
                retry_later(&format!("Unavailable: {timeout}")),
            );
        }
    }
    let mut op = json!({
        "operationId": id,
        "summary": summary,
        "parameters": parameters(route),
        "responses": responses,
    });
    if let Some(name) = request {
        op["requestBody"] = json!({ "required": true, "content": { "application/json": { "schema": schema_ref(name) } } });
    }
    if route.auth {
        op["security"] = json!([{ "bearer": [] }]);
    }
    op
}

fn schemas() -> Value {
    let text =
        |max: u32| json!({ "type": "string", "minLength": 1, "maxLength": max, "pattern": "\\S" });
    let opt_text = |max: u32| json!({ "type": ["string", "null"], "maxLength": max });
    let uuid = json!({ "type": "string", "format": "uuid" });
    let time = json!({ "type": "string", "format": "date-time" });
    let role = json!({ "type": "string", "enum": ["owner", "member"] });
    let quantity =
        json!({ "type": "number", "exclusiveMinimum": 0, "maximum": crate::domain::MAX_QUANTITY });
    let suggestion = json!({ "type": "object", "required": ["name", "reason"], "properties": { "name": { "type": "string" }, "category": { "type": ["string", "null"] }, "reason": { "type": "string" } } });
    let list = json!({ "type": "object", "required": ["id", "name", "owner_id", "role", "created_at", "updated_at"], "properties": { "id": uuid, "name": { "type": "string" }, "owner_id": uuid, "role": role, "created_at": time, "updated_at": time } });
    let item = json!({ "type": "object", "required": ["id", "name", "quantity", "checked", "position", "created_at", "updated_at"], "properties": { "id": uuid, "name": { "type": "string" }, "quantity": { "type": "number" }, "unit": { "type": ["string", "null"] }, "category": { "type": ["string", "null"] }, "note": { "type": ["string", "null"] }, "checked": { "type": "boolean" }, "position": { "type": "integer" }, "created_at": time, "updated_at": time } });
    let member = json!({ "type": "object", "required": ["user_id", "email", "role"], "properties": { "user_id": uuid, "email": { "type": "string" }, "role": role } });
    let check = json!({ "type": "object", "required": ["ok", "latency_ms"], "properties": { "ok": { "type": "boolean" }, "latency_ms": { "type": "integer" }, "error": { "type": "string" } } });
    let schema_check = json!({ "type": "object", "required": ["ok", "min", "head"], "properties": { "ok": { "type": "boolean", "description": "revision >= min (newer than head is served too)" }, "revision": { "type": "integer", "description": "The database's schema revision (0 = not migrated)" }, "min": { "type": "integer" }, "head": { "type": "integer" }, "error": { "type": "string" } } });
    json!({
        "Error": { "type": "object", "required": ["error", "message"], "properties": { "error": { "type": "string" }, "message": { "type": "string" }, "field": { "type": "string" }, "limit": { "type": "string", "description": "The configuration variable of the limit that was hit (429, 503)" }, "retry_after_seconds": { "type": "integer", "minimum": 1, "description": "As the Retry-After header (429, 503)" }, "max": { "type": "integer", "description": "The value of the limit that was reached (409 caps, 413)" } } },
        "Credentials": { "type": "object", "additionalProperties": false, "required": ["email", "password"], "properties": { "email": { "type": "string", "format": "email", "maxLength": 254 }, "password": { "type": "string", "minLength": 8, "maxLength": 128 } } },
        "UserCreated": { "type": "object", "required": ["id", "email"], "properties": { "id": uuid, "email": { "type": "string" } } },
        "Token": { "type": "object", "required": ["token", "token_type", "expires_in", "user_id"], "properties": { "token": { "type": "string" }, "token_type": { "type": "string", "enum": ["Bearer"] }, "expires_in": { "type": "integer" }, "user_id": uuid } },
        "ListName": { "type": "object", "additionalProperties": false, "required": ["name"], "properties": { "name": text(100) } },
        "List": list,
        "ListPage": { "type": "object", "required": ["lists", "total", "limit", "offset"], "properties": { "lists": { "type": "array", "items": schema_ref("List") }, "total": { "type": "integer" }, "limit": { "type": "integer" }, "offset": { "type": "integer" } } },
        "ListDetail": { "allOf": [schema_ref("List"), { "type": "object", "required": ["items", "members"], "properties": { "items": { "type": "array", "items": schema_ref("Item") }, "members": { "type": "array", "items": schema_ref("Member") } } }] },
        "Share": { "type": "object", "additionalProperties": false, "required": ["email"], "properties": { "email": { "type": "string", "format": "email" }, "role": role } },
        "Member": member,
        "Transfer": { "type": "object", "additionalProperties": false, "required": ["user_id"], "properties": { "user_id": uuid } },
        "TransferOffer": { "type": "object", "required": ["list_id", "user_id", "status"], "properties": { "list_id": uuid, "user_id": uuid, "status": { "type": "string", "enum": ["offered"] } } },
        "NewItem": { "type": "object", "additionalProperties": false, "required": ["name"], "properties": { "name": text(200), "quantity": quantity, "unit": opt_text(20), "category": opt_text(50), "note": opt_text(500) } },
        "ItemPatch": { "type": "object", "additionalProperties": false, "minProperties": 1, "properties": { "name": text(200), "quantity": quantity, "unit": opt_text(20), "category": opt_text(50), "note": opt_text(500), "checked": { "type": "boolean" } } },
        "Item": item,
        "Reorder": { "type": "object", "additionalProperties": false, "required": ["item_ids"], "properties": { "item_ids": { "type": "array", "items": uuid } } },
        "Suggestion": suggestion,
        "SuggestionRequest": { "type": "object", "required": ["id", "list_id", "status", "created_at"], "properties": { "id": uuid, "list_id": uuid, "status": { "type": "string", "enum": ["pending", "done", "failed"] }, "provider": { "type": ["string", "null"] }, "suggestions": { "type": ["array", "null"], "items": schema_ref("Suggestion") }, "error": { "type": ["string", "null"] }, "created_at": time, "completed_at": { "type": ["string", "null"], "format": "date-time" } } },
        "NewAttachment": { "type": "object", "additionalProperties": false, "required": ["name", "content_type", "size_bytes", "sha256"], "properties": { "name": { "type": "string", "minLength": 1, "maxLength": crate::domain::attachments::MAX_NAME_CHARS, "description": "The file's name (no control characters or path separators)" }, "content_type": { "type": "string", "description": "One of ATTACHMENT_TYPES (default image/jpeg, image/png, image/webp, image/heic, application/pdf, text/plain)" }, "size_bytes": { "type": "integer", "minimum": 1, "description": "The exact size; at most ATTACHMENT_MAX_BYTES (default 10 MiB)" }, "sha256": { "type": "string", "minLength": 44, "maxLength": 44, "description": "Base64 of the file's SHA-256 (`openssl dgst -sha256 -binary FILE | base64`)" }, "item_id": { "type": ["string", "null"], "format": "uuid", "description": "An item of the list the file is about" } } },
        "Attachment": { "type": "object", "required": ["id", "list_id", "name", "content_type", "size_bytes", "sha256", "uploaded_by", "state", "created_at"], "properties": { "id": uuid, "list_id": uuid, "item_id": { "type": ["string", "null"], "format": "uuid" }, "name": { "type": "string" }, "content_type": { "type": "string" }, "size_bytes": { "type": "integer" }, "sha256": { "type": "string" }, "uploaded_by": uuid, "state": { "type": "string", "enum": ["pending", "ready"] }, "created_at": time, "confirmed_at": { "type": ["string", "null"], "format": "date-time" } } },
        "Presigned": { "type": "object", "required": ["method", "url", "headers", "expires_at"], "properties": { "method": { "type": "string", "enum": ["PUT", "GET"] }, "url": { "type": "string", "format": "uri" }, "headers": { "type": "object", "additionalProperties": { "type": "string" }, "description": "Send each exactly as given (they are signed)" }, "expires_at": time } },
        "AnnouncedAttachment": { "type": "object", "required": ["attachment", "upload"], "properties": { "attachment": schema_ref("Attachment"), "upload": schema_ref("Presigned") } },
        "DownloadableAttachment": { "type": "object", "required": ["attachment", "download"], "properties": { "attachment": schema_ref("Attachment"), "download": schema_ref("Presigned") } },
        "Readiness": { "type": "object", "required": ["status"], "properties": { "status": { "type": "string", "enum": ["ready", "not_ready"] }, "version": { "type": "string" }, "degraded": { "type": "array", "description": "Optional dependencies that are down (the server still serves)", "items": { "type": "string", "enum": ["redis", "rabbitmq", "object_store"] } }, "checks": { "type": "object", "properties": { "postgres": check, "schema": schema_check, "redis": check, "rabbitmq": check, "object_store": check } } } },
    })
}

/// The document for the running `version`.
pub fn document(version: &str) -> Value {
    let mut paths = serde_json::Map::new();
    for route in ROUTES {
        let entry = paths
            .entry(route.path.to_owned())
            .or_insert_with(|| json!({}));
        entry[route.method.to_lowercase()] = operation(route);
    }
    json!({
        "openapi": "3.1.0",
        "info": { "title": "ListaCompra API", "version": version, "description": "Shopping lists, items, sharing, attachments and AI suggestions." },
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" } },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented_once_and_every_reference_resolves() {
        let doc = document("t");
        let paths = doc["paths"].as_object().unwrap();
        let documented: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
        assert_eq!(documented, ROUTES.len());
        for route in ROUTES {
            assert!(
                paths[route.path][route.method.to_lowercase()].is_object(),
                "{route:?}"
            );
        }
        let text = doc.to_string();
        for reference in text.split("\"#/components/schemas/").skip(1) {
            let name = reference.split('"').next().unwrap();
            assert!(
                doc["components"]["schemas"][name].is_object(),
                "dangling $ref {name}"
            );
        }
    }
}
