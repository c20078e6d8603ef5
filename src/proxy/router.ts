import type { Deployment } from "../providers/types";

/** Model name → its deployments; several `model_list` entries with one name share the traffic. */
export class ModelRouter {
  private readonly byName = new Map<string, Deployment[]>();
  /** Model name → access groups, for model access checks. */
  readonly groups = new Map<string, string[]>();

  constructor(deployments: readonly Deployment[]) {
    for (const deployment of deployments) {
      const list = this.byName.get(deployment.modelName) ?? [];
      list.push(deployment);
      this.byName.set(deployment.modelName, list);
      const groups = deployment.modelInfo.access_groups;
      if (Array.isArray(groups)) {
        const known = this.groups.get(deployment.modelName) ?? [];
        this.groups.set(deployment.modelName, [...new Set([...known, ...groups.map(String)])]);
      }
    }
  }

  names(): string[] {
    return [...this.byName.keys()];
  }

  deploymentsOf(model: string): readonly Deployment[] {
    return this.byName.get(model) ?? [];
  }

  /** A deployment chosen at random, weighted by `litellm_params.weight` (default 1). */
  pick(model: string, exclude?: ReadonlySet<string>): Deployment | null {
    const all = this.byName.get(model);
    if (!all) return null;
    const candidates = exclude?.size ? all.filter((d) => !exclude.has(d.id)) : all;
    if (candidates.length <= 1) return candidates[0] ?? null;
    const weightOf = (d: Deployment) => {
      const weight = Number(d.params.weight ?? 1);
      return Number.isFinite(weight) && weight > 0 ? weight : 1;
    };
    let total = 0;
    for (const d of candidates) total += weightOf(d);
    let roll = Math.random() * total;
    for (const d of candidates) {
      roll -= weightOf(d);
      if (roll < 0) return d;
    }
    return candidates[candidates.length - 1]!;
  }
}
