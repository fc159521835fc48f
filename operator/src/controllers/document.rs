//! The KnowledgeDocument controller: reads the document's source (inline text, a ConfigMap key,
//! an uploaded blob; a url is fetched by the embedding worker), reserves document and storage quota atomically in Postgres, stores the
//! bytes, queues the document for the embedding workers, and reports their progress as the
//! stage conditions. On deletion it removes the document's chunks, vectors, task and (if no
//! other document uses them) bytes, and releases its quota.
//!
//! `apply_document` is the pipeline: `load_customer` → [`read_source`] → [`admit`] →
//! [`store_and_queue`] → `status::document::derive_status` → `report`.

use std::sync::Arc;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use prospector_crds::conditions::reasons;
use prospector_crds::{DocumentPhase, DocumentSource, KnowledgeDocument, KnowledgeDocumentStatus};
use prospector_store::StoreError;
use prospector_store::documents::{
    self as store, DocumentAdmission, DocumentRecord, DocumentRefusal, DocumentRow, ProcessingStatus, SourceKind,
};
use sha2::{Digest, Sha256};

use super::{CustomerView, FinalizerEvent, Loaded, load_customer, object_uid, report, with_finalizer};
use crate::context::{Context, object_key};
use crate::error::{OperatorError, Result};
use crate::status::document::{DocumentState, derive_status, needs_progress_check};

/// The controller's name in metrics and logs.
pub const CONTROLLER: &str = "document";

/// Reconciles one KnowledgeDocument.
pub async fn reconcile(document: Arc<KnowledgeDocument>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile_started(CONTROLLER);
    let namespace = document.namespace().ok_or(OperatorError::MissingField("metadata.namespace"))?;
    let api: Api<KnowledgeDocument> = Api::namespaced(ctx.client.clone(), &namespace);
    let action = with_finalizer(&api, document.clone(), &ctx, |event| async {
        match event {
            FinalizerEvent::Apply(document) => apply_document(&document, &api, &ctx).await,
            FinalizerEvent::Cleanup(document) => cleanup_document(&document, &ctx).await,
        }
    })
    .await?;
    ctx.succeeded(&object_key(document.as_ref()));
    Ok(action)
}

/// The public id of a document, `doc_<16 hex>`, derived from its UID so a replay derives the
/// same one.
pub fn public_document_id(uid: &str) -> String {
    format!("doc_{}", hex::encode(&Sha256::digest(uid.as_bytes())[..8]))
}

async fn apply_document(document: &KnowledgeDocument, api: &Api<KnowledgeDocument>, ctx: &Context) -> Result<Action> {
    let namespace = document.namespace().unwrap_or_default();
    let pending = |reason: &'static str, message: String, stored: bool| async move {
        let status = status_for(document, ctx, &DocumentState::Pending { reason, message, stored });
        report(api, document, ctx, status).await
    };
    let customer = match load_customer(&namespace, "documents", ctx).await? {
        Loaded::Customer(customer) => customer,
        Loaded::Stopped { reason, message, action } => {
            pending(reason, message, false).await?;
            return Ok(action);
        }
    };
    let source = match read_source(document, &namespace, &customer, ctx).await? {
        Ok(source) => source,
        Err(problem) => {
            pending(problem.reason, problem.message, false).await?;
            return Ok(Action::requeue(ctx.settings.waiting_retry));
        }
    };
    let row = match admit(document, &namespace, &customer, &source, ctx).await? {
        Ok(row) => row,
        Err(refusal) => {
            let (reason, message) = refusal_message(&refusal);
            pending(reason, message, false).await?;
            return Ok(Action::requeue(ctx.settings.waiting_retry));
        }
    };
    store_and_queue(document, &namespace, &customer, row, source, ctx).await?;
    let uid = object_uid(document)?;
    let progress = store::document_progress(&ctx.pool, uid).await?.ok_or(StoreError::Gone)?;
    if progress.processing_status == ProcessingStatus::Failed
        && (progress.quota_reserved || progress.stored)
        && store::release_failed_document(&ctx.pool, uid).await?
    {
        // A document that failed for good stops counting against its customer and holds no
        // bytes; the same bytes are not processed again.
        ctx.wake_customer(&customer.name);
    }
    let status = status_for(document, ctx, &DocumentState::Tracked(Box::new(progress)));
    let phase = status.phase.unwrap_or(DocumentPhase::Pending);
    let was_ready = document.status.as_ref().and_then(|s| s.phase) == Some(DocumentPhase::Ready);
    if was_ready != (phase == DocumentPhase::Ready) {
        // The customer's aggregate ICP counts its Ready documents; its agents read it.
        ctx.wake_customer_soon(&customer.name);
    }
    report(api, document, ctx, status).await?;
    // A worker's result arrives by NOTIFY; the clock-based reasons and ConfigMap edits need a
    // look now and then.
    Ok(Action::requeue(if needs_progress_check(phase) { ctx.settings.waiting_retry } else { ctx.settings.resync }))
}

