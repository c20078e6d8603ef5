-- Per-model budgets of users and teams (model_max_budget, as a key's), held across all their keys, and
-- their spend per model with each entry's own period, as key_model_spend keeps a key's. Kept only for
-- the models they budget; deleting the user or team deletes its rows.
alter table users add column model_max_budget jsonb not null default '{}';
alter table teams add column model_max_budget jsonb not null default '{}';

create table user_model_spend (
  user_id         text not null references users (user_id) on delete cascade,
  model           text not null,
  spend           double precision not null default 0,
  budget_reset_at timestamptz,
  primary key (user_id, model)
) with (fillfactor = 70);

create table team_model_spend (
  team_id         text not null references teams (team_id) on delete cascade,
  model           text not null,
  spend           double precision not null default 0,
  budget_reset_at timestamptz,
  primary key (team_id, model)
) with (fillfactor = 70);
