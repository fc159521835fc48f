-- Prospector schema, part 4: the knowledge base. Uploaded bytes (document_blobs), one row per
-- KnowledgeDocument (knowledge_documents) and its embedded chunks (document_chunks).

-- ---------------------------------------------------------------------------------------------
-- document_blobs
-- ---------------------------------------------------------------------------------------------
CREATE TABLE document_blobs (
    -- RESTRICT: blobs are hard-deleted explicitly when their customer is deleted, never by cascade
    customer_id  bigint      NOT NULL REFERENCES customers (id) ON DELETE RESTRICT,
    sha256       bytea       NOT NULL,
    content      bytea       NOT NULL,
    size         bigint      NOT NULL,
    content_type text,
    created_at   timestamptz NOT NULL DEFAULT now(),

    -- deduplicated PER CUSTOMER: the same bytes uploaded by two customers are two rows, so no
    -- customer can learn (by a dedup hit, timing or quota) what another customer has uploaded
    PRIMARY KEY (customer_id, sha256),
    -- raw 32-byte digest, not hex
    CONSTRAINT document_blobs_sha256_len CHECK (octet_length(sha256) = 32),
    -- the key really is the content's hash: a wrong hash from the uploader would otherwise make
    -- dedup hand one document another document's bytes (costs one hash pass per upload)
    CONSTRAINT document_blobs_sha256_matches CHECK (sha256 = sha256(content)),
    -- size is stored so quota/listing never detoasts content
    CONSTRAINT document_blobs_size_matches CHECK (size = octet_length(content))
);

COMMENT ON TABLE document_blobs IS $c$
Uploaded document bytes (replaces Firebase Storage), immutable, deduplicated per customer by SHA-256.
Written with INSERT ... ON CONFLICT (customer_id, sha256) DO NOTHING.

Reference counting: there is no ref_count column. knowledge_documents (customer_id, blob_sha256) has a
foreign key to this table with ON DELETE RESTRICT, so the database itself refuses to delete a blob
that a document still references; "delete the blob if unreferenced" is
    DELETE FROM document_blobs b WHERE b.customer_id = $1 AND b.sha256 = $2
      AND NOT EXISTS (SELECT 1 FROM knowledge_documents d WHERE d.customer_id = $1 AND d.blob_sha256 = $2)
and if a concurrent transaction adds a reference in between, the FK check makes the DELETE fail
(23503) instead of losing data: treat that error as "still referenced". A counter would need the same
care on every insert/delete and could drift; the FK cannot.
Blobs are briefly unreferenced between the upload and the reconcile that inserts the document row,
so a periodic sweep for orphans must only take blobs older than a grace period (created_at).
$c$;
COMMENT ON COLUMN document_blobs.sha256 IS 'SHA-256 of content (32 raw bytes); KnowledgeDocument spec.source.blob.sha256 in hex.';
COMMENT ON COLUMN document_blobs.size IS 'octet_length(content), stored so quota and listings never read the bytes.';
COMMENT ON COLUMN document_blobs.content_type IS 'Type sniffed from magic bytes at upload (not the client-supplied one).';
COMMENT ON COLUMN document_blobs.created_at IS 'Upload time; orphan sweeps only remove unreferenced blobs older than a grace period.';

