import { PGlite } from '@electric-sql/pglite'
import pg from 'pg'

/**
 * The store speaks PostgreSQL SQL. Two engines behind one small interface: PGlite (PostgreSQL compiled to
 * WASM, in-process, persisted to a folder) as the embedded default, and a real server through `pg` when
 * DATABASE_URL is set. The SQL is the same for both; tests run the store suite on each.
 */
export interface Queryable {
  query<Row = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<Row[]>
}

export interface Database extends Queryable {
  readonly engine: 'pglite' | 'postgres'
  /** Runs `fn` inside BEGIN/COMMIT, rolling back if it throws. */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>
  close(): Promise<void>
}

export async function openPglite(dataDir?: string): Promise<Database> {
  const db = dataDir ? new PGlite(dataDir) : new PGlite()
  await db.waitReady
  return {
    engine: 'pglite',
    async query<Row>(sql: string, params: unknown[] = []) {
      return (await db.query<Row>(sql, params)).rows
    },
    async transaction<T>(fn: (tx: Queryable) => Promise<T>) {
      return db.transaction(async (tx) =>
        fn({
          async query<Row>(sql: string, params: unknown[] = []) {
            return (await tx.query<Row>(sql, params)).rows
          },
        }),
      ) as Promise<T>
    },
    async close() {
      await db.close()
    },
  }
}

export async function openPostgres(connectionString: string): Promise<Database> {
  const pool = new pg.Pool({ connectionString, max: 10 })
  // An idle pooled connection the server drops (a restart, a failover) emits 'error' on the pool; unhandled,
  // that would end the process. The pool replaces it, and the next query reports the outage if it lasts.
  pool.on('error', () => {})
  // Fail at start-up, not on the first request, when the server is unreachable.
  const client = await pool.connect()
  client.release()
  return {
    engine: 'postgres',
    async query<Row>(sql: string, params: unknown[] = []) {
      return (await pool.query(sql, params)).rows as Row[]
    },
    async transaction<T>(fn: (tx: Queryable) => Promise<T>) {
      const conn = await pool.connect()
      try {
        await conn.query('BEGIN')
        const result = await fn({
          async query<Row>(sql: string, params: unknown[] = []) {
            return (await conn.query(sql, params)).rows as Row[]
          },
        })
        await conn.query('COMMIT')
        return result
      } catch (error) {
        await conn.query('ROLLBACK').catch(() => {})
        throw error
      } finally {
        conn.release()
      }
    },
    async close() {
      await pool.end()
    },
  }
}

export async function openDatabase(options: { databaseUrl?: string; dataDir?: string }): Promise<Database> {
  return options.databaseUrl ? openPostgres(options.databaseUrl) : openPglite(options.dataDir)
}

