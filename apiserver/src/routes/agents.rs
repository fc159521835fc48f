//! The agent endpoints: deploy (an AgentDeployment in the customer's namespace), status (the
//! customer's agents with their performance), terminate (delete the object; the operator's
//! finalizer releases the quota), and the usage agents report, which feeds the cost cap.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::core::ObjectMeta;
use prospector_crds::agent::{AgentDeploymentSpec, MAX_NAME_LENGTH, MAX_REPLICAS};
use prospector_crds::conditions::types;
use prospector_crds::customer::customer_namespace;
use prospector_crds::{AgentDeployment, AgentPhase, AgentType, HasConditions};
use prospector_store::agents::{self, UsageReport};
use serde::{Deserialize, Serialize};

use crate::auth::Caller;
use crate::error::{ApiResult, AppError, ErrorBody};
use crate::extract::{ApiJson, ApiPath, CustomerId, is_deployment_id};
use crate::routes::random_lowercase;
use crate::{AppState, FIELD_MANAGER};

/// How long deploy waits for the operator's admission decision.
const ADMISSION_WAIT: Duration = Duration::from_secs(15);

/// The seed's deploy request.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    pub agent_name: String,
    #[schema(schema_with = crate::openapi::agent_type)]
    pub agent_type: AgentType,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub config: Option<serde_json::Value>,
    #[serde(default)]
    pub replicas: Option<i32>,
}

/// The seed's deploy response, and one agent of the status response.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct AgentResponse {
    pub agent_id: Option<i64>,
    pub deployment_id: Option<String>,
    pub agent_name: String,
    #[schema(schema_with = crate::openapi::agent_type)]
    pub agent_type: AgentType,
    /// The phase in the seed's lower case: `pending`, `deployed`, `running`, `suspended`,
    /// `quota_exceeded`, `failed`, `terminating`.
    pub status: String,
    pub model: String,
    pub replicas: i32,
    pub ready_replicas: i32,
    pub deployed_at: Option<String>,
    /// The operator's explanation of the status (e.g. which limit was reached).
    pub message: Option<String>,
    pub performance: Performance,
}

/// What the agent reported, as the seed's `AgentPerformance`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Performance {
    pub total_tasks: i64,
    pub completed_tasks: i64,
    pub failed_tasks: i64,
    pub average_latency_ms: Option<f64>,
    pub total_api_calls: i64,
    pub total_cost_usd: f64,
    pub last_active_at: Option<String>,
}

/// The seed's status response.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct AgentsStatus {
    pub customer_id: i64,
    pub agents: Vec<AgentResponse>,
    pub total: usize,
}

fn response(agent: &AgentDeployment) -> AgentResponse {
    let status = agent.status.clone().unwrap_or_default();
    let terminating = agent.metadata.deletion_timestamp.is_some();
    let phase = if terminating { AgentPhase::Terminating } else { status.phase.unwrap_or(AgentPhase::Pending) };
    let performance = status
        .performance
        .map(|p| Performance {
            total_tasks: p.total_tasks,
            completed_tasks: p.completed_tasks,
            failed_tasks: p.failed_tasks,
            average_latency_ms: p.average_latency_ms,
            total_api_calls: p.total_api_calls,
            total_cost_usd: p.total_cost_usd,
            last_active_at: p.last_active_at,
        })
        .unwrap_or_default();
    AgentResponse {
        agent_id: status.agent_id,
        deployment_id: status.deployment_id.clone(),
        agent_name: agent.spec.agent_name.clone(),
        agent_type: agent.spec.agent_type,
        status: phase.snake_case().to_owned(),
        model: agent.spec.model.clone(),
        replicas: agent.spec.replicas,
        ready_replicas: status.ready_replicas.unwrap_or(0),
        deployed_at: status.deployed_at.clone(),
        message: status.conditions.iter().find(|c| c.type_ == types::READY).map(|c| c.message.clone()),
        performance,
    }
}

/// The AgentDeployment's name: the agent name as a DNS label plus a random suffix.
pub fn object_name(agent_name: &str, suffix: &str) -> String {
    crate::routes::object_name(agent_name, MAX_NAME_LENGTH - suffix.len() - 1, "agent", suffix)
}

/// The AgentDeployment a deploy request applies.
pub fn desired_agent(name: &str, request: &DeployRequest) -> AgentDeployment {
    let mut agent = AgentDeployment::new(
        name,
        AgentDeploymentSpec {
            agent_name: request.agent_name.trim().to_owned(),
            agent_type: request.agent_type,
            model: request.model.clone().unwrap_or_else(|| "llama3.1-8b".to_owned()),
            config: request.config.clone(),
            replicas: request.replicas.unwrap_or(1),
            image: None,
            resources: None,
            suspend: false,
        },
    );
    agent.metadata = ObjectMeta { name: Some(name.to_owned()), ..ObjectMeta::default() };
    agent
}

