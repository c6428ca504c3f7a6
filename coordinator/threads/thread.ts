import { parentPort } from 'node:worker_threads'
import { sha256Hex, type Hash, type JobSpec, type WorkUnit } from '../../src/protocol/index.ts'
import { memoryCached } from '../../src/worker/blobSource.ts'
import { useCpuKernelsFor } from '../../src/worker/cpuKernels.ts'
import { nodeDeviceClass } from '../../src/worker/nodeDeviceClass.ts'
import { createUnitRunner } from '../../src/worker/unitRunner.ts'
import { computeAggregate, type AggregateRequest, type AggregateResult } from '../aggregation/aggregate.ts'
import { JobRuntimes } from '../jobRuntime.ts'

/**
 * A coordinator worker thread (started by pool.ts), for the work that must not block the event loop:
 * - `compute`, the referee's re-execution: units computed exactly as an honest Node contributor computes
 *   them (nodeContributor.ts: the same unit runner, `useCpuKernelsFor(spec, 'cpu')`, the same device class);
 * - `aggregate`, a round close: the outer step over the round's updates and the held-out evaluation
 *   (coordinator/aggregation/aggregate.ts).
 * It reads no disk: every blob comes from the main thread by message and is checked against its hash here.
 * One piece of work at a time; the main thread queues.
 */

/** Main thread → thread. */
export type ToThread =
  | { type: 'compute'; id: number; spec: JobSpec; unit: WorkUnit }
  | { type: 'aggregate'; id: number; request: AggregateRequest }
  | { type: 'blob'; requestId: number; ok: true; bytes: Uint8Array }
  | { type: 'blob'; requestId: number; ok: false; message: string }

/** Thread → main thread. */
export type FromThread =
  | { type: 'blob'; requestId: number; hash: Hash }
  | { type: 'done'; id: number; outputHash: Hash; updateBytes: Uint8Array; deviceClass: string; ms: number }
  | { type: 'aggregated'; id: number; result: AggregateResult }
  | { type: 'failed'; id: number; name: string; message: string }

/** The main thread's blob source has no such blob (or failed to read it). */
export class BlobUnavailableError extends Error {
  override name = 'BlobUnavailableError'
}

/** Bytes that do not hash to the address they were asked for. */
export class BlobIntegrityError extends Error {
  override name = 'BlobIntegrityError'
}

if (!parentPort) throw new Error('thread.ts runs as a worker thread (see pool.ts)')
const port = parentPort

const pendingBlobs = new Map<number, { resolve: (bytes: Uint8Array) => void; reject: (error: Error) => void }>()
let nextBlobRequest = 0

/** Asks the main thread for a blob and checks it against its hash. */
const fetchBlob = {
    get(hash: Hash) {
      const requestId = nextBlobRequest++
      return new Promise<Uint8Array>((resolve, reject) => {
        pendingBlobs.set(requestId, {
          resolve: (bytes) => {
            if (!(bytes instanceof Uint8Array)) return reject(new BlobIntegrityError(`blob ${hash} arrived as ${typeof bytes}, not bytes`))
            const actual = sha256Hex(bytes)
            if (actual === hash) resolve(bytes)
            else reject(new BlobIntegrityError(`blob ${hash} arrived with hash ${actual}`))
          },
          reject,
        })
        port.postMessage({ type: 'blob', requestId, hash } satisfies FromThread)
      })
    },
  }
// Units and held-out sets reuse blobs (a job's shards, a round's checkpoint); a round close reads each
// checkpoint and update once, fresh from the main thread's store.
const source = memoryCached(fetchBlob)
const runner = createUnitRunner(source)
const runtimes = new JobRuntimes(source)

const fail = (id: number, error: unknown) => {
  const e = error instanceof Error ? error : new Error(String(error))
  port.postMessage({ type: 'failed', id, name: e.name, message: e.message } satisfies FromThread)
}

async function compute(id: number, spec: JobSpec, unit: WorkUnit): Promise<void> {
  try {
    const t0 = performance.now()
    await useCpuKernelsFor(spec, 'cpu')
    const out = await runner.run(spec, unit)
    const ms = performance.now() - t0
    // Hand the buffer over rather than copy it (slice first if the bytes are a view into a larger buffer).
    const own = out.updateBytes
    const updateBytes = own.byteOffset === 0 && own.byteLength === own.buffer.byteLength ? own : own.slice()
    const message: FromThread = { type: 'done', id, outputHash: out.outputHash, updateBytes, deviceClass: nodeDeviceClass(spec.kernelBundle), ms }
    port.postMessage(message, [updateBytes.buffer as ArrayBuffer])
  } catch (error) {
    fail(id, error)
  }
}

async function aggregate(id: number, request: AggregateRequest): Promise<void> {
  try {
    const result = await computeAggregate(request, (hash) => fetchBlob.get(hash), runtimes)
    // Copies go over: the blob cache may still hold the bytes the result was computed from.
    port.postMessage({ type: 'aggregated', id, result } satisfies FromThread)
  } catch (error) {
    fail(id, error)
  }
}

port.on('message', (message: ToThread) => {
  if (message.type === 'compute') {
    void compute(message.id, message.spec, message.unit)
    return
  }
  if (message.type === 'aggregate') {
    void aggregate(message.id, message.request)
    return
  }
  const pending = pendingBlobs.get(message.requestId)
  if (!pending) return
  pendingBlobs.delete(message.requestId)
  if (message.ok) pending.resolve(message.bytes)
  else pending.reject(new BlobUnavailableError(message.message))
})
