/**
 * Errors a WebGPU device reports without anyone asking: a shader that does not compile, a dispatch past a
 * limit, an out-of-memory. tfjs-webgpu creates its pipelines and submits its work without error scopes, so
 * such an error does not throw: the program does not run, its output buffer keeps whatever it held, and the
 * op "succeeds" with wrong values. A unit computed that way would be signed and refused (or slashed) for
 * output its contributor never meant; watching the device turns it into an error before anything is signed.
 */

/** The GPU reported errors while a unit was computed: its output is not trustworthy and is not submitted. */
export class GpuComputationError extends Error {
  override name = 'GpuComputationError'
  constructor(readonly messages: readonly string[]) {
    super(`the GPU reported ${messages.length} error(s) while computing; first: ${messages[0] ?? ''}`)
  }
}

export interface DeviceErrorWatch {
  /** Every message so far, oldest first. */
  readonly messages: readonly string[]
  /**
   * Runs `work`, then waits for the device to finish what was submitted and for pending error events, and
   * throws GpuComputationError if the device reported any error in between.
   */
  guard<T>(work: () => Promise<T>): Promise<T>
}

/** Starts recording `device`'s uncaptured errors (replacing any earlier `onuncapturederror` handler). */
export function watchDeviceErrors(device: GPUDevice): DeviceErrorWatch {
  const messages: string[] = []
  device.onuncapturederror = (event: GPUUncapturedErrorEvent) => {
    messages.push(event.error.message)
  }
  return {
    messages,
    async guard(work) {
      const before = messages.length
      const result = await work()
      await device.queue.onSubmittedWorkDone()
      // Error events are delivered as tasks: let any that are queued arrive.
      await new Promise((resolve) => setTimeout(resolve, 0))
      if (messages.length > before) throw new GpuComputationError(messages.slice(before))
      return result
    },
  }
}
