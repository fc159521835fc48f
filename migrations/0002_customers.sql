-- Prospector schema, part 2: tenants, their API keys, their quota snapshot + counters, and daily usage.

-- ---------------------------------------------------------------------------------------------
-- customers
-- ---------------------------------------------------------------------------------------------
CREATE TABLE customers (
    -- Customer.status.customerId; appears in REST paths and in deployment ids (agent_<id>_<hex>).
    id                bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    k8s_uid           uuid        NOT NULL,
    name              text        NOT NULL,
    company_name      text        NOT NULL,
    email             text        NOT NULL,
    subscription_tier text        NOT NULL,
    status            text        NOT NULL DEFAULT 'active',
    contact_name      text,
    contact_title     text,
    company_website   text,
    company_size      text,
    industry          text,
    settings          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    deleted_at        timestamptz,

    -- one row per Customer object; the key of every idempotent upsert
    CONSTRAINT customers_k8s_uid_key UNIQUE (k8s_uid),
    -- lifecycle states; 'suspended' mirrors spec.suspended
    CONSTRAINT customers_status_check CHECK (status IN ('active', 'suspended', 'deleted')),
    -- status 'deleted' and deleted_at are set together, never one without the other
    CONSTRAINT customers_deleted_consistent CHECK ((status = 'deleted') = (deleted_at IS NOT NULL)),
    -- cheap sanity check only; the CRD schema does the real validation
    CONSTRAINT customers_email_check CHECK (email ~ '^[^@[:space:]]+@[^@[:space:]]+$'),
    CONSTRAINT customers_company_name_check CHECK (btrim(company_name) <> ''),
    CONSTRAINT customers_subscription_tier_check CHECK (subscription_tier <> ''),
    CONSTRAINT customers_settings_object CHECK (jsonb_typeof(settings) = 'object')
);

-- One live account per email (case-insensitive). Soft-deleted customers keep their row for
-- billing and must not block the same email from registering again.
CREATE UNIQUE INDEX customers_email_live_key ON customers (lower(email)) WHERE deleted_at IS NULL;

CREATE TRIGGER customers_set_updated_at BEFORE UPDATE ON customers
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

COMMENT ON TABLE customers IS
    'One row per Customer custom resource (tenant). Written only by the operator, upserted by k8s_uid. '
    'Never hard-deleted: deleting a Customer sets status=deleted/deleted_at and the row stays for billing; '
    'its content (blobs, chunks, vectors) is hard-deleted.';
COMMENT ON COLUMN customers.id IS
    'Integer customer id allocated by Postgres and published as Customer.status.customerId; the customer_id of the REST API.';
COMMENT ON COLUMN customers.k8s_uid IS
    'metadata.uid of the Customer object. A re-created Customer with the same name has a new UID and therefore a new row and id.';
COMMENT ON COLUMN customers.name IS
    'metadata.name of the (cluster-scoped) Customer; the namespace is cust-<name>. Kubernetes guarantees uniqueness among live objects.';
COMMENT ON COLUMN customers.subscription_tier IS
    'Name of the Tier object (spec.tier). Tiers live in Kubernetes, so there is no foreign key; the limits in force are snapshotted in customer_quotas.';
COMMENT ON COLUMN customers.status IS
    'active | suspended (spec.suspended) | deleted (soft-deleted, kept for billing).';
COMMENT ON COLUMN customers.settings IS
    'Free-form per-customer settings object carried over from the seed; never used for limits (those are in customer_quotas).';
COMMENT ON COLUMN customers.email IS
    'spec.email (required). Unique, case-insensitively, among customers that are not soft-deleted (customers_email_live_key).';
COMMENT ON COLUMN customers.company_size IS 'spec.companySize, free text as in the seed (not the ICP size vocabulary).';
COMMENT ON COLUMN customers.deleted_at IS
    'Soft-delete time. Set together with status = deleted; frees the email for re-registration.';

-- ---------------------------------------------------------------------------------------------
-- api_keys
-- ---------------------------------------------------------------------------------------------
CREATE TABLE api_keys (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- RESTRICT: customers are soft-deleted, so a hard delete with keys left is a bug, not a cascade
    customer_id  bigint      NOT NULL REFERENCES customers (id) ON DELETE RESTRICT,
    key_prefix   text        NOT NULL,
    key_sha256   bytea       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz,
    last_used_at timestamptz,

    -- lookup key for authentication; also makes "insert the hash again" an idempotent no-op
    CONSTRAINT api_keys_key_sha256_key UNIQUE (key_sha256),
    -- a SHA-256 digest is exactly 32 bytes (not hex text)
    CONSTRAINT api_keys_key_sha256_len CHECK (octet_length(key_sha256) = 32),
    -- 'sa_' + the first few base62 characters of the key; never enough to guess the key
    CONSTRAINT api_keys_key_prefix_check CHECK (key_prefix ~ '^sa_[0-9A-Za-z]{4,16}$'),
    CONSTRAINT api_keys_revoked_after_created CHECK (revoked_at IS NULL OR revoked_at >= created_at)
);

