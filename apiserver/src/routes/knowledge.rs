//! The knowledge endpoints: list a customer's documents (from its KnowledgeDocument objects),
//! delete one (the operator's finalizer removes its chunks, vectors, task and bytes), and
//! search (the query embedded in-process by the model loaded at start, then `store::search`
//! within the caller's customer only). Uploads live in [`super::upload`].

use axum::Json;
use axum::extract::State;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams};
use prospector_crds::customer::customer_namespace;
use prospector_crds::{DocumentPhase, KnowledgeDocument};
use prospector_store::documents::locate_document;
use prospector_store::search::{SearchMode, SearchRequest, search};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiResult, AppError, ErrorBody};
use crate::extract::{ApiJson, ApiPath, CustomerId, is_document_id};

/// The most results one search returns.
pub const MAX_TOP_K: i64 = 50;
/// The longest query, in characters: the model reads 256 tokens at most anyway.
pub const MAX_QUERY_CHARS: usize = 2_000;

/// Every ICP object of the API: the seed's four keys plus when it was extracted.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Icp {
    pub target_industries: Vec<String>,
    pub company_sizes: Vec<String>,
    pub decision_makers: Vec<String>,
    pub target_regions: Vec<String>,
    pub extracted_at: Option<String>,
}

impl From<&prospector_crds::IcpCriteria> for Icp {
    fn from(icp: &prospector_crds::IcpCriteria) -> Self {
        Self {
            target_industries: icp.target_industries.clone(),
            company_sizes: icp.company_sizes.clone(),
            decision_makers: icp.decision_makers.clone(),
            target_regions: icp.target_regions.clone(),
            extracted_at: icp.extracted_at.clone(),
        }
    }
}

/// The seed's `processing_status` of a phase.
pub fn processing_status(phase: Option<DocumentPhase>) -> &'static str {
    match phase {
        None | Some(DocumentPhase::Pending | DocumentPhase::Queued) => "pending",
        Some(DocumentPhase::Processing) => "processing",
        Some(DocumentPhase::Ready) => "completed",
        Some(DocumentPhase::Failed) => "failed",
    }
}

/// One document of the list.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct DocumentSummary {
    /// `doc_…`; null for a few seconds after a document is created with `kubectl`, until the
    /// operator has seen it.
    pub document_id: Option<String>,
    pub filename: String,
    pub content_type: Option<String>,
    pub file_size: Option<i64>,
    pub processing_status: String,
    /// Why processing failed, what to do about it; only for `failed`.
    pub processing_error: Option<String>,
    pub chunk_count: Option<i32>,
    pub tags: Vec<String>,
    pub icp: Option<Icp>,
    /// RFC 3339.
    pub created_at: Option<String>,
}

/// `GET /api/knowledge/docs/{customer_id}`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct DocumentList {
    pub documents: Vec<DocumentSummary>,
    pub total: usize,
}

pub fn summary(document: &KnowledgeDocument) -> DocumentSummary {
    let status = document.status.clone().unwrap_or_default();
    let source = &document.spec.source;
    let file_size = source
        .blob
        .as_ref()
        .map(|b| b.size)
        .or_else(|| source.text.as_ref().map(|t| i64::try_from(t.len()).unwrap_or(i64::MAX)));
    let phase = status.phase;
    DocumentSummary {
        document_id: status.document_id.clone(),
        filename: document.spec.filename.clone(),
        content_type: document.spec.content_type.clone(),
        file_size,
        processing_status: processing_status(phase).to_owned(),
        processing_error: status.error.clone().filter(|_| phase == Some(DocumentPhase::Failed)),
        chunk_count: status.chunk_count,
        tags: document.spec.tags.clone(),
        icp: status.icp.as_ref().filter(|_| phase == Some(DocumentPhase::Ready)).map(Icp::from),
        created_at: document.metadata.creation_timestamp.as_ref().map(|t| t.0.to_string()),
    }
}

