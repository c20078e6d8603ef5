import type { Caller } from "../auth/principal";
import { GatewayError } from "../http/errors";

/**
 * Entries that mean "every model", as LiteLLM writes them. `all-team-models` on a team's key means
 * the team's models: the key allows everything, and the team's own list bounds it; on a key with no
 * team it allows nothing (there is no team list to bound it).
 */
const EVERYTHING = new Set(["*", "all-proxy-models"]);
const TEAM_MODELS = "all-team-models";

/** Names in model lists that are not models: never listed as one a wildcard entry serves. */
export const SPECIAL_NAMES: ReadonlySet<string> = new Set([...EVERYTHING, TEAM_MODELS]);

/** Model name → the access groups it belongs to (`model_info.access_groups`). */
export interface AccessGroups {
  get(model: string): readonly string[] | undefined;
}

function allows(list: readonly string[], model: string, groups: AccessGroups, onTeam: boolean): boolean {
  if (list.length === 0) return true;
  let modelGroups: readonly string[] | undefined;
  for (const entry of list) {
    if (entry === model || EVERYTHING.has(entry) || (entry === TEAM_MODELS && onTeam)) return true;
    if (entry.includes("*") && matchesPattern(entry, model)) return true;
    modelGroups ??= groups.get(model) ?? [];
    if (modelGroups.includes(entry)) return true;
  }
  return false;
}

/** A model list entry with `*` (`openai/*`), as LiteLLM matches it: each `*` stands for one or more characters. */
export function matchesPattern(pattern: string, name: string): boolean {
  const parts = pattern.split("*");
  const first = parts[0]!;
  const last = parts[parts.length - 1]!;
  if (!name.startsWith(first) || !name.endsWith(last) || name.length < first.length + last.length + parts.length - 1) return false;
  let at = first.length;
  for (let i = 1; i < parts.length - 1; i++) {
    const found = name.indexOf(parts[i]!, at + 1);
    if (found < 0) return false;
    at = found + parts[i]!.length;
  }
  return name.length - last.length > at;
}

/** The lists a caller's model access is bounded by: the key's own, then its team's or its user's. */
function listsOf(caller: Caller): { key: string[]; owner: string[]; ownerIsTeam: boolean } | null {
  if (caller.kind === "master") return null;
  const { key, team, user } = caller.principal;
  if (key.team_id) return { key: key.models, owner: team?.models ?? [], ownerIsTeam: true };
  return { key: key.models, owner: user?.models ?? [], ownerIsTeam: false };
}

/**
 * Whether a list allows `model` or `asked`, the alias (`router_settings.model_group_alias`) a request
 * named it by: each list may allow either name, as LiteLLM checks them (a key listing the alias on a
 * team listing the model it names may use it).
 */
function allowsEither(list: readonly string[], model: string, asked: string, groups: AccessGroups, onTeam: boolean): boolean {
  return allows(list, model, groups, onTeam) || (asked !== model && allows(list, asked, groups, onTeam));
}

export function mayUse(caller: Caller, model: string, groups: AccessGroups, asked = model): boolean {
  const lists = listsOf(caller);
  return !lists || (allowsEither(lists.key, model, asked, groups, lists.ownerIsTeam) && allowsEither(lists.owner, model, asked, groups, lists.ownerIsTeam));
}

/** Model names a caller's key (or its team or user) lists by name, for listing those a wildcard entry serves. */
export function namedModels(caller: Caller): string[] {
  const lists = listsOf(caller);
  return lists ? [...lists.key, ...lists.owner].filter((name) => !name.includes("*") && !SPECIAL_NAMES.has(name)) : [];
}

/** Throws 401 `key_model_access_denied` / `team_model_access_denied` naming what is allowed (`asked`: as in `mayUse`). */
export function checkModelAccess(caller: Caller, model: string, groups: AccessGroups, asked = model): void {
  const lists = listsOf(caller);
  if (!lists) return;
  if (!allowsEither(lists.key, model, asked, groups, lists.ownerIsTeam)) {
    throw new GatewayError(401, "key_model_access_denied",
      `API Key not allowed to access model. This key can only access models=${JSON.stringify(lists.key)}. Tried to access ${model}`, "model");
  }
  if (!allowsEither(lists.owner, model, asked, groups, lists.ownerIsTeam)) {
    const [type, who] = lists.ownerIsTeam ? ["team_model_access_denied", "Team"] : ["key_model_access_denied", "User"];
    throw new GatewayError(401, type,
      `${who} not allowed to access model. This ${who.toLowerCase()} can only access models=${JSON.stringify(lists.owner)}. Tried to access ${model}`, "model");
  }
}