-- Active keys of one customer (rotation, revocation on customer delete). Revoked keys are only
-- read for audit, and customers are never hard-deleted, so no full customer_id index is needed.
CREATE INDEX api_keys_customer_active_idx ON api_keys (customer_id) WHERE revoked_at IS NULL;

COMMENT ON TABLE api_keys IS
    'API keys (Authorization: Bearer sa_...). Only a prefix and the SHA-256 of the key are stored; the key itself exists '
    'only in the Secret prospector-api-key and in the one REST response that creates it. Replaces the seed''s customers.api_key/api_key_hash.';
COMMENT ON COLUMN api_keys.key_prefix IS
    'First characters of the key (e.g. sa_AbCd1234), shown to people so they can tell keys apart; not secret, not unique, not used for auth.';
COMMENT ON COLUMN api_keys.key_sha256 IS
    'SHA-256 of the full key string (32 raw bytes). Keys carry 32 random bytes, so an unsalted fast hash is safe, and an equality lookup on '
    'this column is the whole authentication check (no secret comparison in application code).';
COMMENT ON COLUMN api_keys.revoked_at IS
    'Set on rotation or customer deletion; a key with revoked_at set never authenticates. Rows are kept for audit.';
COMMENT ON COLUMN api_keys.last_used_at IS
    'Approximate last use, for people auditing keys. Written at most about once a minute per key (e.g. with the usage flush), not per request.';

-- ---------------------------------------------------------------------------------------------
-- customer_quotas
-- ---------------------------------------------------------------------------------------------
CREATE TABLE customer_quotas (
    -- one row per customer; RESTRICT because customers are soft-deleted and the row is billing history
    customer_id              bigint        PRIMARY KEY REFERENCES customers (id) ON DELETE RESTRICT,

    -- limits snapshot: Tier values with spec.quotaOverrides applied, rewritten by every Customer reconcile
    max_api_calls_per_day    bigint        NOT NULL,
    max_api_calls_per_month  bigint        NOT NULL,
    rate_limit_per_second    integer       NOT NULL,
    rate_limit_per_minute    integer       NOT NULL,
    max_agents               integer       NOT NULL,
    max_concurrent_agents    integer       NOT NULL,
    max_storage_bytes        bigint        NOT NULL,
    max_documents            integer       NOT NULL,
    max_leads_per_month      bigint        NOT NULL,
    max_cost_per_month_usd   numeric(12,4) NOT NULL,

    -- live counters, changed only by the conditional UPDATEs in store/ (see the table comment)
    active_agents_count      integer       NOT NULL DEFAULT 0,
    active_replicas          integer       NOT NULL DEFAULT 0,
    documents_count          integer       NOT NULL DEFAULT 0,
    storage_used_bytes       bigint        NOT NULL DEFAULT 0,

    created_at               timestamptz   NOT NULL DEFAULT now(),
    updated_at               timestamptz   NOT NULL DEFAULT now(),

    -- limits are non-negative (0 means "none allowed", there is no "unlimited" value)
    CONSTRAINT customer_quotas_limits_nonneg CHECK (
        max_api_calls_per_day >= 0 AND max_api_calls_per_month >= 0
        AND rate_limit_per_second >= 0 AND rate_limit_per_minute >= 0
        AND max_agents >= 0 AND max_concurrent_agents >= 0
        AND max_storage_bytes >= 0 AND max_documents >= 0
        AND max_leads_per_month >= 0 AND max_cost_per_month_usd >= 0),
    -- counters can never go negative: a double release fails loudly instead of minting quota
    CONSTRAINT customer_quotas_counters_nonneg CHECK (
        active_agents_count >= 0 AND active_replicas >= 0
        AND documents_count >= 0 AND storage_used_bytes >= 0)
    -- Deliberately NO "counter <= limit" CHECK: a tier downgrade must be able to store a limit
    -- below current usage. customer_quotas_guard() (below) enforces "a counter may not GROW past
    -- its limit" instead, which is the invariant that matters.
);

