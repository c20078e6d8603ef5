import { describe, expect, test } from "bun:test";
import { hashKey } from "../../src/auth/keys";
import { gatewayFor } from "../helpers/gateway";

/**
 * A row deleted while its requests are in flight and made again under the same id at once: what those
 * requests cost belongs to the row that is gone, not to the new one (which starts from nothing).
 */
for (const kind of ["pglite", "postgres"] as const) {
  describe(`made again while requests of the deleted one are in flight (${kind})`, () => {
    const g = gatewayFor(kind);
    const admin = async (path: string, body: unknown) => {
      const { status, body: answer } = await g.json(path, body);
      expect(`${path} ${status}`).toBe(`${path} 200`);
      return answer;
    };
    const setUp = async () => {
      await admin("/team/new", { team_id: `gen-team-${kind}`, max_budget: 10 });
      await admin("/user/new", { user_id: `gen-user-${kind}`, max_budget: 10, auto_create_key: false });
      await admin("/team/member_add", { team_id: `gen-team-${kind}`, member: { user_id: `gen-member-${kind}` }, max_budget_in_team: 10 });
      await admin("/key/generate", { key: `sk-gen-own-${kind}`, max_budget: 10 });
      await admin("/key/generate", { key: `sk-gen-team-${kind}`, team_id: `gen-team-${kind}`, user_id: `gen-member-${kind}` });
      await admin("/key/generate", { key: `sk-gen-user-${kind}`, user_id: `gen-user-${kind}` });
    };
    const spends = async () => {
      const [row] = await g.h.db.query(
        `select (select spend from keys where token = $1) as own, (select spend from keys where token = $2) as team_key,
                (select spend from keys where token = $3) as user_key, (select spend from teams where team_id = $4) as team,
                (select spend from users where user_id = $5) as user, (select spend from team_memberships where team_id = $4 and user_id = $6) as member,
                (select coalesce(sum(spend), 0) from key_model_spend where token = any(array[$1, $2, $3])) as models`,
        [hashKey(`sk-gen-own-${kind}`), hashKey(`sk-gen-team-${kind}`), hashKey(`sk-gen-user-${kind}`), `gen-team-${kind}`, `gen-user-${kind}`,
          `gen-member-${kind}`]);
      return Object.fromEntries(Object.entries(row as Record<string, unknown>).map(([k, v]) => [k, Number(v)]));
    };

    test("key, team, user and member made again count only their own requests; the deleted ones' log rows stay", async () => {
      await setUp();
      const keys = [`sk-gen-own-${kind}`, `sk-gen-team-${kind}`, `sk-gen-user-${kind}`];
      // Streams of the slow model: each holds its request open until its body is read.
      const streams = await Promise.all(keys.map((key) => g.h.chat(key, { stream: true }, "slow")));
      expect(streams.map((r) => r.status)).toEqual([200, 200, 200]);
      await admin("/key/delete", { keys });
      await admin("/team/delete", { team_ids: [`gen-team-${kind}`] });
      await admin("/user/delete", { user_ids: [`gen-user-${kind}`, `gen-member-${kind}`] });
      await setUp();
      // The rows made again spend first (their per-model rows made too), then the deleted ones' requests end.
      for (const key of keys) expect((await g.h.chat(key)).status).toBe(200);
      await g.h.flush();
      const own = await spends();
      for (const name of ["own", "team_key", "user_key", "team", "user", "member", "models"]) expect(own[name]).toBeGreaterThan(0);
      expect(own).toEqual({ ...own, team: own.team_key, member: own.team_key, user: own.user_key, models: own.own + own.team_key + own.user_key });

      for (const stream of streams) expect(await stream.text()).toContain("[DONE]");
      await g.h.flush();
      expect(await spends()).toEqual(own);
      const [{ n }] = (await g.h.db.query("select count(*)::int as n from spend_logs where api_key = any($1::text[]) and model = 'slow' and spend > 0",
        [keys.map(hashKey)])) as any;
      expect(n).toBe(3);
    });

    test("a key made again has all its parallel slots and a budget counter of its own while the deleted one's requests are in flight", async () => {
      const key = `sk-gen-slots-${kind}`;
      const make = () => admin("/key/generate", { key, max_parallel_requests: 1, max_budget: 10 });
      await make();
      const old = await g.h.chat(key, { stream: true }, "slow");
      expect(old.status).toBe(200);
      await admin("/key/delete", { keys: [key] });
      await make();
      const mine = await g.h.chat(key, { stream: true }, "slow");
      expect(mine.status).toBe(200);
      // The deleted key's stream ends: the slot it gives back is not the new key's.
      await old.text();
      const third = await g.h.chat(key, { stream: true }, "slow");
      expect(third.status).toBe(429);
      await third.text();
      await mine.text();
      // The budget counter counts the new key's requests alone: the spend the header shows is the stored one.
      const last = await g.h.chat(key);
      expect(last.status).toBe(200);
      await g.h.flush();
      const [{ spend }] = (await g.h.db.query("select spend from keys where token = $1", [hashKey(key)])) as any;
      expect(Number(last.headers.get("x-litellm-key-spend"))).toBeCloseTo(Number(spend), 12);
    });
  });
}
