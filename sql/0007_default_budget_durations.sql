-- The default durations as the periods of the rows on them were last started: internal users without
-- a duration of their own (litellm_settings.internal_user_budget_duration) and customers without a
-- budget of their own (the budget_duration of max_end_user_budget_id's budget). A config that gives one
-- another length starts a new period for those rows instead of running out the old one. Null: not
-- stored yet; '': none.
alter table gateway_spend add column internal_user_budget_duration text, add column end_user_budget_duration text;
