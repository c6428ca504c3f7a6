/**
 * A compute program in one piece: its WGSL, its workgroup size and its grid. tfjs-backend-webgpu builds
 * shaders from string fragments chosen at run time (per vendor, per adapter limit, per flag), which is
 * exactly what a deterministic kernel must not do; here a program's text is fixed by its `key`, and
 * anything that shapes a reduction is a module constant of the kernel that built it.
 *
 * `runProgram` runs a program on a bare `GPUDevice` (tests, benchmarks); kernels registered on tfjs
 * run the same WGSL through the backend's own buffers (see register.ts).
 */

export type Vec3 = readonly [number, number, number]

export interface KernelProgram {
  /** Cache key: shader identity plus every compile-time constant. Equal keys must mean equal `wgsl`. */
  key: string
  /** A complete module with entry point `_start`; binding i of group 0 is `buffers[i]` in `runProgram`. */
  wgsl: string
  workgroupSize: Vec3
  /** Workgroups per dimension. */
  dispatch: Vec3
}

/**
 * WebGPU's guaranteed minimum for maxComputeWorkgroupsPerDimension. A kernel that stays within it runs
 * on every device without reshaping its grid (tfjs reshapes larger grids, which changes what
 * `workgroup_id` means to the shader).
 */
export const MAX_WORKGROUPS_PER_DIMENSION = 65535

export class KernelProgramError extends Error {
  override name = 'KernelProgramError'
}

export class ShaderCompilationError extends KernelProgramError {
  override name = 'ShaderCompilationError'
}

export function checkDispatch(key: string, dispatch: Vec3): void {
  for (const d of dispatch) {
    if (!Number.isInteger(d) || d < 0 || d > MAX_WORKGROUPS_PER_DIMENSION) {
      throw new KernelProgramError(`${key}: dispatch [${dispatch.join(', ')}] exceeds ${MAX_WORKGROUPS_PER_DIMENSION} per dimension`)
    }
  }
}

const pipelines = new WeakMap<GPUDevice, Map<string, GPUComputePipeline>>()

/** The program's pipeline on `device`, compiled once per device and key. */
export async function programPipeline(device: GPUDevice, program: KernelProgram): Promise<GPUComputePipeline> {
  let perDevice = pipelines.get(device)
  if (!perDevice) {
    perDevice = new Map()
    pipelines.set(device, perDevice)
  }
  const cached = perDevice.get(program.key)
  if (cached) return cached
  const module = device.createShaderModule({ code: program.wgsl, label: program.key })
  const compiled = await module.getCompilationInfo()
  const errors = compiled.messages.filter((m) => m.type === 'error')
  if (errors.length > 0) {
    throw new ShaderCompilationError(
      `${program.key}: ${errors.map((m) => `${m.lineNum}:${m.linePos} ${m.message}`).join('; ')}`,
    )
  }
  const pipeline = await device.createComputePipelineAsync({
    label: program.key,
    layout: 'auto',
    compute: { module, entryPoint: '_start' },
  })
  perDevice.set(program.key, pipeline)
  return pipeline
}

/** Runs `program` once with binding i = `buffers[i]` and waits until the GPU has finished it. */
export async function runProgram(device: GPUDevice, program: KernelProgram, buffers: readonly GPUBuffer[]): Promise<void> {
  checkDispatch(program.key, program.dispatch)
  const pipeline = await programPipeline(device, program)
  const bindGroup = device.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: buffers.map((buffer, binding) => ({ binding, resource: { buffer } })),
  })
  device.pushErrorScope('validation')
  const encoder = device.createCommandEncoder({ label: program.key })
  const pass = encoder.beginComputePass()
  pass.setPipeline(pipeline)
  pass.setBindGroup(0, bindGroup)
  pass.dispatchWorkgroups(program.dispatch[0], program.dispatch[1], program.dispatch[2])
  pass.end()
  device.queue.submit([encoder.finish()])
  const error = await device.popErrorScope()
  if (error) throw new KernelProgramError(`${program.key}: ${error.message}`)
  await device.queue.onSubmittedWorkDone()
}

/** Buffer sizes must be multiples of 4; uniform bindings are padded to 16 for struct alignment. */
function paddedSize(bytes: number, multiple: number): number {
  return Math.max(multiple, Math.ceil(bytes / multiple) * multiple)
}

export function storageBuffer(device: GPUDevice, data: Float32Array | Int32Array | Uint32Array | number): GPUBuffer {
  const bytes = typeof data === 'number' ? data : data.byteLength
  const buffer = device.createBuffer({
    size: paddedSize(bytes, 4),
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
  })
  if (typeof data !== 'number') device.queue.writeBuffer(buffer, 0, data.buffer, data.byteOffset, data.byteLength)
  return buffer
}

export function uniformBuffer(device: GPUDevice, data: Int32Array | Uint32Array | Float32Array): GPUBuffer {
  const buffer = device.createBuffer({ size: paddedSize(data.byteLength, 16), usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST })
  device.queue.writeBuffer(buffer, 0, data.buffer, data.byteOffset, data.byteLength)
  return buffer
}

/** Copies `bytes` bytes of `buffer` back to the CPU. */
export async function readBuffer(device: GPUDevice, buffer: GPUBuffer, bytes: number): Promise<Uint8Array> {
  const size = paddedSize(bytes, 4)
  const staging = device.createBuffer({ size, usage: GPUBufferUsage.COPY_DST | GPUBufferUsage.MAP_READ })
  const encoder = device.createCommandEncoder()
  encoder.copyBufferToBuffer(buffer, 0, staging, 0, size)
  device.queue.submit([encoder.finish()])
  await staging.mapAsync(GPUMapMode.READ)
  const out = new Uint8Array(staging.getMappedRange().slice(0, bytes))
  staging.unmap()
  staging.destroy()
  return out
}