/// The status `state` gives the document now.
fn status_for(document: &KnowledgeDocument, ctx: &Context, state: &DocumentState) -> KnowledgeDocumentStatus {
    let generation = document.metadata.generation;
    derive_status(document.status.as_ref(), generation, ctx.clock.now(), ctx.settings.documents.thresholds, state)
}

/// A document's source, read for this reconcile.
#[derive(Debug)]
enum Source {
    /// Bytes to store: inline text, a ConfigMap key.
    Bytes(Vec<u8>),
    /// Bytes already stored: by the REST upload, or by the worker that fetched a url.
    Stored { sha256: Vec<u8>, size: i64 },
    /// A url the worker fetches (its size is known once fetched).
    Url,
}

impl Source {
    fn kind(spec: &DocumentSource) -> SourceKind {
        match spec {
            DocumentSource { blob: Some(_), .. } => SourceKind::Blob,
            DocumentSource { url: Some(_), .. } => SourceKind::Url,
            DocumentSource { config_map_key_ref: Some(_), .. } => SourceKind::ConfigMap,
            _ => SourceKind::Text,
        }
    }

    fn sha256(&self) -> Option<Vec<u8>> {
        match self {
            Source::Bytes(bytes) => Some(Sha256::digest(bytes).to_vec()),
            Source::Stored { sha256, .. } => Some(sha256.clone()),
            Source::Url => None,
        }
    }

    fn size(&self) -> i64 {
        match self {
            Source::Bytes(bytes) => i64::try_from(bytes.len()).unwrap_or(i64::MAX),
            Source::Stored { size, .. } => *size,
            Source::Url => 0,
        }
    }
}

/// Why a source cannot be used now.
#[derive(Debug)]
struct SourceProblem {
    reason: &'static str,
    message: String,
}

