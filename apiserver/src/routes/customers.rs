//! The customer endpoints: registration (a Customer object, then its first API key once), the
//! customer itself, its quotas and usage, and key rotation. Writes go through the Customer
//! object with server-side apply; reads come from Postgres and the object's status.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Datelike, Utc};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::core::ObjectMeta;
use prospector_crds::conditions::types;
use prospector_crds::customer::{Contact, CustomerSpec};
use prospector_crds::labels::REGISTRATION_TOKEN_SHA256 as REGISTRATION_TOKEN_ANNOTATION;
use prospector_crds::{Customer, HasConditions, Tier};
use prospector_store::api_keys;
use prospector_store::customers::{self, CustomerRow};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::auth::{Caller, MaybeCaller};
use crate::error::{ApiResult, AppError, ErrorBody};
use crate::extract::{ApiJson, ApiPath, ApiQuery, CustomerId};
use crate::routes::{check_printable, object_name, random_lowercase};
use crate::{AppState, FIELD_MANAGER};

/// The Secret and key the operator keeps each customer's API key in.
const API_KEY_SECRET: &str = "prospector-api-key";
const API_KEY_SECRET_KEY: &str = "api-key";

/// The seed's registration request. `password` is accepted for compatibility and discarded:
/// Prospector has no Firebase users, and authenticates with API keys only.
#[derive(Clone, Deserialize, utoipa::ToSchema)]
pub struct RegisterRequest {
    pub email: String,
    #[serde(default)]
    pub password: Option<String>,
    pub company_name: String,
    #[serde(default)]
    pub subscription_tier: Option<String>,
    #[serde(default)]
    pub contact_name: Option<String>,
    #[serde(default)]
    pub contact_title: Option<String>,
    #[serde(default)]
    pub company_website: Option<String>,
    #[serde(default)]
    pub company_size: Option<String>,
    #[serde(default)]
    pub industry: Option<String>,
}

impl std::fmt::Debug for RegisterRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisterRequest")
            .field("email", &self.email)
            .field("company_name", &self.company_name)
            .field("subscription_tier", &self.subscription_tier)
            .finish_non_exhaustive()
    }
}

/// The seed's registration response. `api_key` is present exactly once per customer.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct RegisterResponse {
    pub customer_id: i64,
    /// The Customer object's name (`kubectl get customer NAME`).
    pub customer_name: String,
    pub email: String,
    pub company_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    pub subscription_tier: String,
    pub status: String,
    pub created_at: DateTime<Utc>,
}

/// A registration still in progress (`202`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct PendingRegistration {
    pub customer_name: String,
    pub status: String,
    /// Where to ask again; answers the [`RegisterResponse`], with the key, once the customer is
    /// ready.
    pub status_url: String,
    /// For anonymous self-registration: the bearer token that reads `status_url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_token: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RegisterParams {
    /// `false` answers `202` at once instead of waiting for the customer to be ready.
    #[serde(default = "yes")]
    pub wait: bool,
}

fn yes() -> bool {
    true
}

/// `POST /api/customers/register`.
#[utoipa::path(post, path = "/api/customers/register", tag = "customers", params(RegisterParams),
    request_body = RegisterRequest,
    responses((status = 201, body = RegisterResponse), (status = 202, body = PendingRegistration), (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 401, description = "No or invalid credentials", body = ErrorBody), (status = 403, description = "Suspended customer, or not allowed", body = ErrorBody), (status = 409, description = "E-mail address in use", body = ErrorBody), (status = 429, description = "Rate limit or API call quota", body = ErrorBody), (status = 503, description = "A dependency is unavailable", body = ErrorBody)),
    security((), ("bearer" = [])))]
