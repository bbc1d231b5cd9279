//! Domain events: what changed, as written to the outbox and published to RabbitMQ.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use super::Role;

/// The event type (and routing key) of a suggestion request.
pub const SUGGESTION_REQUESTED: &str = "suggestion.requested";

/// An event as published (the message body); the AMQP message id is the event id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Event id, unique; consumers deduplicate on it.
    pub id: Uuid,
    /// Event type, also the routing key.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The aggregate (list or user) it is about.
    pub aggregate_id: Uuid,
    /// Event data.
    pub payload: serde_json::Value,
    /// When the change happened.
    pub created_at: DateTime<Utc>,
}

/// An event to record with the change that caused it (the store assigns id and time).
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// Event type, also the routing key.
    pub event_type: &'static str,
    /// The aggregate (list or user) it is about.
    pub aggregate_id: Uuid,
    /// Event data.
    pub payload: serde_json::Value,
}

fn event(event_type: &'static str, aggregate_id: Uuid, payload: serde_json::Value) -> NewEvent {
    NewEvent {
        event_type,
        aggregate_id,
        payload,
    }
}

impl NewEvent {
    /// A user registered.
    pub fn user_registered(user: Uuid) -> Self {
        event("user.registered", user, json!({ "user_id": user }))
    }

    /// A list was created.
    pub fn list_created(list: Uuid, owner: Uuid, name: &str) -> Self {
        event(
            "list.created",
            list,
            json!({ "list_id": list, "owner_id": owner, "name": name }),
        )
    }

    /// A list was renamed.
    pub fn list_renamed(list: Uuid, name: &str) -> Self {
        event(
            "list.renamed",
            list,
            json!({ "list_id": list, "name": name }),
        )
    }

    /// A list was deleted.
    pub fn list_deleted(list: Uuid) -> Self {
        event("list.deleted", list, json!({ "list_id": list }))
    }

    /// A list was shared with a user.
    pub fn list_shared(list: Uuid, user: Uuid, role: Role) -> Self {
        event(
            "list.shared",
            list,
            json!({ "list_id": list, "user_id": user, "role": role }),
        )
    }

    /// A list's creator handed it to another member.
    pub fn list_transferred(list: Uuid, from: Uuid, to: Uuid) -> Self {
        event(
            "list.transferred",
            list,
            json!({ "list_id": list, "from": from, "to": to }),
        )
    }

    /// A member left a list.
    pub fn list_unshared(list: Uuid, user: Uuid) -> Self {
        event(
            "list.unshared",
            list,
            json!({ "list_id": list, "user_id": user }),
        )
    }

    /// An item was added.
    pub fn item_added(list: Uuid, item: Uuid, name: &str, by: Uuid) -> Self {
        event(
            "item.added",
            list,
            json!({ "list_id": list, "item_id": item, "name": name, "by": by }),
        )
    }

    /// An item was changed.
    pub fn item_updated(list: Uuid, item: Uuid, checked: bool, by: Uuid) -> Self {
        event(
            "item.updated",
            list,
            json!({ "list_id": list, "item_id": item, "checked": checked, "by": by }),
        )
    }

    /// An item was removed.
    pub fn item_removed(list: Uuid, item: Uuid, by: Uuid) -> Self {
        event(
            "item.removed",
            list,
            json!({ "list_id": list, "item_id": item, "by": by }),
        )
    }

    /// The items of a list were put in a new order.
    pub fn items_reordered(list: Uuid, by: Uuid) -> Self {
        event(
            "items.reordered",
            list,
            json!({ "list_id": list, "by": by }),
        )
    }

    /// Suggestions were requested for a list.
    pub fn suggestion_requested(request: Uuid, list: Uuid) -> Self {
        event(
            SUGGESTION_REQUESTED,
            list,
            json!({ "request_id": request, "list_id": list }),
        )
    }
}

/// A suggestion request, read back from its event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SuggestionJob {
    /// The event it came in (the deduplication key).
    pub event_id: Uuid,
    /// The suggestion request.
    pub request_id: Uuid,
    /// Its list.
    pub list_id: Uuid,
}

impl SuggestionJob {
    /// The job in `event`, or `None` when the payload lacks the ids.
    pub fn from_event(event: &Event) -> Option<Self> {
        Self::from_payload(event.id, &event.payload)
    }

    /// The job in the payload of the event `event_id`, or `None` when it lacks the ids.
    pub fn from_payload(event_id: Uuid, payload: &serde_json::Value) -> Option<Self> {
        let id = |key: &str| {
            payload
                .get(key)
                .and_then(|v| v.as_str())
                .and_then(|s| Uuid::parse_str(s).ok())
        };
        Some(Self {
            event_id,
            request_id: id("request_id")?,
            list_id: id("list_id")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_suggestion_event_round_trips_into_a_job() {
        let (request, list) = (Uuid::new_v4(), Uuid::new_v4());
        let new = NewEvent::suggestion_requested(request, list);
        let event = Event {
            id: Uuid::new_v4(),
            event_type: new.event_type.to_owned(),
            aggregate_id: new.aggregate_id,
            payload: new.payload,
            created_at: Utc::now(),
        };
        let job = SuggestionJob::from_event(&event).unwrap();
        assert_eq!(
            (job.event_id, job.request_id, job.list_id),
            (event.id, request, list)
        );
        let broken = Event {
            payload: json!({ "list_id": list }),
            ..event
        };
        assert_eq!(SuggestionJob::from_event(&broken), None);
    }
}
