//! `POST /api/knowledge/upload`: a multipart upload (`customer_id`, `file`, optional `tags`)
//! becomes a KnowledgeDocument. The file is read in pieces up to the size cap and refused as
//! soon as it passes it; its type is sniffed from its bytes (the embedder's sniffer, not the
//! client's word); identical bytes already uploaded by the customer return that document. The
//! bytes, the document's row and its quota are written in one transaction before the object is
//! created (`store::documents::reserve_upload`), and released if the create fails.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::extract::multipart::{Field, Multipart, MultipartRejection};
use axum::http::StatusCode;
use kube::api::{Api, Patch, PatchParams};
use kube::core::ObjectMeta;
use prospector_crds::customer::customer_namespace;
use prospector_crds::document::{BlobRef, DocumentSource, KnowledgeDocumentSpec};
use prospector_crds::{KnowledgeDocument, labels};
use prospector_embedder::extract::{DocumentKind, sniff};
use prospector_store::documents::{DocumentRefusal, Upload, UploadReservation, cancel_upload, reserve_upload};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::auth::Caller;
use crate::error::{ApiResult, AppError, ErrorBody};
use crate::routes::knowledge::{Icp, summary};
use crate::routes::random_lowercase;
use crate::{AppState, FIELD_MANAGER};

/// The seed's upload answer.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct UploadResponse {
    pub document_id: String,
    pub filename: String,
    pub content_type: String,
    pub file_size: i64,
    pub processing_status: String,
    /// Null until the document is processed.
    pub icp: Option<Icp>,
    /// The customer had uploaded these bytes before: this is that document, nothing new was
    /// stored.
    pub duplicate: bool,
}

/// The parts of the form.
struct Form {
    customer_id: Option<i64>,
    tags: Vec<String>,
    file: Option<(String, Vec<u8>)>,
}

/// The MIME type stored for a sniffed kind.
pub fn mime(kind: DocumentKind) -> &'static str {
    match kind {
        DocumentKind::Pdf => "application/pdf",
        DocumentKind::Docx => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        DocumentKind::Html => "text/html",
        DocumentKind::Markdown => "text/markdown",
        DocumentKind::Text => "text/plain",
    }
}

/// The file name to keep: its last path component, at most 255 characters, never empty.
pub fn clean_filename(raw: Option<&str>) -> String {
    let base = raw.unwrap_or_default().rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = base.chars().filter(|c| !c.is_control()).take(255).collect();
    let cleaned = cleaned.trim();
    if cleaned.is_empty() { "upload".to_owned() } else { cleaned.to_owned() }
}

/// The KnowledgeDocument's name: the file name as a DNS label plus a random suffix.
pub fn object_name(filename: &str, suffix: &str) -> String {
    crate::routes::object_name(filename, 40, "document", suffix)
}

fn parse_tags(text: &str, tags: &mut Vec<String>) -> ApiResult<()> {
    for tag in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        crate::routes::check_printable("tags", tag)?;
        if tag.chars().count() > 63 {
            return Err(AppError::BadRequest("a tag is at most 63 characters".into()));
        }
        if !tags.iter().any(|t| t == tag) {
            tags.push(tag.to_owned());
        }
    }
    if tags.len() > 32 {
        return Err(AppError::BadRequest("at most 32 tags".into()));
    }
    Ok(())
}

fn bad_multipart(detail: impl std::fmt::Display) -> AppError {
    AppError::BadRequest(format!(
        "the multipart body could not be read ({detail}); send customer_id and file as form fields"
    ))
}

/// Reads a text field of at most `limit` bytes.
async fn text_field(mut field: Field<'_>, limit: usize) -> ApiResult<String> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(bad_multipart)? {
        bytes.extend_from_slice(&chunk);
        if bytes.len() > limit {
            return Err(AppError::BadRequest(format!("a form field is over {limit} bytes")));
        }
    }
    String::from_utf8(bytes).map_err(|_| AppError::BadRequest("a form field is not UTF-8 text".into()))
}

async fn read_form(mut multipart: Multipart, max_bytes: usize) -> ApiResult<Form> {
    let mut form = Form { customer_id: None, tags: Vec::new(), file: None };
    while let Some(mut field) = multipart.next_field().await.map_err(bad_multipart)? {
        match field.name().unwrap_or_default() {
            "customer_id" => {
                let text = text_field(field, 32).await?;
                form.customer_id = Some(
                    text.trim().parse().map_err(|_| AppError::BadRequest("customer_id must be an integer".into()))?,
                );
            }
            "tags" => parse_tags(&text_field(field, 4096).await?, &mut form.tags)?,
            "file" => {
                if form.file.is_some() {
                    return Err(AppError::BadRequest("send one file per upload".into()));
                }
                let filename = clean_filename(field.file_name());
                let mut bytes = Vec::new();
                while let Some(chunk) = field.chunk().await.map_err(bad_multipart)? {
                    if bytes.len() + chunk.len() > max_bytes {
                        return Err(AppError::PayloadTooLarge(format!(
                            "the file is over the upload limit of {max_bytes} bytes; split the document"
                        )));
                    }
                    bytes.extend_from_slice(&chunk);
                }
                form.file = Some((filename, bytes));
            }
            other => {
                return Err(AppError::BadRequest(format!(
                    "unknown form field {:?}; the fields are customer_id, file and tags",
                    other.chars().take(64).collect::<String>()
                )));
            }
        }
    }
    Ok(form)
}

