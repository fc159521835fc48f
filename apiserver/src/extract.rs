//! Request extractors whose rejections are [`AppError`]s: a JSON body that is not JSON, has the
//! wrong types or is not UTF-8 gets `400 {error, message}` naming the problem, and a customer id
//! in a path that is not a number answers like any other customer that does not exist.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::AppError;

/// The largest JSON body a request may carry: axum's default body limit, which every JSON endpoint
/// keeps (an upload has its own).
pub const JSON_BODY_LIMIT: usize = 2 << 20;

/// A JSON body.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
                Err(AppError::PayloadTooLarge(format!("a JSON body may hold at most {JSON_BODY_LIMIT} bytes")))
            }
            Err(rejection) => Err(AppError::BadRequest(json_problem(&rejection))),
        }
    }
}

fn json_problem(rejection: &JsonRejection) -> String {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => {
            "send the body as JSON with `Content-Type: application/json`".into()
        }
        JsonRejection::JsonSyntaxError(e) => format!("the body is not valid JSON (UTF-8): {}", e.body_text()),
        JsonRejection::JsonDataError(e) => format!("the body has a wrong or missing field: {}", e.body_text()),
        JsonRejection::BytesRejection(_) => "the body could not be read".into(),
        other => other.body_text(),
    }
}

/// Query parameters.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Self(value))
            .map_err(|rejection| AppError::BadRequest(format!("bad query parameters: {}", rejection.body_text())))
    }
}

/// Path parameters, with a malformed path answering like a missing thing (`404`, JSON).
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| Self(value))
            .map_err(|_| AppError::NotFound("path"))
    }
}

/// Whether `id` is a document id (`doc_` and hex).
pub fn is_document_id(id: &str) -> bool {
    id.strip_prefix("doc_")
        .is_some_and(|hex| (8..=64).contains(&hex.len()) && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Whether `id` is a deployment id (`agent_<customer id>_<hex>`).
pub fn is_deployment_id(id: &str) -> bool {
    id.strip_prefix("agent_").and_then(|rest| rest.split_once('_')).is_some_and(|(customer, hex)| {
        !customer.is_empty()
            && customer.len() <= 19
            && customer.bytes().all(|b| b.is_ascii_digit())
            && (4..=32).contains(&hex.len())
            && hex.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// The `{customer_id}` of a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CustomerId(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for CustomerId {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(params) = Path::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|_| AppError::NotFound("customer"))?;
        params
            .iter()
            .find(|(name, _)| name == "customer_id")
            .and_then(|(_, value)| value.parse::<i64>().ok())
            .map(Self)
            .ok_or(AppError::NotFound("customer"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_their_shapes() {
        assert!(is_document_id("doc_3abaf39ad742cdd1"));
        assert!(!is_document_id("doc_") && !is_document_id("doc_xyz12345") && !is_document_id("doc_\u{0}1234567"));
        assert!(is_deployment_id("agent_1_93597aa5"));
        assert!(
            !is_deployment_id("agent__93597aa5") && !is_deployment_id("agent_1_") && !is_deployment_id("agent_1_zz")
        );
    }
}
