-- When a row's current chain of budget periods began (its budget_duration set, or a new period started
-- by an admin change), by the gateway's clock. Calendar-month periods count their ends from it, so a
-- chain begun on the 31st ends on the 30th in April and on the 31st again in May. None (or one the
-- stored budget_reset_at does not lie on): the chain counts from created_at, else from budget_reset_at.
alter table keys add column budget_anchor_at timestamptz;
alter table users add column budget_anchor_at timestamptz;
alter table teams add column budget_anchor_at timestamptz;
alter table team_memberships add column budget_anchor_at timestamptz;
alter table end_users add column budget_anchor_at timestamptz;
alter table budgets add column budget_anchor_at timestamptz;
-- Per-model spend rows: when an admin change started their period now (their holder's created_at else),
-- and the gateway's own budget (its period started by the config).
alter table key_model_spend add column budget_anchor_at timestamptz;
alter table customer_model_spend add column budget_anchor_at timestamptz;
alter table user_model_spend add column budget_anchor_at timestamptz;
alter table team_model_spend add column budget_anchor_at timestamptz;
alter table gateway_spend add column budget_anchor_at timestamptz;