fn refusal_message(refusal: &DocumentRefusal) -> String {
    match refusal {
        DocumentRefusal::DocumentLimit { used, max } => {
            format!(
                "the document limit is reached: {used} of {max} documents (maxDocuments); delete one or upgrade the tier"
            )
        }
        DocumentRefusal::StorageLimit { used, wanted, max } => format!(
            "{wanted} more bytes would exceed the storage limit: {used} of {max} bytes in use (maxStorageMb); delete documents or upgrade the tier"
        ),
        DocumentRefusal::NotFound => "the customer's quotas are not set up yet; retry shortly".to_owned(),
    }
}

/// The upload form, for the API description.
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    customer_id: i64,
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// Comma-separated, at most 32 of 63 characters.
    tags: Option<String>,
}

/// `POST /api/knowledge/upload`.
#[utoipa::path(post, path = "/api/knowledge/upload", tag = "knowledge",
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses((status = 201, body = UploadResponse), (status = 200, description = "The same bytes were uploaded before", body = UploadResponse),
        (status = 400, description = "Malformed request", body = ErrorBody), (status = 401, description = "No or invalid credentials", body = ErrorBody), (status = 403, description = "Over quota, or suspended", body = ErrorBody), (status = 404, description = "No such customer, or another customer's", body = ErrorBody),
        (status = 413, description = "Over the upload cap", body = ErrorBody),
        (status = 415, description = "Not a PDF, DOCX, HTML, Markdown or text file", body = ErrorBody), (status = 429, description = "Rate limit or API call quota", body = ErrorBody), (status = 503, description = "A dependency is unavailable", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    held: Option<axum::Extension<crate::idempotency::UploadSlotHeld>>,
    multipart: Result<Multipart, MultipartRejection>,
) -> ApiResult<(StatusCode, Json<UploadResponse>)> {
    let multipart = multipart.map_err(|e| AppError::BadRequest(format!("send a multipart/form-data body: {e}")))?;
    // At most a few uploads are held in memory at once (the Idempotency-Key middleware may hold
    // this request's slot already).
    let _slot = match held {
        Some(_) => None,
        None => Some(state.upload_slots.acquire(&caller).await?),
    };
    let form = tokio::time::timeout(crate::READ_TIMEOUT, read_form(multipart, state.settings.max_upload_bytes))
        .await
        .map_err(|_| AppError::RequestTimeout)??;
    let customer_id = form.customer_id.ok_or(AppError::BadRequest("the customer_id field is missing".into()))?;
    let (filename, bytes) = form.file.ok_or(AppError::BadRequest("the file field is missing".into()))?;
    let customer = caller.customer(&state, customer_id).await?;
    if bytes.is_empty() {
        return Err(AppError::BadRequest("the file is empty".into()));
    }
    let kind = sniff(&bytes, None)
        .map_err(|e| AppError::UnsupportedType(format!("{e}; upload a PDF, DOCX, HTML, Markdown or text file")))?;
    let content_type = mime(kind);
    let sha256: [u8; 32] = Sha256::digest(&bytes).into();
    let namespace = customer_namespace(&customer.name);
    let name = object_name(&filename, &random_lowercase(8));
    let placeholder = uuid::Uuid::new_v4();
    let document_id = format!("doc_{}", hex::encode(&Sha256::digest(placeholder.as_bytes())[..8]));
    let size = i64::try_from(bytes.len()).unwrap_or(i64::MAX);
    let reservation = reserve_upload(
        &state.pool,
        &Upload {
            customer_id,
            placeholder_uid: placeholder,
            document_id: &document_id,
            namespace: &namespace,
            name: &name,
            filename: &filename,
            content_type,
            sha256: &sha256,
            content: &bytes,
            tags: &form.tags,
        },
    )
    .await?;
    drop(bytes);
    let api: Api<KnowledgeDocument> = Api::namespaced(state.client.clone(), &namespace);
    match reservation {
        UploadReservation::Refused(refusal) => return Err(AppError::QuotaExceeded(refusal_message(&refusal))),
        UploadReservation::Duplicate { document_id, name, .. } => {
            let existing = api.get_opt(&name).await?.map(|d| summary(&d));
            return Ok((
                StatusCode::OK,
                Json(UploadResponse {
                    document_id,
                    filename: existing.as_ref().map_or(filename, |d| d.filename.clone()),
                    content_type: content_type.to_owned(),
                    file_size: size,
                    processing_status: existing.as_ref().map_or("pending".into(), |d| d.processing_status.clone()),
                    icp: existing.and_then(|d| d.icp),
                    duplicate: true,
                }),
            ));
        }
        UploadReservation::Reserved => {}
    }
    let document = KnowledgeDocument {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            annotations: Some(BTreeMap::from([(labels::UPLOAD_RESERVATION.to_owned(), placeholder.to_string())])),
            // Cleanup runs even if the document is deleted before the operator first sees it.
            finalizers: Some(vec![labels::CLEANUP_FINALIZER.to_owned()]),
            ..ObjectMeta::default()
        },
        ..KnowledgeDocument::new(
            &name,
            KnowledgeDocumentSpec {
                filename: filename.clone(),
                content_type: Some(content_type.to_owned()),
                tags: form.tags.clone(),
                source: DocumentSource {
                    blob: Some(BlobRef { sha256: hex::encode(sha256), size }),
                    ..DocumentSource::default()
                },
            },
        )
    };
    let created = match api.patch(&name, &PatchParams::apply(FIELD_MANAGER), &Patch::Apply(&document)).await {
        Ok(created) => Some(created),
        // Refused: nothing was created, the reservation goes back now rather than at the sweep.
        Err(kube::Error::Api(e)) if (400..500).contains(&e.code) => {
            cancel_reservation(&state, placeholder).await;
            return Err(kube::Error::Api(e).into());
        }
        // An unclear failure (a timeout, a 5xx): the object may exist; look before undoing.
        Err(e) => match api.get_opt(&name).await {
            Ok(Some(created)) => Some(created),
            Ok(None) => {
                cancel_reservation(&state, placeholder).await;
                return Err(e.into());
            }
            // Still unknown: the operator adopts the row if the object exists, and the sweep
            // releases it if not.
            Err(_) => return Err(e.into()),
        },
    };
    if let Some(uid) = created.and_then(|c| c.metadata.uid).and_then(|u| uuid::Uuid::parse_str(&u).ok()) {
        prospector_store::documents::adopt_upload(&state.pool, placeholder, uid, customer_id, &namespace, &name)
            .await?;
    }
    tracing::info!(customer_id, document_id = %document_id, size, kind = %kind, "document uploaded");
    Ok((
        StatusCode::CREATED,
        Json(UploadResponse {
            document_id,
            filename,
            content_type: content_type.to_owned(),
            file_size: size,
            processing_status: "pending".into(),
            icp: None,
            duplicate: false,
        }),
    ))
}

