import { createHash } from 'node:crypto'
import pg from 'pg'
import { KeyedMutex } from './mutex.ts'

/**
 * Locks shared by every coordinator process (replica) on one PostgreSQL: session-level advisory locks,
 * each held on a connection of its own small pool, so that a lock holder never competes with its own
 * queries for a connection and holds no transaction open (a long transaction would hold back VACUUM). A
 * replica that dies loses its connections, and PostgreSQL drops its locks with them.
 *
 * What they serialise (docs/operations.md, "Replicas"): schema migrations at start-up, each job's round
 * closes and rebuilds (the second replica reads the store after the first committed, so an aggregate is
 * computed once), the referee's run of one unit, and the settlement tick (epoch roots, escrow closes,
 * dispute evidence, frozen sweeps: everything the coordinator's one chain account sends).
 *
 * A single process on the embedded store has no use for them: nothing else can open its PGlite folder.
 */
export interface ReplicaLocks {
  /** Waits until no other holder has `key`, then holds it until `release`. */
  acquire(key: string): Promise<HeldLock>
  /** Holds `key` if nobody else does now, or answers null at once (another replica is doing that work). */
  tryAcquire(key: string): Promise<HeldLock | null>
  close(): Promise<void>
}

export interface HeldLock {
  release(): Promise<void>
}

/** The pinned name of the settlement tick's lock: every replica of every version must agree on it. */
export const SETTLEMENT_LOCK = 'settlement'
export const MIGRATION_LOCK = 'migrations'
export const roundLockName = (jobId: string) => `round/${jobId}`
export const refereeLockName = (unit: string) => `referee/${unit}`

/**
 * The advisory lock key of a lock name: the first 8 bytes of SHA-256("tabtrain-lock\n" + name) as a signed
 * 64-bit integer. Single-bigint advisory keys never collide with the two-integer ones the lease path takes
 * (coordinator/leasing.ts): PostgreSQL keeps the two key spaces apart.
 */
export function advisoryKey(name: string): bigint {
  return createHash('sha256').update(`tabtrain-lock\n${name}`).digest().readBigInt64BE(0)
}

/** Connections of the lock pool; try-locks leave a few free so a waiting lock always gets one. */
const LOCK_CONNECTIONS = 12
const KEPT_FOR_WAITING_LOCKS = 4

export function postgresLocks(connectionString: string): ReplicaLocks {
  const pool = new pg.Pool({ connectionString, max: LOCK_CONNECTIONS })
  // A lock connection that breaks while idle in the pool must not take the process down.
  pool.on('error', () => {})
  let held = 0
  /** Connections holding a lock now: closed with the pool, so close() never waits on a holder. */
  const holding = new Set<pg.PoolClient>()
  // A lock connection lost while held (the server restarted) loses its lock; unhandled, the error would end the process.
  const lost = () => {}
  const hold = async (name: string, wait: boolean): Promise<HeldLock | null> => {
    // A try-lock's holder may go on to wait for another lock (a referee run closes the round after it): try-locks
    // never take the last connections, so waiting locks always get one and their holders (which take no
    // other lock) finish and free theirs.
    if (!wait && held >= LOCK_CONNECTIONS - KEPT_FOR_WAITING_LOCKS) return null
    held += 1
    const key = String(advisoryKey(name))
    let client: pg.PoolClient
    try {
      client = await pool.connect()
    } catch (error) {
      held -= 1
      throw error
    }
    client.on('error', lost)
    const done = (error?: Error) => {
      client.off('error', lost)
      holding.delete(client)
      client.release(error)
    }
    holding.add(client)
    try {
      if (wait) await client.query(`SELECT pg_advisory_lock($1::bigint)`, [key])
      else if (!(await client.query<{ ok: boolean }>(`SELECT pg_try_advisory_lock($1::bigint) AS ok`, [key])).rows[0]?.ok) {
        done()
        held -= 1
        return null
      }
    } catch (error) {
      done(error as Error)
      held -= 1
      throw error
    }
    let released = false
    return {
      async release() {
        if (released) return
        released = true
        held -= 1
        if (!holding.has(client)) return // closed with the pool
        try {
          await client.query(`SELECT pg_advisory_unlock($1::bigint)`, [key])
          done()
        } catch (error) {
          // A connection that cannot unlock is closed instead: the server drops its locks with it.
          done(error as Error)
        }
      },
    }
  }
  return {
    acquire: async (name) => (await hold(name, true))!,
    tryAcquire: (name) => hold(name, false),
    async close() {
      // Locks still held (a close or a referee run cut off by shutdown) go with their connections.
      for (const client of [...holding]) {
        holding.delete(client)
        client.release(new Error('closing the lock pool'))
      }
      await pool.end()
    },
  }
}

/** Runs `fn` holding `name` (waiting for it). */
export async function withLock<T>(locks: ReplicaLocks, name: string, fn: () => Promise<T>): Promise<T> {
  const lock = await locks.acquire(name)
  try {
    return await fn()
  } finally {
    await lock.release()
  }
}

/**
 * A job's round lock across replicas: the in-process mutex first (callers here queue without holding a
 * connection), then the advisory lock. closeRound and rebuildDirtyRounds read the store after taking it,
 * so the replica that waited finds the round closed and computes nothing.
 */
export class ReplicaRoundMutex extends KeyedMutex {
  constructor(private readonly locks: ReplicaLocks) {
    super()
  }

  override run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    return super.run(key, () => withLock(this.locks, roundLockName(key), fn))
  }
}
