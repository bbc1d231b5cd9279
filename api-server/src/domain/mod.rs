//! The domain: data, validation, authorization rules, events and the offline suggestion
//! rule. Pure: no I/O, no clocks beyond what callers pass in.

mod access;
pub mod attachments;
mod caps;
mod events;
mod model;
mod offline;
mod rfc3339;
mod validate;

pub use access::{Action, Denied, Removal, Transfer, authorize, deletion, removal, transfer};
pub use attachments::{AttachmentRules, AttachmentState, AttachmentView, Upload, UploadRequest};
pub use caps::{CapReached, Caps};
pub use events::{Event, NewEvent, SUGGESTION_REQUESTED, SuggestionJob};
pub use model::{
    ItemSummary, ItemView, ListDetail, ListPage, ListView, MemberView, Role, Suggestion,
    SuggestionView, TransferOffer, User,
};
pub use offline::{MAX_SUGGESTIONS, offline_suggestions};
pub use validate::{
    Invalid, ItemFields, ItemPatch, MAX_QUANTITY, Page, email, list_name, new_item, password,
    quantity, reorder, validate_suggestions,
};
