-- Prospector schema, part 5: the embedding work queue, its NOTIFY hooks, and the purge that runs
-- when a document is soft-deleted.

CREATE TABLE embedding_tasks (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id  bigint      NOT NULL,
    document_id  bigint      NOT NULL,
    status       text        NOT NULL DEFAULT 'queued',
    attempts     integer     NOT NULL DEFAULT 0,
    max_attempts integer     NOT NULL DEFAULT 5,
    lease_until  timestamptz,
    leased_by    text,
    last_error   text,
    not_before   timestamptz NOT NULL DEFAULT now(),
    enqueued_at  timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz,
    finished_at  timestamptz,

    -- CASCADE: a task is derived from its document; the composite key also pins customer_id to
    -- the document's customer
    CONSTRAINT embedding_tasks_document_fk FOREIGN KEY (customer_id, document_id)
        REFERENCES knowledge_documents (customer_id, id) ON DELETE CASCADE,
    CONSTRAINT embedding_tasks_status_check CHECK (status IN ('queued', 'running', 'done', 'failed')),
    CONSTRAINT embedding_tasks_max_attempts_check CHECK (max_attempts >= 1),
    -- attempts counts claims, so it can never pass the budget
    CONSTRAINT embedding_tasks_attempts_check CHECK (attempts BETWEEN 0 AND max_attempts),
    -- a queued task always has an attempt left: the claim query needs no attempts filter, and a
    -- requeue past the budget fails here instead of creating a task nobody may run
    CONSTRAINT embedding_tasks_queued_has_attempt CHECK (status <> 'queued' OR attempts < max_attempts),
    -- exactly the running tasks hold a lease, and a lease names its holder
    CONSTRAINT embedding_tasks_lease_iff_running CHECK ((status = 'running') = (lease_until IS NOT NULL)),
    CONSTRAINT embedding_tasks_lease_holder CHECK (status <> 'running' OR leased_by IS NOT NULL),
    -- finished_at marks the terminal states and only them
    CONSTRAINT embedding_tasks_finished_iff_terminal CHECK ((status IN ('done', 'failed')) = (finished_at IS NOT NULL))
);

-- At most one live (queued or running) task per document: enqueueing is
-- INSERT ... ON CONFLICT (document_id) WHERE status IN ('queued', 'running') DO NOTHING,
-- so a replayed reconcile never enqueues twice. Finished tasks stay as history.
CREATE UNIQUE INDEX embedding_tasks_document_live_key ON embedding_tasks (document_id)
    WHERE status IN ('queued', 'running');
-- All tasks of a document: FK cascade and the soft-delete purge (history rows included).
CREATE INDEX embedding_tasks_document_id_idx ON embedding_tasks (document_id);
-- The claim query: WHERE status = 'queued' AND not_before <= now() ORDER BY enqueued_at, id
-- FOR UPDATE SKIP LOCKED. Partial, so it only ever contains the (small) queue itself, walked in
-- FIFO order; tasks still in backoff are filtered while walking.
CREATE INDEX embedding_tasks_claim_idx ON embedding_tasks (enqueued_at, id) WHERE status = 'queued';
-- The lease reaper: WHERE status = 'running' AND lease_until < now().
CREATE INDEX embedding_tasks_lease_idx ON embedding_tasks (lease_until) WHERE status = 'running';

COMMENT ON TABLE embedding_tasks IS $c$
Work queue of the embedding pipeline (extract, chunk, embed, index, ICP). One row per processing
request of a document; retries reuse the row (attempts, not_before), a new request after a terminal
state inserts a new row. Protocol (statements in store/):
  claim    - UPDATE ... SET status='running', attempts=attempts+1, leased_by, lease_until, started_at
             for rows picked by SELECT ... WHERE status='queued' AND not_before <= now()
             ORDER BY enqueued_at, id LIMIT n FOR UPDATE SKIP LOCKED (workers never block each other).
  heartbeat- UPDATE ... SET lease_until = now() + lease WHERE id AND status='running' AND attempts = <claimed>.
  commit   - ONE transaction, in this order: (1) UPDATE knowledge_documents ... WHERE id AND deleted_at IS NULL,
             (2) UPDATE embedding_tasks SET status='done' ... WHERE id AND status='running' AND attempts = <claimed>,
             (3) upsert chunks ON CONFLICT (document_id, chunk_index), delete chunk_index >= new count.
             Zero rows from (1) or (2) means "document deleted" / "lease lost": ROLLBACK. attempts is the fencing
             token, so a worker whose lease expired can never overwrite the next attempt's result. Locking the
             document row first orders this transaction with the soft-delete purge (no deadlock, no orphan chunks).
  fail     - attempts < max_attempts: status='queued', not_before = now() + backoff, lease cleared, last_error set;
             otherwise status='failed', finished_at = now().
  reaper   - the same transition for rows WHERE status='running' AND lease_until < now() (crashed workers).