/// `GET /api/knowledge/docs/{customer_id}`.
#[utoipa::path(get, path = "/api/knowledge/docs/{customer_id}", tag = "knowledge", params(("customer_id" = i64, Path, description = "The customer's id")),
    responses((status = 200, body = DocumentList), (status = 401, description = "No or invalid credentials", body = ErrorBody), (status = 403, description = "Suspended customer, or not allowed", body = ErrorBody), (status = 404, description = "No such customer, or another customer's", body = ErrorBody), (status = 429, description = "Rate limit or API call quota", body = ErrorBody), (status = 503, description = "A dependency is unavailable", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    CustomerId(id): CustomerId,
) -> ApiResult<Json<DocumentList>> {
    let customer = caller.customer(&state, id).await?;
    let api: Api<KnowledgeDocument> = Api::namespaced(state.client.clone(), &customer_namespace(&customer.name));
    let mut documents = api.list(&ListParams::default()).await?.items;
    documents.retain(|d| d.metadata.deletion_timestamp.is_none());
    documents.sort_by_key(|d| (d.metadata.creation_timestamp.clone().map(|t| t.0), d.name_any()));
    let documents: Vec<DocumentSummary> = documents.iter().map(summary).collect();
    Ok(Json(DocumentList { total: documents.len(), documents }))
}

/// The answer to a deletion.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Deleted {
    pub document_id: String,
    pub status: String,
}

/// `DELETE /api/knowledge/docs/{customer_id}/{document_id}`.
#[utoipa::path(delete, path = "/api/knowledge/docs/{customer_id}/{document_id}", tag = "knowledge",
    params(("customer_id" = i64, Path, description = "The customer's id"), ("document_id" = String, Path, description = "doc_<hex>")),
    responses((status = 200, body = Deleted), (status = 401, description = "No or invalid credentials", body = ErrorBody), (status = 403, description = "Suspended customer, or not allowed", body = ErrorBody), (status = 404, description = "No such customer, or another customer's", body = ErrorBody), (status = 429, description = "Rate limit or API call quota", body = ErrorBody), (status = 503, description = "A dependency is unavailable", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    CustomerId(id): CustomerId,
    ApiPath((_, document_id)): ApiPath<(String, String)>,
) -> ApiResult<Json<Deleted>> {
    let customer = caller.customer(&state, id).await?;
    if !is_document_id(&document_id) {
        return Err(AppError::NotFound("document"));
    }
    let namespace = customer_namespace(&customer.name);
    // The row names the object; a document of another customer lives in another namespace.
    let (row_namespace, name) = locate_document(&state.pool, &document_id)
        .await?
        .filter(|(row_namespace, _)| *row_namespace == namespace)
        .ok_or(AppError::NotFound("document"))?;
    let api: Api<KnowledgeDocument> = Api::namespaced(state.client.clone(), &row_namespace);
    match api.delete(&name, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => return Err(AppError::NotFound("document")),
        Err(e) => return Err(e.into()),
    }
    tracing::info!(customer_id = id, document_id = %document_id, "document deleted");
    Ok(Json(Deleted { document_id, status: "deleting".into() }))
}

/// The search request: the seed's `{customer_id, query, top_k}` plus filters and the mode.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchBody {
    pub customer_id: i64,
    pub query: String,
    #[serde(default)]
    pub top_k: Option<i64>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub document_ids: Vec<String>,
    #[serde(default)]
    pub mode: Option<String>,
}

/// One result.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct SearchResult {
    pub document_id: String,
    pub filename: String,
    pub chunk_index: i32,
    pub text: String,
    pub score: f64,
}

/// The search answer.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct SearchResponse {
    pub query: String,
    pub results: Vec<SearchResult>,
}

