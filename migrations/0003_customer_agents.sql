-- Prospector schema, part 3: agent deployments (one row per AgentDeployment object).

CREATE TABLE customer_agents (
    -- AgentDeployment.status.agentId
    id                      bigint        GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    k8s_uid                 uuid          NOT NULL,
    -- RESTRICT: agents are terminated (soft) and customers soft-deleted; rows are billing history
    customer_id             bigint        NOT NULL REFERENCES customers (id) ON DELETE RESTRICT,
    namespace               text          NOT NULL,
    name                    text          NOT NULL,
    agent_name              text          NOT NULL,
    agent_type              text          NOT NULL,
    agent_role              text,
    deployment_id           text          NOT NULL,
    status                  text          NOT NULL DEFAULT 'pending',
    config                  jsonb         NOT NULL DEFAULT '{}'::jsonb,
    model                   text,
    replicas                integer       NOT NULL DEFAULT 1,
    admitted                boolean       NOT NULL DEFAULT false,
    quota_reserved_replicas integer       NOT NULL DEFAULT 0,

    -- performance, accumulated from the usage agents report
    total_tasks             bigint        NOT NULL DEFAULT 0,
    completed_tasks         bigint        NOT NULL DEFAULT 0,
    failed_tasks            bigint        NOT NULL DEFAULT 0,
    average_latency_ms      double precision,
    total_api_calls         bigint        NOT NULL DEFAULT 0,
    total_cost_usd          numeric(14,6) NOT NULL DEFAULT 0,

    created_at              timestamptz   NOT NULL DEFAULT now(),
    updated_at              timestamptz   NOT NULL DEFAULT now(),
    deployed_at             timestamptz,
    last_active_at          timestamptz,
    terminated_at           timestamptz,

    -- one row per AgentDeployment object; the key of every idempotent upsert
    CONSTRAINT customer_agents_k8s_uid_key UNIQUE (k8s_uid),
    -- public id used by REST paths and by agents reporting usage
    CONSTRAINT customer_agents_deployment_id_key UNIQUE (deployment_id),
    -- seed form agent_<customerId>_<8 hex>, and the embedded id must be this row's customer
    CONSTRAINT customer_agents_deployment_id_check CHECK (
        deployment_id ~ '^agent_[0-9]+_[0-9a-f]{8}$'
        AND split_part(deployment_id, '_', 2) = customer_id::text),
    -- the agent catalog's types (spec.agentType enum)
    CONSTRAINT customer_agents_agent_type_check CHECK (agent_type IN
        ('lead_qualifier', 'lead_researcher', 'outreach_writer', 'meeting_scheduler', 'custom')),
    -- status.phase in snake_case, plus 'terminated' for finished rows kept for billing
    CONSTRAINT customer_agents_status_check CHECK (status IN
        ('pending', 'deployed', 'running', 'suspended', 'quota_exceeded', 'failed', 'terminating', 'terminated')),
    -- status 'terminated' and terminated_at are set together
    CONSTRAINT customer_agents_terminated_consistent CHECK ((status = 'terminated') = (terminated_at IS NOT NULL)),
    CONSTRAINT customer_agents_config_object CHECK (jsonb_typeof(config) = 'object'),
    -- spec.replicas bound (same as the CRD schema)
    CONSTRAINT customer_agents_replicas_check CHECK (replicas BETWEEN 0 AND 100),
    CONSTRAINT customer_agents_reserved_replicas_check CHECK (quota_reserved_replicas BETWEEN 0 AND 100),
    -- only an admitted agent can hold replicas in customer_quotas.active_replicas
    CONSTRAINT customer_agents_reserved_needs_admitted CHECK (admitted OR quota_reserved_replicas = 0),
    -- a terminated agent holds no quota: termination and release happen in the same statement
    CONSTRAINT customer_agents_terminated_released CHECK (
        terminated_at IS NULL OR (NOT admitted AND quota_reserved_replicas = 0)),
    CONSTRAINT customer_agents_performance_nonneg CHECK (
        total_tasks >= 0 AND completed_tasks >= 0 AND failed_tasks >= 0
        AND total_api_calls >= 0 AND total_cost_usd >= 0
        AND (average_latency_ms IS NULL OR average_latency_ms >= 0))
);

