//! `Idempotency-Key` on POSTs: the first request with a key runs and its answer is kept for 24
//! hours (`store::idempotency`); a retry with the same key and the same request (method, path and
//! body) gets that answer again, marked `Idempotent-Replayed: true`, and creates nothing twice.
//! The same key with another request is refused (`422`), and one still running answers `409`.
//! Keys are per caller: a customer's keys never answer another caller's requests. Anonymous
//! requests (open self-registration) ignore the header.
//!
//! An API key in an answer is never stored: the kept body holds `sha256:<hex>` in its place, and
//! a replay reads the key again from the customer's Secret, if it is still that key.

use axum::body::{Body, Bytes, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prospector_store::api_keys;
use prospector_store::idempotency::{Claim, claim, complete, release};
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::auth::Caller;
use crate::error::AppError;

const HEADER: &str = "idempotency-key";
/// The largest answer kept for replays; larger ones are not (every answer here is far smaller).
const MAX_KEPT_BODY: usize = 1 << 20;
const KEY_MARKER: &str = "sha256:";

/// The body to keep: `api_key` replaced by its SHA-256.
pub fn redact(body: &[u8]) -> Vec<u8> {
    let Ok(mut json) = serde_json::from_slice::<serde_json::Value>(body) else { return body.to_vec() };
    let Some(key) = json.get("api_key").and_then(|k| k.as_str()).map(str::to_owned) else { return body.to_vec() };
    json["api_key"] = serde_json::Value::String(format!("{KEY_MARKER}{}", hex::encode(api_keys::sha256(&key))));
    serde_json::to_vec(&json).unwrap_or_else(|_| body.to_vec())
}

/// The kept body with its API key read back from the Secret; an error when the key was
/// rotated since.
async fn restore(state: &AppState, body: Vec<u8>) -> Result<Vec<u8>, AppError> {
    let Ok(mut json) = serde_json::from_slice::<serde_json::Value>(&body) else { return Ok(body) };
    let Some(hash) = json.get("api_key").and_then(|k| k.as_str()).and_then(|k| k.strip_prefix(KEY_MARKER)) else {
        return Ok(body);
    };
    let hash = hash.to_owned();
    let customer_id = json.get("customer_id").and_then(serde_json::Value::as_i64);
    let customer = match customer_id {
        Some(id) => prospector_store::customers::customer_by_id(&state.pool, id).await?,
        None => None,
    };
    let namespace = customer.map(|c| prospector_crds::customer::customer_namespace(&c.name));
    let key = match namespace {
        Some(namespace) => crate::routes::customers::read_key(state, &namespace).await?,
        None => None,
    };
    match key.filter(|key| hex::encode(api_keys::sha256(key)) == hash) {
        Some(key) => {
            json["api_key"] = serde_json::Value::String(key);
            Ok(serde_json::to_vec(&json).unwrap_or(body))
        }
        None => Err(AppError::Conflict(
            "the API key of the first answer to this request was rotated since; rotate the key to get a new one".into(),
        )),
    }
}

fn json_response(status: StatusCode, body: Vec<u8>, replayed: bool) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
    if replayed {
        response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// Gives the key up if the request's task ends before the answer is known (its handler
/// panicked), so a retry runs instead of waiting out the stale-claim period.
struct Release {
    state: Option<(AppState, String, String, chrono::DateTime<chrono::Utc>)>,
}

impl Drop for Release {
    fn drop(&mut self) {
        if let Some((state, scope, key, token)) = self.state.take() {
            tokio::spawn(async move {
                let _ = release(&state.pool, &scope, &key, token).await;
            });
        }
    }
}

/// A marker: the upload slot is held by this middleware for the whole request.
#[derive(Clone, Copy, Debug)]
pub struct UploadSlotHeld;

/// The multipart boundary of a request, which clients pick at random for every attempt.
fn multipart_boundary(content_type: Option<&str>) -> Option<String> {
    let content_type = content_type?;
    if !content_type.to_ascii_lowercase().starts_with("multipart/") {
        return None;
    }
    content_type
        .split(';')
        .map(str::trim)
        .find_map(|p| p.strip_prefix("boundary="))
        .map(|b| b.trim_matches('"').to_owned())
        .filter(|b| !b.is_empty())
}

/// The request's SHA-256: method, path and body, with a multipart boundary replaced by a fixed
/// one, so that a retry of the same upload by another client run matches.
fn request_hash(method: &Method, path: &str, body: &[u8], boundary: Option<&str>) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(method.as_str());
    hasher.update(b"\n");
    hasher.update(path);
    hasher.update(b"\n");
    match boundary {
        Some(boundary) if !boundary.is_empty() => {
            let needle = boundary.as_bytes();
            let mut rest = body;
            while let Some(at) = rest.windows(needle.len()).position(|w| w == needle) {
                hasher.update(&rest[..at]);
                hasher.update(b"BOUNDARY");
                rest = &rest[at + needle.len()..];
            }
            hasher.update(rest);
        }
        _ => hasher.update(body),
    }
    hasher.finalize().into()
}

/// Middleware: runs after authentication (the caller is in the request's extensions).
pub async fn enforce(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let Some(key) = request.headers().get(HEADER).map(|v| v.to_str().map(str::to_owned)) else {
        return next.run(request).await;
    };
    let key = match key {
        Ok(key) if !key.is_empty() && key.len() <= 255 && key.bytes().all(|b| b.is_ascii_graphic()) => key,
        _ => {
            return AppError::BadRequest("Idempotency-Key must be 1 to 255 printable ASCII characters".into())
                .into_response();
        }
    };
    let Some(caller) = request.extensions().get::<Caller>().cloned() else { return next.run(request).await };
    let scope = match &caller {
        Caller::Admin => "admin".to_owned(),
        Caller::Customer(owner) => format!("customer:{}", owner.customer_id),
    };
    let boundary = multipart_boundary(request.headers().get("content-type").and_then(|v| v.to_str().ok()));
    // An upload is read into memory here: it takes its upload slot here too, for the whole
    // request, so the cap on uploads held at once stays whole. Any other body is JSON, held to
    // the size every JSON endpoint accepts.
    let (slot, limit) = if boundary.is_some() {
        match state.upload_slots.acquire(&caller).await {
            Ok(slot) => (Some(slot), state.settings.max_upload_bytes.saturating_add(1 << 20)),
            Err(error) => return error.into_response(),
        }
    } else {
        (None, crate::extract::JSON_BODY_LIMIT)
    };
    let (mut parts, body) = request.into_parts();
    if boundary.is_some() {
        parts.extensions.insert(UploadSlotHeld);
    }
    let bytes: Bytes = match tokio::time::timeout(crate::READ_TIMEOUT, to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) if is_over_limit(&e) => {
            return AppError::PayloadTooLarge(format!("the request is over {limit} bytes")).into_response();
        }
        Ok(Err(_)) => return AppError::BadRequest("the request body ended early".into()).into_response(),
        Err(_) => return AppError::RequestTimeout.into_response(),
    };
    let path = parts.uri.path_and_query().map_or("", |p| p.as_str()).to_owned();
    let request_sha256 = request_hash(&parts.method, &path, &bytes, boundary.as_deref());
    match claim(&state.pool, &scope, &key, &request_sha256).await {
        Err(e) => AppError::from(e).into_response(),
        Ok(Claim::Mismatch) => AppError::IdempotencyMismatch.into_response(),
        Ok(Claim::InProgress) => {
            AppError::Conflict("a request with this Idempotency-Key is still running; retry shortly".into())
                .into_response()
        }
        Ok(Claim::Replay { status, body }) => match restore(&state, body).await {
            Ok(body) => json_response(StatusCode::from_u16(status).unwrap_or(StatusCode::OK), body, true),
            Err(error) => error.into_response(),
        },
        Ok(Claim::Run { token }) => {
            // The request runs to its end in a task of its own: a client that hangs up after
            // the handler made something must find that answer when it retries, not run the
            // request a second time (which would make a second agent).
            let first = Claimed { state, scope, key, token };
            let request = Request::from_parts(parts, Body::from(bytes));
            match tokio::spawn(first.run(request, next, slot)).await {
                Ok(response) => response,
                Err(e) => AppError::Internal(format!("the request's task failed: {e}")).into_response(),
            }
        }
    }
}

