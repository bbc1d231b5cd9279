//! Unit tests of the use cases over in-memory fakes of the ports.

use std::sync::{Arc, Mutex};

use chrono::Utc;
use uuid::Uuid;

use super::fakes::{IdTokens, MapCache, MemStore, PlainHasher, ProbeProvider};
use super::*;
use crate::domain::{Event, ItemPatch, ItemSummary, NewEvent, SuggestionJob};
use crate::error::AppError;
use crate::ports::TokenSubject;

type Api = UseCases<MemStore, PlainHasher, IdTokens>;

fn api() -> Api {
    UseCases::new(MemStore::default(), PlainHasher, IdTokens)
}

async fn user(api: &Api, name: &str) -> Uuid {
    api.register(&format!("{name}@example.com"), "correct horse")
        .await
        .unwrap()
        .id
}

/// The claim of a token issued to `user` before any logout (token version 0).
fn reader(user: Uuid) -> TokenSubject {
    TokenSubject { user, version: 0 }
}

fn event_types(api: &Api) -> Vec<&'static str> {
    api.store()
        .data()
        .events
        .iter()
        .map(|e| e.event_type)
        .collect()
}

#[tokio::test]
async fn register_login_and_authenticate() {
    let api = api();
    let reg = api
        .register(" Ana@Example.com ", "correct horse")
        .await
        .unwrap();
    assert_eq!(reg.email, "ana@example.com");
    // A taken e-mail answers like a new one (no enumeration); the account is unchanged.
    let again = api
        .register("ana@example.com", "another one")
        .await
        .unwrap();
    assert_ne!(again.id, reg.id);
    assert!(api.login("ana@example.com", "another one").await.is_err());
    let session = api.login("ana@example.com", "correct horse").await.unwrap();
    assert_eq!(session.user_id, reg.id);
    assert_eq!(api.authenticate(&session.token).await.unwrap(), reg.id);
    // Logout revokes that token and every other one of the user.
    let other = api.login("ana@example.com", "correct horse").await.unwrap();
    api.logout(reg.id).await.unwrap();
    for token in [&session.token, &other.token] {
        assert!(matches!(
            api.authenticate(token).await,
            Err(AppError::InvalidToken)
        ));
    }
    let again = api.login("ana@example.com", "correct horse").await.unwrap();
    assert_eq!(api.authenticate(&again.token).await.unwrap(), reg.id);
    // A token of a user that does not exist is refused.
    assert!(matches!(
        api.authenticate(&format!("{}.0", Uuid::new_v4())).await,
        Err(AppError::InvalidToken)
    ));
    for (email, password) in [
        ("ana@example.com", "wrong horse"),
        ("nobody@example.com", "correct horse"),
    ] {
        assert!(matches!(
            api.login(email, password).await,
            Err(AppError::Unauthorized("wrong e-mail or password"))
        ));
    }
    assert!(matches!(
        api.register("not-an-email", "correct horse").await,
        Err(AppError::Invalid(i)) if i.field == "email"
    ));
    assert!(matches!(
        api.register("b@example.com", "short").await,
        Err(AppError::Invalid(i)) if i.field == "password"
    ));
    assert_eq!(event_types(&api), ["user.registered"]);
    // A valid token of a user that does not exist (any more) is refused, not a 500.
    assert!(matches!(
        api.create_list(Uuid::new_v4(), "Casa").await,
        Err(AppError::Unauthorized(_))
    ));
}

/// The list read checks the token's version in its own statement: a revoked token reads
/// nothing and is answered 401 (not 404), on the reader's own list and on any other; a
/// current one reads the list, and a list the reader cannot see is 404.
#[tokio::test]
async fn a_list_read_with_a_revoked_token_is_refused_as_the_token_not_the_list() {
    let api = api();
    let (owner, other) = (user(&api, "owner").await, user(&api, "other").await);
    let list = api.create_list(owner, "Casa").await.unwrap().id;
    let elsewhere = api.create_list(other, "Otra").await.unwrap().id;
    assert_eq!(
        api.get_list(reader(owner), list).await.unwrap().list.id,
        list
    );
    assert!(matches!(
        api.get_list(reader(owner), elsewhere).await,
        Err(AppError::NotFound("list"))
    ));
    api.logout(owner).await.unwrap();
    for read in [list, elsewhere, Uuid::new_v4()] {
        assert!(
            matches!(
                api.get_list(reader(owner), read).await,
                Err(AppError::InvalidToken)
            ),
            "a revoked token reads {read}"
        );
    }
    let current = TokenSubject {
        user: owner,
        version: 1,
    };
    assert_eq!(api.get_list(current, list).await.unwrap().list.id, list);
    // A token of a user that does not exist (any more) is refused the same way.
    assert!(matches!(
        api.get_list(reader(Uuid::new_v4()), list).await,
        Err(AppError::InvalidToken)
    ));
}

