//! The Prospector REST server: the seed system's endpoints on top of the custom resources.
//! Writes go through the objects with server-side apply (field manager `prospector-apiserver`),
//! so REST, `kubectl` and GitOps reach the same state; reads come from Postgres and status.
//! This module owns the shared state, the settings and the route table.

pub mod auth;
pub mod error;
pub mod extract;
pub mod idempotency;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod query_embedding;
pub mod request_id;
pub mod routes;
pub mod upload_slots;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use sqlx::PgPool;

use crate::auth::{AdminToken, KeyCache};
use crate::error::AppError;

/// How often the admin token's file is read again.
pub const ADMIN_TOKEN_RELOAD: Duration = Duration::from_secs(10);

/// How long a request body (an upload) may take to arrive.
pub const READ_TIMEOUT: Duration = Duration::from_secs(300);

/// The field manager of every object the REST server writes.
pub const FIELD_MANAGER: &str = "prospector-apiserver";

/// What the REST server is configured with besides its connections.
#[derive(Clone, Debug)]
pub struct ApiSettings {
    /// Anyone may register a free-tier customer without the admin token.
    pub open_registration: bool,
    /// How long registration waits for the customer to be ready before answering `202`.
    pub register_wait: Duration,
    /// The largest file an upload may carry, in bytes.
    pub max_upload_bytes: usize,
    /// Uploads read at once; each holds up to `max_upload_bytes` in memory.
    pub concurrent_uploads: usize,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            open_registration: false,
            register_wait: Duration::from_secs(30),
            max_upload_bytes: 50_000_000,
            concurrent_uploads: 4,
        }
    }
}

/// Shared request state.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    /// Where searches read: a read-only replica when one is configured, else `pool`.
    pub search_pool: PgPool,
    pub client: kube::Client,
    pub settings: Arc<ApiSettings>,
    /// The platform admin token's hash; replaced when its file changes (a rotated Secret).
    pub admin_token: Arc<std::sync::RwLock<Option<AdminToken>>>,
    pub key_cache: Arc<KeyCache>,
    /// The models that embed search queries, loaded once at start; `None` turns search off.
    pub embedder: Option<Arc<query_embedding::QueryEmbedders>>,
    /// Permits for uploads being read.
    pub upload_slots: Arc<upload_slots::UploadSlots>,
    /// Rate limits and API call counts per customer.
    pub limiter: Arc<limits::Limiter>,
    pub metrics: metrics::Metrics,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl AppState {
    pub fn new(pool: PgPool, client: kube::Client, settings: ApiSettings, admin_token: Option<AdminToken>) -> Self {
        let upload_slots = Arc::new(upload_slots::UploadSlots::new(settings.concurrent_uploads));
        Self {
            search_pool: pool.clone(),
            pool,
            client,
            settings: Arc::new(settings),
            admin_token: Arc::new(std::sync::RwLock::new(admin_token)),
            key_cache: Arc::default(),
            embedder: None,
            upload_slots,
            limiter: Arc::default(),
            metrics: metrics::Metrics::default(),
        }
    }

    /// Sends searches to a read-only replica.
    pub fn with_search_pool(mut self, search_pool: PgPool) -> Self {
        self.search_pool = search_pool;
        self
    }

    /// Starts what runs beside the requests: the flush of counted API calls, and the hourly
    /// sweep of `Idempotency-Key` answers past their 24 hours.
    pub fn spawn_background(&self) {
        tokio::spawn(self.limiter.clone().run_flusher(self.pool.clone()));
        let pool = self.pool.clone();
        tokio::spawn(async move {
            let mut hourly = tokio::time::interval(Duration::from_secs(3600));
            loop {
                hourly.tick().await;
                if let Err(e) = prospector_store::idempotency::sweep(&pool).await {
                    tracing::debug!(error = %e, "cannot sweep old Idempotency-Key answers");
                }
            }
        });
    }

    /// Re-reads the admin token from `path` every few seconds, so a rotated Secret takes
    /// effect without a restart (the kubelet updates a mounted Secret's file in place).
    pub fn watch_admin_token_file(&self, path: std::path::PathBuf) {
        let admin_token = self.admin_token.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(ADMIN_TOKEN_RELOAD);
            loop {
                every.tick().await;
                let Ok(token) = tokio::fs::read_to_string(&path).await else { continue };
                let fresh = AdminToken::new(&token);
                let mut current = admin_token.write().unwrap_or_else(|p| p.into_inner());
                if *current != fresh {
                    tracing::info!("the admin token changed; the new one is in effect");
                    *current = fresh;
                }
            }
        });
    }

    /// Serves search with these query models.
    pub fn with_embedder(mut self, embedders: query_embedding::QueryEmbedders) -> Self {
        self.embedder = Some(Arc::new(embedders));
        self
    }
}

