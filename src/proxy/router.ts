import type { AccessGroups } from "../governance/access";
import { SUPPORTED_PROVIDERS } from "../providers";
import type { Deployment } from "../providers/types";
import { DeploymentSlots, NO_SLOT, type Release, type Taken } from "./slots";

export interface RouterSettings {
  /** Failures within a minute before a deployment is cooled down. */
  allowedFails: number;
  /** Seconds a failing deployment is skipped. */
  cooldownSeconds: number;
  /** Requests in flight at a deployment that sets no `max_parallel_requests` of its own (none: no cap). */
  defaultMaxParallel?: number;
}

/** What other instances sent to each deployment in the running minute (see redis/deployment-usage.ts): its caps count them too. */
export interface DeploymentUsage {
  /** Requests sent and tokens answered here at a capped deployment. */
  add(id: string, requests: number, tokens: number): void;
  /** What the other instances counted at the deployment this minute, as last heard. */
  others(id: string): { readonly requests: number; readonly tokens: number };
  /** The deployment was cooled down here until `until` (ms): the other instances hear of it. */
  cooled(id: string, until: number): void;
  /** Until when another instance cooled the deployment down (ms), as last heard; 0 for not. */
  cooledUntil(id: string): number;
  /**
   * A failure here at `at` (ms): how many the deployment had in the `windowMs` up to it, every instance's
   * counted (this one's included). Rejects when that cannot be known (Redis unreachable).
   */
  failedAt(id: string, at: number, windowMs: number): Promise<number>;
}

/** Failures count towards a cooldown for this long (LiteLLM's allowed_fails are per minute). */
const FAILURE_WINDOW_MS = 60_000;

interface Health {
  failures: number[];
  cooledUntil: number;
  minute: number;
  requests: number;
  tokens: number;
}

/** More literal characters first; among equals, fewer `*` (the sort is stable: then the file's order). */
function specificity(pattern: string): number {
  const stars = pattern.split("*").length - 1;
  return (pattern.length - stars) * 64 - stars;
}

/**
 * A wildcard entry's deployment for one name: each `*` of its upstream model takes what the name's
 * `*` matched. An upstream model with no provider (LiteLLM's catch-all `model: "*"`) goes to the
 * provider a name starts with (`anthropic/claude-…`), without that prefix, as LiteLLM sends it; it is
 * priced as that provider's model.
 */
function servedAs(d: Deployment, model: string, part: string): Deployment {
  const upstreamModel = d.upstreamModel.replaceAll("*", part);
  const slash = upstreamModel.indexOf("/");
  const named = slash > 0 ? upstreamModel.slice(0, slash) : "";
  if (!String(d.params.model).includes("/") && named !== "mock" && SUPPORTED_PROVIDERS.includes(named)) {
    return { ...d, modelName: model, provider: named, upstreamModel: upstreamModel.slice(slash + 1), wildcardMatch: model };
  }
  return { ...d, modelName: model, upstreamModel, wildcardMatch: model };
}

const positive = (value: unknown): number | undefined => {
  const n = Number(value);
  return value !== undefined && value !== null && Number.isFinite(n) && n > 0 ? n : undefined;
};

/** Whether a deployment sets an `rpm` or `tpm` cap. */
const capped = (d: Deployment) => positive(d.params.rpm) !== undefined || positive(d.params.tpm) !== undefined;

/** The pick weights of a group's deployments (see `ModelRouter.pick`). */
function weightsOf(deployments: readonly Deployment[]): number[] {
  for (const field of ["weight", "rpm", "tpm"] as const) {
    const set = deployments.map((d) => positive(d.params[field]));
    if (set.every((weight) => weight === undefined)) continue;
    // `weight` defaults to 1; an entry without a cap takes at least what the largest capped one does.
    const missing = field === "weight" ? 1 : Math.max(...set.map((weight) => weight ?? 0));
    return set.map((weight) => weight ?? missing);
  }
  return deployments.map(() => 1);
}

const NOWHERE_ELSE: readonly Deployment[] = [];

