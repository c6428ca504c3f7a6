import type { Hex } from 'viem'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { CoordinatorClient } from '../../src/client/coordinatorClient.ts'
import { decodeUpdate, encodeTensorList, encodeUpdate, seededU32Stream, sha256Hex, type UpdateCompression, type Hash, type JobSpec, type TensorList, type WorkUnit } from '../../src/protocol/index.ts'
import { KERNEL_BUNDLE } from '../../src/kernels/config.ts'
import { memoryCached } from '../../src/worker/blobSource.ts'
import { useCpuKernelsFor } from '../../src/worker/cpuKernels.ts'
import { nodeDeviceClass } from '../../src/worker/nodeDeviceClass.ts'
import { Scheduler, type SchedulerEvent } from '../../src/worker/scheduler.ts'
import { createUnitRunner, type UnitOutput } from '../../src/worker/unitRunner.ts'

/**
 * Contributors that run the real worker code (the unit runner and the pull loop a tab uses) and then lie,
 * for the adversary suite and the verification benchmark. Each kind is a function of the honest answer.
 */
export type LiarKind =
  | 'scaled' // the honest update ×100
  | 'random' // uniform noise of the honest update's scale
  | 'zero' // no work at all
  | 'stale' // trained from the previous round's checkpoint, claimed for the current one
  | 'copy' // another unit's answer, whichever it can fetch
  | 'sometimes' // honest, except 5% of its units faked (zeroed)
  | 'copying-checker' // tries to fetch the unit's answer and submit it; computes when it cannot
  | 'colluder' // a pair that lies the same way, so they vouch for each other when one checks the other

export const PERSISTENT_LIARS: LiarKind[] = ['scaled', 'random', 'zero', 'stale', 'copy', 'colluder']

function scale(update: TensorList, factor: number): TensorList {
  return { shapes: update.shapes, values: update.values.map((v) => Float32Array.from(v, (x) => x * factor)) }
}

/** A deterministic lie for (round, unit): both colluders compute the same bits without talking. */
function colludersLie(update: TensorList, unit: WorkUnit): TensorList {
  const next = seededU32Stream(`collusion/${unit.round}/${unit.unit}`)
  return { shapes: update.shapes, values: update.values.map((v) => Float32Array.from(v, (x) => x * (1 + (next() % 1000) / 1000))) }
}

/** The lie, encoded as the job sends updates (int8 or float32), so only its content gives it away. */
function relabel(output: UnitOutput, update: TensorList, compression: UpdateCompression): UnitOutput {
  const bytes = encodeUpdate(compression, update)
  return { ...output, updateBytes: bytes, outputHash: sha256Hex(bytes) }
}

export interface LiarStats {
  units: number
  lies: number
  /** Lies the coordinator accepted (a lie whose lease ran out, or whose round closed, was never recorded). */
  acceptedLies: number
  /** Answers of other units the copying checker managed to fetch for the unit it held. */
  copied: number
  /** Times it tried to fetch its own unit's answer and was served nothing. */
  copyRefused: number
}

