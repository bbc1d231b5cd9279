//! In-memory fakes of the ports, for unit tests of the use cases.
//!
//! A transaction works on a copy of the data and writes it back on commit; dropping it
//! discards the copy (a rollback). The store counts open transactions, so tests can check
//! that nothing is held open while the AI provider works.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::Utc;
use uuid::Uuid;

use crate::domain::{
    ItemFields, ItemPatch, ItemSummary, ItemView, ListDetail, ListPage, ListView, MemberView,
    NewEvent, Page, Role, Suggestion, SuggestionView, User,
};
use crate::ports::{
    BoxFuture, PasswordHasher, Store, SuggestionCache, SuggestionProvider, TokenIssuer,
    TokenSubject, UnitOfWork,
};
use crate::{Error, Result};

/// Everything the fake store holds.
#[derive(Debug, Clone, Default)]
pub struct Data {
    pub users: Vec<User>,
    pub lists: Vec<(Uuid, Uuid, String)>,
    pub members: Vec<(Uuid, Uuid, Role)>,
    pub items: Vec<(Uuid, ItemView)>,
    pub requests: Vec<SuggestionView>,
    pub processed: Vec<(String, Uuid)>,
    pub events: Vec<NewEvent>,
    /// Pending invitations: list, id, e-mail, role.
    pub invitations: Vec<(Uuid, Uuid, String, Role)>,
    /// Ownership offers: list, from, to.
    pub offers: Vec<(Uuid, Uuid, Uuid)>,
}

impl Data {
    fn role(&self, list: Uuid, user: Uuid) -> Option<Role> {
        self.members
            .iter()
            .find(|(l, u, _)| *l == list && *u == user)
            .map(|(_, _, r)| *r)
    }

    fn list_view(&self, list: Uuid, user: Uuid) -> Option<ListView> {
        let role = self.role(list, user)?;
        let (id, owner, name) = self.lists.iter().find(|(id, _, _)| *id == list)?;
        Some(ListView {
            id: *id,
            name: name.clone(),
            owner_id: *owner,
            role,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        })
    }

    fn items_of(&self, list: Uuid) -> Vec<ItemView> {
        let mut items: Vec<ItemView> = self
            .items
            .iter()
            .filter(|(l, _)| *l == list)
            .map(|(_, i)| i.clone())
            .collect();
        items.sort_by_key(|i| i.position);
        items
    }
}

/// The in-memory store.
#[derive(Debug, Clone, Default)]
pub struct MemStore {
    pub data: Arc<Mutex<Data>>,
    pub open_transactions: Arc<AtomicUsize>,
}

impl MemStore {
    pub fn data(&self) -> MutexGuard<'_, Data> {
        self.data.lock().unwrap()
    }
}

/// A transaction of [`MemStore`].
#[derive(Debug)]
pub struct MemTx {
    data: Data,
    store: MemStore,
}