Completion reaches the operator by NOTIFY prospector_embedding_done (payload: the public document_id),
plus its periodic resync. New work wakes idle workers by NOTIFY prospector_embedding_queued.
$c$;
COMMENT ON COLUMN embedding_tasks.customer_id IS 'Owner (equal to the document''s customer by the composite FK); lets workers and metrics group by tenant without a join.';
COMMENT ON COLUMN embedding_tasks.document_id IS 'knowledge_documents.id (internal bigint key, not the public doc_<hex>).';
COMMENT ON COLUMN embedding_tasks.status IS 'queued (waiting, maybe in backoff) | running (leased) | done | failed (attempts exhausted). done/failed are terminal.';
COMMENT ON COLUMN embedding_tasks.attempts IS 'Number of times the task was claimed; incremented by the claim, and the fencing token of that claim.';
COMMENT ON COLUMN embedding_tasks.max_attempts IS 'Retry budget; after the last failed attempt the task (and the document) becomes failed with a message a person can act on.';
COMMENT ON COLUMN embedding_tasks.lease_until IS 'While running: the worker must heartbeat before this time, or the reaper takes the task back. NULL otherwise.';
COMMENT ON COLUMN embedding_tasks.leased_by IS 'Worker identity (pod name / process id) of the current or last claim, for debugging.';
COMMENT ON COLUMN embedding_tasks.last_error IS 'Error of the last failed attempt, naming the document and the cause.';
COMMENT ON COLUMN embedding_tasks.not_before IS 'Backoff: a queued task is not claimed before this time.';
COMMENT ON COLUMN embedding_tasks.enqueued_at IS 'First enqueue time: FIFO order of the queue, and the base of the "queued too long" condition reason.';
COMMENT ON COLUMN embedding_tasks.started_at IS 'Start of the latest attempt: the base of the "processing too long" condition reason.';
COMMENT ON COLUMN embedding_tasks.finished_at IS 'When the task reached done or failed.';

-- ---------------------------------------------------------------------------------------------
-- NOTIFY hooks
-- ---------------------------------------------------------------------------------------------
CREATE FUNCTION embedding_tasks_notify_done() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    public_id text;
BEGIN
    SELECT d.document_id INTO public_id FROM knowledge_documents d WHERE d.id = NEW.document_id;
    IF public_id IS NOT NULL THEN
        PERFORM pg_notify('prospector_embedding_done', public_id);
    END IF;
    RETURN NULL;
END;
$$;

COMMENT ON FUNCTION embedding_tasks_notify_done() IS
    'AFTER trigger: NOTIFY prospector_embedding_done with the public document_id (doc_<hex>) when a task becomes done or failed. '
    'NOTIFY is transactional: the operator hears it only after the result is committed, then reconciles that document.';

CREATE TRIGGER embedding_tasks_notify_done
    AFTER UPDATE OF status ON embedding_tasks
    FOR EACH ROW
    WHEN (NEW.status IN ('done', 'failed') AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION embedding_tasks_notify_done();

CREATE FUNCTION embedding_tasks_notify_queued() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- Constant payload: Postgres folds identical notifications within a transaction, so
    -- enqueueing a batch wakes the workers once.
    PERFORM pg_notify('prospector_embedding_queued', '');
    RETURN NULL;
END;
$$;

COMMENT ON FUNCTION embedding_tasks_notify_queued() IS
    'AFTER trigger: NOTIFY prospector_embedding_queued when a task is enqueued or requeued, so idle workers claim at once instead of '
    'waiting for their next poll. Workers must still poll (not_before backoff expiring sends no notification).';

CREATE TRIGGER embedding_tasks_notify_queued_insert
    AFTER INSERT ON embedding_tasks
    FOR EACH ROW
    WHEN (NEW.status = 'queued')
    EXECUTE FUNCTION embedding_tasks_notify_queued();

CREATE TRIGGER embedding_tasks_notify_queued_update
    AFTER UPDATE OF status ON embedding_tasks
    FOR EACH ROW
    WHEN (NEW.status = 'queued' AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION embedding_tasks_notify_queued();

-- ---------------------------------------------------------------------------------------------
-- Soft delete of a document purges its derived data
-- ---------------------------------------------------------------------------------------------
CREATE FUNCTION knowledge_documents_purge_on_delete() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- Queue entries first, then chunks. Each statement of this (volatile) function takes a fresh
    -- snapshot, so chunks committed by a worker that this transaction waited for are seen and deleted.
    DELETE FROM embedding_tasks WHERE document_id = NEW.id;
    DELETE FROM document_chunks WHERE document_id = NEW.id;
    RETURN NULL;
END;
$$;

COMMENT ON FUNCTION knowledge_documents_purge_on_delete() IS
    'AFTER trigger: when knowledge_documents.deleted_at is first set, hard-deletes the document''s queue entries and chunks/vectors, '
    'so a soft-deleted document can never appear in search. (A hard DELETE of the row does the same through ON DELETE CASCADE.)';

CREATE TRIGGER knowledge_documents_purge_on_delete
    AFTER UPDATE OF deleted_at ON knowledge_documents
    FOR EACH ROW
    WHEN (OLD.deleted_at IS NULL AND NEW.deleted_at IS NOT NULL)
    EXECUTE FUNCTION knowledge_documents_purge_on_delete();
