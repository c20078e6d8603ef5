-- /key/regenerate's grace_period: a regenerated key's old secret still authenticates, as the key,
-- until revoke_at (none: it stopped at once).
alter table key_renames add column revoke_at timestamptz;
