//! The REST server's one error type. Every failure a handler can meet maps to a status code and
//! a JSON body `{error, message}`: `error` is a stable machine-readable code, `message` says what
//! to do. Internal causes (database, Kubernetes) are logged with the request id and never echoed.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::request_id;

/// The body of every error answer.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ErrorBody {
    /// A stable code: `bad_request`, `unauthorized`, `not_found`, `rate_limited`, ….
    pub error: String,
    /// What happened and what to do, for a person.
    pub message: String,
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The request is malformed: bad JSON, wrong types, a missing or invalid field.
    #[error("{0}")]
    BadRequest(String),
    /// The tier named in the request does not exist.
    #[error("{0}")]
    UnknownTier(String),
    /// No credentials, or credentials that do not authenticate.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// Authenticated, but not allowed to do this.
    #[error("{0}")]
    Forbidden(String),
    /// The customer is suspended: its key is refused until the suspension is lifted.
    #[error("this customer is suspended; its API key works again once the suspension is lifted")]
    Suspended,
    /// The thing does not exist, or belongs to another customer (indistinguishable on purpose).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A quota of the customer's tier is used up; the message names the limit and the usage.
    #[error("{0}")]
    QuotaExceeded(String),
    /// A rate limit or the daily/monthly API call quota; the message names it.
    #[error("{0}")]
    RateLimited(String),
    /// An `Idempotency-Key` sent again with a different request.
    #[error("this Idempotency-Key was used for a different request; use a new key for a new request")]
    IdempotencyMismatch,
    /// The upload is over the size cap.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The upload's bytes are not a type Prospector reads.
    #[error("{0}")]
    UnsupportedType(String),
    /// The request body did not arrive in time.
    #[error("the request body took too long to arrive")]
    RequestTimeout,
    /// The path exists, with other methods.
    #[error("this path does not take that method; see /openapi.json")]
    MethodNotAllowed,
    /// The request conflicts with existing state (an e-mail address in use).
    #[error("{0}")]
    Conflict(String),
    /// A dependency (Postgres, the Kubernetes API) is unavailable; retrying later may work.
    #[error("the service is temporarily unavailable; retry shortly")]
    Unavailable(String),
    /// A bug or an unexpected answer; logged, never echoed.
    #[error("internal error")]
    Internal(String),
}

impl AppError {
    pub fn status_code(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) | Self::UnknownTier(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) | Self::Suspended | Self::QuotaExceeded(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::IdempotencyMismatch => StatusCode::UNPROCESSABLE_ENTITY,
            Self::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::UnsupportedType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `error` field of the body, and the label of the errors metric.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::UnknownTier(_) => "unknown_tier",
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::Suspended => "customer_suspended",
            Self::QuotaExceeded(_) => "quota_exceeded",
            Self::NotFound(_) => "not_found",
            Self::Conflict(_) => "conflict",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::RequestTimeout => "request_timeout",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::IdempotencyMismatch => "idempotency_key_reused",
            Self::RateLimited(_) => "rate_limited",
            Self::UnsupportedType(_) => "unsupported_type",
            Self::Unavailable(_) => "unavailable",
            Self::Internal(_) => "internal",
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let request_id = request_id::current();
        let message = match &self {
            Self::Unavailable(cause) => {
                tracing::warn!(request_id = %request_id, cause = %cause, "dependency unavailable");
                format!("{self} (request id {request_id})")
            }
            Self::Internal(cause) => {
                tracing::error!(request_id = %request_id, cause = %cause, "internal error");
                format!("internal error (request id {request_id})")
            }
            _ => self.to_string(),
        };
        let body = ErrorBody { error: self.code().to_owned(), message };
        let mut response = (self.status_code(), Json(body)).into_response();
        if matches!(self, Self::Unauthorized(_)) {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if matches!(self, Self::Unavailable(_)) {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

impl From<prospector_store::StoreError> for AppError {
    fn from(e: prospector_store::StoreError) -> Self {
        use prospector_store::StoreError;
        // Values Postgres cannot take (a NUL byte in text, a number out of range) are the
        // request's fault, not the server's.
        if let StoreError::Database(sqlx::Error::Database(db)) = &e
            && matches!(db.code().as_deref(), Some("22021" | "22P02" | "22003" | "22001" | "54000"))
        {
            return Self::BadRequest(
                "the request holds a value that cannot be stored (a NUL byte, or a number out of range)".into(),
            );
        }
        match e {
            StoreError::Database(sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed)
            | StoreError::Timeout => Self::Unavailable(e.to_string()),
            StoreError::EmailInUse => Self::Conflict("another customer already uses this e-mail address".into()),
            StoreError::Gone => Self::NotFound("customer"),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<kube::Error> for AppError {
    fn from(e: kube::Error) -> Self {
        match &e {
            // The object was refused by the schema's validation: its message is about the
            // caller's own fields (e.g. "spec.agentName: agentName must not be blank").
            kube::Error::Api(status) if status.code == 422 => {
                Self::BadRequest(format!("the request was refused by validation: {}", status.message))
            }
            // A body Kubernetes could not even decode (control characters, for one).
            kube::Error::Api(status) if status.code == 400 => {
                Self::BadRequest("the request holds characters or values that cannot be stored".into())
            }
            // The customer's namespace is gone or going (a customer being deleted).
            kube::Error::Api(status) if status.code == 404 => Self::NotFound("customer"),
            kube::Error::Api(status) if status.code == 409 => {
                Self::Conflict("the object changed meanwhile; retry the request".into())
            }
            kube::Error::Api(status) if status.code >= 500 => Self::Unavailable(e.to_string()),
            kube::Error::HyperError(_) | kube::Error::Service(_) => Self::Unavailable(e.to_string()),
            _ => Self::Internal(e.to_string()),
        }
    }
}

pub type ApiResult<T> = Result<T, AppError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn internal_errors_are_logged_not_echoed() {
        let response = AppError::Internal("password=hunter2 at 10.0.0.7".into()).into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(response.into_body(), 4096).await.unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(text.contains("\"error\":\"internal\""), "{text}");
        assert!(!text.contains("hunter2") && !text.contains("10.0.0.7"), "{text}");
    }

    #[test]
    fn every_error_has_its_status() {
        assert_eq!(AppError::Suspended.status_code(), StatusCode::FORBIDDEN);
        assert_eq!(AppError::NotFound("customer").status_code(), StatusCode::NOT_FOUND);
        assert_eq!(AppError::UnknownTier("x".into()).code(), "unknown_tier");
        assert_eq!(AppError::Unauthorized("no").status_code(), StatusCode::UNAUTHORIZED);
    }
}
