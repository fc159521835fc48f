-- Prospector schema, part 8: vector search indexes per tenant instead of one global index.
--
-- Every search names one customer. Under that filter the global HNSW index of part 4 loses
-- recall badly for large tenants and for queries off their topics (the index walks the global
-- graph and finds mostly other tenants' rows; docs/benchmarks.md, "Tenant-filtered search"),
-- and small tenants are searched exactly through document_chunks_customer_id_idx anyway. So no
-- search uses it, while every chunk written pays for inserting into a graph of all tenants'
-- rows. It goes.
--
-- In its place the operator keeps one partial HNSW index per large tenant,
--     CREATE INDEX CONCURRENTLY document_chunks_tenant_<customer id>_hnsw ON document_chunks
--         USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)
--         WHERE customer_id = <customer id>
-- built when the tenant's chunk count crosses a threshold and dropped (concurrently) when it
-- falls well below it or the customer goes. These indexes are not created by a migration: which
-- tenants have one is data, and the catalog (pg_index.indisvalid) is the only record of it, so it
-- cannot drift from what the planner sees. Search (store::search) uses the index when a valid
-- one exists, with the customer id as a literal so the planner can match the index predicate,
-- and scans exactly otherwise.
DROP INDEX IF EXISTS document_chunks_embedding_hnsw_idx;

COMMENT ON COLUMN document_chunks.embedding IS
    'L2-normalised, mean-pooled sentence embedding (cosine distance <=>). Searched exactly per tenant, or through the tenant''s '
    'partial HNSW index document_chunks_tenant_<customer_id>_hnsw once the operator has built one (migration 0008).';
