import { parseUnits } from 'viem'
import { TRAINING_HELP } from '../../src/protocol/index.ts'

/**
 * The new-job form's hyperparameters: what each means in one line, and how a typed value is read. The
 * coordinator validates the draft again with the protocol's schema; this only catches typos before a
 * wallet is asked for anything.
 */
export interface HyperparameterField {
  key: TrainingKey
  label: string
  help: string
  kind: 'integer' | 'number' | 'choice'
  choices?: readonly string[]
  min?: number
  max?: number
  /** May be left empty: the key is then left out of the draft and the job takes the protocol's default. */
  optional?: boolean
  /** Shown in an empty field: the value the job gets when it is left empty. */
  placeholder?: string
}

export type TrainingKey =
  | 'innerOptimizer'
  | 'learningRate'
  | 'batchSize'
  | 'innerSteps'
  | 'unitsPerRound'
  | 'rounds'
  | 'outerOptimizer'
  | 'outerLearningRate'
  | 'outerMomentum'
  | 'leaseTtlSeconds'

/** The fields in form order; each field's help line is the protocol's (TRAINING_HELP), one home for it. */
export const HYPERPARAMETERS: readonly HyperparameterField[] = [
  { key: 'innerOptimizer', label: 'Inner optimizer', kind: 'choice', choices: ['adam', 'sgd'], help: TRAINING_HELP.innerOptimizer },
  { key: 'learningRate', label: 'Learning rate', kind: 'number', min: 1e-6, max: 10, help: TRAINING_HELP.learningRate },
  { key: 'batchSize', label: 'Batch size (B)', kind: 'integer', min: 1, max: 4096, help: TRAINING_HELP.batchSize },
  { key: 'innerSteps', label: 'Steps per unit (H)', kind: 'integer', min: 1, max: 10000, help: TRAINING_HELP.innerSteps },
  { key: 'unitsPerRound', label: 'Units per round (K)', kind: 'integer', min: 1, max: 10000, help: TRAINING_HELP.unitsPerRound },
  { key: 'rounds', label: 'Rounds (R)', kind: 'integer', min: 1, max: 1000000, help: TRAINING_HELP.rounds },
  { key: 'outerOptimizer', label: 'Outer optimizer', kind: 'choice', choices: ['average', 'nesterov'], help: TRAINING_HELP.outerOptimizer },
  { key: 'outerLearningRate', label: 'Outer learning rate', kind: 'number', min: 1e-6, max: 10, help: TRAINING_HELP.outerLearningRate },
  { key: 'outerMomentum', label: 'Outer momentum', kind: 'number', min: 0, max: 0.999, optional: true, placeholder: '0.9', help: TRAINING_HELP.outerMomentum },
  { key: 'leaseTtlSeconds', label: 'Lease time (s)', kind: 'integer', min: 1, max: 86400, help: TRAINING_HELP.leaseTtlSeconds },
]

/** Every field's value, except an optional field left empty. */
export type TrainingValues = Record<Exclude<TrainingKey, OptionalKey>, string | number> & Partial<Record<OptionalKey, number>>
type OptionalKey = 'outerMomentum'

export class FormFieldError extends Error {
  override name = 'FormFieldError'
  constructor(
    /** The id of the input that holds the bad value, so the page can mark and focus it. */
    readonly field: string,
    message: string,
  ) {
    super(message)
  }
}

/** Reads the typed hyperparameters into numbers, naming the first field that is not a valid value. */
export function readTraining(raw: Partial<Record<TrainingKey, string>>): TrainingValues {
  const out = {} as Record<TrainingKey, string | number>
  for (const field of HYPERPARAMETERS) {
    const text = (raw[field.key] ?? '').trim()
    if (field.optional && text === '') continue
    if (field.kind === 'choice') {
      if (!field.choices!.includes(text)) throw new FormFieldError(`hp-${field.key}`, `${field.label}: choose one of ${field.choices!.join(', ')}`)
      out[field.key] = text
      continue
    }
    const value = Number(text)
    if (text === '' || !Number.isFinite(value)) throw new FormFieldError(`hp-${field.key}`, `${field.label}: "${text}" is not a number`)
    if (field.kind === 'integer' && !Number.isInteger(value)) throw new FormFieldError(`hp-${field.key}`, `${field.label}: must be a whole number`)
    if ((field.min !== undefined && value < field.min) || (field.max !== undefined && value > field.max)) {
      throw new FormFieldError(`hp-${field.key}`, `${field.label}: must be between ${field.min} and ${field.max}`)
    }
    out[field.key] = value
  }
  return out as TrainingValues
}

/** A token amount typed by a person ("12.5") in base units; refuses what the token cannot represent. */
export function readAmount(field: string, label: string, text: string, decimals: number): bigint {
  const trimmed = text.trim()
  if (!/^\d+(\.\d+)?$/.test(trimmed)) throw new FormFieldError(field, `${label}: "${text}" is not an amount (digits, one optional decimal point)`)
  const fraction = trimmed.split('.')[1] ?? ''
  if (fraction.length > decimals) throw new FormFieldError(field, `${label}: at most ${decimals} decimals`)
  const value = parseUnits(trimmed, decimals)
  if (value <= 0n) throw new FormFieldError(field, `${label}: must be more than zero`)
  return value
}

/**
 * Units a budget must pay for: R × K primary units plus the spot checks, which are paid like any unit.
 * Checks run at up to 1 in 3 units while every address is new (docs/verification.md), so a budget for
 * R × K × 4/3 units never runs dry on checks; what is not spent is refunded.
 */
export function suggestedBudget(price: bigint, rounds: number, unitsPerRound: number): bigint {
  const primary = BigInt(rounds) * BigInt(unitsPerRound)
  return price * ((primary * 4n + 2n) / 3n)
}

/** Units a budget pays for at a price, for the help line under the budget field. */
export function unitsPaidFor(budget: bigint, price: bigint): bigint {
  return price > 0n ? budget / price : 0n
}
