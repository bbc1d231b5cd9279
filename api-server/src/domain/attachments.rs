//! Attachments of a list: what may be uploaded (type, size, checksum, name), the per-user
//! quota, and where the bytes live. Pure: the use case reads the usage, these rules decide.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::{CapReached, Invalid};

/// Default of `ATTACHMENT_TYPES`: receipts, photos of a product, a recipe.
pub const DEFAULT_TYPES: &[&str] = &[
    "image/jpeg",
    "image/png",
    "image/webp",
    "image/heic",
    "application/pdf",
    "text/plain",
];

/// Longest attachment name, in characters.
pub const MAX_NAME_CHARS: usize = 200;

/// What may be attached (each from its configuration variable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentRules {
    /// `ATTACHMENT_MAX_BYTES`, default 10 MiB: the largest object.
    pub max_bytes: u64,
    /// `ATTACHMENT_QUOTA_BYTES`, default 100 MiB: bytes one user's attachments (pending
    /// uploads included) may hold, over every list.
    pub quota_bytes: u64,
    /// `ATTACHMENT_TYPES`: the content types accepted (lower case, no parameters).
    pub types: Vec<String>,
    /// `ATTACHMENT_MAX_PER_LIST`, default 100: attachments one list may hold (pending
    /// included), so that a list's page and its rows stay bounded whatever the sizes.
    pub max_per_list: u32,
}

impl Default for AttachmentRules {
    fn default() -> Self {
        Self {
            max_bytes: 10 * 1024 * 1024,
            quota_bytes: 100 * 1024 * 1024,
            types: DEFAULT_TYPES.iter().map(|t| (*t).to_owned()).collect(),
            max_per_list: 100,
        }
    }
}

/// An upload as requested, before validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRequest {
    /// The file's name, as shown to members.
    pub name: String,
    /// Its content type.
    pub content_type: String,
    /// Its exact size in bytes.
    pub size_bytes: i64,
    /// Base64 of its SHA-256 (the form of S3's `x-amz-checksum-sha256`).
    pub sha256: String,
}

/// A validated upload: the store will accept exactly these bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// Trimmed name.
    pub name: String,
    /// Lower-case content type from the allow-list.
    pub content_type: String,
    /// Size in bytes (1 to `max_bytes`).
    pub size_bytes: i64,
    /// Base64 SHA-256 (32 bytes).
    pub sha256: String,
}

impl AttachmentRules {
    /// Checks an upload request against the rules, naming the field that fails.
    pub fn validate(&self, req: &UploadRequest) -> Result<Upload, Invalid> {
        let name = req.name.trim();
        if name.is_empty() {
            return Err(Invalid::new("name", "must not be empty"));
        }
        if name.chars().count() > MAX_NAME_CHARS {
            return Err(Invalid::new(
                "name",
                format!("must be at most {MAX_NAME_CHARS} characters"),
            ));
        }
        if name
            .chars()
            .any(|c| c.is_control() || c == '/' || c == '\\')
        {
            return Err(Invalid::new(
                "name",
                "must not contain control characters or path separators",
            ));
        }
        let content_type = req.content_type.trim().to_ascii_lowercase();
        if !self.types.contains(&content_type) {
            return Err(Invalid::new(
                "content_type",
                format!("must be one of {}", self.types.join(", ")),
            ));
        }
        let max = i64::try_from(self.max_bytes).unwrap_or(i64::MAX);
        if req.size_bytes < 1 || req.size_bytes > max {
            return Err(Invalid::new(
                "size_bytes",
                format!("must be between 1 and {max} (ATTACHMENT_MAX_BYTES)"),
            ));
        }
        let sha256 = req.sha256.trim();
        if !is_base64_sha256(sha256) {
            return Err(Invalid::new(
                "sha256",
                "must be the base64 of the file's SHA-256 (44 characters, e.g. `openssl dgst -sha256 -binary FILE | base64`)",
            ));
        }
        Ok(Upload {
            name: name.to_owned(),
            content_type,
            size_bytes: req.size_bytes,
            sha256: sha256.to_owned(),
        })
    }

    /// Checks that a user holding `used` bytes of attachments has room for `size` more.
    pub fn room_for(&self, used: i64, size: i64) -> Result<(), CapReached> {
        let quota = i64::try_from(self.quota_bytes).unwrap_or(i64::MAX);
        if used.saturating_add(size) <= quota {
            Ok(())
        } else {
            Err(CapReached {
                limit: "ATTACHMENT_QUOTA_BYTES",
                what: "bytes of attachments per user",
                max: self.quota_bytes,
            })
        }
    }
}

impl AttachmentRules {
    /// Checks that a list holding `count` attachments may get one more.
    pub fn room_in_list(&self, count: i64) -> Result<(), CapReached> {
        if count < i64::from(self.max_per_list) {
            Ok(())
        } else {
            Err(CapReached {
                limit: "ATTACHMENT_MAX_PER_LIST",
                what: "attachments in a list",
                max: u64::from(self.max_per_list),
            })
        }
    }
}

fn is_base64_sha256(s: &str) -> bool {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .is_ok_and(|bytes| bytes.len() == 32)
}

/// Where an attachment's bytes live in the bucket. Built from ids only: nothing a client
/// chooses reaches a key.
pub fn object_key(list: Uuid, attachment: Uuid) -> String {
    format!("attachments/{list}/{attachment}")
}