-- All agents of a customer (REST listing, the customer_id foreign key, customer deletion).
CREATE INDEX customer_agents_customer_id_idx ON customer_agents (customer_id);
-- Live agents of a customer in creation order: "admit waiting deployments oldest first" and
-- status listings. id breaks ties between equal creation timestamps.
CREATE INDEX customer_agents_customer_live_created_idx
    ON customer_agents (customer_id, created_at, id) WHERE terminated_at IS NULL;

CREATE TRIGGER customer_agents_set_updated_at BEFORE UPDATE ON customer_agents
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

COMMENT ON TABLE customer_agents IS
    'One row per AgentDeployment object (upserted by k8s_uid): identity, admission state and accumulated performance. '
    'Spec fields are mirrored for the REST API; Kubernetes remains the source of desired state. Terminated rows are kept for billing.';
COMMENT ON COLUMN customer_agents.id IS 'AgentDeployment.status.agentId (PROSPECTOR_AGENT_ID); the seed''s agent_id.';
COMMENT ON COLUMN customer_agents.k8s_uid IS 'metadata.uid of the AgentDeployment object.';
COMMENT ON COLUMN customer_agents.namespace IS 'Namespace of the AgentDeployment: the customer''s cust-<name> namespace.';
COMMENT ON COLUMN customer_agents.name IS 'metadata.name of the AgentDeployment; with namespace, how the operator finds the object from a row.';
COMMENT ON COLUMN customer_agents.agent_type IS 'spec.agentType; maps to an image through the operator''s agent catalog.';
COMMENT ON COLUMN customer_agents.config IS 'spec.config (free-form object), mirrored for the REST API; the agent receives it through its ConfigMap.';
COMMENT ON COLUMN customer_agents.model IS 'spec.model, e.g. llama3.1-8b (PROSPECTOR_MODEL).';
COMMENT ON COLUMN customer_agents.agent_role IS 'Optional free-form role label carried over from the seed.';
COMMENT ON COLUMN customer_agents.deployment_id IS
    'Public id agent_<customerId>_<8 hex> (status.deploymentId, PROSPECTOR_DEPLOYMENT_ID); used in REST paths and usage reports.';
COMMENT ON COLUMN customer_agents.status IS
    'status.phase in snake_case (pending, deployed, running, suspended, quota_exceeded, failed, terminating), or terminated once released.';
COMMENT ON COLUMN customer_agents.replicas IS 'spec.replicas as last reconciled (desired; the admitted amount is quota_reserved_replicas).';
COMMENT ON COLUMN customer_agents.admitted IS
    'True while this agent holds one unit of customer_quotas.active_agents_count. Flipped only in the same statement that changes the counter, '
    'so releasing is exact and idempotent (releasing a non-admitted agent subtracts 0).';
COMMENT ON COLUMN customer_agents.quota_reserved_replicas IS
    'How many replicas this agent currently holds in customer_quotas.active_replicas (0 while suspended or cost-capped). '
    'Changed only in the same statement that changes the counter, by the difference, so release is exact and idempotent.';
COMMENT ON COLUMN customer_agents.average_latency_ms IS
    'Running mean task latency; updated atomically as (avg * total_tasks + sum_new) / (total_tasks + n_new). NULL until the first report.';
COMMENT ON COLUMN customer_agents.total_cost_usd IS 'Lifetime cost reported by this agent (per-day, per-customer cost is in usage_daily).';
COMMENT ON COLUMN customer_agents.created_at IS
    'Admission order: set from metadata.creationTimestamp on first insert (defaults to now()), never updated.';
COMMENT ON COLUMN customer_agents.deployed_at IS 'When the Kubernetes Deployment was first created (status.deployedAt); NULL while waiting for quota.';
COMMENT ON COLUMN customer_agents.last_active_at IS 'Time of the last usage report from this agent.';
COMMENT ON COLUMN customer_agents.terminated_at IS 'Soft-delete time: set, together with status = terminated, when the quota is released on deletion.';
