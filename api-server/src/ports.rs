//! Ports: what the use cases need from the outside, as traits. The adapters implement them
//! (PostgreSQL in [`crate::store`], Redis in [`crate::cache`], the AI providers in
//! [`crate::ai`], argon2 and JWT in [`crate::auth`]); unit tests use in-memory fakes.
//!
//! Events are published through the [`UnitOfWork`] (a transactional outbox): an event is
//! recorded with the change that caused it, and the relay delivers it to RabbitMQ after the
//! commit, at least once.

use std::future::Future;
use std::pin::Pin;

use uuid::Uuid;

use crate::Result;
use crate::domain::{
    ItemFields, ItemPatch, ItemSummary, ItemView, ListDetail, ListPage, ListView, NewEvent, Page,
    Role, Suggestion, SuggestionView, User,
};

/// A boxed, sendable future (the AI ports are used as trait objects).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The repository: reads outside a transaction, and [`Store::begin`] for changes.
///
/// Every read about a list takes the caller and answers only if the caller is a member
/// (ownership is enforced by the store's queries, not only by the use cases).
pub trait Store: Send + Sync + 'static {
    /// One transaction.
    type Tx: UnitOfWork;

    /// Starts a transaction; dropping it without [`UnitOfWork::commit`] rolls it back.
    fn begin(&self) -> impl Future<Output = Result<Self::Tx>> + Send;

    /// A user by (normalised) e-mail.
    fn user_by_email(&self, email: &str) -> impl Future<Output = Result<Option<User>>> + Send;

    /// A user's token version (one primary-key read); `None` when there is no such user.
    fn token_version(&self, user: Uuid) -> impl Future<Output = Result<Option<i64>>> + Send;

    /// The caller's lists, newest first.
    fn my_lists(&self, user: Uuid, page: Page) -> impl Future<Output = Result<ListPage>> + Send;

    /// A list with items and members, if the token's user is a member and the token was
    /// issued at the user's current token version, both checked in the read itself (one round
    /// trip for an authenticated read); `None` otherwise, without telling which.
    fn list_detail(
        &self,
        reader: TokenSubject,
        list: Uuid,
    ) -> impl Future<Output = Result<Option<ListDetail>>> + Send;

    /// A suggestion request of `list`, if `user` is a member of it.
    fn suggestion_request(
        &self,
        user: Uuid,
        list: Uuid,
        id: Uuid,
    ) -> impl Future<Output = Result<Option<SuggestionView>>> + Send;

    /// Whether `consumer` has already handled `event_id`.
    fn already_processed(
        &self,
        consumer: &str,
        event_id: Uuid,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// The items of the list of a still pending suggestion request; `None` when the request
    /// is gone (its list was deleted) or already finished.
    fn pending_request_items(
        &self,
        request: Uuid,
    ) -> impl Future<Output = Result<Option<Vec<ItemSummary>>>> + Send;
}

/// One transaction: changes, their events, and the consumer's deduplication record.
///
/// Statements about a list take the caller and touch nothing unless the caller is a member
/// (with the owner role where noted), so a forgotten check cannot leak another user's list.
pub trait UnitOfWork: Send {
    /// The caller's role in a list; `None` when the list is missing or not theirs.
    fn role(&mut self, list: Uuid, user: Uuid)
    -> impl Future<Output = Result<Option<Role>>> + Send;

