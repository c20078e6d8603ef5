-- When an admin last set a holder's spend (spend on /key/update, /user/update, /team/update,
-- /customer/update), by the gateway's clock: a spend write that began before it carries spend made
-- before it, which the set value replaces (see src/spend/repo.ts).
alter table keys add column spend_set_at timestamptz;
alter table users add column spend_set_at timestamptz;
alter table teams add column spend_set_at timestamptz;
alter table end_users add column spend_set_at timestamptz;