/** Names served by wildcard entries that are remembered (a client sending new names forever cannot grow it). */
const MATCHED_NAMES = 10_000;

/**
 * Model name → its deployments. Several `model_list` entries with one name share the traffic by
 * weight; deployments that keep failing are cooled down, and per-deployment rpm/tpm caps are kept
 * when choosing (summed over the instances sharing Redis, when they do).
 */
export class ModelRouter {
  private readonly byName = new Map<string, Deployment[]>();
  /** Entries whose model_name holds a `*` (`openai/*`): they serve any name they match, the most specific first. */
  private readonly wildcards: Array<{ pattern: RegExp; deployments: Deployment[] }> = [];
  /** Names served by a wildcard entry, as asked for (bounded: cleared when full). */
  private readonly matched = new Map<string, Deployment[] | null>();
  private readonly health = new Map<string, Health>();
  private readonly byId = new Map<string, Deployment>();
  /** Entry name → its access groups (`model_info.access_groups`). */
  private readonly groupsByName = new Map<string, string[]>();
  /**
   * A model's access groups, for model access checks: its own entry's, or those of the wildcard
   * entry that serves it (`openai/*` in a group grants `openai/gpt-4o`).
   */
  readonly groups: AccessGroups = {
    get: (model) => {
      if (this.byName.has(model)) return this.groupsByName.get(model);
      const wildcard = this.wildcards.find(({ pattern }) => pattern.test(model));
      return wildcard ? this.groupsByName.get(wildcard.deployments[0]!.modelName) : undefined;
    },
  };

  constructor(
    deployments: readonly Deployment[],
    private readonly settings: RouterSettings = { allowedFails: 3, cooldownSeconds: 60 },
    private readonly now: () => number = Date.now,
    /** Requests in flight per deployment: the gateway's one set outlives a reload's router. */
    private readonly slots = new DeploymentSlots(),
    /** With Redis: the other instances' counts at capped deployments (the gateway's one, as slots). */
    private readonly usage?: DeploymentUsage,
  ) {
    for (const deployment of deployments) {
      this.byId.set(deployment.id, deployment);
      if (deployment.modelName.includes("*")) {
        const source = `^${deployment.modelName.split("*").map((part) => part.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join("(.+)")}$`;
        const known = this.wildcards.find((w) => w.pattern.source === source);
        if (known) known.deployments.push(deployment);
        else this.wildcards.push({ pattern: new RegExp(source), deployments: [deployment] });
      }
      const list = this.byName.get(deployment.modelName) ?? [];
      list.push(deployment);
      this.byName.set(deployment.modelName, list);
      const groups = deployment.modelInfo.access_groups;
      if (Array.isArray(groups)) {
        const known = this.groupsByName.get(deployment.modelName) ?? [];
        this.groupsByName.set(deployment.modelName, [...new Set([...known, ...groups.map(String)])]);
      }
    }
    // The most specific pattern serves a name, as in LiteLLM: `priced/*` before `*`, whatever their order in the file.
    this.wildcards.sort((a, b) => specificity(b.deployments[0]!.modelName) - specificity(a.deployments[0]!.modelName));
  }

  names(): string[] {
    return [...this.byName.keys()];
  }

  /** Whether a name is an access group of some entry (a key listing it lists a group, not a model). */
  isGroup(name: string): boolean {
    for (const groups of this.groupsByName.values()) if (groups.includes(name)) return true;
    return false;
  }

  has(model: string): boolean {
    return this.resolve(model) !== undefined;
  }

  deploymentsOf(model: string): readonly Deployment[] {
    return this.resolve(model) ?? [];
  }

  /**
   * A name's deployments: its own entries, else those of the most specific wildcard entry it matches, as
   * LiteLLM routes them: `model_name: openai/*` with `model: openai/*` sends `openai/gpt-4o` upstream
   * as `gpt-4o` (see servedAs).
   */
  private resolve(model: string): Deployment[] | undefined {
    const exact = this.byName.get(model);
    if (exact || this.wildcards.length === 0) return exact;
    let found = this.matched.get(model);
    if (found === undefined) {
      found = null;
      for (const { pattern, deployments } of this.wildcards) {
        const match = pattern.exec(model);
        // A `*` stands for something, as in key model lists (../governance/access.ts): `openai/` alone names no model.
        if (!match) continue;
        const part = match[1]!;
        found = deployments.map((d) => servedAs(d, model, part));
        break;
      }
      if (this.matched.size >= MATCHED_NAMES) this.matched.clear();
      this.matched.set(model, found);
    }
    return found ?? undefined;
  }

