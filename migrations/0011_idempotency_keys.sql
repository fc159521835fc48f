-- Prospector schema, part 11: `Idempotency-Key` on the REST API's POSTs. The first request with
-- a key claims the row; when it finishes, its answer is kept for 24 hours and a retry with the
-- same key and the same request gets that answer again instead of doing the work twice. An API
-- key in an answer is never kept: the stored body holds its SHA-256 in its place, and a replay
-- reads the key again from the customer's Secret.

CREATE TABLE idempotency_keys (
    -- `customer:<id>` or `admin`: one caller's keys never answer another's requests
    scope          text        NOT NULL,
    key            text        NOT NULL,
    -- SHA-256 of method, path and body: the same key with another request is refused
    request_sha256 bytea       NOT NULL,
    -- NULL while the first request runs
    status         integer,
    body           bytea,
    created_at     timestamptz NOT NULL DEFAULT now(),
    completed_at   timestamptz,

    PRIMARY KEY (scope, key),
    CONSTRAINT idempotency_keys_key_length CHECK (octet_length(key) BETWEEN 1 AND 255),
    CONSTRAINT idempotency_keys_sha256_len CHECK (octet_length(request_sha256) = 32),
    CONSTRAINT idempotency_keys_completed CHECK ((status IS NULL) = (completed_at IS NULL))
);

-- The sweep of answers past their 24 hours.
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);

COMMENT ON TABLE idempotency_keys IS
    'Idempotency-Key of REST POSTs: the first answer per (scope, key), kept 24 h, replayed to retries of the same request.';
