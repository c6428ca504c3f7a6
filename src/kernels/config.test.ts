import { describe, expect, it } from 'vitest'
import { activateKernelBundle, DETERMINISTIC_MATMUL_DIGEST, EXACT_KERNEL_BUNDLE, KERNEL_BUNDLE, knownKernelBundles, UnsupportedKernelBundleError } from './config.ts'

describe('kernel bundle', () => {
  it('is pinned: editing a registered kernel changes this id, and with it every job id that names it', () => {
    expect(DETERMINISTIC_MATMUL_DIGEST).toBe('3e2fae6b9d01a3e2')
    expect(KERNEL_BUNDLE).toBe('tabtrain-matmul-det-v1-3e2fae6b9d01a3e2+tfjs-webgpu-4.22.0-p3')
    expect(knownKernelBundles()).toContain(KERNEL_BUNDLE)
    // Exact mode: the digest covers the exact matmul and every soft-float element-wise and reduction program.
    expect(EXACT_KERNEL_BUNDLE).toBe('tabtrain-exact-v2-fcf9532f9043bc93+exact-matmul/v1/limbs=3/minPairOrder=1+softfloat+tfjs-webgpu-4.22.0')
    expect(knownKernelBundles()).toContain(EXACT_KERNEL_BUNDLE)
  })

  it('refuses a bundle this build does not have, naming the ones it has', () => {
    expect(() => activateKernelBundle('someone-elses-kernels-v9')).toThrow(UnsupportedKernelBundleError)
    expect(() => activateKernelBundle('someone-elses-kernels-v9')).toThrow(/someone-elses-kernels-v9.*tabtrain-matmul-det-v1/)
  })
})
