/** The median of `reps` timed runs of `fn` after `warmup` untimed ones (pipelines compiled, caches warm), in ms. */
export async function medianMs(fn: () => Promise<void>, reps: number, warmup: number): Promise<number> {
  for (let i = 0; i < warmup; i++) await fn()
  const times: number[] = []
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now()
    await fn()
    times.push(performance.now() - t0)
  }
  times.sort((x, y) => x - y)
  return times[Math.floor(times.length / 2)]!
}