-- ---------------------------------------------------------------------------------------------
-- knowledge_documents
-- ---------------------------------------------------------------------------------------------
CREATE TABLE knowledge_documents (
    id                     bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    document_id            text        NOT NULL,
    k8s_uid                uuid        NOT NULL,
    -- RESTRICT: customers are soft-deleted; document rows are kept (soft-deleted) for billing
    customer_id            bigint      NOT NULL REFERENCES customers (id) ON DELETE RESTRICT,
    namespace              text        NOT NULL,
    name                   text        NOT NULL,
    filename               text        NOT NULL,
    content_type           text,
    file_size              bigint,
    blob_sha256            bytea,
    source_kind            text        NOT NULL,
    extracted_text         text,
    text_length            integer,
    chunk_count            integer,
    embedding_model        text,
    target_industries      jsonb       NOT NULL DEFAULT '[]'::jsonb,
    company_sizes          jsonb       NOT NULL DEFAULT '[]'::jsonb,
    decision_makers        jsonb       NOT NULL DEFAULT '[]'::jsonb,
    target_regions         jsonb       NOT NULL DEFAULT '[]'::jsonb,
    icp_data               jsonb,
    icp_extracted_at       timestamptz,
    tags                   jsonb       NOT NULL DEFAULT '[]'::jsonb,
    processing_status      text        NOT NULL DEFAULT 'pending',
    processing_error       text,
    attempts               integer     NOT NULL DEFAULT 0,
    quota_reserved         boolean     NOT NULL DEFAULT false,
    storage_reserved_bytes bigint      NOT NULL DEFAULT 0,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    deleted_at             timestamptz,

    -- public id (status.documentId) used by REST paths and in NOTIFY payloads
    CONSTRAINT knowledge_documents_document_id_key UNIQUE (document_id),
    CONSTRAINT knowledge_documents_document_id_check CHECK (document_id ~ '^doc_[0-9a-f]{8,64}$'),
    -- one row per KnowledgeDocument object; the key of every idempotent upsert
    CONSTRAINT knowledge_documents_k8s_uid_key UNIQUE (k8s_uid),
    -- target of the composite foreign keys from document_chunks and embedding_tasks, which makes
    -- "a chunk/task belongs to the same customer as its document" a database invariant
    CONSTRAINT knowledge_documents_customer_id_id_key UNIQUE (customer_id, id),
    -- the blob must belong to the same customer; RESTRICT so a referenced blob can never be deleted
    CONSTRAINT knowledge_documents_blob_fk FOREIGN KEY (customer_id, blob_sha256)
        REFERENCES document_blobs (customer_id, sha256) ON DELETE RESTRICT,
    CONSTRAINT knowledge_documents_blob_sha256_len CHECK (blob_sha256 IS NULL OR octet_length(blob_sha256) = 32),
    -- spec.source is exactly one of blob | url | configMapKeyRef | text
    CONSTRAINT knowledge_documents_source_kind_check CHECK (source_kind IN ('blob', 'url', 'configMap', 'text')),
    -- status.phase in lowercase
    CONSTRAINT knowledge_documents_processing_status_check CHECK (processing_status IN
        ('pending', 'queued', 'processing', 'ready', 'failed')),
    CONSTRAINT knowledge_documents_sizes_nonneg CHECK (
        (file_size IS NULL OR file_size >= 0) AND (text_length IS NULL OR text_length >= 0)
        AND (chunk_count IS NULL OR chunk_count >= 0) AND attempts >= 0 AND storage_reserved_bytes >= 0),
    -- ICP lists and tags are JSON arrays of strings (ICP vocabulary strings, spec.tags)
    CONSTRAINT knowledge_documents_json_arrays CHECK (
        jsonb_typeof(target_industries) = 'array' AND jsonb_typeof(company_sizes) = 'array'
        AND jsonb_typeof(decision_makers) = 'array' AND jsonb_typeof(target_regions) = 'array'
        AND jsonb_typeof(tags) = 'array'),
    -- only a document that holds a document slot can hold storage
    CONSTRAINT knowledge_documents_storage_needs_reserved CHECK (quota_reserved OR storage_reserved_bytes = 0),
    -- a soft-deleted document holds no quota and no blob reference: release and un-referencing
    -- happen in the same statement that sets deleted_at, and the blob can then be deleted
    CONSTRAINT knowledge_documents_deleted_released CHECK (
        deleted_at IS NULL OR (NOT quota_reserved AND storage_reserved_bytes = 0 AND blob_sha256 IS NULL))
);

-- Documents of a customer, newest/oldest first (REST listing, ICP aggregation); also serves the
-- customer_id foreign key.
CREATE INDEX knowledge_documents_customer_created_idx ON knowledge_documents (customer_id, created_at);
-- Serves the blob foreign key: "is this blob still referenced?" (FK check on blob delete).
CREATE INDEX knowledge_documents_blob_idx ON knowledge_documents (customer_id, blob_sha256)
    WHERE blob_sha256 IS NOT NULL;

CREATE TRIGGER knowledge_documents_set_updated_at BEFORE UPDATE ON knowledge_documents
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