CREATE TRIGGER customer_quotas_set_updated_at BEFORE UPDATE ON customer_quotas
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

COMMENT ON TABLE customer_quotas IS $c$
Per-customer limits snapshot (Tier + spec.quotaOverrides, rewritten by the operator on every Customer
reconcile) and the live counters that admission decisions change. Daily/monthly API calls, leads and
cost are not counted here: they are SUMs over usage_daily, so there are no reset jobs.

WHY OVER-ADMISSION IS IMPOSSIBLE, EVEN UNDER RACES. Every reservation is ONE statement of the form
    UPDATE customer_quotas SET c = c + n WHERE customer_id = $1 AND c + n <= max_c RETURNING ...
(zero rows returned = quota exceeded; never read-then-write in Rust). An UPDATE takes the row's
exclusive tuple lock before writing. A second transaction updating the same row blocks on that lock
until the first commits or aborts. Under READ COMMITTED it then re-reads the newest committed
version of the row and RE-EVALUATES the WHERE clause against it (EvalPlanQual), so it sees the
first reservation and refuses if the two together would exceed the limit. Under REPEATABLE READ or
SERIALIZABLE it fails with serialization_failure (40001) instead and must retry. Either way the
check and the increment are a single atomic step on the latest row version, so two deploys at the
limit, or two uploads at the storage cap, cannot both succeed. Releases are the mirror image
(c = c - held) and the amount held is recorded on the owning row (customer_agents.quota_reserved_replicas,
knowledge_documents.storage_reserved_bytes, ...), changed in the same statement, so a release is exact
and a repeated release subtracts 0.

As a safety net the BEFORE trigger customer_quotas_guard rejects any UPDATE that would make a counter
grow past its limit (SQLSTATE 23514), so a statement that forgot its WHERE clause fails loudly. It
allows limits to be lowered below usage (tier downgrade) and counters to shrink while above the limit.
BEFORE ROW triggers see the same re-read latest row version as the WHERE recheck, so the guard is race-proof too.
$c$;
COMMENT ON COLUMN customer_quotas.max_api_calls_per_day IS 'Limit on SUM(usage_daily.api_calls) for the current UTC day.';
COMMENT ON COLUMN customer_quotas.max_api_calls_per_month IS 'Limit on SUM(usage_daily.api_calls) for the current UTC calendar month.';
COMMENT ON COLUMN customer_quotas.rate_limit_per_second IS 'Per-customer request rate enforced in memory by each apiserver replica (bounded over-admission across replicas).';
COMMENT ON COLUMN customer_quotas.rate_limit_per_minute IS 'As rate_limit_per_second, per minute.';
COMMENT ON COLUMN customer_quotas.max_agents IS 'Maximum admitted (non-terminated) AgentDeployments; compared with active_agents_count.';
COMMENT ON COLUMN customer_quotas.max_concurrent_agents IS 'Maximum summed replicas of admitted agents; compared with active_replicas.';
COMMENT ON COLUMN customer_quotas.max_storage_bytes IS 'Storage limit in bytes (the seed used MB); compared with storage_used_bytes.';
COMMENT ON COLUMN customer_quotas.max_leads_per_month IS 'Limit on SUM(usage_daily.leads) for the current UTC month.';
COMMENT ON COLUMN customer_quotas.max_cost_per_month_usd IS 'Cost cap: when SUM(usage_daily.cost_usd) for the month reaches it, agents scale to 0 (CostCapExceeded) and no replicas are admitted.';
COMMENT ON COLUMN customer_quotas.active_agents_count IS 'Number of customer_agents rows with admitted = true. Changed only together with that flag.';
COMMENT ON COLUMN customer_quotas.active_replicas IS 'SUM(customer_agents.quota_reserved_replicas). Changed only together with that column.';
COMMENT ON COLUMN customer_quotas.documents_count IS 'Number of knowledge_documents rows with quota_reserved = true. Changed only together with that flag.';
COMMENT ON COLUMN customer_quotas.storage_used_bytes IS 'SUM(knowledge_documents.storage_reserved_bytes): the logical size of every live document, counted per document even when blobs are deduplicated.';

-- Safety net for the reservation statements: a counter may not grow past its limit.
CREATE FUNCTION customer_quotas_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    old_agents   integer := 0;
    old_replicas integer := 0;
    old_docs     integer := 0;
    old_storage  bigint  := 0;
