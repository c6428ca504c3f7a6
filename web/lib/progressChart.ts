import uPlot from 'uplot'
import 'uplot/dist/uPlot.min.css'
import type { JobProgress } from '../../src/protocol/index.ts'

/**
 * Held-out loss (left axis) and accuracy (right axis) per round: a point for the initial checkpoint at
 * round 0, then one per closed round.
 */
export function createProgressChart(container: HTMLElement): { update(progress: JobProgress): void } {
  const width = () => Math.max(320, container.clientWidth)
  const plot = new uPlot(
    {
      width: width(),
      height: 300,
      scales: { x: { time: false }, loss: { auto: true }, acc: { range: [0, 1] } },
      axes: [
        // Rounds are whole numbers: no ticks at 0.5.
        { label: 'round', incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000] },
        { scale: 'loss', label: 'held-out loss' },
        { scale: 'acc', side: 1, label: 'held-out accuracy', values: (_u, ticks) => ticks.map((t) => `${Math.round(t * 100)}%`), grid: { show: false } },
      ],
      series: [
        { label: 'round' },
        { label: 'held-out loss', scale: 'loss', stroke: '#c43a3a', width: 2, points: { show: true } },
        { label: 'train loss', scale: 'loss', stroke: '#e8a15c', width: 1.5, dash: [4, 4] },
        {
          label: 'accuracy',
          scale: 'acc',
          stroke: '#2f6fde',
          width: 2,
          points: { show: true },
          value: (_u, v) => (v == null ? '–' : `${(v * 100).toFixed(1)}%`),
        },
      ],
    },
    [[], [], [], []],
    container,
  )
  new ResizeObserver(() => plot.setSize({ width: width(), height: 300 })).observe(container)
  return {
    update(progress) {
      const rounds: number[] = []
      const heldOutLoss: (number | null)[] = []
      const trainLoss: (number | null)[] = []
      const accuracy: (number | null)[] = []
      if (progress.initial) {
        rounds.push(0)
        heldOutLoss.push(progress.initial.heldOutLoss)
        trainLoss.push(null)
        accuracy.push(progress.initial.heldOutAccuracy)
      }
      for (const r of progress.history) {
        rounds.push(r.round + 1)
        heldOutLoss.push(r.heldOutLoss)
        trainLoss.push(Number.isFinite(r.trainLoss) ? r.trainLoss : null)
        accuracy.push(r.heldOutAccuracy)
      }
      plot.setData([rounds, heldOutLoss, trainLoss, accuracy] as uPlot.AlignedData)
    },
  }
}