  private state(id: string): Health {
    let h = this.health.get(id);
    if (!h) {
      h = { failures: [], cooledUntil: 0, minute: 0, requests: 0, tokens: 0 };
      this.health.set(id, h);
    }
    const minute = Math.floor(this.now() / 60_000);
    if (h.minute !== minute) {
      h.minute = minute;
      h.requests = 0;
      h.tokens = 0;
    }
    return h;
  }

  private available(d: Deployment): boolean {
    const h = this.state(d.id);
    if (this.cooledDown(d)) return false;
    const rpm = Number(d.params.rpm);
    const tpm = Number(d.params.tpm);
    const rpmCap = Number.isFinite(rpm) && rpm > 0;
    const tpmCap = Number.isFinite(tpm) && tpm > 0;
    if (rpmCap || tpmCap) {
      const others = this.usage?.others(d.id);
      if (rpmCap && h.requests + (others?.requests ?? 0) >= rpm) return false;
      if (tpmCap && h.tokens + (others?.tokens ?? 0) >= tpm) return false;
    }
    return this.hasSlot(d);
  }

  /** A deployment's `max_parallel_requests`, else router_settings' default, else none. */
  private capOf(d: Deployment): number | undefined {
    return positive(d.params.max_parallel_requests) ?? this.settings.defaultMaxParallel;
  }

  /** The deployments of the config that have a `max_parallel_requests` (their own or the default), with it. */
  caps(): Array<[id: string, cap: number]> {
    const caps: Array<[string, number]> = [];
    for (const [id, d] of this.byId) {
      const cap = this.capOf(d);
      if (cap !== undefined) caps.push([id, cap]);
    }
    return caps;
  }

  /** The cap of the deployment with this id, or undefined when it has none or is not in the config. */
  capById(id: string): number | undefined {
    const d = this.byId.get(id);
    return d && this.capOf(d);
  }

  /**
   * Whether the deployment has a free slot (one with no `max_parallel_requests` always has), as far as
   * this instance knows: with Redis, `take` may still find the other instances hold the rest.
   */
  hasSlot(d: Deployment): boolean {
    const cap = this.capOf(d);
    return cap === undefined || this.slots.free(d.id, cap);
  }

  /**
   * A deployment chosen at random among those not tried yet (and `eligible`), not cooled down and under
   * their caps; when all are unavailable, an untried one with a free slot, else any untried one (the rpm
   * and tpm caps are soft; a request at a deployment with no free slot waits for one, see `take`), one
   * cooling down last, and only as a first choice (`tried` empty), never for a retry. Weighted
   * as LiteLLM's simple shuffle: by `weight` when an entry of the group sets one, else by `rpm`, else by
   * `tpm` (an entry without the cap weighs as the group's largest), else evenly.
   */
  pick(model: string, tried?: ReadonlySet<string>, eligible?: (d: Deployment) => boolean): Deployment | null {
    // A wildcard entry's own name (`openai/*`) is a pattern of names, not one a request may ask for.
    const all = model.includes("*") ? undefined : this.resolve(model);
    if (!all) return null;
    let untried = tried?.size ? all.filter((d) => !tried.has(d.id)) : all;
    if (eligible) untried = untried.filter(eligible);
    if (untried.length === 0) return null;
    const healthy = untried.filter((d) => this.available(d));
    let candidates = healthy;
    if (candidates.length === 0) {
      // One not cooling down first; one cooling down only as a first choice, when every one is (a model
      // is not refused for it), never for a retry.
      const warm = untried.filter((d) => !this.cooledDown(d));
      const left = warm.length > 0 || tried?.size ? warm : untried;
      const open = left.filter((d) => this.hasSlot(d));
      candidates = open.length > 0 ? open : left;
    }
    if (candidates.length === 0) return null;
    if (candidates.length === 1) return candidates[0]!;
    const weights = weightsOf(candidates);
    let total = 0;
    for (const weight of weights) total += weight;
    let roll = Math.random() * total;
    for (let i = 0; i < candidates.length; i++) {
      roll -= weights[i]!;
      if (roll < 0) return candidates[i]!;
    }
    return candidates[candidates.length - 1]!;
  }

