-- Prospector schema, part 6: whether an agent's last quota reservation was refused. A Customer's
-- QuotaExceeded condition counts these, so it turns True only when something was refused (a
-- never-admitted agent waiting for capacity, or a running agent's scale-up), never because a
-- counter merely sits at its limit.

ALTER TABLE customer_agents ADD COLUMN quota_refused boolean NOT NULL DEFAULT false;
-- a terminated agent asks for nothing, so nothing of it is refused
ALTER TABLE customer_agents ADD CONSTRAINT customer_agents_terminated_not_refused
    CHECK (terminated_at IS NULL OR NOT quota_refused);

COMMENT ON COLUMN customer_agents.quota_refused IS
    'True while the agent''s last reservation was refused (it wants more than it holds). Set by the same statements that decide '
    'admission, cleared on admission and on release; customers count it for their QuotaExceeded condition.';