    /// Inserts a user; false when the e-mail is taken.
    fn insert_user(
        &mut self,
        id: Uuid,
        email: &str,
        password_hash: &str,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Increments a user's token version, which revokes every token issued before; false
    /// when there is no such user.
    fn revoke_tokens(&mut self, user: Uuid) -> impl Future<Output = Result<bool>> + Send;

    /// Records a pending invitation of `email` (which has no account) to a list, with a
    /// fresh id that the list's members see as the invitee's; `None` when `email` is already
    /// invited to it.
    fn invite(
        &mut self,
        list: Uuid,
        email: &str,
        role: Role,
    ) -> impl Future<Output = Result<Option<Uuid>>> + Send;

    /// Turns the pending invitations of `email` into memberships of the new user `user`;
    /// the lists and roles it joined.
    fn claim_invitations(
        &mut self,
        user: Uuid,
        email: &str,
    ) -> impl Future<Output = Result<Vec<(Uuid, Role)>>> + Send;

    /// The pending invitations of a list (id and role), locked until the end of the
    /// transaction.
    fn lock_invitations(
        &mut self,
        list: Uuid,
    ) -> impl Future<Output = Result<Vec<(Uuid, Role)>>> + Send;

    /// Id and stored e-mail of the user registered under `email`.
    fn find_user(
        &mut self,
        email: &str,
    ) -> impl Future<Output = Result<Option<(Uuid, String)>>> + Send;

    /// Creates a list with `owner` as its owner; `None` when there is no such user.
    fn insert_list(
        &mut self,
        owner: Uuid,
        name: &str,
    ) -> impl Future<Output = Result<Option<ListView>>> + Send;

    /// Renames a list `owner` owns; `None` otherwise.
    fn rename_list(
        &mut self,
        owner: Uuid,
        list: Uuid,
        name: &str,
    ) -> impl Future<Output = Result<Option<ListView>>> + Send;

    /// Deletes a list `owner` created (its `owner_id`); false otherwise (also for co-owners).
    fn delete_list(&mut self, owner: Uuid, list: Uuid)
    -> impl Future<Output = Result<bool>> + Send;

    /// Locks a list (so that concurrent additions queue behind this transaction) and
    /// counts its items and members (pending invitations included): what the caps are
    /// checked against.
    fn lock_list_counts(&mut self, list: Uuid) -> impl Future<Output = Result<(i64, i64)>> + Send;

    /// Locks a user (so that their concurrent list creations queue) and counts the lists
    /// they have created.
    fn lock_user_count_lists(&mut self, user: Uuid) -> impl Future<Output = Result<i64>> + Send;

    /// Who created a list (`owner_id`), when `user` is a member of it; `None` otherwise.
    fn list_creator(
        &mut self,
        list: Uuid,
        user: Uuid,
    ) -> impl Future<Output = Result<Option<Uuid>>> + Send;

    /// The members of a list and their roles, locked until the end of the transaction.
    fn lock_members(
        &mut self,
        list: Uuid,
    ) -> impl Future<Output = Result<Vec<(Uuid, Role)>>> + Send;

    /// Records `from`'s offer of a list to `to`, replacing any earlier offer of that list.
    fn offer_transfer(
        &mut self,
        list: Uuid,
        from: Uuid,
        to: Uuid,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Removes and returns who offered a list to `to` (`None`: no offer to `to`).
    fn take_transfer_offer(
        &mut self,
        list: Uuid,
        to: Uuid,
    ) -> impl Future<Output = Result<Option<Uuid>>> + Send;

    /// Makes `to` the creator (`owner_id`) of a list created by `from`, with the owner role;
    /// the list as `from` sees it, or `None` when `from` is not its creator.
    fn transfer_list(
        &mut self,
        list: Uuid,
        from: Uuid,
        to: Uuid,
    ) -> impl Future<Output = Result<Option<ListView>>> + Send;

    /// Adds a member; false when already a member.
    fn add_member(
        &mut self,
        list: Uuid,
        user: Uuid,
        role: Role,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Removes a member or a pending invitation; false when neither.
    fn remove_member(
        &mut self,
        list: Uuid,
        user: Uuid,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Appends an item to a list `user` is a member of; `None` otherwise.
    fn append_item(
        &mut self,
        user: Uuid,
        list: Uuid,
        item: &ItemFields,
    ) -> impl Future<Output = Result<Option<ItemView>>> + Send;

    /// Changes an item of a list `user` is a member of; `None` when there is no such item.
    fn update_item(
        &mut self,
        user: Uuid,
        list: Uuid,
        item: Uuid,
        patch: &ItemPatch,
    ) -> impl Future<Output = Result<Option<ItemView>>> + Send;

    /// Removes an item of a list `user` is a member of; false when there is no such item.
    fn delete_item(
        &mut self,
        user: Uuid,
        list: Uuid,
        item: Uuid,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// The ids of a list's items, locked until the end of the transaction.
    fn lock_item_ids(&mut self, list: Uuid) -> impl Future<Output = Result<Vec<Uuid>>> + Send;

    /// Puts the items in `order` (which names each exactly once) and returns them so.
    fn set_order(
        &mut self,
        list: Uuid,
        order: &[Uuid],
    ) -> impl Future<Output = Result<Vec<ItemView>>> + Send;

    /// Records a pending suggestion request by `user` for a list they are a member of;
    /// `None` otherwise.
    fn insert_suggestion_request(
        &mut self,
        user: Uuid,
        list: Uuid,
    ) -> impl Future<Output = Result<Option<SuggestionView>>> + Send;

    /// Records that `consumer` handles `event_id` now; false when it was handled before.
    fn first_delivery(
        &mut self,
        consumer: &str,
        event_id: Uuid,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Finishes a pending suggestion request with its suggestions or the provider's error;
    /// false when it is gone or no longer pending.
    fn finish_suggestion_request(
        &mut self,
        request: Uuid,
        provider: &str,
        outcome: &std::result::Result<Vec<Suggestion>, String>,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Records an event, published after the commit (the transactional outbox).
    fn publish(&mut self, event: &NewEvent) -> impl Future<Output = Result<()>> + Send;

    /// Commits.
    fn commit(self) -> impl Future<Output = Result<()>> + Send;
}

/// Hashes and verifies passwords (CPU heavy: adapters run it off the async threads).
pub trait PasswordHasher: Send + Sync + 'static {
    /// A PHC string for `password`.
    fn hash(&self, password: String) -> impl Future<Output = Result<String>> + Send;

    /// Whether `password` matches `phc`; with `None` (no such user) it takes as long and
    /// answers false, so that login time does not tell which e-mails exist.
    fn verify(
        &self,
        password: String,
        phc: Option<String>,
    ) -> impl Future<Output = Result<bool>> + Send;
}

/// Whom a token was issued to, and at which of their token versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenSubject {
    /// The user.
    pub user: Uuid,
    /// The user's token version when the token was issued (a logout increments it).
    pub version: i64,
}

/// Issues and checks access tokens.
pub trait TokenIssuer: Send + Sync + 'static {
    /// A token for `user` at their token version `version`.
    fn issue(&self, user: Uuid, version: i64) -> Result<String>;
    /// The subject of a validly signed, unexpired token, or `None`.
    fn verify(&self, token: &str) -> Option<TokenSubject>;
    /// Seconds a new token lives.
    fn ttl_secs(&self) -> u64;
}

/// Something that suggests items for a list: Perplexity, or the offline rules.
pub trait SuggestionProvider: Send + Sync + std::fmt::Debug {
    /// Short name, stored with the results and used in cache keys.
    fn name(&self) -> &'static str;
    /// Suggestions for a list with these items.
    fn suggest<'a>(&'a self, items: &'a [ItemSummary]) -> BoxFuture<'a, Result<Vec<Suggestion>>>;
}

/// A key-value cache with expiry (Redis in production).
pub trait SuggestionCache: Send + Sync + std::fmt::Debug {
    /// The cached suggestions under `key`, if any (errors are reported, not fatal).
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<Suggestion>>>>;
    /// Stores suggestions under `key` for the configured TTL.
    fn put<'a>(&'a self, key: &'a str, value: &'a [Suggestion]) -> BoxFuture<'a, Result<()>>;
}

/// A request the client sends straight to the object store: presigned (SigV4 in the query),
/// valid until `expires_at`, with the headers it must carry exactly (they are signed, so
/// the store refuses another content type, length or checksum).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Presigned {
    /// `PUT` for an upload, `GET` for a download.
    pub method: &'static str,
    /// The URL, signature included.
    pub url: String,
    /// Headers to send, each exactly as given.
    pub headers: std::collections::BTreeMap<String, String>,
    /// When the URL stops working.
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// What the object store says about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Its size in bytes.
    pub size_bytes: i64,
    /// Its stored content type, if any.
    pub content_type: Option<String>,
    /// Base64 of its SHA-256, as the store verified it at upload (`None` when the store
    /// keeps none).
    pub sha256: Option<String>,
}

/// The object store of attachments (S3 in production): presigns what clients send to it,
/// and answers the API's own questions. Presigning is local computation, no I/O.
pub trait ObjectStore: Send + Sync + std::fmt::Debug {
    /// A presigned `PUT` of exactly these bytes (length, type and SHA-256 signed).
    fn presign_upload(
        &self,
        key: &str,
        upload: &crate::domain::Upload,
        ttl: std::time::Duration,
    ) -> Presigned;

    /// A presigned `GET` that downloads the object under `file_name`.
    fn presign_download(&self, key: &str, file_name: &str, ttl: std::time::Duration) -> Presigned;

    /// The object under `key`, `None` when there is none.
    fn head<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<ObjectInfo>>>;

    /// Whether the store answers for the bucket (readiness detail; never required).
    fn ping(&self) -> BoxFuture<'_, Result<()>>;

    /// Deletes the object under `key` (done also when there was none).
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<()>>;
}

/// The attachments' reads (membership-checked like every read about a list).
pub trait AttachmentReads: Send + Sync + 'static {
    /// The ready attachments of `list`, oldest first, if `user` is a member.
    fn attachments(
        &self,
        user: Uuid,
        list: Uuid,
    ) -> impl Future<Output = Result<Option<Vec<crate::domain::AttachmentView>>>> + Send;

    /// One attachment of `list` (pending or ready), if `user` is a member.
    fn attachment(
        &self,
        user: Uuid,
        list: Uuid,
        id: Uuid,
    ) -> impl Future<Output = Result<Option<crate::domain::AttachmentView>>> + Send;
}

/// The attachments' changes, in a [`UnitOfWork`]. Deleting a row enqueues the deletion of its
/// object in the same transaction (the object store's outbox, see migration 10).
pub trait AttachmentWrites: Send {
    /// Locks the user (so that their concurrent uploads queue) and sums the bytes of their
    /// attachments, pending ones included: what the quota is checked against.
    fn lock_user_attachment_bytes(
        &mut self,
        user: Uuid,
    ) -> impl Future<Output = Result<i64>> + Send;

    /// How many attachments `list` holds (pending included); call it after locking the list
    /// ([`UnitOfWork::lock_list_counts`]) so that concurrent announces queue.
    fn count_attachments(&mut self, list: Uuid) -> impl Future<Output = Result<i64>> + Send;

    /// Whether `item` is an item of `list`.
    fn item_in_list(&mut self, list: Uuid, item: Uuid)
    -> impl Future<Output = Result<bool>> + Send;

    /// Records a pending attachment; false when its list, item or uploader was deleted
    /// meanwhile.
    fn insert_attachment(
        &mut self,
        attachment: &crate::domain::AttachmentView,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Marks a pending attachment ready; the attachment as it is now.
    fn confirm_attachment(
        &mut self,
        list: Uuid,
        id: Uuid,
    ) -> impl Future<Output = Result<Option<crate::domain::AttachmentView>>> + Send;

    /// Deletes an attachment of `list` (its object follows); false when there is none.
    fn delete_attachment(
        &mut self,
        list: Uuid,
        id: Uuid,
    ) -> impl Future<Output = Result<bool>> + Send;
}