/** Schema migrations, applied in order and recorded, so a data folder from an older build upgrades. */
const MIGRATIONS: string[] = [
  `CREATE TABLE jobs (
     id              text PRIMARY KEY,
     spec            jsonb NOT NULL,
     status          text NOT NULL DEFAULT 'active',
     round           integer NOT NULL DEFAULT 0,
     accepted_in_round integer NOT NULL DEFAULT 0,
     checkpoint      text NOT NULL,
     initial_loss    double precision,
     initial_accuracy double precision,
     created_at      bigint NOT NULL
   );
   CREATE TABLE units (
     job_id          text NOT NULL REFERENCES jobs(id),
     round           integer NOT NULL,
     unit            integer NOT NULL,
     status          text NOT NULL DEFAULT 'open',
     lease_id        text,
     leased_to       text,
     lease_expires_at bigint,
     leases_issued   integer NOT NULL DEFAULT 0,
     output_hash     text,
     signature       text,
     device_class    text,
     examples        integer,
     train_loss      double precision,
     accepted_at     bigint,
     PRIMARY KEY (job_id, round, unit)
   );
   CREATE TABLE leases (
     id              text PRIMARY KEY,
     job_id          text NOT NULL REFERENCES jobs(id),
     round           integer NOT NULL,
     unit            integer NOT NULL,
     contributor     text NOT NULL,
     issued_at       bigint NOT NULL,
     expires_at      bigint NOT NULL
   );
   CREATE UNIQUE INDEX units_lease_id ON units (lease_id);
   CREATE INDEX units_queue ON units (job_id, round, status, unit);
   CREATE TABLE rounds (
     job_id          text NOT NULL REFERENCES jobs(id),
     round           integer NOT NULL,
     input_hash      text NOT NULL,
     output_hash     text NOT NULL,
     closed_at       bigint NOT NULL,
     train_loss      double precision NOT NULL,
     held_out_loss   double precision NOT NULL,
     held_out_accuracy double precision NOT NULL,
     units           integer NOT NULL,
     PRIMARY KEY (job_id, round)
   );`,
  // Settlement. Everything chain-derived is keyed by `deployment` (chain id, distributor address and the
  // deployment block's hash), so a local chain that was reset never mixes with records of the old one.
  `CREATE TABLE job_funding (
     deployment      text NOT NULL,
     job_id          text NOT NULL REFERENCES jobs(id),
     requester       text,
     deposited       numeric(78, 0) NOT NULL DEFAULT 0,
     closed_tx       text,
     updated_at      bigint NOT NULL,
     PRIMARY KEY (deployment, job_id)
   );
   CREATE TABLE escrow_deposits (
     deployment      text NOT NULL,
     tx_hash         text NOT NULL,
     log_index       integer NOT NULL,
     job_id          text NOT NULL,
     requester       text NOT NULL,
     amount          numeric(78, 0) NOT NULL,
     block_number    bigint NOT NULL,
     PRIMARY KEY (deployment, tx_hash, log_index)
   );
   CREATE TABLE chain_cursor (
     deployment      text PRIMARY KEY,
     next_block      bigint NOT NULL
   );
   CREATE TABLE epochs (
     deployment      text NOT NULL,
     epoch           integer NOT NULL,
     root            text NOT NULL,
     total_cumulative numeric(78, 0) NOT NULL,
     job_totals      jsonb NOT NULL,
     tree            jsonb NOT NULL,
     accounts        integer NOT NULL,
     status          text NOT NULL,
     tx_hash         text,
     built_at        bigint NOT NULL,
     posted_at       bigint,
     claimable_at    bigint,
     PRIMARY KEY (deployment, epoch)
   );
   CREATE TABLE faucet_grants (
     deployment      text NOT NULL,
     address         text NOT NULL,
     granted_at      bigint NOT NULL,
     tx_hashes       jsonb NOT NULL
   );
   CREATE INDEX units_accepted ON units (job_id, accepted_at) WHERE status = 'accepted';`,
  // Verification (docs/verification.md). A unit slot (`units`) may be computed by several addresses: its
  // primary, whose update is averaged, and a check, whose update is only compared. Every lease and its
  // signed answer is an `attempts` row: what is paid, checked, committed on-chain and slashed.
  `CREATE TABLE settings (
     key             text PRIMARY KEY,
     value           text NOT NULL
   );
   CREATE TABLE lease_nonces (
     contributor     text NOT NULL,
     nonce           text NOT NULL,
     expires_at      bigint NOT NULL,
     PRIMARY KEY (contributor, nonce)
   );
   CREATE INDEX lease_nonces_expiry ON lease_nonces (expires_at);
   CREATE TABLE attempts (
     lease_id        text PRIMARY KEY,
     job_id          text NOT NULL REFERENCES jobs(id),
     round           integer NOT NULL,
     unit            integer NOT NULL,
     contributor     text NOT NULL,
     kind            text NOT NULL,
     status          text NOT NULL DEFAULT 'leased',
     issued_at       bigint NOT NULL,
     expires_at      bigint NOT NULL,
     input_hash      text NOT NULL,
     output_hash     text,
     device_class    text,
     claim           jsonb,
     signature       text,
     claim_digest    text,
     examples        integer,
     train_loss      double precision,
     submitted_at    bigint,
     verdict         text,
     verdict_reason  text,
     verdict_at      bigint,
     epoch           integer
   );
   CREATE INDEX attempts_unit ON attempts (job_id, round, unit);
   CREATE INDEX attempts_live ON attempts (job_id, contributor) WHERE status = 'leased';
   CREATE INDEX attempts_contributor ON attempts (contributor, submitted_at);
   CREATE INDEX attempts_pending_checks ON attempts (job_id, round, unit) WHERE kind = 'check' AND verdict = 'pending';
   CREATE INDEX attempts_unsettled ON attempts (job_id) WHERE epoch IS NULL AND verdict IS NOT NULL;
   ALTER TABLE units ADD COLUMN check_kind text;
   ALTER TABLE units ADD COLUMN check_status text;
   ALTER TABLE units ADD COLUMN check_wanted_at bigint;
   ALTER TABLE units ADD COLUMN referee_hash text;
   ALTER TABLE units ADD COLUMN check_class text;
   ALTER TABLE units ADD COLUMN referee_class text;
   CREATE INDEX units_checking ON units (check_status) WHERE check_status IN ('wanted', 'referee');
   ALTER TABLE rounds ADD COLUMN base_hash text;
   ALTER TABLE rounds ADD COLUMN rebuilds integer NOT NULL DEFAULT 0;
   ALTER TABLE rounds ADD COLUMN rebuilt_at bigint;
   ALTER TABLE rounds ADD COLUMN clipped integer NOT NULL DEFAULT 0;
   ALTER TABLE rounds ADD COLUMN dirty boolean NOT NULL DEFAULT false;
   CREATE INDEX attempts_output ON attempts (output_hash) WHERE verdict = 'pending';
   CREATE TABLE reputation (
     address         text PRIMARY KEY,
     units_accepted  integer NOT NULL DEFAULT 0,
     checks_passed   integer NOT NULL DEFAULT 0,
     checks_failed   integer NOT NULL DEFAULT 0,
     consecutive_clean integer NOT NULL DEFAULT 0,
     units_rejected  integer NOT NULL DEFAULT 0,
     leases_abandoned integer NOT NULL DEFAULT 0,
     slashes         integer NOT NULL DEFAULT 0,
     banned_at       bigint,
     banned_reason   text,
     updated_at      bigint NOT NULL
   );
   CREATE TABLE disputes (
     id              text PRIMARY KEY,
     kind            text NOT NULL,
     job_id          text NOT NULL,
     round           integer NOT NULL,
     unit            integer NOT NULL,
     contributor     text NOT NULL,
     lease_id        text NOT NULL,
     other_lease_id  text,
     referee_hash    text,
     status          text NOT NULL DEFAULT 'pending',
     tx_hash         text,
     slashed         numeric(78, 0),
     error           text,
     created_at      bigint NOT NULL,
     settled_at      bigint
   );
   INSERT INTO attempts (lease_id, job_id, round, unit, contributor, kind, status, issued_at, expires_at, input_hash,
                         output_hash, device_class, signature, examples, train_loss, submitted_at, verdict)
   SELECT u.lease_id, u.job_id, u.round, u.unit, u.leased_to, 'primary', 'submitted', coalesce(u.accepted_at, 0),
          coalesce(u.lease_expires_at, 0), coalesce(r.input_hash, j.checkpoint), u.output_hash, u.device_class, u.signature,
          u.examples, u.train_loss, u.accepted_at, 'unchecked'
     FROM units u JOIN jobs j ON j.id = u.job_id LEFT JOIN rounds r ON r.job_id = u.job_id AND r.round = u.round
    WHERE u.status = 'accepted' AND u.lease_id IS NOT NULL;
   UPDATE rounds SET base_hash = input_hash;
   DROP TABLE leases;`,
  // Settlement under attack. An epoch commits the claims it settled (claims_tree, claims_root: the root
  // DisputeResolver proves verdicts against) and what each account was owed per job (account_totals), so
  // that money a posted root charged stays counted for its account even after the account is banned or
  // its units are dropped. Escrows are keyed by (job, requester): job_funding mirrors the named
  // requester's escrow, with what it was charged and whether it was refunded (a refunded escrow is never
  // charged again). reputation.frozen_at: the chain froze the address's rewards (seconds, chain time).
  `ALTER TABLE epochs ADD COLUMN claims_root text;
   ALTER TABLE epochs ADD COLUMN claims_tree jsonb;
   ALTER TABLE epochs ADD COLUMN account_totals jsonb;
   ALTER TABLE job_funding ADD COLUMN charged numeric(78, 0) NOT NULL DEFAULT 0;
   ALTER TABLE job_funding ADD COLUMN refunded boolean NOT NULL DEFAULT false;
   ALTER TABLE reputation ADD COLUMN frozen_at bigint;
   CREATE INDEX attempts_epoch ON attempts (epoch) WHERE epoch IS NOT NULL;
   CREATE INDEX attempts_uncommitted ON attempts (job_id) WHERE epoch IS NULL AND status = 'submitted';`,
  // Requesters and embedding sites. jobs.status also takes 'paused' and 'cancelled' (owner actions);
  // jobs.budget_cap: the owner's own cap on spending, at most the escrow (null: the spec's budget);
  // jobs.origin: 'preset' or 'upload'. auth_nonces: Sign-In with Ethereum nonces, each good for one
  // sign-in. attempts.referrer: the site whose widget leased the unit, credited a share of its reward.
  `ALTER TABLE jobs ADD COLUMN budget_cap numeric(78, 0);
   ALTER TABLE jobs ADD COLUMN status_changed_at bigint;
   ALTER TABLE jobs ADD COLUMN origin text NOT NULL DEFAULT 'preset';
   CREATE TABLE auth_nonces (
     nonce     text PRIMARY KEY,
     issued_at bigint NOT NULL,
     used_at   bigint
   );
   ALTER TABLE attempts ADD COLUMN referrer text;`,
  // Scale (asynchronous rounds, outer momentum, unit sizing). units.applied_round: the round whose close
  // averaged the unit's answer (asynchronous jobs average an answer into the round open when it settles;
  // synchronous ones into its own round). units.inner_steps: the H the unit was issued with, when the
  // contributor sized it (null: the spec's H). rounds.momentum_hash: the outer Nesterov momentum after the
  // round, stored by hash like the checkpoint, so a rebuild recomputes it exactly.
  `ALTER TABLE units ADD COLUMN applied_round integer;
   ALTER TABLE units ADD COLUMN inner_steps integer;
   ALTER TABLE rounds ADD COLUMN momentum_hash text;
   CREATE INDEX units_unapplied ON units (job_id) WHERE status = 'accepted' AND applied_round IS NULL;`,
  // The lease path asks on every lease whether the job has a unit waiting for a check (coordinator/leasing.ts):
  // an index of only those units answers it, and finds the check, without scanning a round's accepted units.
  `CREATE INDEX units_check_wanted ON units (job_id, round, unit) WHERE check_status = 'wanted';`,
  // Retention (coordinator/ops/retention.ts, docs/operations.md). jobs.pruned_at: the job was sealed for
  // pruning (its rounds are final: no rebuild from here on); jobs.pruned_blobs: how many blobs the pass
  // deleted, set once they are gone (null while a sealed job's blobs are still being deleted).
  `ALTER TABLE jobs ADD COLUMN pruned_at bigint;
   ALTER TABLE jobs ADD COLUMN pruned_blobs integer;`,
  // Blobs in the database (coordinator/blobs/postgres.ts): what replicas on one PostgreSQL all reach without
  // a shared disk. Content-addressed: the hash is the key and a row never changes. Stored uncompressed out of
  // line (STORAGE EXTERNAL): weights and updates do not compress, so pglz would only spend time trying.
  `CREATE TABLE blobs (
     hash            text PRIMARY KEY,
     bytes           bytea NOT NULL,
     size            integer NOT NULL,
     created_at      bigint NOT NULL
   );
   ALTER TABLE blobs ALTER COLUMN bytes SET STORAGE EXTERNAL;`,
]

/** The schema version a migrated store is at: one per migration. */
export const SCHEMA_VERSION = MIGRATIONS.length

/** Applies every migration not yet recorded, in order, up to `upTo` (all of them by default). */
export async function migrate(db: Database, upTo = SCHEMA_VERSION): Promise<void> {
  await db.query(`CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, applied_at bigint NOT NULL)`)
  const rows = await db.query<{ version: number }>(`SELECT version FROM schema_migrations`)
  const applied = new Set(rows.map((r) => Number(r.version)))
  for (const [i, sql] of MIGRATIONS.entries()) {
    if (applied.has(i + 1) || i + 1 > upTo) continue
    await db.transaction(async (tx) => {
      for (const statement of sql.split(/;\s*$/m).filter((s) => s.trim())) await tx.query(statement)
      await tx.query(`INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)`, [i + 1, Date.now()])
    })
  }
}