/// Reads the document's source, within the size limit.
async fn read_source(
    document: &KnowledgeDocument,
    namespace: &str,
    customer: &CustomerView,
    ctx: &Context,
) -> Result<std::result::Result<Source, SourceProblem>> {
    let not_found = |message: String| Ok(Err(SourceProblem { reason: reasons::SOURCE_NOT_FOUND, message }));
    let spec = &document.spec.source;
    let source = if let Some(text) = &spec.text {
        Source::Bytes(text.as_bytes().to_vec())
    } else if let Some(key_ref) = &spec.config_map_key_ref {
        let Some(config_map) =
            Api::<ConfigMap>::namespaced(ctx.client.clone(), namespace).get_opt(&key_ref.name).await?
        else {
            return not_found(format!("ConfigMap {} does not exist in {namespace}", key_ref.name));
        };
        let text = config_map.data.as_ref().and_then(|d| d.get(&key_ref.key)).map(|t| t.as_bytes().to_vec());
        let binary = config_map.binary_data.as_ref().and_then(|d| d.get(&key_ref.key)).map(|b| b.0.clone());
        match text.or(binary) {
            Some(bytes) => Source::Bytes(bytes),
            None => return not_found(format!("ConfigMap {} has no key {}", key_ref.name, key_ref.key)),
        }
    } else if let Some(blob) = &spec.blob {
        let sha256 = hex::decode(&blob.sha256).unwrap_or_default();
        match store::blob_size(&ctx.pool, customer.id, &sha256).await? {
            Some(size) => Source::Stored { sha256, size },
            None => return not_found(format!("no uploaded bytes with sha256 {} for this customer", blob.sha256)),
        }
    } else {
        // A url: the worker fetches it and stores the bytes; from then on they count as stored.
        let fetched = store::find_document(&ctx.pool, object_uid(document)?).await?.and_then(|row| row.blob_sha256);
        match fetched {
            Some(sha256) => match store::blob_size(&ctx.pool, customer.id, &sha256).await? {
                Some(size) => Source::Stored { sha256, size },
                None => Source::Url,
            },
            None => Source::Url,
        }
    };
    let limit = ctx.settings.documents.max_document_bytes;
    if source.size() > limit {
        let message = format!("the source is {} bytes, over the limit of {limit}; split the document", source.size());
        return Ok(Err(SourceProblem { reason: reasons::SOURCE_UNAVAILABLE, message }));
    }
    Ok(Ok(source))
}

fn record(
    document: &KnowledgeDocument,
    namespace: &str,
    customer: &CustomerView,
    blob: Option<Vec<u8>>,
) -> Result<DocumentRecord> {
    let uid = object_uid(document)?;
    Ok(DocumentRecord {
        k8s_uid: uid,
        customer_id: customer.id,
        document_id: public_document_id(&uid.to_string()),
        namespace: namespace.to_owned(),
        name: document.name_any(),
        filename: document.spec.filename.clone(),
        source_kind: Source::kind(&document.spec.source),
        blob_sha256: blob,
        tags: document.spec.tags.clone(),
        generation: document.metadata.generation.unwrap_or(0),
        source_url: document.spec.source.url.clone(),
    })
}

/// Admit: mirror the document in Postgres and reserve its document slot and storage in one
/// conditional statement. A document that failed for good holds nothing and asks for nothing
/// until its spec or source changes.
async fn admit(
    document: &KnowledgeDocument,
    namespace: &str,
    customer: &CustomerView,
    source: &Source,
    ctx: &Context,
) -> Result<std::result::Result<DocumentRow, DocumentRefusal>> {
    // A REST upload reserved before the object existed: its row becomes this object's.
    if let Some(placeholder) = upload_reservation(document) {
        store::adopt_upload(
            &ctx.pool,
            placeholder,
            object_uid(document)?,
            customer.id,
            namespace,
            &document.name_any(),
        )
        .await?;
    }
    let row = store::upsert_document(&ctx.pool, &record(document, namespace, customer, None)?).await?;
    // Bytes that failed for good were released; only different bytes are worth another try.
    let source_changed = source
        .sha256()
        .is_some_and(|sha| row.blob_sha256.as_ref() != Some(&sha) && row.failed_sha256.as_ref() != Some(&sha));
    if row.processing_status == ProcessingStatus::Failed && !source_changed {
        return Ok(Ok(row));
    }
    match store::reserve_document_quota(&ctx.pool, customer.id, row.id, source.size()).await? {
        DocumentAdmission::Admitted { bytes } => {
            if !row.quota_reserved || bytes != row.storage_reserved_bytes {
                ctx.wake_customer(&customer.name);
            }
            Ok(Ok(row))
        }
        DocumentAdmission::Refused(refusal) => Ok(Err(refusal)),
    }
}

