//! The Prospector REST server. This slice owns the health endpoints the later routes sit
//! beside: `/healthz` (the process is up) and `/readyz` (Postgres answers).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use sqlx::PgPool;

/// Shared request state.
#[derive(Clone, Debug)]
pub struct AppState {
    pub pool: PgPool,
}

/// The application's routes.
pub fn router(state: AppState) -> Router {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).with_state(state)
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<AppState>) -> Result<&'static str, (StatusCode, Json<serde_json::Value>)> {
    // A probe must answer quickly even while connecting hangs.
    let ping = tokio::time::timeout(std::time::Duration::from_secs(2), prospector_store::ping(&state.pool)).await;
    match ping.unwrap_or_else(|_| Err(prospector_store::StoreError::Timeout)) {
        Ok(()) => Ok("ok"),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            Err((
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({"error": "unavailable", "message": "the database is not reachable"})),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    fn unreachable_pool() -> PgPool {
        // Port 1 on loopback refuses connections: a database outage.
        sqlx::postgres::PgPoolOptions::new()
            .acquire_timeout(std::time::Duration::from_millis(500))
            .connect_lazy("postgres://nobody@127.0.0.1:1/none")
            .unwrap()
    }

    #[tokio::test]
    async fn healthz_answers_without_the_database() {
        let app = router(AppState { pool: unreachable_pool() });
        let response = app.oneshot(Request::get("/healthz").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn readyz_reports_a_database_outage_without_internals() {
        let app = router(AppState { pool: unreachable_pool() });
        let response = app.oneshot(Request::get("/readyz").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = axum::body::to_bytes(response.into_body(), 4096).await.unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["error"], "unavailable");
        assert!(!body.windows(9).any(|w| w == b"127.0.0.1"), "the error must not echo connection details");
    }
}
