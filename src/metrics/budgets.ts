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
  return [...keys.families, ...teams.families, ...users.families, ...customers.families, ...gateway.families,
    modelRequests, modelTokens, keyRequests, keyTokens].map((family) => family.render()).join("");
}