  /**
   * The deployments a request may wait for besides the one it was sent to (ModelRouter.take): those of
   * the model not tried yet (and `eligible`) and not cooled down, as `pick` would choose among.
   */
  alternatives(model: string, tried: ReadonlySet<string>, eligible?: (d: Deployment) => boolean): Deployment[] {
    const all = model.includes("*") ? undefined : this.resolve(model);
    return (all ?? []).filter((d) => !tried.has(d.id) && (!eligible || eligible(d)) && !this.cooledDown(d));
  }

  /**
   * A slot for one call, to give back when its answer is over (a stream's end): at the deployment at once
   * when it has no `max_parallel_requests` or one is free, else in turn at the first of it and `also`
   * where one is (the slot names which); null if `signal` aborts while it waits.
   */
  take(d: Deployment, signal: AbortSignal, also: readonly Deployment[] = NOWHERE_ELSE): Release | Promise<Taken | null> {
    const cap = this.capOf(d);
    if (cap === undefined) return NO_SLOT;
    return this.slots.take(d.id, cap, signal, also.length === 0 ? undefined : also.map((o) => [o.id, this.capOf(o) ?? Infinity] as const));
  }

  /** A request sent to the deployment: counted against its rpm cap from now, so that requests in flight count. */
  sent(d: Deployment): void {
    this.state(d.id).requests++;
    if (this.usage && capped(d)) this.usage.add(d.id, 1, 0);
  }

  /** A request's tokens, once known, counted against the deployment's tpm cap. */
  used(d: Deployment, tokens: number): void {
    this.state(d.id).tokens += tokens;
    if (this.usage && capped(d)) this.usage.add(d.id, 0, tokens);
  }

  /**
   * A failure (connection, 401, 429, 5xx): `allowedFails` within a minute, answers between them
   * included (as LiteLLM counts them), cool the deployment down. On a shared Redis the failures every
   * instance saw count (as LiteLLM's router keeps them there): this instance's own count decides at
   * once, the shared one when Redis answers.
   */
  failed(d: Deployment, retryAfterSeconds?: number): void {
    const h = this.state(d.id);
    const now = this.now();
    h.failures = h.failures.filter((at) => now - at < FAILURE_WINDOW_MS);
    h.failures.push(now);
    if (h.failures.length >= this.settings.allowedFails || retryAfterSeconds !== undefined) {
      const seconds = retryAfterSeconds !== undefined ? Math.max(retryAfterSeconds, 1) : this.settings.cooldownSeconds;
      this.coolDown(d, now, Math.min(seconds, this.settings.cooldownSeconds));
      return;
    }
    this.usage?.failedAt(d.id, now, FAILURE_WINDOW_MS).then((count) => {
      if (count >= this.settings.allowedFails && !this.cooledDown(d)) this.coolDown(d, this.now(), this.settings.cooldownSeconds);
    }, () => {
      // Redis unreachable: this instance's own failures still count.
    });
  }

  private coolDown(d: Deployment, now: number, seconds: number): void {
    const h = this.state(d.id);
    h.cooledUntil = now + seconds * 1000;
    h.failures = [];
    this.usage?.cooled(d.id, h.cooledUntil);
  }

  /** Cooled down here, or by another instance on the same Redis (as LiteLLM's router shares its cooldowns there). */
  cooledDown(d: Deployment): boolean {
    const now = this.now();
    return this.state(d.id).cooledUntil > now || (this.usage !== undefined && this.usage.cooledUntil(d.id) > now);
  }
}