/// A `Content-Disposition` that downloads the file under its name (RFC 6266, RFC 8187): an
/// ASCII fallback and the UTF-8 name percent-encoded.
pub fn content_disposition(name: &str) -> String {
    let fallback: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

/// Whether an upload is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AttachmentState {
    /// Announced; the client has an upload URL and has not confirmed yet.
    Pending,
    /// Uploaded and seen in the store.
    Ready,
}

impl AttachmentState {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Ready => "ready",
        }
    }

    /// From the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "ready" => Some(Self::Ready),
            _ => None,
        }
    }
}

/// An attachment as members see it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttachmentView {
    /// Id.
    pub id: Uuid,
    /// The list it belongs to.
    pub list_id: Uuid,
    /// The item it is about, if any.
    pub item_id: Option<Uuid>,
    /// File name.
    pub name: String,
    /// Content type.
    pub content_type: String,
    /// Size in bytes.
    pub size_bytes: i64,
    /// Base64 SHA-256 of the bytes.
    pub sha256: String,
    /// Who uploaded it.
    pub uploaded_by: Uuid,
    /// Pending or ready.
    pub state: AttachmentState,
    /// When it was announced.
    #[serde(serialize_with = "super::rfc3339::time")]
    pub created_at: DateTime<Utc>,
    /// When its upload was confirmed.
    #[serde(serialize_with = "super::rfc3339::time_or_none")]
    pub confirmed_at: Option<DateTime<Utc>>,
    /// Until when its upload URL works (pending only).
    #[serde(skip)]
    pub upload_expires_at: DateTime<Utc>,
    /// Its key in the bucket (never shown).
    #[serde(skip)]
    pub object_key: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(name: &str, ty: &str, size: i64, sha: &str) -> UploadRequest {
        UploadRequest {
            name: name.to_owned(),
            content_type: ty.to_owned(),
            size_bytes: size,
            sha256: sha.to_owned(),
        }
    }

    // Base64 of the SHA-256 of "hello".
    const SHA: &str = "LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=";

    #[test]
    fn uploads_are_checked_field_by_field() {
        let rules = AttachmentRules::default();
        let ok = rules
            .validate(&req(" receipt.pdf ", "Application/PDF", 5, SHA))
            .unwrap();
        assert_eq!(ok.name, "receipt.pdf");
        assert_eq!(ok.content_type, "application/pdf");
        let field = |r: UploadRequest| rules.validate(&r).unwrap_err().field;
        assert_eq!(field(req("", "image/png", 5, SHA)), "name");
        assert_eq!(field(req("a/b", "image/png", 5, SHA)), "name");
        assert_eq!(field(req("a\nb", "image/png", 5, SHA)), "name");
        assert_eq!(field(req(&"x".repeat(201), "image/png", 5, SHA)), "name");
        assert_eq!(field(req("a", "text/html", 5, SHA)), "content_type");
        assert_eq!(field(req("a", "image/png; x=1", 5, SHA)), "content_type");
        assert_eq!(field(req("a", "image/png", 0, SHA)), "size_bytes");
        assert_eq!(
            field(req("a", "image/png", 10 * 1024 * 1024 + 1, SHA)),
            "size_bytes"
        );
        assert_eq!(field(req("a", "image/png", 5, "abc")), "sha256");
        // 31 bytes is not a SHA-256.
        assert_eq!(
            field(req(
                "a",
                "image/png",
                5,
                "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=="
            )),
            "sha256"
        );
        assert!(
            rules
                .validate(&req("a", "image/png", 10 * 1024 * 1024, SHA))
                .is_ok()
        );
    }

    #[test]
    fn the_quota_counts_every_byte_a_user_holds() {
        let rules = AttachmentRules {
            quota_bytes: 100,
            ..AttachmentRules::default()
        };
        // Quotas beyond 4 GiB are reported as they are.
        let big = AttachmentRules {
            quota_bytes: 10 << 30,
            ..AttachmentRules::default()
        };
        assert_eq!(big.room_for(10 << 30, 1).unwrap_err().max, 10 << 30);
        assert!(rules.room_for(0, 100).is_ok());
        assert!(rules.room_for(60, 40).is_ok());
        let cap = rules.room_for(60, 41).unwrap_err();
        assert_eq!(cap.limit, "ATTACHMENT_QUOTA_BYTES");
        assert_eq!(cap.max, 100);
        assert!(rules.room_for(i64::MAX, 1).is_err());
        let per_list = AttachmentRules {
            max_per_list: 2,
            ..AttachmentRules::default()
        };
        assert!(per_list.room_in_list(1).is_ok());
        assert_eq!(
            per_list.room_in_list(2).unwrap_err().limit,
            "ATTACHMENT_MAX_PER_LIST"
        );
    }

    #[test]
    fn keys_are_built_from_ids_and_names_only_reach_the_disposition() {
        let l = Uuid::nil();
        let a = Uuid::max();
        assert_eq!(object_key(l, a), format!("attachments/{l}/{a}"),);
        assert_eq!(
            content_disposition("recibo \"mayo\".pdf"),
            "attachment; filename=\"recibo _mayo_.pdf\"; filename*=UTF-8''recibo%20%22mayo%22.pdf"
        );
        assert_eq!(
            content_disposition("ñ.txt"),
            "attachment; filename=\"_.txt\"; filename*=UTF-8''%C3%B1.txt"
        );
    }
}
