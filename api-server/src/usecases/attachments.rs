//! Attachments of a list: announce an upload (and get its presigned URL), confirm it, list,
//! download, delete. Access follows list membership exactly as items do; the bytes never
//! pass through the API.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde::Serialize;
use uuid::Uuid;

use super::{AppResult, UseCases, allowed};
use crate::domain::attachments::object_key;
use crate::domain::{
    Action, AttachmentRules, AttachmentState, AttachmentView, Invalid, UploadRequest,
};
use crate::error::AppError;
use crate::ports::{AttachmentReads, AttachmentWrites, ObjectStore, Presigned, Store, UnitOfWork};

/// How attachments work on this server: the store, the rules, the URLs' lifetime.
#[derive(Debug, Clone)]
pub struct AttachmentSettings {
    /// The object store; `None` when `S3_BUCKET` is not set (the feature answers 501).
    pub objects: Option<Arc<dyn ObjectStore>>,
    /// What may be attached.
    pub rules: AttachmentRules,
    /// How long presigned URLs work (`ATTACHMENT_URL_TTL_SECONDS`).
    pub url_ttl: Duration,
}

impl Default for AttachmentSettings {
    fn default() -> Self {
        Self {
            objects: None,
            rules: AttachmentRules::default(),
            url_ttl: Duration::from_secs(300),
        }
    }
}

/// The answer to an announced upload: the pending attachment and where to PUT its bytes.
#[derive(Debug, Clone, Serialize)]
pub struct Announced {
    /// The attachment, pending until confirmed.
    pub attachment: AttachmentView,
    /// The presigned upload.
    pub upload: Presigned,
}

/// An attachment and a presigned download of it.
#[derive(Debug, Clone, Serialize)]
pub struct Downloadable {
    /// The attachment.
    pub attachment: AttachmentView,
    /// The presigned download.
    pub download: Presigned,
}

const NOT_CONFIGURED: &str = "attachments are not configured on this server: set S3_BUCKET, \
     S3_ENDPOINT, S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY (spec.env.s3 of the release)";

