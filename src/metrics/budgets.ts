import type { BudgetStanding, Standings } from "../governance/gauges";
import { labelText } from "./series";

/**
 * Budget and rate-limit gauges under LiteLLM's names and labels, so dashboards and alerts made for its
 * Prometheus integration read litegate's; those LiteLLM has no counterpart for are `litegate_` ones.
 * As LiteLLM does, a remaining budget reads +Inf where there is no budget, and max and hours are then
 * left out. Written when scraped, from the entities held in memory (see governance/gauges.ts).
 */

const number = (value: number) => (value === Infinity ? "+Inf" : value === -Infinity ? "-Inf" : String(value));

class Family {
  private text = "";
  constructor(private readonly name: string, private readonly help: string, private readonly labels: readonly string[]) {}
  add(values: readonly string[], value: number): void {
    this.text += `${this.name}${this.labels.length ? `{${labelText(this.labels, values)}}` : ""} ${number(value)}\n`;
  }
  render(): string {
    return `# HELP ${this.name} ${this.help}\n# TYPE ${this.name} gauge\n${this.text}`;
  }
}

/** The three gauges of a budget holder: remaining, max, hours until its period ends. */
function budgetFamilies(remaining: string, max: string, hours: string, who: string, labels: readonly string[]) {
  const families = [
    new Family(remaining, `Remaining budget for ${who} (max_budget less spend; +Inf without a budget)`, labels),
    new Family(max, `Maximum budget set for ${who}`, labels),
    new Family(hours, `Hours until the budget of ${who} resets`, labels),
  ] as const;
  return {
    families,
    add(values: readonly string[], budget: BudgetStanding, now: number) {
      if (budget.remaining !== null) families[0].add(values, budget.remaining);
      if (budget.max !== null) families[1].add(values, budget.max);
      if (budget.max !== null && budget.resetsAt !== null) families[2].add(values, (budget.resetsAt - now) / 3_600_000);
    },
  };
}