/// Stores new source bytes (which starts a new processing generation) and queues the document
/// if it waits for processing.
async fn store_and_queue(
    document: &KnowledgeDocument,
    namespace: &str,
    customer: &CustomerView,
    row: DocumentRow,
    source: Source,
    ctx: &Context,
) -> Result<()> {
    let row = match source.sha256() {
        // A url: nothing to store until the worker fetched it.
        None => row,
        Some(sha256) if row.blob_sha256.as_ref() == Some(&sha256) => row,
        // The bytes that failed for good: kept out until they change.
        Some(sha256)
            if row.processing_status == ProcessingStatus::Failed && row.failed_sha256.as_ref() == Some(&sha256) =>
        {
            row
        }
        Some(sha256) => {
            let record = record(document, namespace, customer, Some(sha256))?;
            match &source {
                Source::Bytes(bytes) => {
                    let content_type = document.spec.content_type.as_deref();
                    store::store_document_source(&ctx.pool, &record, bytes, content_type).await?
                }
                _ => store::upsert_document(&ctx.pool, &record).await?,
            }
        }
    };
    prospector_store::queue::enqueue(&ctx.pool, customer.id, row.id, ctx.settings.documents.max_attempts).await?;
    Ok(())
}

/// The condition reason and a message naming the limit, for a refused document.
fn refusal_message(refusal: &DocumentRefusal) -> (&'static str, String) {
    match refusal {
        DocumentRefusal::DocumentLimit { used, max } => (
            reasons::DOCUMENT_LIMIT_REACHED,
            format!("the customer has {used} of {max} documents allowed by its tier (maxDocuments)"),
        ),
        DocumentRefusal::StorageLimit { used, wanted, max } => (
            reasons::STORAGE_LIMIT_REACHED,
            format!("{wanted} more bytes would exceed the storage limit: {used} of {max} bytes in use (maxStorageMb)"),
        ),
        DocumentRefusal::NotFound => (reasons::IN_PROGRESS, "the customer's quota is not set up yet".to_owned()),
    }
}

/// Cleanup: the document's chunks, vectors, task and unshared bytes go, and its quota is
/// released, in one transaction.
/// The placeholder UID of the row a REST upload reserved for this document, if it has one.
fn upload_reservation(document: &KnowledgeDocument) -> Option<uuid::Uuid> {
    document
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(prospector_crds::labels::UPLOAD_RESERVATION))
        .and_then(|v| uuid::Uuid::parse_str(v).ok())
}

async fn cleanup_document(document: &KnowledgeDocument, ctx: &Context) -> Result<Action> {
    // A REST upload deleted before its row was adopted: give its reservation back.
    if let Some(placeholder) = upload_reservation(document) {
        store::cancel_upload(&ctx.pool, placeholder).await?;
    }
    let deletion = store::delete_document(&ctx.pool, object_uid(document)?).await?;
    if deletion.deleted {
        if let Some(customer) =
            document.namespace().as_deref().and_then(prospector_crds::customer::customer_of_namespace)
        {
            // Its usage, and the ICP if it was Ready.
            ctx.wake_customer_soon(customer);
        }
        ctx.publish(document, false, "Deleted", "the document's chunks, vectors and quota were released".into()).await;
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_ids_have_the_seed_form_and_are_stable() {
        let id = public_document_id("2f1e8a3c-0000-4000-8000-000000000001");
        assert!(id.starts_with("doc_") && id.len() == 20, "{id}");
        assert_eq!(id, public_document_id("2f1e8a3c-0000-4000-8000-000000000001"));
        assert_ne!(id, public_document_id("2f1e8a3c-0000-4000-8000-000000000002"));
    }

    #[test]
    fn refusals_name_the_limit() {
        let (reason, message) = refusal_message(&DocumentRefusal::DocumentLimit { used: 20, max: 20 });
        assert_eq!(reason, reasons::DOCUMENT_LIMIT_REACHED);
        assert!(message.contains("20 of 20") && message.contains("maxDocuments"));
        let (reason, message) = refusal_message(&DocumentRefusal::StorageLimit { used: 900, wanted: 300, max: 1000 });
        assert_eq!(reason, reasons::STORAGE_LIMIT_REACHED);
        assert!(message.contains("maxStorageMb"));
    }
}