#[tokio::test]
async fn members_edit_items_only_owners_manage_and_strangers_see_nothing() {
    let api = api();
    let (owner, member, stranger) = (
        user(&api, "owner").await,
        user(&api, "member").await,
        user(&api, "stranger").await,
    );
    let list = api.create_list(owner, " Cena ").await.unwrap();
    assert_eq!(list.name, "Cena");
    api.share(owner, list.id, "member@example.com", Role::Member)
        .await
        .unwrap();

    let milk = NewItem {
        name: "leche".to_owned(),
        ..NewItem::default()
    };
    let item = api.add_item(member, list.id, &milk).await.unwrap();
    let changes = ItemPatch {
        checked: Some(true),
        ..ItemPatch::default()
    };
    assert!(
        api.update_item(member, list.id, item.id, &changes)
            .await
            .unwrap()
            .checked
    );
    assert!(matches!(
        api.rename_list(member, list.id, "Mine").await,
        Err(AppError::Forbidden(_))
    ));
    assert!(matches!(
        api.delete_list(member, list.id).await,
        Err(AppError::Forbidden(_))
    ));
    assert!(matches!(
        api.share(member, list.id, "stranger@example.com", Role::Member)
            .await,
        Err(AppError::Forbidden(_))
    ));

    let before = event_types(&api).len();
    for result in [
        api.get_list(reader(stranger), list.id).await.map(|_| ()),
        api.add_item(stranger, list.id, &milk).await.map(|_| ()),
        api.rename_list(stranger, list.id, "x").await.map(|_| ()),
        api.delete_item(stranger, list.id, item.id).await,
        api.request_suggestions(stranger, list.id).await.map(|_| ()),
        api.unshare(stranger, list.id, owner).await,
    ] {
        assert!(
            matches!(result, Err(AppError::NotFound("list"))),
            "{result:?}"
        );
    }
    assert_eq!(
        event_types(&api).len(),
        before,
        "refused actions record no event"
    );
    assert_eq!(
        api.get_list(reader(owner), list.id)
            .await
            .unwrap()
            .items
            .len(),
        1
    );
}

#[tokio::test]
async fn sharing_rules() {
    let api = api();
    let (owner, member) = (user(&api, "owner").await, user(&api, "member").await);
    let list = api.create_list(owner, "Casa").await.unwrap().id;
    // An e-mail without an account is answered like one with an account and listed among the
    // members with the id of that answer, until it registers and becomes a member.
    let nobody = api
        .share(owner, list, "Nobody@Example.com", Role::Member)
        .await
        .unwrap();
    assert_eq!(nobody.email, "nobody@example.com");
    let ids = |api: &Api| {
        let data = api.store().data();
        let mut ids: Vec<Uuid> = data
            .members
            .iter()
            .filter(|m| m.0 == list)
            .map(|m| m.1)
            .chain(data.invitations.iter().map(|i| i.1))
            .collect();
        ids.sort();
        ids
    };
    assert!(ids(&api).contains(&nobody.user_id));
    assert!(matches!(
        api.share(owner, list, "nobody@example.com", Role::Owner)
            .await,
        Err(AppError::Conflict(_))
    ));
    let joined = user(&api, "nobody").await;
    assert!(api.get_list(reader(joined), list).await.is_ok());
    assert!(!ids(&api).contains(&nobody.user_id));
    api.unshare(joined, list, joined).await.unwrap();
    // A pending invitation is withdrawn like a member is removed.
    let ghost = api
        .share(owner, list, "ghost@example.com", Role::Member)
        .await
        .unwrap();
    api.unshare(owner, list, ghost.user_id).await.unwrap();
    assert!(!ids(&api).contains(&ghost.user_id));
    api.share(owner, list, "member@example.com", Role::Member)
        .await
        .unwrap();
    assert!(matches!(
        api.share(owner, list, "member@example.com", Role::Owner)
            .await,
        Err(AppError::Conflict(_))
    ));
    assert!(matches!(
        api.unshare(owner, list, owner).await,
        Err(AppError::Conflict(_))
    ));
    assert!(matches!(
        api.unshare(owner, list, Uuid::new_v4()).await,
        Err(AppError::NotFound("member"))
    ));
    api.unshare(owner, list, member).await.unwrap();
    assert!(matches!(
        api.get_list(reader(member), list).await,
        Err(AppError::NotFound("list"))
    ));
    assert_eq!(
        event_types(&api)[2..],
        [
            "list.created",
            "user.registered",
            "list.shared",
            "list.unshared",
            "list.shared",
            "list.unshared"
        ]
    );
}

