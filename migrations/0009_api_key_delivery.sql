-- Prospector schema, part 9: when an API key was handed to a person. The registration response
-- (or, after a 202, the registration's status URL) carries a customer's first key exactly once;
-- setting this column with `WHERE delivered_at IS NULL` is what makes "once" atomic across
-- REST server replicas and retried requests.

ALTER TABLE api_keys ADD COLUMN delivered_at timestamptz;

COMMENT ON COLUMN api_keys.delivered_at IS
    'When a REST response carried this key (registration, its status URL, or a rotation). NULL: never shown; the key '
    'is then only in the Secret prospector-api-key of the customer''s namespace.';