fn validate_search(body: &SearchBody) -> ApiResult<(i64, SearchMode)> {
    let query = body.query.trim();
    if query.is_empty() {
        return Err(AppError::BadRequest("query must not be empty".into()));
    }
    if query.chars().count() > MAX_QUERY_CHARS {
        return Err(AppError::BadRequest(format!("query must be at most {MAX_QUERY_CHARS} characters")));
    }
    let top_k = body.top_k.unwrap_or(prospector_store::search::DEFAULT_TOP_K);
    if !(1..=MAX_TOP_K).contains(&top_k) {
        return Err(AppError::BadRequest(format!("top_k must be between 1 and {MAX_TOP_K}")));
    }
    if body.tags.len() > 32 || body.document_ids.len() > 100 {
        return Err(AppError::BadRequest("at most 32 tags and 100 document_ids".into()));
    }
    crate::routes::check_printable("query", query)?;
    for tag in &body.tags {
        crate::routes::check_printable("tags", tag)?;
    }
    if let Some(bad) = body.document_ids.iter().find(|id| !is_document_id(id)) {
        return Err(AppError::BadRequest(format!(
            "document_ids holds {:?}, which is not a document id (doc_ and hex)",
            bad.chars().take(40).collect::<String>()
        )));
    }
    let mode = match body.mode.as_deref() {
        None | Some("hybrid") => SearchMode::Hybrid,
        Some("vector") => SearchMode::Vector,
        Some(other) => return Err(AppError::BadRequest(format!("mode {other:?} is not vector or hybrid"))),
    };
    Ok((top_k, mode))
}

/// `POST /api/knowledge/search`.
#[utoipa::path(post, path = "/api/knowledge/search", tag = "knowledge", request_body = SearchBody,
    responses((status = 200, body = SearchResponse), (status = 400, description = "Malformed request", body = ErrorBody), (status = 401, description = "No or invalid credentials", body = ErrorBody), (status = 403, description = "Suspended customer, or not allowed", body = ErrorBody), (status = 404, description = "No such customer, or another customer's", body = ErrorBody), (status = 429, description = "Rate limit or API call quota", body = ErrorBody), (status = 503, description = "A dependency is unavailable", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn search_documents(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<SearchBody>,
) -> ApiResult<Json<SearchResponse>> {
    let customer = caller.customer(&state, body.customer_id).await?;
    let (top_k, mode) = validate_search(&body)?;
    let embedders =
        state.embedder.clone().ok_or(AppError::Unavailable("search is off: this server has no model loaded".into()))?;
    let query = body.query.trim().to_owned();
    let embedding = embedders.embed(query.clone()).await?;
    let request = SearchRequest {
        top_k,
        tags: &body.tags,
        document_ids: &body.document_ids,
        mode,
        ..SearchRequest::new(customer.id, &embedding, &query)
    };
    let hits = search(&state.search_pool, &request).await?;
    let results = hits
        .into_iter()
        .map(|h| SearchResult {
            document_id: h.document_id,
            filename: h.filename,
            chunk_index: h.chunk_index,
            text: h.text,
            score: h.score,
        })
        .collect();
    Ok(Json(SearchResponse { query, results }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(value: serde_json::Value) -> SearchBody {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn search_bounds_are_checked() {
        assert_eq!(validate_search(&body(serde_json::json!({"customer_id": 1, "query": "x"}))).unwrap().0, 5);
        for bad in [
            serde_json::json!({"customer_id": 1, "query": "x", "top_k": 1_000_000}),
            serde_json::json!({"customer_id": 1, "query": "x", "top_k": 0}),
            serde_json::json!({"customer_id": 1, "query": "   "}),
            serde_json::json!({"customer_id": 1, "query": "x".repeat(MAX_QUERY_CHARS + 1)}),
            serde_json::json!({"customer_id": 1, "query": "x", "mode": "fuzzy"}),
        ] {
            assert!(validate_search(&body(bad.clone())).is_err(), "{bad}");
        }
    }

    #[test]
    fn phases_map_to_the_seed_statuses() {
        assert_eq!(processing_status(Some(DocumentPhase::Queued)), "pending");
        assert_eq!(processing_status(Some(DocumentPhase::Ready)), "completed");
        assert_eq!(processing_status(Some(DocumentPhase::Failed)), "failed");
    }
}