#[tokio::test]
async fn the_creator_offers_a_list_and_the_member_accepts_it() {
    let api = api();
    let (creator, member) = (user(&api, "creator").await, user(&api, "member").await);
    let list = api.create_list(creator, "Casa").await.unwrap().id;
    assert!(matches!(
        api.offer_list(creator, list, member).await,
        Err(AppError::NotFound("member"))
    ));
    api.share(creator, list, "member@example.com", Role::Member)
        .await
        .unwrap();
    assert!(matches!(
        api.offer_list(member, list, member).await,
        Err(AppError::Forbidden(_))
    ));
    assert!(matches!(
        api.accept_list(member, list).await,
        Err(AppError::NotFound("ownership offer"))
    ));
    let offer = api.offer_list(creator, list, member).await.unwrap();
    assert_eq!((offer.list_id, offer.user_id), (list, member));
    // Nothing changes until the member accepts.
    let seen = api.get_list(reader(member), list).await.unwrap();
    assert_eq!(
        (seen.list.owner_id, seen.list.role),
        (creator, Role::Member)
    );
    assert!(!event_types(&api).contains(&"list.transferred"));
    let view = api.accept_list(member, list).await.unwrap();
    assert_eq!(view.owner_id, member);
    assert_eq!(view.role, Role::Owner);
    let seen = api.get_list(reader(member), list).await.unwrap();
    assert_eq!((seen.list.owner_id, seen.list.role), (member, Role::Owner));
    // Taken once.
    assert!(matches!(
        api.accept_list(member, list).await,
        Err(AppError::NotFound("ownership offer"))
    ));
    // The former creator is now a co-owner: they may leave, and cannot remove the new one.
    assert!(matches!(
        api.unshare(creator, list, member).await,
        Err(AppError::Conflict(_))
    ));
    api.unshare(creator, list, creator).await.unwrap();
    assert_eq!(event_types(&api).last(), Some(&"list.unshared"));
    assert!(event_types(&api).contains(&"list.transferred"));
}

#[tokio::test]
async fn bad_input_is_refused_before_anything_is_written() {
    let api = api();
    let owner = user(&api, "owner").await;
    let list = api.create_list(owner, "Casa").await.unwrap().id;
    let before = api.store().data().clone();
    let bad = NewItem {
        name: "x".to_owned(),
        quantity: Some(0.0),
        ..NewItem::default()
    };
    assert!(matches!(
        api.add_item(owner, list, &bad).await,
        Err(AppError::Invalid(i)) if i.field == "quantity"
    ));
    assert!(matches!(
        api.create_list(owner, "   ").await,
        Err(AppError::Invalid(i)) if i.field == "name"
    ));
    assert!(matches!(
        api.my_lists(owner, Some(0), None).await,
        Err(AppError::Invalid(i)) if i.field == "limit"
    ));
    assert!(matches!(
        api.reorder(owner, list, &[Uuid::new_v4()]).await,
        Err(AppError::Invalid(i)) if i.field == "item_ids"
    ));
    assert_eq!(api.store().data().events.len(), before.events.len());
    assert_eq!(api.store().data().items.len(), 0);
}

/// A list with one item and a pending request; returns the store, the job and its event.
async fn pending_job() -> (MemStore, SuggestionJob) {
    let api = api();
    let owner = user(&api, "owner").await;
    let list = api.create_list(owner, "Cena").await.unwrap().id;
    let pasta = NewItem {
        name: "pasta".to_owned(),
        ..NewItem::default()
    };
    api.add_item(owner, list, &pasta).await.unwrap();
    let request = api.request_suggestions(owner, list).await.unwrap();
    let new = api.store().data().events.last().cloned().unwrap();
    assert_eq!(new, NewEvent::suggestion_requested(request.id, list));
    let event = Event {
        id: Uuid::new_v4(),
        event_type: new.event_type.to_owned(),
        aggregate_id: new.aggregate_id,
        payload: new.payload,
        created_at: Utc::now(),
    };
    (
        api.store().clone(),
        SuggestionJob::from_event(&event).unwrap(),
    )
}