fn validate(request: &DeployRequest) -> ApiResult<()> {
    let name = request.agent_name.trim();
    if name.is_empty() || name.chars().count() > 255 {
        return Err(AppError::BadRequest("agent_name must be 1 to 255 characters".into()));
    }
    if let Some(model) = &request.model
        && (model.trim().is_empty() || model.chars().count() > 100)
    {
        return Err(AppError::BadRequest("model must be 1 to 100 characters".into()));
    }
    crate::routes::check_printable("agent_name", &request.agent_name)?;
    if let Some(model) = &request.model {
        crate::routes::check_printable("model", model)?;
    }
    if let Some(config) = &request.config
        && !config.is_object()
    {
        return Err(AppError::BadRequest("config must be a JSON object".into()));
    }
    if let Some(replicas) = request.replicas
        && !(0..=MAX_REPLICAS).contains(&replicas)
    {
        return Err(AppError::BadRequest(format!("replicas must be between 0 and {MAX_REPLICAS}")));
    }
    Ok(())
}

/// `POST /api/customers/{customer_id}/agents/deploy`: `201` once the operator admitted the
/// agent. An agent over the customer's quota is not kept: its object is deleted and the
/// answer is `403 quota_exceeded`, naming the limit and the usage.
#[utoipa::path(post, path = "/api/customers/{customer_id}/agents/deploy", tag = "agents", params(("customer_id" = i64, Path, description = "The customer's id")),
    request_body = DeployRequest,
    responses((status = 201, body = AgentResponse), (status = 202, description = "Not admitted yet", body = AgentResponse),
        (status = 400, description = "Malformed request", body = ErrorBody), (status = 401, description = "No or invalid credentials", body = ErrorBody), (status = 403, description = "Over quota, or suspended", body = ErrorBody), (status = 404, description = "No such customer, or another customer's", body = ErrorBody), (status = 429, description = "Rate limit or API call quota", body = ErrorBody), (status = 503, description = "A dependency is unavailable", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn deploy(
    State(state): State<AppState>,
    caller: Caller,
    CustomerId(id): CustomerId,
    ApiJson(request): ApiJson<DeployRequest>,
) -> ApiResult<(StatusCode, Json<AgentResponse>)> {
    let customer = caller.customer(&state, id).await?;
    validate(&request)?;
    let namespace = customer_namespace(&customer.name);
    let api: Api<AgentDeployment> = Api::namespaced(state.client.clone(), &namespace);
    let name = object_name(&request.agent_name, &random_lowercase(8));
    api.patch(&name, &PatchParams::apply(FIELD_MANAGER), &Patch::Apply(&desired_agent(&name, &request))).await?;
    tracing::info!(customer_id = id, agent = %name, "agent deployment created");
    let deadline = tokio::time::Instant::now() + ADMISSION_WAIT;
    loop {
        let agent = api.get(&name).await?;
        let decided = agent.status.as_ref().and_then(|s| s.phase).filter(|p| *p != AgentPhase::Pending);
        if decided == Some(AgentPhase::QuotaExceeded) {
            let message = agent
                .status
                .as_ref()
                .and_then(|s| s.condition(types::READY))
                .map_or_else(|| "the customer's agent quota is used up".to_owned(), |c| c.message.clone());
            api.delete(&name, &DeleteParams::default()).await?;
            return Err(AppError::QuotaExceeded(message));
        }
        if decided.is_some() || tokio::time::Instant::now() >= deadline {
            let status = if decided.is_some() { StatusCode::CREATED } else { StatusCode::ACCEPTED };
            return Ok((status, Json(response(&agent))));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `GET /api/customers/{customer_id}/agents/status`.
#[utoipa::path(get, path = "/api/customers/{customer_id}/agents/status", tag = "agents", params(("customer_id" = i64, Path, description = "The customer's id")),
    responses((status = 200, body = AgentsStatus), (status = 401, description = "No or invalid credentials", body = ErrorBody), (status = 403, description = "Suspended customer, or not allowed", body = ErrorBody), (status = 404, description = "No such customer, or another customer's", body = ErrorBody), (status = 429, description = "Rate limit or API call quota", body = ErrorBody), (status = 503, description = "A dependency is unavailable", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn status(
    State(state): State<AppState>,
    caller: Caller,
    CustomerId(id): CustomerId,
) -> ApiResult<Json<AgentsStatus>> {
    let customer = caller.customer(&state, id).await?;
    let api: Api<AgentDeployment> = Api::namespaced(state.client.clone(), &customer_namespace(&customer.name));
    let mut agents: Vec<AgentDeployment> = api.list(&ListParams::default()).await?.items;
    agents.sort_by_key(|a| a.metadata.creation_timestamp.clone().map(|t| t.0));
    let agents: Vec<AgentResponse> = agents.iter().map(response).collect();
    Ok(Json(AgentsStatus { customer_id: id, total: agents.len(), agents }))
}

/// The answer to a termination.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Terminated {
    pub deployment_id: String,
    pub status: String,
    pub terminated_at: DateTime<Utc>,
}

/// `DELETE /api/customers/{customer_id}/agents/{deployment_id}`.
#[utoipa::path(delete, path = "/api/customers/{customer_id}/agents/{deployment_id}", tag = "agents",
    params(("customer_id" = i64, Path, description = "The customer's id"), ("deployment_id" = String, Path, description = "agent_<customerId>_<hex>")),
    responses((status = 200, body = Terminated), (status = 401, description = "No or invalid credentials", body = ErrorBody), (status = 403, description = "Suspended customer, or not allowed", body = ErrorBody), (status = 404, description = "No such customer, or another customer's", body = ErrorBody), (status = 429, description = "Rate limit or API call quota", body = ErrorBody), (status = 503, description = "A dependency is unavailable", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn terminate(
    State(state): State<AppState>,
    caller: Caller,
    CustomerId(id): CustomerId,
    ApiPath((_, deployment_id)): ApiPath<(String, String)>,
) -> ApiResult<Json<Terminated>> {
    let customer = caller.customer(&state, id).await?;
    if !is_deployment_id(&deployment_id) {
        return Err(AppError::NotFound("agent deployment"));
    }
    let api: Api<AgentDeployment> = Api::namespaced(state.client.clone(), &customer_namespace(&customer.name));
    let agents = api.list(&ListParams::default()).await?.items;
    let agent = agents
        .iter()
        .find(|a| a.status.as_ref().and_then(|s| s.deployment_id.as_deref()) == Some(deployment_id.as_str()))
        .ok_or(AppError::NotFound("agent deployment"))?;
    api.delete(&agent.name_any(), &DeleteParams::default()).await?;
    tracing::info!(customer_id = id, deployment_id = %deployment_id, "agent deployment terminated");
    Ok(Json(Terminated { deployment_id, status: "terminating".into(), terminated_at: Utc::now() }))
}

/// A usage report from a running agent. Every field is a delta since its last report.
#[derive(Clone, Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UsageRequest {
    #[serde(default)]
    pub tasks: i64,
    #[serde(default)]
    pub completed_tasks: i64,
    #[serde(default)]
    pub failed_tasks: i64,
    /// The sum of the reported tasks' latencies, in ms.
    #[serde(default)]
    pub total_latency_ms: f64,
    #[serde(default)]
    pub api_calls: i64,
    #[serde(default)]
    pub leads: i64,
    #[serde(default)]
    pub cost_usd: f64,
    #[serde(default)]
    pub tokens: i64,
}

/// Most of anything one report may add: a bound against a bug or a hostile agent flooding the
/// counters, far above what an agent does between reports.
const MAX_REPORTED: i64 = 1_000_000;
const MAX_REPORTED_COST_USD: f64 = 1_000.0;
/// A day per reported task at most.
const MAX_LATENCY_PER_TASK_MS: f64 = 86_400_000.0;
const MAX_REPORTED_TOKENS: i64 = 1_000_000_000;

fn validate_usage(usage: &UsageRequest) -> ApiResult<UsageReport> {
    let counts = [
        ("tasks", usage.tasks),
        ("completed_tasks", usage.completed_tasks),
        ("failed_tasks", usage.failed_tasks),
        ("api_calls", usage.api_calls),
        ("leads", usage.leads),
    ];
    for (field, value) in counts {
        if !(0..=MAX_REPORTED).contains(&value) {
            return Err(AppError::BadRequest(format!("{field} must be between 0 and {MAX_REPORTED}")));
        }
    }
    if usage.completed_tasks + usage.failed_tasks > usage.tasks {
        return Err(AppError::BadRequest("completed_tasks + failed_tasks must not exceed tasks".into()));
    }
    if !usage.cost_usd.is_finite() || !(0.0..=MAX_REPORTED_COST_USD).contains(&usage.cost_usd) {
        return Err(AppError::BadRequest(format!("cost_usd must be between 0 and {MAX_REPORTED_COST_USD}")));
    }
    let max_latency = MAX_LATENCY_PER_TASK_MS * usage.tasks as f64;
    if !usage.total_latency_ms.is_finite() || !(0.0..=max_latency).contains(&usage.total_latency_ms) {
        return Err(AppError::BadRequest(format!(
            "total_latency_ms must be between 0 and {MAX_LATENCY_PER_TASK_MS} per reported task"
        )));
    }
    if !(0..=MAX_REPORTED_TOKENS).contains(&usage.tokens) {
        return Err(AppError::BadRequest(format!("tokens must be between 0 and {MAX_REPORTED_TOKENS}")));
    }
    Ok(UsageReport {
        tasks: usage.tasks,
        completed_tasks: usage.completed_tasks,
        failed_tasks: usage.failed_tasks,
        total_latency_ms: usage.total_latency_ms,
        api_calls: usage.api_calls,
        leads: usage.leads,
        cost_usd: usage.cost_usd,
        tokens: usage.tokens,
    })
}

/// The answer to a usage report.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct UsageAccepted {
    pub deployment_id: String,
    pub customer_id: i64,
    pub recorded_at: DateTime<Utc>,
}

/// `POST /api/agents/{deployment_id}/usage`, with the customer's key (the agent's
/// `PROSPECTOR_API_KEY`).
#[utoipa::path(post, path = "/api/agents/{deployment_id}/usage", tag = "agents",
    params(("deployment_id" = String, Path, description = "agent_<customerId>_<hex>")),
    request_body = UsageRequest,
    responses((status = 202, body = UsageAccepted), (status = 400, description = "Malformed request", body = ErrorBody), (status = 401, description = "No or invalid credentials", body = ErrorBody), (status = 403, description = "Suspended customer, or not allowed", body = ErrorBody), (status = 404, description = "No such customer, or another customer's", body = ErrorBody), (status = 429, description = "Rate limit or API call quota", body = ErrorBody), (status = 503, description = "A dependency is unavailable", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn report_usage(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(deployment_id): ApiPath<String>,
    ApiJson(usage): ApiJson<UsageRequest>,
) -> ApiResult<(StatusCode, Json<UsageAccepted>)> {
    if !is_deployment_id(&deployment_id) {
        return Err(AppError::NotFound("agent deployment"));
    }
    let report = validate_usage(&usage)?;
    let owner = agents::deployment_customer(&state.pool, &deployment_id).await?;
    let customer_id = match (&caller, owner) {
        (Caller::Customer(key), Some(owner)) if key.customer_id == owner => owner,
        (Caller::Admin, Some(owner)) => owner,
        _ => return Err(AppError::NotFound("agent deployment")),
    };
    let today = Utc::now().date_naive();
    agents::record_usage(&state.pool, &deployment_id, &report, today)
        .await?
        .ok_or(AppError::NotFound("agent deployment"))?;
    Ok((StatusCode::ACCEPTED, Json(UsageAccepted { deployment_id, customer_id, recorded_at: Utc::now() })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_fit_the_agent_name_limit() {
        assert_eq!(object_name("Lead Qualifier Pro", "abcd1234"), "lead-qualifier-pro-abcd1234");
        assert_eq!(object_name("!!!", "abcd1234"), "agent-abcd1234");
        let long = object_name(&"Very Long Agent Name ".repeat(10), "abcd1234");
        assert!(long.len() <= MAX_NAME_LENGTH, "{long}");
        assert!(!long.contains("--") && !long.starts_with('-'));
    }

    #[test]
    fn the_seed_request_maps_to_the_spec() {
        let request: DeployRequest = serde_json::from_value(serde_json::json!({
            "agent_name": "Lead Qualifier", "agent_type": "lead_qualifier", "model": "llama3.1-8b"
        }))
        .unwrap();
        validate(&request).unwrap();
        let agent = desired_agent("lead-qualifier-x", &request);
        assert_eq!(agent.spec.agent_type, AgentType::LeadQualifier);
        assert_eq!((agent.spec.replicas, agent.spec.model.as_str()), (1, "llama3.1-8b"));
        let bad: Result<DeployRequest, _> =
            serde_json::from_value(serde_json::json!({"agent_name": "x", "agent_type": "wizard"}));
        assert!(bad.is_err(), "unknown agent types are refused");
    }

    #[test]
    fn usage_reports_are_bounded() {
        let ok = UsageRequest { tasks: 3, completed_tasks: 2, failed_tasks: 1, cost_usd: 0.5, ..Default::default() };
        assert!(validate_usage(&ok).is_ok());
        for bad in [
            UsageRequest { tasks: -1, ..Default::default() },
            UsageRequest { tasks: 1, completed_tasks: 2, ..Default::default() },
            UsageRequest { cost_usd: f64::NAN, ..Default::default() },
            UsageRequest { cost_usd: -1.0, ..Default::default() },
            UsageRequest { api_calls: MAX_REPORTED + 1, ..Default::default() },
            UsageRequest { tokens: -5, ..Default::default() },
            UsageRequest { tasks: 1, total_latency_ms: 1e300, ..Default::default() },
            UsageRequest { total_latency_ms: 5.0, ..Default::default() },
            UsageRequest { cost_usd: 5_000.0, ..Default::default() },
        ] {
            assert!(validate_usage(&bad).is_err(), "{bad:?}");
        }
    }
}
