-- The gateway budget's duration as its period was last started: a config that names another one
-- starts a new period (as /key/update does for a key) instead of running out the old one.
alter table gateway_spend add column budget_duration text;
