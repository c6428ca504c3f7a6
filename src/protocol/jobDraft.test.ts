import { describe, expect, it } from 'vitest'
import { parseJobDraft } from './jobDraft.ts'
import { PRESETS, TRAINING_HELP } from './presetCatalog.ts'

const payment = { pricePerUnit: '1000', budget: '5000', requester: '0x70997970c51812dc3a010c7d01b50e0d17dc79c8' }

describe('job drafts', () => {
  it('accepts a preset draft and a bring-your-own draft, normalising the requester address', () => {
    const preset = parseJobDraft({ preset: 'mnist-cnn', name: ' digits ', kernelBundle: 'default', training: { rounds: 5 }, payment })
    expect(preset.ok && preset.draft.name).toBe('digits')
    expect(preset.ok && preset.draft.payment.requester).toBe('0x70997970C51812dc3A010C7d01b50e0d17dc79C8')
    const own = parseJobDraft({ name: 'penguins', kernelBundle: 'exact', payment, data: { labelColumn: 'Species', dropIncompleteRows: true } })
    expect(own.ok).toBe(true)
  })

  it('names every bad field: unknown preset, unknown training key, budget below price, unknown data option', () => {
    const result = parseJobDraft({
      preset: 'cifar',
      name: 'x',
      kernelBundle: 'default',
      training: { rounds: 5, momentum: 0.9 },
      payment: { ...payment, budget: '10' },
      data: { labelColum: 'Species' },
    })
    expect(result.ok).toBe(false)
    const issues = result.ok ? [] : result.issues
    expect(issues.some((i) => i.startsWith('preset: '))).toBe(true)
    expect(issues.some((i) => i.startsWith('training: ') && i.includes('momentum'))).toBe(true)
    expect(issues).toContain('payment.budget: budget must pay for at least one unit')
    expect(issues.some((i) => i.startsWith('data: ') && i.includes('labelColum'))).toBe(true)
  })

  it('accepts the outer Nesterov optimizer and its momentum, and refuses a momentum of 1 or more', () => {
    const draft = parseJobDraft({ preset: 'mnist-mlp', name: 'digits', kernelBundle: 'default', training: { outerOptimizer: 'nesterov', outerLearningRate: 0.4, outerMomentum: 0.8 }, payment })
    expect(draft.ok && draft.draft.training).toEqual({ outerOptimizer: 'nesterov', outerLearningRate: 0.4, outerMomentum: 0.8 })
    const diverging = parseJobDraft({ preset: 'mnist-mlp', name: 'digits', kernelBundle: 'default', training: { outerOptimizer: 'nesterov', outerMomentum: 1 }, payment })
    expect(diverging.ok ? [] : diverging.issues).toEqual([expect.stringMatching(/^training\.outerMomentum: /)])
  })

  it('has one line of help per hyperparameter, optional ones included, and defaults that are valid drafts', () => {
    for (const key of ['outerMomentum', 'maxStaleness', 'maxInnerSteps', 'compression'] as const) expect(TRAINING_HELP[key].length).toBeGreaterThan(20)

    for (const preset of PRESETS) {
      for (const key of Object.keys(preset.training)) expect(TRAINING_HELP[key as keyof typeof TRAINING_HELP]).toBeTruthy()
      expect(parseJobDraft({ preset: preset.id, name: preset.title, kernelBundle: 'default', training: preset.training, payment }).ok).toBe(true)
    }
  })
})
