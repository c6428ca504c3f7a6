/**
 * A device's FP32 peak, to turn a kernel's GFLOP/s into a fraction of what the device could do. WebGPU does
 * not report it, so it comes from `TABTRAIN_FP32_PEAK_GFLOPS` when set, or else from this table of vendor
 * figures (non-tensor-core FP32, boost clock), matched on the adapter's description.
 */

/** Vendor FP32 peaks in GFLOP/s, by a substring of the adapter description (first match wins). */
export const KNOWN_FP32_PEAKS: ReadonlyArray<{ match: RegExp; gflops: number; source: string }> = [
  { match: /H200/i, gflops: 67_000, source: 'NVIDIA H200 SXM datasheet, FP32 67 TFLOPS' },
  { match: /H100.*PCIe/i, gflops: 51_000, source: 'NVIDIA H100 PCIe datasheet, FP32 51 TFLOPS' },
  { match: /H100/i, gflops: 67_000, source: 'NVIDIA H100 SXM datasheet, FP32 67 TFLOPS' },
  { match: /A100/i, gflops: 19_500, source: 'NVIDIA A100 datasheet, FP32 19.5 TFLOPS' },
  { match: /RTX 4090/i, gflops: 82_600, source: 'NVIDIA RTX 4090 spec, 82.6 TFLOPS' },
  { match: /L4\b/i, gflops: 30_300, source: 'NVIDIA L4 datasheet, FP32 30.3 TFLOPS' },
]

export interface Fp32Peak {
  gflops: number
  source: string
}

/** The peak for an adapter, or null when unknown (SwiftShader, or a GPU not in the table and no override). */
export function fp32Peak(adapterDescription: string): Fp32Peak | null {
  const override = Number(process.env.TABTRAIN_FP32_PEAK_GFLOPS)
  if (Number.isFinite(override) && override > 0) return { gflops: override, source: 'TABTRAIN_FP32_PEAK_GFLOPS' }
  if (/swiftshader/i.test(adapterDescription)) return null
  const known = KNOWN_FP32_PEAKS.find((p) => p.match.test(adapterDescription))
  return known ? { gflops: known.gflops, source: known.source } : null
}

/** The adapter as the results files name it. */
export function adapterLine(adapter: GPUAdapter): string {
  const info = adapter.info
  return `${info.vendor} / ${info.architecture} / ${info.device || ''} ${info.description || 'n/a'}`.replace(/\s+/g, ' ').trim()
}

/** True for a CPU implementation (SwiftShader): its timings say nothing about GPUs. */
export function isCpuAdapter(adapter: GPUAdapter): boolean {
  return /swiftshader/i.test(`${adapter.info.architecture} ${adapter.info.description}`)
}

/**
 * Where result files go: bench/results for the CPU adapter of CI machines, bench/results/gpu/<adapter> for a
 * real GPU, so a GPU run never overwrites the SwiftShader tables and vice versa.
 */
export function resultsDirectory(root: string, adapter: GPUAdapter): string {
  if (isCpuAdapter(adapter)) return `${root}/bench/results`
  const slug = `${adapter.info.vendor}-${adapter.info.description || adapter.info.architecture}`.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '')
  return `${root}/bench/results/gpu/${slug}`
}