fn probe(store: &MemStore, fail: bool) -> Arc<ProbeProvider> {
    Arc::new(ProbeProvider {
        store: store.clone(),
        fail,
        open_during_calls: Mutex::new(Vec::new()),
        concurrent_delivery: None,
    })
}

#[tokio::test]
async fn the_job_calls_the_provider_outside_any_transaction_and_a_redelivery_has_no_effect() {
    let (store, job) = pending_job().await;
    let provider = probe(&store, false);
    let jobs = SuggestionJobs::new(store.clone(), provider.clone(), None);
    assert_eq!(jobs.handle(job).await.unwrap(), Handled::Done);
    assert_eq!(*provider.open_during_calls.lock().unwrap(), [0]);
    let request = store.data().requests[0].clone();
    assert_eq!(request.status, "done");
    assert_eq!(request.provider.as_deref(), Some("probe"));
    assert_eq!(request.suggestions.unwrap()[0].name, "more pasta");
    assert_eq!(
        store
            .open_transactions
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );

    assert_eq!(jobs.handle(job).await.unwrap(), Handled::Duplicate);
    assert_eq!(
        provider.open_during_calls.lock().unwrap().len(),
        1,
        "no second call"
    );
    assert_eq!(store.data().processed.len(), 1);
}

#[tokio::test]
async fn a_concurrent_delivery_that_finishes_first_wins_and_this_one_records_nothing() {
    let (store, job) = pending_job().await;
    let provider = Arc::new(ProbeProvider {
        store: store.clone(),
        fail: false,
        open_during_calls: Mutex::new(Vec::new()),
        concurrent_delivery: Some((CONSUMER.to_owned(), job.event_id)),
    });
    let jobs = SuggestionJobs::new(store.clone(), provider.clone(), None);
    assert_eq!(jobs.handle(job).await.unwrap(), Handled::Duplicate);
    assert_eq!(store.data().requests[0].status, "pending");
    assert_eq!(store.data().processed.len(), 1);
}

#[tokio::test]
async fn a_failing_provider_marks_the_request_failed_once() {
    let (store, job) = pending_job().await;
    let jobs = SuggestionJobs::new(store.clone(), probe(&store, true), None);
    assert_eq!(jobs.handle(job).await.unwrap(), Handled::Failed);
    let request = store.data().requests[0].clone();
    assert_eq!(request.status, "failed");
    assert!(request.error.unwrap().contains("503"));
    assert_eq!(jobs.handle(job).await.unwrap(), Handled::Duplicate);
}

/// A provider with a fixed answer.
#[derive(Debug)]
struct Fixed(Vec<crate::domain::Suggestion>);

impl crate::ports::SuggestionProvider for Fixed {
    fn name(&self) -> &'static str {
        "fixed"
    }

    fn suggest<'a>(
        &'a self,
        _: &'a [ItemSummary],
    ) -> crate::ports::BoxFuture<'a, crate::Result<Vec<crate::domain::Suggestion>>> {
        Box::pin(async move { Ok(self.0.clone()) })
    }
}

#[tokio::test]
async fn when_the_provider_fails_the_fallback_answers_and_is_recorded() {
    let (store, job) = pending_job().await;
    let fallback = Arc::new(Fixed(vec![crate::domain::Suggestion {
        name: "Bread".to_owned(),
        category: None,
        reason: "fallback".to_owned(),
    }]));
    let jobs =
        SuggestionJobs::new(store.clone(), probe(&store, true), None).with_fallback(fallback);
    assert_eq!(jobs.handle(job).await.unwrap(), Handled::Done);
    let request = store.data().requests[0].clone();
    assert_eq!(request.status, "done");
    assert_eq!(request.provider.as_deref(), Some("fixed"));
    assert_eq!(request.suggestions.unwrap()[0].name, "bread");
}