export function createAdversary(params: {
  kind: LiarKind | 'honest'
  coordinatorUrl: string
  jobId: Hash
  privateKey?: Hex
  onEvent?: (event: SchedulerEvent) => void
}): { scheduler: Scheduler; address: Hex; stats: LiarStats } {
  const privateKey = params.privateKey ?? generatePrivateKey()
  const client = new CoordinatorClient(params.coordinatorUrl)
  const runner = createUnitRunner(memoryCached({ get: (hash) => client.blob(hash) }))
  const stats: LiarStats = { units: 0, lies: 0, acceptedLies: 0, copied: 0, copyRefused: 0 }
  const lieHashes = new Set<string>()
  const account = privateKeyToAccount(privateKey)
  const honest = async (spec: JobSpec, unit: WorkUnit) => {
    await useCpuKernelsFor(spec, 'cpu')
    return { ...(await runner.run(spec, unit)), deviceClass: nodeDeviceClass(spec.kernelBundle) }
  }
  const lie = async (spec: JobSpec, unit: WorkUnit): Promise<UnitOutput> => {
    const before = stats.lies
    const answer = await tell(spec, unit)
    if (stats.lies > before) lieHashes.add(answer.outputHash)
    return answer
  }
  const tell = async (spec: JobSpec, unit: WorkUnit): Promise<UnitOutput> => {
    const output = await honest(spec, unit)
    stats.units += 1
    const update = decodeUpdate(spec.training.compression, output.updateBytes)
    switch (params.kind) {
      case 'honest':
        return output
      case 'scaled':
        stats.lies += 1
        return relabel(output, scale(update, 100), spec.training.compression)
      case 'zero':
        stats.lies += 1
        return relabel(output, scale(update, 0), spec.training.compression)
      case 'random': {
        stats.lies += 1
        const next = seededU32Stream(`noise/${account.address}/${unit.round}/${unit.unit}`)
        const size = update.values.reduce((m, v) => Math.max(m, ...v.map(Math.abs)), 0)
        return relabel(output, { shapes: update.shapes, values: update.values.map((v) => Float32Array.from(v, () => ((next() / 2 ** 32) * 2 - 1) * size)) }, spec.training.compression)
      }
      case 'stale': {
        const progress = await client.progress(unit.jobId)
        const previous = progress.history.find((r) => r.round === unit.round - 1)
        if (!previous) return output
        stats.lies += 1
        const stale = await runner.run(spec, { ...unit, inputHash: previous.inputHash })
        return { ...output, updateBytes: stale.updateBytes, outputHash: stale.outputHash }
      }
      case 'copy': {
        for (const other of [unit.unit + 1, unit.unit - 1, 0, 1, 2, 3]) {
          if (other === unit.unit || other < 0) continue
          const record = await client.unit(unit.jobId, unit.round, other).catch(() => null)
          if (record?.outputHash) {
            stats.lies += 1
            const bytes = await client.blob(record.outputHash)
            return { ...output, updateBytes: bytes, outputHash: sha256Hex(bytes) }
          }
        }
        // Nothing of this round to copy yet: last round's answer for the same index.
        const record = unit.round > 0 ? await client.unit(unit.jobId, unit.round - 1, unit.unit).catch(() => null) : null
        if (!record?.outputHash) return output
        stats.lies += 1
        const bytes = await client.blob(record.outputHash)
        return { ...output, updateBytes: bytes, outputHash: sha256Hex(bytes) }
      }
      case 'sometimes': {
        // One unit in twenty, starting with its second, so that a short run sees it cheat at least once.
        if (stats.units % 20 !== 2) return output
        stats.lies += 1
        return relabel(output, scale(update, 0), spec.training.compression)
      }
      case 'copying-checker': {
        const record = await client.unit(unit.jobId, unit.round, unit.unit).catch(() => null)
        if (record?.outputHash) {
          stats.copied += 1
          const bytes = await client.blob(record.outputHash).catch(() => null)
          if (bytes) return { ...output, updateBytes: bytes, outputHash: sha256Hex(bytes) }
        }
        stats.copyRefused += 1
        return output
      }
      case 'colluder':
        stats.lies += 1
        return relabel(output, colludersLie(update, unit), spec.training.compression)
    }
  }
  const scheduler = new Scheduler({
    client,
    executor: { runUnit: lie },
    signer: account,
    deviceClass: nodeDeviceClass(KERNEL_BUNDLE),
    jobId: params.jobId,
    onEvent: (event) => {
      if (event.type === 'unit-accepted' && lieHashes.has(event.report.outputHash)) stats.acceptedLies += 1
      params.onEvent?.(event)
    },
  })
  return { scheduler, address: account.address, stats }
}

/** Bytes of an all-zero update of the given shapes (for squatters and tests that need a lie fast). */
export function zeroUpdateBytes(shapes: number[][]): Uint8Array {
  return encodeTensorList({ shapes, values: shapes.map((s) => new Float32Array(s.reduce((a, b) => a * b, 1))) })
}
