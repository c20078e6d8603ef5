-- Spend of a customer on one model, with that model budget's own period (a customer's budget's
-- model_max_budget), as key_model_spend keeps a key's. Deleting the customer deletes its rows.
create table customer_model_spend (
  user_id         text not null references end_users (user_id) on delete cascade,
  model           text not null,
  spend           double precision not null default 0,
  budget_reset_at timestamptz,
  primary key (user_id, model)
) with (fillfactor = 70);
