-- spend_logs gets a row per request, and every index on it is paid on each one. Log rows arrive in
-- time order, so a BRIN index on start_time answers date ranges for a fraction of a b-tree's cost;
-- the b-tree on (api_key, start_time) stays for a key's own logs. Filters by user, team or customer
-- run within the date range BRIN finds (their spend totals live on their own rows, not here).
drop index if exists spend_logs_start;
drop index if exists spend_logs_user_start;
drop index if exists spend_logs_team_start;
drop index if exists spend_logs_end_user_start;
create index spend_logs_start_brin on spend_logs using brin (start_time) with (pages_per_range = 32);