#[tokio::test]
async fn model_output_is_validated_and_an_answer_with_nothing_valid_fails_the_job() {
    let bad = |name: &str| crate::domain::Suggestion {
        name: name.to_owned(),
        category: None,
        reason: String::new(),
    };
    let (store, job) = pending_job().await;
    let jobs = SuggestionJobs::new(
        store.clone(),
        Arc::new(Fixed(vec![bad("nul\u{0}"), bad("ok"), bad("bell\u{7}")])),
        None,
    );
    assert_eq!(jobs.handle(job).await.unwrap(), Handled::Done);
    assert_eq!(
        store.data().requests[0].suggestions,
        Some(vec![bad("ok")]),
        "only the valid entry is stored"
    );

    let (store, job) = pending_job().await;
    let jobs = SuggestionJobs::new(
        store.clone(),
        Arc::new(Fixed(vec![bad("nul\u{0}"), bad(&"x".repeat(201))])),
        None,
    );
    assert_eq!(jobs.handle(job).await.unwrap(), Handled::Failed);
    let request = store.data().requests[0].clone();
    assert_eq!(request.status, "failed");
    assert!(request.error.unwrap().contains("none of the 2 suggestions"));
}

#[tokio::test]
async fn giving_up_marks_the_request_failed_once() {
    let (store, job) = pending_job().await;
    let jobs = SuggestionJobs::new(store.clone(), probe(&store, false), None);
    assert_eq!(
        jobs.give_up(job, "gave up after 5 attempts: boom")
            .await
            .unwrap(),
        Handled::Failed
    );
    let request = store.data().requests[0].clone();
    assert_eq!(request.status, "failed");
    assert_eq!(
        request.error.as_deref(),
        Some("gave up after 5 attempts: boom")
    );
    assert_eq!(
        jobs.give_up(job, "again").await.unwrap(),
        Handled::Duplicate
    );
    assert_eq!(jobs.handle(job).await.unwrap(), Handled::Duplicate);
}

#[tokio::test]
async fn cached_answers_spare_the_provider_and_gone_requests_are_ignored() {
    let (store, job) = pending_job().await;
    let provider = probe(&store, false);
    let cache = Arc::new(MapCache::default());
    let cached = vec![crate::domain::Suggestion {
        name: "parmesan".to_owned(),
        category: None,
        reason: "cached".to_owned(),
    }];
    let items = [ItemSummary {
        name: "pasta".to_owned(),
        category: None,
    }];
    cache
        .0
        .lock()
        .unwrap()
        .insert(cache_key("probe", &items), cached.clone());
    let jobs = SuggestionJobs::new(store.clone(), provider.clone(), Some(cache));
    assert_eq!(jobs.handle(job).await.unwrap(), Handled::Done);
    assert!(provider.open_during_calls.lock().unwrap().is_empty());
    assert_eq!(store.data().requests[0].suggestions, Some(cached));

    // A request whose list was deleted: nothing to do, nothing recorded.
    let (store, job) = pending_job().await;
    store.data().requests.clear();
    let jobs = SuggestionJobs::new(store.clone(), probe(&store, false), None);
    assert_eq!(jobs.handle(job).await.unwrap(), Handled::Ignored);
    assert!(store.data().processed.is_empty());
}

#[test]
fn cache_keys_ignore_order_and_case_but_not_provider() {
    let a = vec![
        ItemSummary {
            name: "Leche".to_owned(),
            category: Some("dairy".to_owned()),
        },
        ItemSummary {
            name: "pan".to_owned(),
            category: None,
        },
    ];
    let b = vec![
        a[1].clone(),
        ItemSummary {
            name: "leche".to_owned(),
            ..a[0].clone()
        },
    ];
    assert_eq!(cache_key("offline", &a), cache_key("offline", &b));
    assert_ne!(cache_key("offline", &a), cache_key("perplexity", &a));
    assert_ne!(cache_key("offline", &a), cache_key("offline", &a[..1]));
}

#[tokio::test]
async fn a_co_owner_cannot_delete_the_creators_list() {
    let api = api();
    let (creator, co_owner) = (user(&api, "creator").await, user(&api, "co").await);
    let list = api.create_list(creator, "Casa").await.unwrap().id;
    api.share(creator, list, "co@example.com", Role::Owner)
        .await
        .unwrap();
    assert!(matches!(
        api.delete_list(co_owner, list).await,
        Err(AppError::Forbidden(m)) if m.contains("creator")
    ));
    assert!(api.get_list(reader(creator), list).await.is_ok());
    api.delete_list(creator, list).await.unwrap();
    assert!(api.get_list(reader(creator), list).await.is_err());
}
