-- Chunks are keyed by customer first. Every statement on document_chunks names the customer, and
-- a table partitioned by customer_id (hash partitions, or Citus distributing by customer_id:
-- docs/scaling.md) can only hold unique keys that include the partition key. So the re-indexing
-- key (document_id, chunk_index) becomes (customer_id, document_id, chunk_index); it also serves
-- the foreign key (customer_id, document_id) → knowledge_documents and its ON DELETE CASCADE.

ALTER TABLE document_chunks
    ADD CONSTRAINT document_chunks_customer_document_chunk_key UNIQUE (customer_id, document_id, chunk_index);
ALTER TABLE document_chunks DROP CONSTRAINT document_chunks_document_chunk_key;
COMMENT ON COLUMN document_chunks.chunk_index IS
    '0-based position of the chunk in the document; with customer_id and document_id the idempotency key of re-indexing.';

-- The purge names the customer too, so it reaches the chunks through the new key (and, once
-- partitioned, one partition).
CREATE OR REPLACE FUNCTION knowledge_documents_purge_on_delete() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- Queue entries first, then chunks. Each statement of this (volatile) function takes a fresh
    -- snapshot, so chunks committed by a worker that this transaction waited for are seen and deleted.
    DELETE FROM embedding_tasks WHERE document_id = NEW.id;
    DELETE FROM document_chunks WHERE customer_id = NEW.customer_id AND document_id = NEW.id;
    RETURN NULL;
END;
$$;