/// The application's routes.
pub fn router(state: AppState) -> Router {
    use routes::{agents, customers, knowledge, upload};
    // Room for the form's other fields beside the largest file; the handler enforces the cap
    // on the file itself, with its own error.
    let upload_limit = DefaultBodyLimit::max(state.settings.max_upload_bytes.saturating_add(1 << 20));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::serve))
        .route("/openapi.json", get(openapi::serve))
        .route("/api/customers/register", post(customers::register))
        .route("/api/customers/registrations/{name}", get(customers::registration_status))
        .route("/api/customers/{customer_id}", get(customers::get_customer))
        .route("/api/customers/{customer_id}/quotas", get(customers::quotas))
        .route("/api/customers/{customer_id}/api-keys/rotate", post(customers::rotate_key))
        .route("/api/customers/{customer_id}/agents/deploy", post(agents::deploy))
        .route("/api/customers/{customer_id}/agents/status", get(agents::status))
        .route("/api/customers/{customer_id}/agents/{deployment_id}", delete(agents::terminate))
        .route(limits::USAGE_REPORT_ROUTE, post(agents::report_usage))
        .route("/api/knowledge/upload", post(upload::upload).layer(upload_limit))
        .route("/api/knowledge/search", post(knowledge::search_documents))
        .route("/api/knowledge/docs/{customer_id}", get(knowledge::list))
        .route("/api/knowledge/docs/{customer_id}/{document_id}", delete(knowledge::delete))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), idempotency::enforce))
        .layer(axum::middleware::from_fn_with_state(state.clone(), limits::enforce))
        .layer(axum::middleware::from_fn_with_state(state.clone(), metrics::record))
        .layer(axum::middleware::from_fn(request_id::assign))
        .with_state(state)
}

async fn not_found() -> AppError {
    AppError::NotFound("route")
}