COMMENT ON TABLE knowledge_documents IS
    'One row per KnowledgeDocument object (upserted by k8s_uid): source reference, extracted text, ICP result, processing state '
    'and the quota it holds. Soft-deleted (deleted_at) for billing; chunks, queue entries and (if unreferenced) the blob are '
    'hard-deleted. Replaces the seed''s Firestore metadata and Firebase Storage columns; the seed''s single per-document '
    'embedding is replaced by document_chunks.';
COMMENT ON COLUMN knowledge_documents.id IS 'Internal surrogate key; referenced by document_chunks.document_id and embedding_tasks.document_id.';
COMMENT ON COLUMN knowledge_documents.document_id IS 'Public id doc_<hex> (status.documentId); REST paths and NOTIFY payloads use it.';
COMMENT ON COLUMN knowledge_documents.k8s_uid IS 'metadata.uid of the KnowledgeDocument object.';
COMMENT ON COLUMN knowledge_documents.namespace IS 'Namespace of the KnowledgeDocument (the customer''s cust-<name> namespace).';
COMMENT ON COLUMN knowledge_documents.name IS 'metadata.name of the KnowledgeDocument; with namespace, how the operator finds the object from a row.';
COMMENT ON COLUMN knowledge_documents.content_type IS 'Content type sniffed from magic bytes (spec.contentType is only a hint).';
COMMENT ON COLUMN knowledge_documents.file_size IS 'Size in bytes of the source document; NULL until known (url sources before fetching).';
COMMENT ON COLUMN knowledge_documents.blob_sha256 IS
    'For source_kind = blob: the document_blobs row (same customer) holding the bytes. NULL for other sources and once soft-deleted.';
COMMENT ON COLUMN knowledge_documents.source_kind IS 'Which spec.source variant the document uses: blob | url | configMap | text.';
COMMENT ON COLUMN knowledge_documents.extracted_text IS 'Plain text extracted from the source; the input of chunking and ICP extraction. Cleared on deletion.';
COMMENT ON COLUMN knowledge_documents.text_length IS 'Characters of extracted_text (status.textLength).';
COMMENT ON COLUMN knowledge_documents.chunk_count IS 'Number of document_chunks rows written by the last successful indexing (status.chunkCount).';
COMMENT ON COLUMN knowledge_documents.embedding_model IS 'Model that produced the chunk vectors (status.embeddingModel); a different model means re-embedding.';
COMMENT ON COLUMN knowledge_documents.target_industries IS 'ICP industries found in the text (ICP vocabulary strings); [] until extracted.';
COMMENT ON COLUMN knowledge_documents.company_sizes IS 'ICP company sizes (startup, smb, mid-market, enterprise); [] until extracted.';
COMMENT ON COLUMN knowledge_documents.decision_makers IS 'ICP decision-maker titles (CEO, CTO, ...); [] until extracted.';
COMMENT ON COLUMN knowledge_documents.target_regions IS 'ICP regions (North America, Europe, ...); [] until extracted.';
COMMENT ON COLUMN knowledge_documents.icp_data IS 'Full ICP extraction result as returned by the API (may include evidence/scores); NULL until extracted.';
COMMENT ON COLUMN knowledge_documents.icp_extracted_at IS 'When ICP extraction ran (status.icp.extractedAt); NULL means not yet, as opposed to "found nothing".';
COMMENT ON COLUMN knowledge_documents.tags IS 'spec.tags (JSON array of strings).';
COMMENT ON COLUMN knowledge_documents.processing_status IS 'status.phase in lowercase: pending | queued | processing | ready | failed.';
COMMENT ON COLUMN knowledge_documents.processing_error IS 'Last failure, worded for a person to act on (status.error); NULL when healthy.';
COMMENT ON COLUMN knowledge_documents.attempts IS 'Processing attempts so far (status.attempts), mirrored from embedding_tasks.attempts.';
COMMENT ON COLUMN knowledge_documents.quota_reserved IS
    'True while this document holds one unit of customer_quotas.documents_count; flipped only in the statement that changes the counter.';
COMMENT ON COLUMN knowledge_documents.storage_reserved_bytes IS
    'Bytes this document holds in customer_quotas.storage_used_bytes; changed only in the statement that changes the counter, '
    'by the difference, so release is exact and idempotent.';
COMMENT ON COLUMN knowledge_documents.deleted_at IS
    'Soft-delete time. Setting it purges chunks and queue entries (trigger knowledge_documents_purge_on_delete, migration 0005).';