pub async fn register(
    State(state): State<AppState>,
    MaybeCaller(caller): MaybeCaller,
    ApiQuery(params): ApiQuery<RegisterParams>,
    ApiJson(request): ApiJson<RegisterRequest>,
) -> ApiResult<Response> {
    let tier = request.subscription_tier.clone().unwrap_or_else(|| "free".to_owned());
    let anonymous = match caller {
        Some(Caller::Admin) => false,
        Some(Caller::Customer(_)) => {
            return Err(AppError::Forbidden("registering customers takes the platform admin token".into()));
        }
        None if state.settings.open_registration => {
            if tier != "free" {
                return Err(AppError::Forbidden(
                    "self-registration is for the free tier; ask the platform admin for another tier".into(),
                ));
            }
            state.limiter.admit_anonymous()?;
            true
        }
        None => return Err(AppError::Unauthorized("registering customers takes the platform admin token")),
    };
    validate(&request)?;
    let tiers: Api<Tier> = Api::all(state.client.clone());
    if !is_object_name(&tier) || tiers.get_opt(&tier).await?.is_none() {
        let known: Vec<String> = tiers
            .list(&Default::default())
            .await?
            .items
            .into_iter()
            .map(|t| t.metadata.name.unwrap_or_default())
            .collect();
        return Err(AppError::UnknownTier(format!("tier {tier:?} does not exist; choose one of {}", known.join(", "))));
    }
    if customers::email_in_use(&state.pool, &request.email).await? {
        return Err(AppError::Conflict(format!("another customer already uses {}", request.email)));
    }

    let name = customer_name(&request.company_name, &random_lowercase(6));
    let registration_token = anonymous.then(|| format!("rt_{}", api_keys::base62(&rand::random::<[u8; 32]>())));
    let customer = desired_customer(&name, &request, &tier, registration_token.as_deref());
    let api: Api<Customer> = Api::all(state.client.clone());
    // Apply would change an existing object of the same name: a new name makes that impossible.
    if api.get_opt(&name).await?.is_some() {
        return Err(AppError::Conflict("the generated customer name is taken; retry".into()));
    }
    api.patch(&name, &PatchParams::apply(FIELD_MANAGER), &Patch::Apply(&customer)).await?;
    tracing::info!(customer = %name, tier = %tier, "customer registered");

    let pending = || PendingRegistration {
        customer_name: name.clone(),
        status: "pending".into(),
        status_url: format!("/api/customers/registrations/{name}"),
        registration_token: registration_token.clone(),
    };
    if !params.wait {
        return Ok((StatusCode::ACCEPTED, Json(pending())).into_response());
    }
    let deadline = tokio::time::Instant::now() + state.settings.register_wait;
    loop {
        if let Some(response) = registration_result(&state, &name).await? {
            return Ok((StatusCode::CREATED, Json(response)).into_response());
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok((StatusCode::ACCEPTED, Json(pending())).into_response());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `GET /api/customers/registrations/{name}`: the registration's outcome, for the admin or the
/// holder of the registration token. `202` while pending.
#[utoipa::path(get, path = "/api/customers/registrations/{name}", tag = "customers",
    params(("name" = String, Path, description = "The Customer object's name")),
    responses((status = 200, body = RegisterResponse), (status = 202, body = PendingRegistration), (status = 401, description = "No or invalid credentials", body = ErrorBody),
        (status = 404, description = "No such registration, or not yours to read", body = ErrorBody), (status = 429, description = "Rate limit or API call quota", body = ErrorBody), (status = 503, description = "A dependency is unavailable", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn registration_status(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let token = crate::auth::bearer(&headers)?
        .ok_or(AppError::Unauthorized("send `Authorization: Bearer <admin or registration token>`"))?;
    // Only an object name can name a registration; anything else is not one.
    if !is_object_name(&name) {
        return Err(AppError::NotFound("registration"));
    }
    // A registration token can only be checked against the Customer: those reads have their
    // own budget. Any other token must be the admin's before anything is read.
    let by_registration_token = token.starts_with("rt_");
    if by_registration_token {
        state.limiter.admit_registration_read()?;
    } else if crate::auth::authenticate(&state, token).await? != Caller::Admin {
        return Err(AppError::NotFound("registration"));
    }
    let customer = Api::<Customer>::all(state.client.clone()).get_opt(&name).await?;
    let allowed = !by_registration_token
        || customer
            .as_ref()
            .and_then(|c| c.metadata.annotations.as_ref()?.get(REGISTRATION_TOKEN_ANNOTATION).cloned())
            .is_some_and(|expected| expected == hex_sha256(token));
    if !allowed || customer.is_none() {
        return Err(AppError::NotFound("registration"));
    }
    match registration_result(&state, &name).await? {
        Some(response) => Ok((StatusCode::OK, Json(response)).into_response()),
        None => Ok((
            StatusCode::ACCEPTED,
            Json(PendingRegistration {
                customer_name: name.clone(),
                status: "pending".into(),
                status_url: format!("/api/customers/registrations/{name}"),
                registration_token: None,
            }),
        )
            .into_response()),
    }
}

/// The registration response once the customer is ready (with its key, the first time anyone
/// asks), `None` while the operator is still at work, or the reason it refused the customer.
async fn registration_result(state: &AppState, name: &str) -> ApiResult<Option<RegisterResponse>> {
    let Some(customer) = Api::<Customer>::all(state.client.clone()).get_opt(name).await? else {
        return Err(AppError::NotFound("registration"));
    };
    let Some(status) = customer.status.as_ref() else { return Ok(None) };
    if let Some(ready) = status.condition(types::READY)
        && ready.status == "False"
        && matches!(ready.reason.as_str(), "InvalidSpec" | "TierNotFound")
    {
        return Err(AppError::Conflict(ready.message.clone()));
    }
    let ready = status.condition(types::READY).is_some_and(|c| c.status == "True");
    let (Some(customer_id), Some(namespace), true) = (status.customer_id, status.namespace.as_deref(), ready) else {
        return Ok(None);
    };
    let Some(row) = customers::customer_by_id(&state.pool, customer_id).await? else { return Ok(None) };
    let key = read_key(state, namespace).await?;
    let api_key = match key {
        Some(key) if api_keys::claim_delivery(&state.pool, customer_id, &key).await? => Some(key),
        _ => None,
    };
    Ok(Some(RegisterResponse {
        customer_id,
        customer_name: row.name,
        email: row.email,
        company_name: row.company_name,
        api_key,
        subscription_tier: row.subscription_tier,
        status: row.status,
        created_at: row.created_at,
    }))
}

/// The API key in the customer's Secret, if it exists yet.
pub(crate) async fn read_key(state: &AppState, namespace: &str) -> ApiResult<Option<String>> {
    let secret = Api::<Secret>::namespaced(state.client.clone(), namespace).get_opt(API_KEY_SECRET).await?;
    Ok(secret.as_ref().and_then(key_of))
}

fn key_of(secret: &Secret) -> Option<String> {
    secret.data.as_ref()?.get(API_KEY_SECRET_KEY).and_then(|v| String::from_utf8(v.0.clone()).ok())
}

fn validate(request: &RegisterRequest) -> ApiResult<()> {
    let email = request.email.trim();
    let well_formed = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.')
        })
        && !email.chars().any(char::is_whitespace)
        && email.matches('@').count() == 1;
    if !well_formed {
        return Err(AppError::BadRequest("email must be an address such as name@example.com".into()));
    }
    let company = request.company_name.trim();
    if company.is_empty() || company.chars().count() > 255 {
        return Err(AppError::BadRequest("company_name must be 1 to 255 characters".into()));
    }
    let limits = [
        ("contact_name", &request.contact_name, 255),
        ("contact_title", &request.contact_title, 200),
        ("company_website", &request.company_website, 500),
        ("company_size", &request.company_size, 100),
        ("industry", &request.industry, 200),
    ];
    for (field, value, max) in limits {
        if value.as_ref().is_some_and(|v| v.chars().count() > max) {
            return Err(AppError::BadRequest(format!("{field} must be at most {max} characters")));
        }
        if let Some(value) = value {
            check_printable(field, value)?;
        }
    }
    check_printable("email", &request.email)?;
    check_printable("company_name", &request.company_name)?;
    Ok(())
}

/// Whether `name` can be a Customer's name (a DNS label).
pub fn is_object_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// The Customer object's name: the company name as a DNS label, plus a random suffix so two
/// companies of the same name never collide. Short enough for the namespace `cust-<name>`.
pub fn customer_name(company_name: &str, suffix: &str) -> String {
    object_name(company_name, 40, "customer", suffix)
}

fn hex_sha256(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// The Customer a registration applies.
pub fn desired_customer(
    name: &str,
    request: &RegisterRequest,
    tier: &str,
    registration_token: Option<&str>,
) -> Customer {
    let contact = (request.contact_name.is_some() || request.contact_title.is_some())
        .then(|| Contact { name: request.contact_name.clone(), title: request.contact_title.clone() });
    let mut customer = Customer::new(
        name,
        CustomerSpec {
            company_name: request.company_name.trim().to_owned(),
            email: request.email.trim().to_owned(),
            tier: tier.to_owned(),
            contact,
            website: request.company_website.clone(),
            company_size: request.company_size.clone(),
            industry: request.industry.clone(),
            quota_overrides: None,
            suspended: false,
        },
    );
    customer.metadata = ObjectMeta {
        name: Some(name.to_owned()),
        annotations: registration_token
            .map(|token| BTreeMap::from([(REGISTRATION_TOKEN_ANNOTATION.to_owned(), hex_sha256(token))])),
        ..ObjectMeta::default()
    };
    customer
}

/// A customer as `GET /api/customers/{id}` shows it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct CustomerResponse {
    pub customer_id: i64,
    pub customer_name: String,
    pub email: String,
    pub company_name: String,
    pub subscription_tier: String,
    pub status: String,
    pub contact_name: Option<String>,
    pub contact_title: Option<String>,
    pub company_website: Option<String>,
    pub company_size: Option<String>,
    pub industry: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl From<CustomerRow> for CustomerResponse {
    fn from(row: CustomerRow) -> Self {
        Self {
            customer_id: row.id,
            customer_name: row.name,
            email: row.email,
            company_name: row.company_name,
            subscription_tier: row.subscription_tier,
            status: row.status,
            contact_name: row.contact_name,
            contact_title: row.contact_title,
            company_website: row.company_website,
            company_size: row.company_size,
            industry: row.industry,
            created_at: row.created_at,
        }
    }
}

/// `GET /api/customers/{customer_id}`.
#[utoipa::path(get, path = "/api/customers/{customer_id}", tag = "customers", params(("customer_id" = i64, Path, description = "The customer's id")),
    responses((status = 200, body = CustomerResponse), (status = 401, description = "No or invalid credentials", body = ErrorBody), (status = 403, description = "Suspended customer, or not allowed", body = ErrorBody), (status = 404, description = "No such customer, or another customer's", body = ErrorBody), (status = 429, description = "Rate limit or API call quota", body = ErrorBody), (status = 503, description = "A dependency is unavailable", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_customer(
    State(state): State<AppState>,
    caller: Caller,
    CustomerId(id): CustomerId,
) -> ApiResult<Json<CustomerResponse>> {
    Ok(Json(caller.customer(&state, id).await?.into()))
}

/// The seed's `CustomerQuotaResponse`: every limit beside its usage. Storage is in MB (10^6
/// bytes), as the tiers write it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct QuotaResponse {
    pub customer_id: i64,
    pub subscription_tier: String,
    pub max_api_calls_per_day: i64,
    pub api_calls_today: i64,
    pub max_api_calls_per_month: i64,
    pub api_calls_this_month: i64,
    pub rate_limit_per_second: i32,
    pub rate_limit_per_minute: i32,
    pub max_agents: i32,
    pub active_agents_count: i64,
    pub max_concurrent_agents: i32,
    pub active_replicas: i64,
    pub max_leads_per_month: i64,
    pub leads_this_month: i64,
    pub max_storage_mb: f64,
    pub storage_used_mb: f64,
    pub max_documents: i32,
    pub documents_count: i64,
    pub max_cost_per_month_usd: f64,
    pub cost_this_month_usd: f64,
}

/// `GET /api/customers/{customer_id}/quotas`.
#[utoipa::path(get, path = "/api/customers/{customer_id}/quotas", tag = "customers", params(("customer_id" = i64, Path, description = "The customer's id")),
    responses((status = 200, body = QuotaResponse), (status = 401, description = "No or invalid credentials", body = ErrorBody), (status = 403, description = "Suspended customer, or not allowed", body = ErrorBody), (status = 404, description = "No such customer, or another customer's", body = ErrorBody), (status = 429, description = "Rate limit or API call quota", body = ErrorBody), (status = 503, description = "A dependency is unavailable", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn quotas(
    State(state): State<AppState>,
    caller: Caller,
    CustomerId(id): CustomerId,
) -> ApiResult<Json<QuotaResponse>> {
    // One query: the key's lookup already proved the customer live, and the snapshot joins it.
    caller.authorize(id)?;
    let today = Utc::now().date_naive();
    let month_start = today.with_day(1).unwrap_or(today);
    let usage =
        customers::usage_snapshot(&state.pool, id, today, month_start).await?.ok_or(AppError::NotFound("customer"))?;
    let limits = usage.limits;
    Ok(Json(QuotaResponse {
        customer_id: id,
        subscription_tier: usage.subscription_tier,
        max_api_calls_per_day: limits.max_api_calls_per_day,
        api_calls_today: usage.api_calls_today,
        max_api_calls_per_month: limits.max_api_calls_per_month,
        api_calls_this_month: usage.api_calls_this_month,
        rate_limit_per_second: limits.rate_limit_per_second,
        rate_limit_per_minute: limits.rate_limit_per_minute,
        max_agents: limits.max_agents,
        active_agents_count: usage.active_agents,
        max_concurrent_agents: limits.max_concurrent_agents,
        active_replicas: usage.active_replicas,
        max_leads_per_month: limits.max_leads_per_month,
        leads_this_month: usage.leads_this_month,
        max_storage_mb: limits.max_storage_bytes as f64 / 1e6,
        storage_used_mb: usage.storage_bytes as f64 / 1e6,
        max_documents: limits.max_documents,
        documents_count: usage.documents,
        max_cost_per_month_usd: limits.max_cost_per_month_usd,
        cost_this_month_usd: usage.cost_this_month_usd,
    }))
}

/// A rotated key, shown once.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct RotatedKey {
    pub customer_id: i64,
    pub api_key: String,
    pub key_prefix: String,
    pub rotated_at: DateTime<Utc>,
}

/// `POST /api/customers/{customer_id}/api-keys/rotate`: a new key in the Secret, the old one
/// revoked, in three steps: the new key is recorded as active; the Secret is replaced (guarded
/// by its resourceVersion: of two rotations racing, one fails with 409 and gives its key up);
/// the keys recorded before the new one are revoked. A failure after the Secret changed leaves
/// both keys working until the operator's next resync, never none.
#[utoipa::path(post, path = "/api/customers/{customer_id}/api-keys/rotate", tag = "customers", params(("customer_id" = i64, Path, description = "The customer's id")),
    responses((status = 200, body = RotatedKey), (status = 401, description = "No or invalid credentials", body = ErrorBody), (status = 403, description = "Suspended customer, or not allowed", body = ErrorBody), (status = 404, description = "No such customer, or another customer's", body = ErrorBody),
        (status = 409, description = "Another rotation is in progress", body = ErrorBody), (status = 429, description = "Rate limit or API call quota", body = ErrorBody), (status = 503, description = "A dependency is unavailable", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn rotate_key(
    State(state): State<AppState>,
    caller: Caller,
    CustomerId(id): CustomerId,
) -> ApiResult<Json<RotatedKey>> {
    let customer = caller.customer(&state, id).await?;
    let namespace = prospector_crds::customer::customer_namespace(&customer.name);
    let secrets: Api<Secret> = Api::namespaced(state.client.clone(), &namespace);
    let mut secret = secrets
        .get_opt(API_KEY_SECRET)
        .await?
        .ok_or(AppError::Unavailable("the customer's API key is being created".into()))?;
    let old = key_of(&secret);
    let new = api_keys::generate();
    // The new key works before the Secret holds it, so no moment exists where the Secret's key
    // does not; the old one is revoked only once the Secret changed.
    api_keys::add_key(&state.pool, id, &new).await?;
    secret.data = Some(BTreeMap::from([(API_KEY_SECRET_KEY.to_owned(), ByteString(new.as_bytes().to_vec()))]));
    secret.metadata.managed_fields = None;
    let params = PostParams { field_manager: Some(FIELD_MANAGER.to_owned()), ..PostParams::default() };
    if let Err(e) = secrets.replace(API_KEY_SECRET, &params, &secret).await {
        if let Err(revoke) = api_keys::revoke_key(&state.pool, &new).await {
            tracing::warn!(customer_id = id, error = %revoke, "cannot revoke the key of a failed rotation");
        }
        return Err(match e {
            kube::Error::Api(e) if e.code == 409 => {
                AppError::Conflict("another rotation of this key is in progress; retry".into())
            }
            e => e.into(),
        });
    }
    // If this fails, both keys work until the operator's next resync makes the Secret's key
    // the only one.
    if api_keys::rotate_key(&state.pool, id, old.as_deref(), &new).await? == api_keys::KeyActivation::Stale {
        return Err(AppError::Conflict("a later rotation replaced this key; use the key it returned".into()));
    }
    if let Some(old) = &old {
        state.key_cache.forget(&api_keys::sha256(old));
    }
    tracing::info!(customer_id = id, "API key rotated");
    Ok(Json(RotatedKey {
        customer_id: id,
        key_prefix: api_keys::prefix(&new).to_owned(),
        api_key: new,
        rotated_at: Utc::now(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> RegisterRequest {
        serde_json::from_value(serde_json::json!({
            "email": "test@example.com", "password": "SecurePass123",
            "company_name": "Test Corp", "subscription_tier": "pro"
        }))
        .unwrap()
    }

    #[test]
    fn names_are_dns_labels_that_fit_the_namespace() {
        assert_eq!(customer_name("Test Corp", "ab12cd"), "test-corp-ab12cd");
        assert_eq!(customer_name("  ÄÖ & Co. GmbH!! ", "x"), "co-gmbh-x");
        assert_eq!(customer_name("***", "x"), "customer-x");
        let long = customer_name(&"Very Long Company Name ".repeat(10), "abcdef");
        assert!(long.len() + "cust-".len() <= 63, "{long}");
        assert!(long.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
        assert!(!long.contains("--"));
    }

    #[test]
    fn the_password_is_neither_kept_nor_printed() {
        let request = request();
        assert!(!format!("{request:?}").contains("SecurePass123"));
        let customer = desired_customer("test-corp-ab12cd", &request, "pro", None);
        assert!(!serde_json::to_string(&customer).unwrap().contains("SecurePass123"));
        assert_eq!(customer.spec.tier, "pro");
        assert_eq!(customer.spec.email, "test@example.com");
    }

    #[test]
    fn an_anonymous_registration_carries_only_its_token_hash() {
        let customer = desired_customer("x-1", &request(), "free", Some("rt_secret"));
        let annotations = customer.metadata.annotations.unwrap();
        assert_eq!(annotations[REGISTRATION_TOKEN_ANNOTATION], hex_sha256("rt_secret"));
        assert!(!annotations.values().any(|v| v.contains("rt_secret")));
    }

    #[test]
    fn malformed_requests_are_refused_with_the_field() {
        let mut bad = request();
        bad.email = "not-an-address".into();
        assert!(matches!(validate(&bad), Err(AppError::BadRequest(m)) if m.contains("email")));
        let mut bad = request();
        bad.company_name = "  ".into();
        assert!(matches!(validate(&bad), Err(AppError::BadRequest(m)) if m.contains("company_name")));
        let mut bad = request();
        bad.industry = Some("x".repeat(201));
        assert!(matches!(validate(&bad), Err(AppError::BadRequest(m)) if m.contains("industry")));
        let mut bad = request();
        bad.company_name = "Acme\r\nCorp".into();
        assert!(matches!(validate(&bad), Err(AppError::BadRequest(m)) if m.contains("control")));
        assert!(validate(&request()).is_ok());
        assert!(is_object_name("test-corp-ab12cd"));
        assert!(!is_object_name("\r\u{b9}") && !is_object_name("") && !is_object_name("Caps"));
    }
}