impl<S, H, T> UseCases<S, H, T>
where
    S: Store + AttachmentReads,
    S::Tx: AttachmentWrites,
{
    fn objects(&self) -> AppResult<&Arc<dyn ObjectStore>> {
        self.attachments
            .objects
            .as_ref()
            .ok_or(AppError::NotConfigured(NOT_CONFIGURED))
    }

    /// Announces an upload to a list (members and owners): records it pending, within the
    /// uploader's quota, and returns the presigned `PUT` that the store accepts only for
    /// exactly these bytes.
    pub async fn announce_attachment(
        &self,
        user: Uuid,
        list: Uuid,
        item: Option<Uuid>,
        request: &UploadRequest,
    ) -> AppResult<Announced> {
        let objects = self.objects()?;
        let upload = self.attachments.rules.validate(request)?;
        let mut tx = self.store.begin().await?;
        allowed(&mut tx, list, user, Action::EditItems).await?;
        if let Some(item) = item
            && !tx.item_in_list(list, item).await?
        {
            return Err(Invalid::new("item_id", "is not an item of this list").into());
        }
        // Locks: the list (its attachments queue), then the uploader (their quota).
        tx.lock_list_counts(list).await?;
        let count = tx.count_attachments(list).await?;
        self.attachments
            .rules
            .room_in_list(count)
            .map_err(AppError::CapReached)?;
        let used = tx.lock_user_attachment_bytes(user).await?;
        self.attachments
            .rules
            .room_for(used, upload.size_bytes)
            .map_err(AppError::CapReached)?;
        let id = Uuid::new_v4();
        let key = object_key(list, id);
        // Signed first, so that the recorded expiry is never earlier than the URL's (the
        // sweep and the final deletion count from it).
        let presigned = objects.presign_upload(&key, &upload, self.attachments.url_ttl);
        let attachment = AttachmentView {
            id,
            list_id: list,
            item_id: item,
            name: upload.name.clone(),
            content_type: upload.content_type.clone(),
            size_bytes: upload.size_bytes,
            sha256: upload.sha256.clone(),
            uploaded_by: user,
            state: AttachmentState::Pending,
            created_at: Utc::now(),
            confirmed_at: None,
            upload_expires_at: presigned.expires_at,
            object_key: key,
        };
        if !tx.insert_attachment(&attachment).await? {
            // The item was deleted meanwhile (the list is locked).
            return Err(AppError::NotFound("item"));
        }
        tx.commit().await?;
        Ok(Announced {
            attachment,
            upload: presigned,
        })
    }

    /// Confirms an upload (members and owners) once the store has the object; answers the
    /// attachment, ready. Confirming a ready one again answers it unchanged.
    pub async fn confirm_attachment(
        &self,
        user: Uuid,
        list: Uuid,
        id: Uuid,
    ) -> AppResult<AttachmentView> {
        let objects = self.objects()?;
        // Who may confirm is decided before the store is asked anything.
        {
            let mut tx = self.store.begin().await?;
            allowed(&mut tx, list, user, Action::EditItems).await?;
        }
        let found = self.attachment_of(user, list, id).await?;
        if found.state == AttachmentState::Ready {
            return Ok(found);
        }
        let Some(info) = objects.head(&found.object_key).await? else {
            return Err(AppError::Conflict(
                "nothing has been uploaded for this attachment yet: PUT the file to its upload \
                 URL (with the headers given) before it expires, then confirm"
                    .to_owned(),
            ));
        };
        // The signed upload lets only the announced bytes in; this checks what is stored
        // (a store that kept a refused body, or a key written some other way, is caught). A
        // store that keeps no checksum verified it at upload (the header is signed).
        if info.size_bytes != found.size_bytes
            || info.sha256.as_deref().is_some_and(|s| s != found.sha256)
            || info.content_type.as_deref() != Some(found.content_type.as_str())
        {
            return Err(AppError::Conflict(format!(
                "the stored object ({} bytes, type {}, SHA-256 {}) is not the file announced \
                 ({} bytes, type {}, SHA-256 {}): upload it again with the upload URL and \
                 headers given, then confirm",
                info.size_bytes,
                info.content_type.as_deref().unwrap_or("none"),
                info.sha256.as_deref().unwrap_or("none"),
                found.size_bytes,
                found.content_type,
                found.sha256
            )));
        }
        let mut tx = self.store.begin().await?;
        allowed(&mut tx, list, user, Action::EditItems).await?;
        // Gone when the sweeper removed it meanwhile (its URL had expired).
        let ready = tx
            .confirm_attachment(list, id)
            .await?
            .ok_or(AppError::NotFound("attachment"))?;
        tx.commit().await?;
        Ok(ready)
    }

    /// The list's attachments whose upload is confirmed (members and owners).
    pub async fn attachments(&self, user: Uuid, list: Uuid) -> AppResult<Vec<AttachmentView>> {
        self.objects()?;
        self.store
            .attachments(user, list)
            .await?
            .ok_or(AppError::NotFound("list"))
    }

    /// An attachment with a presigned download (members and owners).
    pub async fn download_attachment(
        &self,
        user: Uuid,
        list: Uuid,
        id: Uuid,
    ) -> AppResult<Downloadable> {
        let objects = self.objects()?;
        let attachment = self.attachment_of(user, list, id).await?;
        if attachment.state != AttachmentState::Ready {
            return Err(AppError::Conflict(
                "the upload of this attachment is not confirmed yet".to_owned(),
            ));
        }
        let download = objects.presign_download(
            &attachment.object_key,
            &attachment.name,
            self.attachments.url_ttl,
        );
        Ok(Downloadable {
            attachment,
            download,
        })
    }

    /// Deletes an attachment (members and owners); its object is deleted from the store
    /// after the commit, retried until the store confirms.
    pub async fn delete_attachment(&self, user: Uuid, list: Uuid, id: Uuid) -> AppResult<()> {
        self.objects()?;
        let mut tx = self.store.begin().await?;
        allowed(&mut tx, list, user, Action::EditItems).await?;
        if !tx.delete_attachment(list, id).await? {
            return Err(AppError::NotFound("attachment"));
        }
        tx.commit().await?;
        Ok(())
    }

    async fn attachment_of(&self, user: Uuid, list: Uuid, id: Uuid) -> AppResult<AttachmentView> {
        self.store
            .attachment(user, list, id)
            .await?
            .ok_or(AppError::NotFound("attachment"))
    }
}
