-- Gateway-wide state: one row holding the whole gateway's spend and its budget period.
create table gateway_spend (
  id              integer primary key default 1 check (id = 1),
  spend           double precision not null default 0,
  budget_reset_at timestamptz,
  updated_at      timestamptz not null default now()
);
insert into gateway_spend (id) values (1);