BEGIN
    IF TG_OP = 'UPDATE' THEN
        old_agents   := OLD.active_agents_count;
        old_replicas := OLD.active_replicas;
        old_docs     := OLD.documents_count;
        old_storage  := OLD.storage_used_bytes;
    END IF;
    IF NEW.active_agents_count > NEW.max_agents AND NEW.active_agents_count > old_agents THEN
        RAISE EXCEPTION 'customer %: active_agents_count % would exceed max_agents %',
            NEW.customer_id, NEW.active_agents_count, NEW.max_agents
            USING ERRCODE = 'check_violation', TABLE = 'customer_quotas',
                  CONSTRAINT = 'customer_quotas_agents_within_limit';
    END IF;
    IF NEW.active_replicas > NEW.max_concurrent_agents AND NEW.active_replicas > old_replicas THEN
        RAISE EXCEPTION 'customer %: active_replicas % would exceed max_concurrent_agents %',
            NEW.customer_id, NEW.active_replicas, NEW.max_concurrent_agents
            USING ERRCODE = 'check_violation', TABLE = 'customer_quotas',
                  CONSTRAINT = 'customer_quotas_replicas_within_limit';
    END IF;
    IF NEW.documents_count > NEW.max_documents AND NEW.documents_count > old_docs THEN
        RAISE EXCEPTION 'customer %: documents_count % would exceed max_documents %',
            NEW.customer_id, NEW.documents_count, NEW.max_documents
            USING ERRCODE = 'check_violation', TABLE = 'customer_quotas',
                  CONSTRAINT = 'customer_quotas_documents_within_limit';
    END IF;
    IF NEW.storage_used_bytes > NEW.max_storage_bytes AND NEW.storage_used_bytes > old_storage THEN
        RAISE EXCEPTION 'customer %: storage_used_bytes % would exceed max_storage_bytes %',
            NEW.customer_id, NEW.storage_used_bytes, NEW.max_storage_bytes
            USING ERRCODE = 'check_violation', TABLE = 'customer_quotas',
                  CONSTRAINT = 'customer_quotas_storage_within_limit';
    END IF;
    RETURN NEW;
END;
$$;

COMMENT ON FUNCTION customer_quotas_guard() IS
    'BEFORE INSERT/UPDATE guard on customer_quotas: raises check_violation (23514) when a counter would grow past its limit. '
    'Unlike a CHECK constraint it lets a limit drop below current usage (tier downgrade) and lets counters shrink while above it.';

CREATE TRIGGER customer_quotas_guard BEFORE INSERT OR UPDATE ON customer_quotas
    FOR EACH ROW EXECUTE FUNCTION customer_quotas_guard();

-- ---------------------------------------------------------------------------------------------
-- usage_daily
-- ---------------------------------------------------------------------------------------------
CREATE TABLE usage_daily (
    -- RESTRICT: usage is billing history; customers are soft-deleted
    customer_id bigint        NOT NULL REFERENCES customers (id) ON DELETE RESTRICT,
    day         date          NOT NULL,
    api_calls   bigint        NOT NULL DEFAULT 0,
    leads       bigint        NOT NULL DEFAULT 0,
    cost_usd    numeric(14,6) NOT NULL DEFAULT 0,
    tokens      bigint        NOT NULL DEFAULT 0,

    -- one row per customer per UTC day; flushes are INSERT ... ON CONFLICT DO UPDATE SET x = x + EXCLUDED.x.
    -- The PK also serves "this month" range scans: WHERE customer_id = $1 AND day >= <first of month>.
    PRIMARY KEY (customer_id, day),
    -- usage only accumulates
    CONSTRAINT usage_daily_nonneg CHECK (api_calls >= 0 AND leads >= 0 AND cost_usd >= 0 AND tokens >= 0)
);

COMMENT ON TABLE usage_daily IS
    'Per-customer, per-UTC-day usage counters. Daily counts are the row for today; monthly counts are SUM over the month''s rows, '
    'so nothing is ever reset. Apiserver replicas count in memory and add their deltas here at least every second.';
COMMENT ON COLUMN usage_daily.day IS 'UTC calendar day: (now() AT TIME ZONE ''UTC'')::date. Months are UTC calendar months.';
COMMENT ON COLUMN usage_daily.api_calls IS 'Authenticated API requests counted against max_api_calls_per_day/month.';
COMMENT ON COLUMN usage_daily.leads IS 'Leads reported by agents (POST /api/agents/{deployment_id}/usage), against max_leads_per_month.';
COMMENT ON COLUMN usage_daily.cost_usd IS 'Cost reported by agents; the month''s SUM is compared with max_cost_per_month_usd (cost cap).';
COMMENT ON COLUMN usage_daily.tokens IS 'Model tokens reported by agents; informational/billing.';
