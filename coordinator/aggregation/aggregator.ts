import type { Hash } from '../../src/protocol/index.ts'
import { createThreadPool, ThreadFailure, type ThreadPool } from '../threads/pool.ts'
import type { AggregateRequest, AggregateResult } from './aggregate.ts'

/** Computes round closes (aggregate.ts) somewhere other than the event loop. */
export interface Aggregator {
  aggregate(request: AggregateRequest, blob: (hash: Hash) => Promise<Uint8Array>): Promise<AggregateResult>
}

/** A round close that could not be computed; the round stays open and the next tick tries again. */
export class AggregationError extends Error {
  override name = 'AggregationError'
}

let shared: ThreadPool | null = null

/**
 * Round closes on one worker thread shared by every JobService of the process: a close is ~0.5 s of
 * averaging and held-out evaluation, which on the event loop would stall every lease and submission for as
 * long (issue 11 measured a median of 562 ms per close). One thread, because closes of one job are serialised
 * anyway and the coordinator shares a small machine with its referee thread. Each request brings its own blob
 * source, so services with different stores can share the thread.
 */
export function threadAggregator(): Aggregator {
  return {
    async aggregate(request, blob) {
      shared ??= createThreadPool({ threads: 1 })
      try {
        const answer = await shared.run({ type: 'aggregate', request }, blob)
        if (answer.type !== 'aggregated') throw new AggregationError(`the aggregation thread answered ${answer.type}`)
        return answer.result
      } catch (error) {
        if (error instanceof ThreadFailure) throw new AggregationError(`round ${request.jobId.slice(0, 10)}… could not be aggregated: ${error.message}`)
        throw error
      }
    },
  }
}

/**
 * Starts the aggregation thread ahead of the first close. A coordinator calls it as it starts: the thread loads
 * (seconds on a busy machine) while the store and the chain are opened, instead of after a restart, when a
 * round left complete by the crash is closed at once and the next one soon after.
 */
export function prestartAggregationThread(): void {
  shared ??= createThreadPool({ threads: 1 })
  shared.prestart()
}
