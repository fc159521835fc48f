-- Prospector schema, part 7: what the document pipeline needs beyond parts 4 and 5.
--
-- 1. Blob hashes are computed by whoever writes a blob, while the bytes stream in (the REST
--    upload, the operator for ConfigMap, URL and inline-text sources). The CHECK that recomputed
--    sha256(content) on every insert cost about 250 ms of database CPU per 50 MB, on the part
--    that scales worst; DESIGN.md asks for it to go before the first release.
ALTER TABLE document_blobs DROP CONSTRAINT document_blobs_sha256_matches;

-- 2. Every source is stored as a blob before it is processed, so workers read one kind of input.
COMMENT ON COLUMN knowledge_documents.blob_sha256 IS
    'The document_blobs row (same customer) holding the source bytes: uploaded (blob), fetched (url), copied from a ConfigMap '
    '(configMap) or from spec.source.text (text). NULL until stored, and once soft-deleted.';

-- 3. Generations: a document is processed again when its object's spec changes (a new
--    metadata.generation) or its source's bytes change (a ConfigMap edited in Git). The row counts
--    these as its own `generation`; each task carries the generation it was enqueued for, and a
--    worker's result for an older generation is refused at commit (like a lost lease).
ALTER TABLE knowledge_documents ADD COLUMN generation bigint NOT NULL DEFAULT 1;
ALTER TABLE knowledge_documents ADD COLUMN object_generation bigint NOT NULL DEFAULT 0;
ALTER TABLE embedding_tasks ADD COLUMN generation bigint NOT NULL DEFAULT 1;
COMMENT ON COLUMN knowledge_documents.generation IS
    'Processing generation: starts at 1 and grows when object_generation grows or the stored source (blob_sha256) changes.';
COMMENT ON COLUMN knowledge_documents.object_generation IS 'metadata.generation of the KnowledgeDocument as last mirrored.';
COMMENT ON COLUMN embedding_tasks.generation IS
    'The document''s generation when the task was enqueued; the commit of a task for an older generation is refused.';

-- 4. A url source is fetched by the embedding worker (with the size cap, a timeout, and private
--    addresses refused), which then stores the bytes like any other source.
ALTER TABLE knowledge_documents ADD COLUMN source_url text;
ALTER TABLE knowledge_documents ADD CONSTRAINT knowledge_documents_source_url_check
    CHECK ((source_kind = 'url') = (source_url IS NOT NULL));
COMMENT ON COLUMN knowledge_documents.source_url IS 'spec.source.url for url sources (NULL otherwise); the worker fetches it.';

-- 5. A document that failed for good gives back its quota and its bytes; the hash of the bytes
--    that failed stays, so the same bytes are not stored and processed again until they change.
ALTER TABLE knowledge_documents ADD COLUMN failed_sha256 bytea;
COMMENT ON COLUMN knowledge_documents.failed_sha256 IS
    'SHA-256 of the source bytes that failed for good (their blob is released); new bytes process again.';
