#!/usr/bin/env bash
# Runs the kernel and op benchmarks on a real GPU through Dawn on Vulkan, and writes their tables to
# bench/results/gpu/<adapter>/ (kernels.md with GFLOP/s and the fraction of FP32 peak, ops.md), then the
# network benchmark with real training on tfjs-webgpu (network-webgpu.md: examples/s through a coordinator and
# 1, 2, 4 Node contributors against the plain loop on the same GPU; BENCH_NETWORK_* as in bench/network.ts,
# 30 s a row here unless set).
#
# Dawn's loader is pointed at SwiftShader by default where Chromium is installed (src/kernels/device.ts), so
# this picks the first Vulkan driver manifest that is not SwiftShader's, unless VK_ICD_FILENAMES is set.
# Set TABTRAIN_FP32_PEAK_GFLOPS for a GPU that bench/gpuPeak.ts does not know.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${VK_ICD_FILENAMES:-}" ]]; then
  for manifest in /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json; do
    [[ -e "$manifest" && "$manifest" != *swiftshader* && "$manifest" != *lvp* ]] || continue
    export VK_ICD_FILENAMES="$manifest"
    break
  done
fi
if [[ -z "${VK_ICD_FILENAMES:-}" ]]; then
  echo "bench/gpu.sh: no GPU Vulkan driver manifest in /usr/share/vulkan/icd.d or /etc/vulkan/icd.d (set VK_ICD_FILENAMES)" >&2
  exit 2
fi
echo "Vulkan driver: $VK_ICD_FILENAMES"
npx tsx bench/kernels.ts
npx tsx bench/ops.ts
BENCH_NETWORK_BACKEND=webgpu BENCH_NETWORK_SECONDS="${BENCH_NETWORK_SECONDS:-30}" npx tsx bench/network.ts
