-- A regenerated key keeps its spend. Its per-model spend rows follow the new token, and spend settled
-- under the old token but written after the change (requests in flight, other instances' batches, a
-- batch set aside and replayed) finds the key through key_renames.
alter table key_model_spend drop constraint key_model_spend_token_fkey;
alter table key_model_spend add constraint key_model_spend_token_fkey
  foreign key (token) references keys (token) on update cascade on delete cascade;

create table key_renames (
  old_token  text primary key,
  -- Follows the key through later regenerations, and goes with it when it is deleted.
  new_token  text not null references keys (token) on update cascade on delete cascade,
  renamed_at timestamptz not null default now()
);
create index key_renames_new_token on key_renames (new_token);