impl Drop for MemTx {
    fn drop(&mut self) {
        self.store.open_transactions.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Store for MemStore {
    type Tx = MemTx;

    async fn begin(&self) -> Result<MemTx> {
        self.open_transactions.fetch_add(1, Ordering::SeqCst);
        Ok(MemTx {
            data: self.data().clone(),
            store: self.clone(),
        })
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<User>> {
        Ok(self.data().users.iter().find(|u| u.email == email).cloned())
    }

    async fn token_version(&self, user: Uuid) -> Result<Option<i64>> {
        Ok(self
            .data()
            .users
            .iter()
            .find(|u| u.id == user)
            .map(|u| u.token_version))
    }

    async fn my_lists(&self, user: Uuid, page: Page) -> Result<ListPage> {
        let data = self.data();
        let lists: Vec<ListView> = data
            .lists
            .iter()
            .filter_map(|(id, _, _)| data.list_view(*id, user))
            .collect();
        Ok(ListPage {
            total: i64::try_from(lists.len()).unwrap(),
            lists,
            limit: page.limit,
            offset: page.offset,
        })
    }

    async fn list_detail(&self, reader: TokenSubject, list: Uuid) -> Result<Option<ListDetail>> {
        let data = self.data();
        let user = reader.user;
        let current = data
            .users
            .iter()
            .any(|u| u.id == user && u.token_version == reader.version);
        if !current {
            return Ok(None);
        }
        Ok(data.list_view(list, user).map(|view| ListDetail {
            list: view,
            items: data.items_of(list),
            members: data
                .members
                .iter()
                .filter(|(l, _, _)| *l == list)
                .map(|(_, u, role)| MemberView {
                    user_id: *u,
                    email: String::new(),
                    role: *role,
                })
                .collect(),
        }))
    }

    async fn suggestion_request(
        &self,
        user: Uuid,
        list: Uuid,
        id: Uuid,
    ) -> Result<Option<SuggestionView>> {
        let data = self.data();
        Ok(data.role(list, user).and_then(|_| {
            data.requests
                .iter()
                .find(|r| r.id == id && r.list_id == list)
                .cloned()
        }))
    }

    async fn already_processed(&self, consumer: &str, event_id: Uuid) -> Result<bool> {
        Ok(self
            .data()
            .processed
            .iter()
            .any(|(c, e)| c == consumer && *e == event_id))
    }

    async fn pending_request_items(&self, request: Uuid) -> Result<Option<Vec<ItemSummary>>> {
        let data = self.data();
        let Some(req) = data
            .requests
            .iter()
            .find(|r| r.id == request && r.status == "pending")
        else {
            return Ok(None);
        };
        Ok(Some(
            data.items_of(req.list_id)
                .into_iter()
                .map(|i| ItemSummary {
                    name: i.name,
                    category: i.category,
                })
                .collect(),
        ))
    }
}

impl UnitOfWork for MemTx {
    async fn role(&mut self, list: Uuid, user: Uuid) -> Result<Option<Role>> {
        Ok(self.data.role(list, user))
    }

    async fn insert_user(&mut self, id: Uuid, email: &str, password_hash: &str) -> Result<bool> {
        if self.data.users.iter().any(|u| u.email == email) {
            return Ok(false);
        }
        self.data.users.push(User {
            id,
            email: email.to_owned(),
            password_hash: password_hash.to_owned(),
            token_version: 0,
        });
        Ok(true)
    }

    async fn revoke_tokens(&mut self, user: Uuid) -> Result<bool> {
        let user = self.data.users.iter_mut().find(|u| u.id == user);
        Ok(user.map(|u| u.token_version += 1).is_some())
    }

    async fn invite(&mut self, list: Uuid, email: &str, role: Role) -> Result<Option<Uuid>> {
        if self
            .data
            .invitations
            .iter()
            .any(|i| i.0 == list && i.2 == email)
        {
            return Ok(None);
        }
        let id = Uuid::new_v4();
        self.data
            .invitations
            .push((list, id, email.to_owned(), role));
        Ok(Some(id))
    }

    async fn claim_invitations(&mut self, user: Uuid, email: &str) -> Result<Vec<(Uuid, Role)>> {
        let (claimed, kept) = std::mem::take(&mut self.data.invitations)
            .into_iter()
            .partition::<Vec<_>, _>(|i| i.2 == email);
        self.data.invitations = kept;
        let joined: Vec<(Uuid, Role)> = claimed.into_iter().map(|i| (i.0, i.3)).collect();
        for (list, role) in &joined {
            self.data.members.push((*list, user, *role));
        }
        Ok(joined)
    }

    async fn lock_invitations(&mut self, list: Uuid) -> Result<Vec<(Uuid, Role)>> {
        Ok(self
            .data
            .invitations
            .iter()
            .filter(|i| i.0 == list)
            .map(|i| (i.1, i.3))
            .collect())
    }

    async fn find_user(&mut self, email: &str) -> Result<Option<(Uuid, String)>> {
        Ok(self
            .data
            .users
            .iter()
            .find(|u| u.email == email)
            .map(|u| (u.id, u.email.clone())))
    }

    async fn insert_list(&mut self, owner: Uuid, name: &str) -> Result<Option<ListView>> {
        if !self.data.users.iter().any(|u| u.id == owner) {
            return Ok(None);
        }
        let id = Uuid::new_v4();
        self.data.lists.push((id, owner, name.to_owned()));
        self.data.members.push((id, owner, Role::Owner));
        Ok(self.data.list_view(id, owner))
    }

    async fn rename_list(
        &mut self,
        owner: Uuid,
        list: Uuid,
        name: &str,
    ) -> Result<Option<ListView>> {
        if self.data.role(list, owner) != Some(Role::Owner) {
            return Ok(None);
        }
        for l in &mut self.data.lists {
            if l.0 == list {
                l.2 = name.to_owned();
            }
        }
        Ok(self.data.list_view(list, owner))
    }

    async fn delete_list(&mut self, owner: Uuid, list: Uuid) -> Result<bool> {
        if !self.data.lists.iter().any(|l| l.0 == list && l.1 == owner) {
            return Ok(false);
        }
        self.data.lists.retain(|l| l.0 != list);
        self.data.members.retain(|m| m.0 != list);
        self.data.items.retain(|i| i.0 != list);
        self.data.requests.retain(|r| r.list_id != list);
        Ok(true)
    }

    async fn lock_list_counts(&mut self, list: Uuid) -> Result<(i64, i64)> {
        let items = self.data.items.iter().filter(|i| i.0 == list).count();
        let members = self.data.members.iter().filter(|m| m.0 == list).count()
            + self.data.invitations.iter().filter(|i| i.0 == list).count();
        Ok((
            i64::try_from(items).unwrap(),
            i64::try_from(members).unwrap(),
        ))
    }

    async fn lock_user_count_lists(&mut self, user: Uuid) -> Result<i64> {
        let lists = self.data.lists.iter().filter(|l| l.1 == user).count();
        Ok(i64::try_from(lists).unwrap())
    }

    async fn list_creator(&mut self, list: Uuid, user: Uuid) -> Result<Option<Uuid>> {
        Ok(self.data.list_view(list, user).map(|l| l.owner_id))
    }

    async fn lock_members(&mut self, list: Uuid) -> Result<Vec<(Uuid, Role)>> {
        Ok(self
            .data
            .members
            .iter()
            .filter(|m| m.0 == list)
            .map(|m| (m.1, m.2))
            .collect())
    }

    async fn offer_transfer(&mut self, list: Uuid, from: Uuid, to: Uuid) -> Result<()> {
        self.data.offers.retain(|o| o.0 != list);
        self.data.offers.push((list, from, to));
        Ok(())
    }

    async fn take_transfer_offer(&mut self, list: Uuid, to: Uuid) -> Result<Option<Uuid>> {
        let Some(at) = self
            .data
            .offers
            .iter()
            .position(|o| o.0 == list && o.2 == to)
        else {
            return Ok(None);
        };
        Ok(Some(self.data.offers.remove(at).1))
    }

    async fn transfer_list(
        &mut self,
        list: Uuid,
        from: Uuid,
        to: Uuid,
    ) -> Result<Option<ListView>> {
        let Some(entry) = self
            .data
            .lists
            .iter_mut()
            .find(|(id, owner, _)| *id == list && *owner == from)
        else {
            return Ok(None);
        };
        entry.1 = to;
        for member in &mut self.data.members {
            if member.0 == list && member.1 == to {
                member.2 = Role::Owner;
            }
        }
        Ok(self.data.list_view(list, from))
    }

    async fn add_member(&mut self, list: Uuid, user: Uuid, role: Role) -> Result<bool> {
        if self.data.role(list, user).is_some() {
            return Ok(false);
        }
        self.data.members.push((list, user, role));
        Ok(true)
    }

    async fn remove_member(&mut self, list: Uuid, user: Uuid) -> Result<bool> {
        let before = self.data.members.len() + self.data.invitations.len();
        self.data.members.retain(|m| !(m.0 == list && m.1 == user));
        self.data
            .invitations
            .retain(|i| !(i.0 == list && i.1 == user));
        Ok(self.data.members.len() + self.data.invitations.len() < before)
    }

    async fn append_item(
        &mut self,
        user: Uuid,
        list: Uuid,
        item: &ItemFields,
    ) -> Result<Option<ItemView>> {
        if self.data.role(list, user).is_none() {
            return Ok(None);
        }
        let view = ItemView {
            id: Uuid::new_v4(),
            name: item.name.clone(),
            quantity: item.quantity,
            unit: item.unit.clone(),
            category: item.category.clone(),
            note: item.note.clone(),
            checked: false,
            position: i32::try_from(self.data.items_of(list).len()).unwrap(),
            created_at: Utc::now(),
            updated_at: Utc::now(),
        };
        self.data.items.push((list, view.clone()));
        Ok(Some(view))
    }

    async fn update_item(
        &mut self,
        user: Uuid,
        list: Uuid,
        item: Uuid,
        patch: &ItemPatch,
    ) -> Result<Option<ItemView>> {
        if self.data.role(list, user).is_none() {
            return Ok(None);
        }
        let Some((_, view)) = self
            .data
            .items
            .iter_mut()
            .find(|(l, i)| *l == list && i.id == item)
        else {
            return Ok(None);
        };
        if let Some(name) = &patch.name {
            view.name.clone_from(name);
        }
        if let Some(q) = patch.quantity {
            view.quantity = q;
        }
        if let Some(c) = patch.checked {
            view.checked = c;
        }
        Ok(Some(view.clone()))
    }

    async fn delete_item(&mut self, user: Uuid, list: Uuid, item: Uuid) -> Result<bool> {
        if self.data.role(list, user).is_none() {
            return Ok(false);
        }
        let before = self.data.items.len();
        self.data
            .items
            .retain(|(l, i)| !(*l == list && i.id == item));
        Ok(self.data.items.len() < before)
    }

    async fn lock_item_ids(&mut self, list: Uuid) -> Result<Vec<Uuid>> {
        Ok(self.data.items_of(list).iter().map(|i| i.id).collect())
    }

    async fn set_order(&mut self, list: Uuid, order: &[Uuid]) -> Result<Vec<ItemView>> {
        for (l, item) in &mut self.data.items {
            if *l == list
                && let Some(pos) = order.iter().position(|id| *id == item.id)
            {
                item.position = i32::try_from(pos).unwrap();
            }
        }
        Ok(self.data.items_of(list))
    }

    async fn insert_suggestion_request(
        &mut self,
        user: Uuid,
        list: Uuid,
    ) -> Result<Option<SuggestionView>> {
        if self.data.role(list, user).is_none() {
            return Ok(None);
        }
        let view = SuggestionView {
            id: Uuid::new_v4(),
            list_id: list,
            status: "pending".to_owned(),
            provider: None,
            suggestions: None,
            error: None,
            created_at: Utc::now(),
            completed_at: None,
        };
        self.data.requests.push(view.clone());
        Ok(Some(view))
    }

    async fn first_delivery(&mut self, consumer: &str, event_id: Uuid) -> Result<bool> {
        let key = (consumer.to_owned(), event_id);
        if self.data.processed.contains(&key) {
            return Ok(false);
        }
        self.data.processed.push(key);
        Ok(true)
    }

    async fn finish_suggestion_request(
        &mut self,
        request: Uuid,
        provider: &str,
        outcome: &std::result::Result<Vec<Suggestion>, String>,
    ) -> Result<bool> {
        let Some(req) = self
            .data
            .requests
            .iter_mut()
            .find(|r| r.id == request && r.status == "pending")
        else {
            return Ok(false);
        };
        req.provider = Some(provider.to_owned());
        req.completed_at = Some(Utc::now());
        match outcome {
            Ok(list) => {
                req.status = "done".to_owned();
                req.suggestions = Some(list.clone());
            }
            Err(err) => {
                req.status = "failed".to_owned();
                req.error = Some(err.clone());
            }
        }
        Ok(true)
    }

    async fn publish(&mut self, event: &NewEvent) -> Result<()> {
        self.data.events.push(event.clone());
        Ok(())
    }

    async fn commit(self) -> Result<()> {
        *self.store.data() = self.data.clone();
        Ok(())
    }
}

/// Hashes by prefixing (tests only).
#[derive(Debug, Clone, Copy, Default)]
pub struct PlainHasher;

impl PasswordHasher for PlainHasher {
    async fn hash(&self, password: String) -> Result<String> {
        Ok(format!("plain:{password}"))
    }

    async fn verify(&self, password: String, phc: Option<String>) -> Result<bool> {
        Ok(phc.is_some_and(|p| p == format!("plain:{password}")))
    }
}

/// Tokens that are `<user id>.<token version>` (tests only).
#[derive(Debug, Clone, Copy, Default)]
pub struct IdTokens;

impl TokenIssuer for IdTokens {
    fn issue(&self, user: Uuid, version: i64) -> Result<String> {
        Ok(format!("{user}.{version}"))
    }

    fn verify(&self, token: &str) -> Option<TokenSubject> {
        let (user, version) = token.split_once('.')?;
        Some(TokenSubject {
            user: Uuid::parse_str(user).ok()?,
            version: version.parse().ok()?,
        })
    }

    fn ttl_secs(&self) -> u64 {
        60
    }
}

/// A provider that answers (or fails) and records, at each call, how many transactions of
/// `store` were open.
#[derive(Debug)]
pub struct ProbeProvider {
    pub store: MemStore,
    pub fail: bool,
    pub open_during_calls: Mutex<Vec<usize>>,
    /// Marks this (consumer, event) processed during the call, as a concurrent delivery of
    /// the same event would.
    pub concurrent_delivery: Option<(String, Uuid)>,
}

impl SuggestionProvider for ProbeProvider {
    fn name(&self) -> &'static str {
        "probe"
    }

    fn suggest<'a>(&'a self, items: &'a [ItemSummary]) -> BoxFuture<'a, Result<Vec<Suggestion>>> {
        Box::pin(async move {
            let open = self.store.open_transactions.load(Ordering::SeqCst);
            self.open_during_calls.lock().unwrap().push(open);
            if let Some(key) = &self.concurrent_delivery {
                self.store.data().processed.push(key.clone());
            }
            if self.fail {
                return Err(Error::Provider {
                    provider: "probe",
                    reason: "HTTP 503".to_owned(),
                });
            }
            Ok(items
                .iter()
                .map(|i| Suggestion {
                    name: format!("more {}", i.name),
                    category: None,
                    reason: "probe".to_owned(),
                })
                .collect())
        })
    }
}

/// A cache in a map.
#[derive(Debug, Default)]
pub struct MapCache(pub Mutex<std::collections::HashMap<String, Vec<Suggestion>>>);

impl SuggestionCache for MapCache {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<Suggestion>>>> {
        Box::pin(async move { Ok(self.0.lock().unwrap().get(key).cloned()) })
    }

    fn put<'a>(&'a self, key: &'a str, value: &'a [Suggestion]) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.0
                .lock()
                .unwrap()
                .insert(key.to_owned(), value.to_vec());
            Ok(())
        })
    }
}