async fn method_not_allowed() -> AppError {
    AppError::MethodNotAllowed
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<AppState>) -> Result<&'static str, (StatusCode, Json<serde_json::Value>)> {
    // A probe must answer quickly even while connecting hangs.
    let ping = tokio::time::timeout(Duration::from_secs(2), prospector_store::ping(&state.pool)).await;
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

    /// State whose dependencies are down: Postgres and the Kubernetes API refuse connections.
    fn unreachable_state(settings: ApiSettings) -> AppState {
        // Port 1 on loopback refuses connections: an outage.
        let pool = sqlx::postgres::PgPoolOptions::new()
            .acquire_timeout(Duration::from_millis(500))
            .connect_lazy("postgres://nobody@127.0.0.1:1/none")
            .unwrap();
        let config = kube::Config::new("http://127.0.0.1:1".parse().unwrap());
        let client = kube::Client::try_from(config).unwrap();
        AppState::new(pool, client, settings, AdminToken::new("admin-token"))
    }

    async fn call(app: Router, request: Request<Body>) -> (StatusCode, serde_json::Value) {
        let response = app.oneshot(request).await.unwrap();
        let status = response.status();
        assert!(response.headers().contains_key("x-request-id"));
        let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null))
    }

    #[tokio::test]
    async fn healthz_answers_without_the_database() {
        let app = router(unreachable_state(ApiSettings::default()));
        let response = app.oneshot(Request::get("/healthz").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn readyz_reports_a_database_outage_without_internals() {
        let app = router(unreachable_state(ApiSettings::default()));
        let (status, json) = call(app, Request::get("/readyz").body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(json["error"], "unavailable");
        assert!(!json.to_string().contains("127.0.0.1"), "the error must not echo connection details");
    }

    #[tokio::test]
    async fn requests_without_credentials_are_refused_before_any_lookup() {
        let app = router(unreachable_state(ApiSettings::default()));
        for (method, path) in [
            ("GET", "/api/customers/1"),
            ("GET", "/api/customers/1/quotas"),
            ("POST", "/api/customers/1/api-keys/rotate"),
            ("POST", "/api/customers/1/agents/deploy"),
            ("GET", "/api/customers/1/agents/status"),
            ("DELETE", "/api/customers/1/agents/agent_1_0000abcd"),
            ("POST", "/api/agents/agent_1_0000abcd/usage"),
            ("POST", "/api/knowledge/search"),
            ("POST", "/api/knowledge/upload"),
            ("GET", "/api/knowledge/docs/1"),
            ("DELETE", "/api/knowledge/docs/1/doc_0123abcd"),
        ] {
            let request = Request::builder().method(method).uri(path).body(Body::empty()).unwrap();
            let (status, json) = call(app.clone(), request).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
            assert_eq!(json["error"], "unauthorized");
        }
        let request =
            Request::get("/api/customers/1").header("authorization", "Basic abc").body(Body::empty()).unwrap();
        assert_eq!(call(app.clone(), request).await.0, StatusCode::UNAUTHORIZED);
        let request =
            Request::get("/api/customers/1").header("authorization", "Bearer nope").body(Body::empty()).unwrap();
        assert_eq!(call(app, request).await.0, StatusCode::UNAUTHORIZED, "not a key: refused without a lookup");
    }

    #[tokio::test]
    async fn a_database_outage_is_a_503_that_names_no_internals() {
        let app = router(unreachable_state(ApiSettings::default()));
        let request = Request::get("/api/customers/1")
            .header("authorization", format!("Bearer {}", prospector_store::api_keys::generate()))
            .body(Body::empty())
            .unwrap();
        let (status, json) = call(app, request).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(json["error"], "unavailable");
        assert!(!json.to_string().contains("127.0.0.1"));
    }

    #[tokio::test]
    async fn malformed_registrations_get_a_400_naming_the_problem() {
        let app = router(unreachable_state(ApiSettings::default()));
        let cases: [(&str, &[u8]); 4] = [
            ("application/json", b"{not json"),
            ("application/json", br#"{"email": 5, "company_name": "x"}"#),
            ("application/json", b"\xff\xfe{\x00}\x00"),
            ("text/plain", br#"{"email": "a@b.co", "company_name": "x"}"#),
        ];
        for (content_type, body) in cases {
            let request = Request::post("/api/customers/register")
                .header("authorization", "Bearer admin-token")
                .header("content-type", content_type)
                .body(Body::from(body.to_vec()))
                .unwrap();
            let (status, json) = call(app.clone(), request).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body:?}: {json}");
            assert_eq!(json["error"], "bad_request");
        }
    }

    #[tokio::test]
    async fn registration_takes_the_admin_token_unless_open() {
        let body = r#"{"email": "a@b.co", "company_name": "x", "subscription_tier": "pro"}"#;
        let request = || {
            Request::post("/api/customers/register")
                .header("content-type", "application/json")
                .body(Body::from(body))
                .unwrap()
        };
        let (status, _) = call(router(unreachable_state(ApiSettings::default())), request()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let open = ApiSettings { open_registration: true, ..ApiSettings::default() };
        let (status, json) = call(router(unreachable_state(open)), request()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "self-registration is free tier only: {json}");
    }

    #[tokio::test]
    async fn metrics_count_requests_by_route_template_not_by_id() {
        let app = router(unreachable_state(ApiSettings::default()));
        for id in [11, 12] {
            let request = Request::get(format!("/api/customers/{id}")).body(Body::empty()).unwrap();
            assert_eq!(call(app.clone(), request).await.0, StatusCode::UNAUTHORIZED);
        }
        let response = app.oneshot(Request::get("/metrics").body(Body::empty()).unwrap()).await.unwrap();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        let line = text
            .lines()
            .find(|l| {
                l.starts_with("prospector_apiserver_requests_total") && l.contains("/api/customers/{customer_id}\"")
            })
            .unwrap_or_else(|| panic!("no request count by template in:\n{text}"));
        assert!(line.contains("status=\"401\"") && line.ends_with(" 2"), "{line}");
        assert!(!text.contains("/api/customers/11"), "raw paths hold ids");
    }

    #[tokio::test]
    async fn unknown_routes_and_non_numeric_ids_are_json_404s() {
        let app = router(unreachable_state(ApiSettings::default()));
        let (status, json) = call(app.clone(), Request::get("/api/nothing").body(Body::empty()).unwrap()).await;
        assert_eq!((status, json["error"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
        let request = Request::get("/api/customers/abc")
            .header("authorization", "Bearer admin-token")
            .body(Body::empty())
            .unwrap();
        let (status, _) = call(app, request).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}
