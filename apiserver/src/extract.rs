//! Request extractors whose rejections are [`AppError`]s: a JSON body that is not JSON, has the
//! wrong types or is not UTF-8 gets `400 {error, message}` naming the problem, and a customer id
//! in a path that is not a number answers like any other customer that does not exist.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::AppError;

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
