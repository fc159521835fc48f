-- Prospector schema, part 10: uploads reserve before their object exists. The REST upload
-- stores the bytes, inserts the document's row under a placeholder UID and reserves its
-- document slot and storage, all in one transaction, and only then creates the
-- KnowledgeDocument. The row is adopted (its k8s_uid set to the object's UID) by whichever
-- comes first: the REST server after the create, or the operator's first reconcile, which finds
-- the placeholder in the object's annotation `prospector.dev/upload-reservation`. A row never
-- adopted (the server died before the create) is released by the operator's sweep.

ALTER TABLE knowledge_documents ADD COLUMN upload_reserved_at timestamptz;

COMMENT ON COLUMN knowledge_documents.upload_reserved_at IS
    'Set while the row holds an upload''s reservation under a placeholder k8s_uid, before its KnowledgeDocument exists; '
    'cleared on adoption. Rows still set after a grace period are released and deleted by the operator.';

CREATE INDEX knowledge_documents_upload_reserved_idx ON knowledge_documents (upload_reserved_at)
    WHERE upload_reserved_at IS NOT NULL;
