import { describe, expect, it } from 'vitest'
import { promisesSameBitsEverywhere } from '../protocol/index.ts'
import { activateKernelBundle, DETERMINISTIC_BUNDLE_DIGEST, EXACT_KERNEL_BUNDLE, KERNEL_BUNDLE, knownKernelBundles, UnsupportedKernelBundleError } from './config.ts'

describe('kernel bundle', () => {
  it('is pinned: editing a registered kernel changes this id, and with it every job id that names it', () => {
    expect(DETERMINISTIC_BUNDLE_DIGEST).toBe('52745cfc39b27e85')
    expect(KERNEL_BUNDLE).toBe('tabtrain-det-v2-52745cfc39b27e85+tfjs-webgpu-4.22.0-p3')
    expect(knownKernelBundles()).toContain(KERNEL_BUNDLE)
    // Exact mode: the digest covers the exact matmul and every soft-float element-wise and reduction program.
    expect(EXACT_KERNEL_BUNDLE).toBe('tabtrain-exact-v2-fcf9532f9043bc93+exact-matmul/v1/limbs=3/minPairOrder=1+softfloat+tfjs-webgpu-4.22.0')
    expect(knownKernelBundles()).toContain(EXACT_KERNEL_BUNDLE)
    // Pages tell exact mode (any difference is evidence) from the default bundle by the id alone.
    expect(promisesSameBitsEverywhere(EXACT_KERNEL_BUNDLE)).toBe(true)
    expect(promisesSameBitsEverywhere(KERNEL_BUNDLE)).toBe(false)
  })

  it('refuses a bundle this build does not have, naming the ones it has', () => {
    expect(() => activateKernelBundle('someone-elses-kernels-v9')).toThrow(UnsupportedKernelBundleError)
    expect(() => activateKernelBundle('someone-elses-kernels-v9')).toThrow(/someone-elses-kernels-v9.*tabtrain-det-v2/)
  })
})
