-- Prospector schema, part 1: extensions and helpers shared by every later migration.
--
-- Conventions used in all migrations (read these once):
--   * Kubernetes holds desired state (spec); Postgres holds ids, counters, key hashes, content,
--     vectors and the embedding queue (DESIGN.md "Postgres").
--   * Rows that mirror a custom resource carry `k8s_uid uuid UNIQUE NOT NULL`, the object's
--     metadata.uid. Every write that mirrors a CR is `INSERT ... ON CONFLICT (k8s_uid) DO UPDATE`,
--     so a crashed reconcile replays cleanly. (Identity values are drawn even when the upsert ends
--     in the UPDATE branch, so ids have gaps; nothing may assume they are dense.)
--   * Surrogate keys are `bigint GENERATED ALWAYS AS IDENTITY`: the application never picks ids.
--     A restore tool that must re-create a row with a known id (e.g. from Customer.status.customerId)
--     uses INSERT ... OVERRIDING SYSTEM VALUE and then setval()s the sequence.
--   * Timestamps are timestamptz; calendar days (usage_daily.day) are UTC days.
--   * Tenants are never hard-deleted: `deleted_at`/`terminated_at` mark soft deletion, kept for
--     billing. Content (blobs, chunks, vectors) is hard-deleted.
--   * Every migration runs in one transaction (sqlx default); none may use CONCURRENTLY.

-- pgvector provides the `vector` type and the HNSW access method (0.8+ for iterative index scans).
-- pgvector is not a "trusted" extension: the role running migrations must be a superuser, or a DBA
-- creates the extension beforehand, in which case IF NOT EXISTS makes this a no-op.
CREATE EXTENSION IF NOT EXISTS vector;

-- Generic BEFORE UPDATE trigger function: keeps `updated_at` truthful without every statement in
-- store/ having to remember it. now() is the transaction start time, which is what we want: all
-- rows touched by one reconcile share one timestamp.
CREATE FUNCTION set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

COMMENT ON FUNCTION set_updated_at() IS
    'BEFORE UPDATE row trigger: sets NEW.updated_at = now() so no statement has to remember it.';