-- ---------------------------------------------------------------------------------------------
-- document_chunks
-- ---------------------------------------------------------------------------------------------
CREATE TABLE document_chunks (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id bigint      NOT NULL,
    document_id bigint      NOT NULL,
    chunk_index integer     NOT NULL,
    content     text        NOT NULL,
    token_count integer     NOT NULL,
    embedding   vector(384) NOT NULL,
    content_tsv tsvector    GENERATED ALWAYS AS (to_tsvector('english', content)) STORED,
    created_at  timestamptz NOT NULL DEFAULT now(),

    -- CASCADE: chunks are derived data and die with their document row; the composite key also
    -- forces customer_id to equal the document's customer (tenant isolation by construction)
    CONSTRAINT document_chunks_document_fk FOREIGN KEY (customer_id, document_id)
        REFERENCES knowledge_documents (customer_id, id) ON DELETE CASCADE,
    -- re-indexing a document upserts on (document_id, chunk_index): replays are idempotent
    CONSTRAINT document_chunks_document_chunk_key UNIQUE (document_id, chunk_index),
    CONSTRAINT document_chunks_chunk_index_nonneg CHECK (chunk_index >= 0),
    -- chunks are ~200-256 model tokens; 0 would mean an empty chunk
    CONSTRAINT document_chunks_token_count_check CHECK (token_count > 0),
    CONSTRAINT document_chunks_content_nonempty CHECK (content <> '')
);

-- Keep vectors inline. pgvector's type defaults to EXTERNAL storage; a row with ~1 KB of text,
-- its tsvector and a 1.5 KB vector passes the 2 KB TOAST threshold and the toaster would move the
-- vector (the largest column) out of line, so every exact-distance scan would pay a TOAST fetch.
-- PLAIN keeps the 1544-byte vector in the heap tuple; the text and tsvector are toasted instead.
ALTER TABLE document_chunks ALTER COLUMN embedding SET STORAGE PLAIN;

-- Approximate nearest neighbour, cosine distance (operator <=>; vectors are L2-normalised, so the
-- ranking equals inner product). m = 16, ef_construction = 64 are pgvector's defaults, stated
-- explicitly so that a change is a visible migration; they are the usual good trade-off for
-- 384-dim sentence embeddings, and raising them is only worth it if the 1M-chunk benchmark says
-- so (a later migration can rebuild). Recall under the per-tenant filter is a query-time matter:
-- pgvector 0.8 iterative scans (SET LOCAL hnsw.iterative_scan = relaxed_order, re-sorted), and
-- for small tenants an exact scan through document_chunks_customer_id_idx is both cheaper and exact.
CREATE INDEX document_chunks_embedding_hnsw_idx ON document_chunks
    USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64);
-- Per-tenant access: exact search for small tenants, customer deletion, isolation predicates.
CREATE INDEX document_chunks_customer_id_idx ON document_chunks (customer_id);
-- Keyword / hybrid search; always combined with customer_id = $1.
CREATE INDEX document_chunks_content_tsv_idx ON document_chunks USING gin (content_tsv);

COMMENT ON TABLE document_chunks IS
    'Embedded chunks of documents (all-MiniLM-L6-v2, 384 dims): the search corpus. customer_id is on every row so every search '
    'filters by tenant without a join. Hard-deleted with their document (CASCADE on hard delete, trigger on soft delete).';
COMMENT ON COLUMN document_chunks.customer_id IS
    'Owner, equal to the document''s customer (enforced by the composite foreign key). Every query on this table has customer_id = $1.';
COMMENT ON COLUMN document_chunks.document_id IS
    'knowledge_documents.id (the internal bigint key, NOT the public doc_<hex> string).';
COMMENT ON COLUMN document_chunks.chunk_index IS '0-based position of the chunk in the document; with document_id the idempotency key of re-indexing.';
COMMENT ON COLUMN document_chunks.token_count IS 'Model tokens in the chunk (<= 256 by design, so nothing is truncated silently).';
COMMENT ON COLUMN document_chunks.embedding IS 'L2-normalised, mean-pooled sentence embedding; search with ORDER BY embedding <=> $q (cosine distance) to use the HNSW index.';
COMMENT ON COLUMN document_chunks.content_tsv IS 'English full-text vector of content, maintained by Postgres, for keyword and hybrid search (GIN indexed).';
