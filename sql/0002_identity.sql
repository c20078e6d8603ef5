-- Tables whose spend is updated by every flush leave room in each page (fillfactor 70) so those
-- updates stay on the page (HOT) and do not touch the indexes.

-- Budgets are shared limit sets: customers and team memberships point at one.
create table budgets (
  budget_id             text primary key,
  max_budget            double precision,
  soft_budget           double precision,
  budget_duration       text,
  budget_reset_at       timestamptz,
  tpm_limit             integer,
  rpm_limit             integer,
  max_parallel_requests integer,
  model_max_budget      jsonb not null default '{}',
  created_at            timestamptz not null default now(),
  updated_at            timestamptz not null default now()
);

create table users (
  user_id               text primary key,
  user_email            text,
  user_alias            text,
  user_role             text not null default 'internal_user',
  spend                 double precision not null default 0,
  max_budget            double precision,
  soft_budget           double precision,
  budget_duration       text,
  budget_reset_at       timestamptz,
  models                text[] not null default '{}',
  tpm_limit             integer,
  rpm_limit             integer,
  max_parallel_requests integer,
  teams                 text[] not null default '{}',
  metadata              jsonb not null default '{}',
  created_at            timestamptz not null default now(),
  updated_at            timestamptz not null default now()
) with (fillfactor = 70);

create table teams (
  team_id               text primary key,
  team_alias            text,
  members_with_roles    jsonb not null default '[]',
  spend                 double precision not null default 0,
  max_budget            double precision,
  budget_duration       text,
  budget_reset_at       timestamptz,
  models                text[] not null default '{}',
  tpm_limit             integer,
  rpm_limit             integer,
  max_parallel_requests integer,
  blocked               boolean not null default false,
  metadata              jsonb not null default '{}',
  created_at            timestamptz not null default now(),
  updated_at            timestamptz not null default now()
) with (fillfactor = 70);

-- A user's place in a team; its budget row carries max_budget_in_team.
create table team_memberships (
  team_id         text not null references teams (team_id) on delete cascade,
  user_id         text not null references users (user_id) on delete cascade,
  role            text not null default 'user',
  spend           double precision not null default 0,
  budget_id       text references budgets (budget_id) on delete set null,
  budget_reset_at timestamptz,
  created_at      timestamptz not null default now(),
  primary key (team_id, user_id)
) with (fillfactor = 70);
create index team_memberships_user on team_memberships (user_id);

-- Deleting a user or a team deletes its keys (on delete cascade): a key never outlives its owner.
create table keys (
  token                 text primary key,           -- sha256 hex of the raw key; the raw key is never stored
  key_name              text not null,              -- "sk-...abcd"
  key_alias             text,
  spend                 double precision not null default 0,
  max_budget            double precision,
  budget_duration       text,
  budget_reset_at       timestamptz,
  soft_budget           double precision,
  models                text[] not null default '{}',
  tpm_limit             integer,
  rpm_limit             integer,
  max_parallel_requests integer,
  model_max_budget      jsonb not null default '{}',
  model_rpm_limit       jsonb not null default '{}',
  model_tpm_limit       jsonb not null default '{}',
  user_id               text references users (user_id) on delete cascade,
  team_id               text references teams (team_id) on delete cascade,
  budget_id             text references budgets (budget_id) on delete restrict,
  expires               timestamptz,
  blocked               boolean not null default false,
  metadata              jsonb not null default '{}',
  created_at            timestamptz not null default now(),
  updated_at            timestamptz not null default now()
) with (fillfactor = 70);
create index keys_user on keys (user_id);
create index keys_team on keys (team_id);
create unique index keys_alias on keys (key_alias) where key_alias is not null;

-- Spend of a key on one model, with that model budget's own period.
create table key_model_spend (
  token           text not null references keys (token) on delete cascade,
  model           text not null,
  spend           double precision not null default 0,
  budget_reset_at timestamptz,
  primary key (token, model)
) with (fillfactor = 70);

-- Customers: the `user` field of inference requests.
create table end_users (
  user_id         text primary key,
  alias           text,
  spend           double precision not null default 0,
  budget_id       text references budgets (budget_id) on delete restrict,
  budget_reset_at timestamptz,
  blocked         boolean not null default false,
  metadata        jsonb not null default '{}',
  created_at      timestamptz not null default now(),
  updated_at      timestamptz not null default now()
) with (fillfactor = 70);

-- No unique index on request_id: flushes are made exactly-once by spend_batches, and every index
-- here is paid on each request.
create table spend_logs (
  request_id        text not null,
  api_key           text not null,                  -- key hash
  user_id           text,
  team_id           text,
  end_user          text,
  model             text not null,
  deployment        text,
  route             text,
  prompt_tokens     integer not null default 0,
  completion_tokens integer not null default 0,
  total_tokens      integer not null default 0,
  spend             double precision not null default 0,
  start_time        timestamptz not null,
  end_time          timestamptz not null,
  status            text not null,
  metadata          jsonb not null default '{}'
);
create index spend_logs_start on spend_logs (start_time);
create index spend_logs_key_start on spend_logs (api_key, start_time);
create index spend_logs_user_start on spend_logs (user_id, start_time) where user_id is not null;
create index spend_logs_team_start on spend_logs (team_id, start_time) where team_id is not null;
create index spend_logs_end_user_start on spend_logs (end_user, start_time) where end_user is not null;

-- Spend batches already applied: a retried flush whose commit was in fact applied is skipped.
create table spend_batches (
  batch_id   text primary key,
  applied_at timestamptz not null default now()
);
create index spend_batches_applied on spend_batches (applied_at);