async fn cancel_reservation(state: &AppState, placeholder: uuid::Uuid) {
    if let Err(e) = cancel_upload(&state.pool, placeholder).await {
        tracing::warn!(error = %e, "cannot release an upload's reservation; the operator's sweep will");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filenames_keep_their_last_component() {
        assert_eq!(clean_filename(Some("../../etc/passwd")), "passwd");
        assert_eq!(clean_filename(Some("C:\\docs\\icp.pdf")), "icp.pdf");
        assert_eq!(clean_filename(Some("a\u{0}b\nc.txt")), "abc.txt");
        assert_eq!(clean_filename(None), "upload");
        assert_eq!(clean_filename(Some(&"x".repeat(400))).len(), 255);
    }

    #[test]
    fn object_names_are_dns_labels() {
        assert_eq!(object_name("ICP Document.pdf", "abcd1234"), "icp-document-pdf-abcd1234");
        assert_eq!(object_name("????", "abcd1234"), "document-abcd1234");
        assert!(object_name(&"long name ".repeat(20), "abcd1234").len() <= 63);
    }

    #[test]
    fn tags_are_split_deduplicated_and_bounded() {
        let mut tags = Vec::new();
        parse_tags("sales, icp,sales,,", &mut tags).unwrap();
        assert_eq!(tags, vec!["sales", "icp"]);
        assert!(
            parse_tags(&"t,".repeat(10).chars().chain("x".repeat(64).chars()).collect::<String>(), &mut tags).is_err()
        );
        let many: Vec<String> = (0..40).map(|i| format!("t{i}")).collect();
        assert!(parse_tags(&many.join(","), &mut Vec::new()).is_err());
    }

    #[test]
    fn refusals_name_the_limit_and_the_usage() {
        let message = refusal_message(&DocumentRefusal::DocumentLimit { used: 20, max: 20 });
        assert!(message.contains("20 of 20") && message.contains("maxDocuments"), "{message}");
        let message = refusal_message(&DocumentRefusal::StorageLimit { used: 90, wanted: 20, max: 100 });
        assert!(message.contains("90 of 100") && message.contains("20 more"), "{message}");
    }
}