/// Whether reading a body failed because it passed its size limit (not because it ended early).
fn is_over_limit(error: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// A request that holds its Idempotency-Key's claim.
struct Claimed {
    state: AppState,
    scope: String,
    key: String,
    token: chrono::DateTime<chrono::Utc>,
}

impl Claimed {
    /// Runs the request and keeps its answer for retries (a server error is not kept: the next
    /// retry runs again). The upload slot, if any, is held until the end.
    async fn run(self, request: Request, next: Next, _slot: Option<crate::upload_slots::UploadSlot>) -> Response {
        let Self { state, scope, key, token } = self;
        // Gives the claim up if the handler panics, so a retry runs instead of waiting out the
        // stale-claim period.
        let mut guard = Release { state: Some((state.clone(), scope.clone(), key.clone(), token)) };
        let response = next.run(request).await;
        let (parts, body) = response.into_parts();
        let Ok(body) = to_bytes(body, MAX_KEPT_BODY).await else {
            return AppError::Internal("an answer too large to keep for Idempotency-Key".into()).into_response();
        };
        guard.state = None;
        let kept = if parts.status.is_server_error() {
            release(&state.pool, &scope, &key, token).await
        } else {
            complete(&state.pool, &scope, &key, token, parts.status.as_u16(), &redact(&body)).await
        };
        if let Err(e) = kept {
            tracing::warn!(error = %e, "cannot record an Idempotency-Key answer");
        }
        Response::from_parts(parts, Body::from(body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_answers_hold_no_api_key() {
        let key = api_keys::generate();
        let body = serde_json::to_vec(&serde_json::json!({"customer_id": 1, "api_key": key})).unwrap();
        let kept = redact(&body);
        let text = String::from_utf8(kept).unwrap();
        assert!(!text.contains(&key), "{text}");
        assert!(text.contains(&format!("{KEY_MARKER}{}", hex::encode(api_keys::sha256(&key)))), "{text}");
        assert_eq!(redact(b"{\"document_id\": \"doc_1\"}"), b"{\"document_id\": \"doc_1\"}".to_vec());
        assert_eq!(redact(b"not json"), b"not json".to_vec());
    }

    #[test]
    fn a_retried_upload_with_a_new_boundary_is_the_same_request() {
        let body =
            |b: &str| format!("--{b}\r\ncontent-disposition: form-data; name=\"customer_id\"\r\n\r\n1\r\n--{b}--\r\n");
        let first = request_hash(&Method::POST, "/u", body("aaaa1111").as_bytes(), Some("aaaa1111"));
        let retry = request_hash(&Method::POST, "/u", body("bbbb2222").as_bytes(), Some("bbbb2222"));
        assert_eq!(first, retry);
        let other = request_hash(
            &Method::POST,
            "/u",
            body("bbbb2222").replace("\r\n1\r\n", "\r\n2\r\n").as_bytes(),
            Some("bbbb2222"),
        );
        assert_ne!(first, other);
        assert_eq!(multipart_boundary(Some("multipart/form-data; boundary=\"xyz\"")).as_deref(), Some("xyz"));
        assert_eq!(multipart_boundary(Some("application/json")), None);
    }
}