export function renderStandings(standings: Standings): string {
  const now = standings.at;
  const keyLabels = ["hashed_api_key", "api_key_alias"];
  const keys = budgetFamilies("litellm_remaining_api_key_budget_metric", "litellm_api_key_max_budget_metric", "litellm_api_key_budget_remaining_hours_metric", "api key", keyLabels);
  const teams = budgetFamilies("litellm_remaining_team_budget_metric", "litellm_team_max_budget_metric", "litellm_team_budget_remaining_hours_metric", "team", ["team", "team_alias"]);
  const users = budgetFamilies("litellm_remaining_user_budget_metric", "litellm_user_max_budget_metric", "litellm_user_budget_remaining_hours_metric", "user", ["user"]);
  const customers = budgetFamilies("litegate_remaining_end_user_budget", "litegate_end_user_max_budget", "litegate_end_user_budget_remaining_hours", "end user (customer)", ["end_user"]);
  const gateway = budgetFamilies("litegate_remaining_proxy_budget", "litegate_proxy_max_budget", "litegate_proxy_budget_remaining_hours", "the whole gateway, litellm_settings.max_budget", []);
  const modelRequests = new Family("litellm_remaining_api_key_requests_for_model", "Remaining requests in the running minute for api key and model (its rpm limit for the model)", [...keyLabels, "model"]);
  const modelTokens = new Family("litellm_remaining_api_key_tokens_for_model", "Remaining tokens in the running minute for api key and model (its tpm limit for the model)", [...keyLabels, "model"]);
  const keyRequests = new Family("litegate_remaining_api_key_requests", "Remaining requests in the running minute for api key (its rpm_limit)", keyLabels);
  const keyTokens = new Family("litegate_remaining_api_key_tokens", "Remaining tokens in the running minute for api key (its tpm_limit)", keyLabels);

  const members = budgetFamilies("litegate_remaining_team_member_budget", "litegate_team_member_max_budget", "litegate_team_member_budget_remaining_hours",
    "user in team (max_budget_in_team)", ["team", "user"]);
  const modelBudgets = {
    key: budgetFamilies("litegate_remaining_api_key_model_budget", "litegate_api_key_model_max_budget", "litegate_api_key_model_budget_remaining_hours",
      "api key and model (model_max_budget)", [...keyLabels, "model"]),
    team: budgetFamilies("litegate_remaining_team_model_budget", "litegate_team_model_max_budget", "litegate_team_model_budget_remaining_hours",
      "team and model (model_max_budget)", ["team", "team_alias", "model"]),
    user: budgetFamilies("litegate_remaining_user_model_budget", "litegate_user_model_max_budget", "litegate_user_model_budget_remaining_hours",
      "user and model (model_max_budget)", ["user", "model"]),
    "end user": budgetFamilies("litegate_remaining_end_user_model_budget", "litegate_end_user_model_max_budget", "litegate_end_user_model_budget_remaining_hours",
      "end user (customer) and model (its budget's model_max_budget)", ["end_user", "model"]),
  };
  const roomFamilies = (holder: string, who: string, labels: readonly string[]) => ({
    rpm: new Family(`litegate_remaining_${holder}_requests`, `Remaining requests in the running minute for ${who} (its rpm_limit)`, labels),
    tpm: new Family(`litegate_remaining_${holder}_tokens`, `Remaining tokens in the running minute for ${who} (its tpm_limit)`, labels),
  });
  const rooms = {
    team: roomFamilies("team", "team", ["team", "team_alias"]),
    user: roomFamilies("user", "user", ["user"]),
    "end user": roomFamilies("end_user", "end user (customer)", ["end_user"]),
  };
  const teamModelRooms = {
    rpm: new Family("litegate_remaining_team_requests_for_model", "Remaining requests in the running minute for team and model (its metadata's model_rpm_limit)", ["team", "team_alias", "model"]),
    tpm: new Family("litegate_remaining_team_tokens_for_model", "Remaining tokens in the running minute for team and model (its metadata's model_tpm_limit)", ["team", "team_alias", "model"]),
  };

  for (const key of standings.keys) {
    const values = [key.token, key.alias ?? ""];
    keys.add(values, key.budget, now);
    for (const limit of key.limits) {
      if (limit.model === null) (limit.kind === "rpm" ? keyRequests : keyTokens).add(values, limit.remaining);
      else (limit.kind === "rpm" ? modelRequests : modelTokens).add([...values, limit.model], limit.remaining);
    }
  }
  for (const [id, team] of standings.teams) teams.add([id, team.alias ?? ""], team.budget, now);
  for (const [id, budget] of standings.users) users.add([id], budget, now);
  for (const [id, budget] of standings.customers) customers.add([id], budget, now);
  if (standings.gateway) gateway.add([], standings.gateway, now);
  for (const { team, user, budget } of standings.members.values()) members.add([team, user], budget, now);
  for (const { holder, id, alias, model, budget } of standings.modelBudgets) {
    modelBudgets[holder].add(holder === "key" || holder === "team" ? [id, alias ?? "", model] : [id, model], budget, now);
  }
  for (const { holder, id, alias, limits } of standings.rooms) {
    const values = holder === "team" ? [id, alias ?? ""] : [id];
    for (const limit of limits) {
      if (limit.model === null) rooms[holder][limit.kind].add(values, limit.remaining);
      else teamModelRooms[limit.kind].add([...values, limit.model], limit.remaining);
    }
  }
  return [...keys.families, ...teams.families, ...users.families, ...customers.families, ...gateway.families,
    modelRequests, modelTokens, keyRequests, keyTokens, ...members.families, ...Object.values(modelBudgets).flatMap((b) => b.families),
    ...Object.values(rooms).flatMap((r) => [r.rpm, r.tpm]), teamModelRooms.rpm, teamModelRooms.tpm].map((family) => family.render()).join("");
}
