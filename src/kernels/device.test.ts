import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { acquireNodeGpu, isUnavailable, SWIFTSHADER_ICD } from './device.ts'
import { setupTfjsWebgpu } from './testing/tfjsWebgpu.ts'

/**
 * The GPU tests skip cleanly where a machine has no adapter. This keeps them from skipping on a machine that
 * has one (CI installs Chromium's SwiftShader and libvulkan1): a module that imports
 * @tensorflow/tfjs-backend-webgpu as a value registers the backend before Dawn is installed, and every GPU
 * test would then skip quietly instead of failing.
 */
const hasSwiftShader = existsSync(SWIFTSHADER_ICD) && ['/usr/lib/x86_64-linux-gnu/libvulkan.so.1', '/usr/lib/aarch64-linux-gnu/libvulkan.so.1'].some(existsSync)

describe.skipIf(!hasSwiftShader)('a machine with SwiftShader and libvulkan runs the GPU tests', () => {
  it('gets a Dawn device and a tfjs webgpu backend in Node', async () => {
    const gpu = await acquireNodeGpu()
    expect(isUnavailable(gpu) ? gpu.unavailable : 'available').toBe('available')
    if (!isUnavailable(gpu)) await gpu.release()
    const tfjs = await setupTfjsWebgpu()
    expect(isUnavailable(tfjs) ? tfjs.unavailable : 'available').toBe('available')
    if (!isUnavailable(tfjs)) await tfjs.teardown()
  })
})

describe('kernel modules load tfjs-backend-webgpu only when a GPU is installed', () => {
  it('imports the package as types only (a value import registers the backend at load, before Dawn)', () => {
    const dir = import.meta.dirname
    const offenders = readdirSync(dir, { recursive: true, encoding: 'utf8' })
      .filter((file) => file.endsWith('.ts') && !file.endsWith('.test.ts'))
      .filter((file) => /^import (?!type )[^\n]*from '@tensorflow\/tfjs-backend-webgpu/m.test(readFileSync(join(dir, file), 'utf8')))
    expect(offenders).toEqual([])
  })
})
