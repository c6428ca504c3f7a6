import { describe, expect, it } from 'vitest'
import { canonicalJson, canonicalJsonHash } from './canonicalJson.ts'
import { hashSchema, isHash, sha256Hex } from './hash.ts'
import { JobSpecError, examplesPerUnit, jobSpecHash, jobSpecJson, parseJobSpec, type JobSpec } from './jobSpec.ts'

const h = (byte: string) => `0x${byte.repeat(32)}`

/** A valid spec built by hand (no tfjs): the topology is opaque to the protocol. */
function validSpecInput() {
  return {
    version: 1,
    name: 'test job',
    description: 'a job for the protocol tests',
    seed: 42,
    model: { format: 'tfjs-layers', topology: { class_name: 'Sequential', config: { name: 'm', layers: [] } }, initialWeights: h('aa') },
    data: {
      format: 'idx-classification',
      name: 'digits',
      inputShape: [784],
      classes: 10,
      scale: 255,
      train: { images: h('01'), labels: h('02'), count: 8000 },
      heldOut: { images: h('03'), labels: h('04'), count: 2000 },
    },
    training: {
      innerOptimizer: 'adam',
      learningRate: 0.003,
      batchSize: 32,
      innerSteps: 10,
      unitsPerRound: 4,
      rounds: 40,
      outerOptimizer: 'average',
      outerLearningRate: 1,
      leaseTtlSeconds: 120,
    },
    kernelBundle: 'bundle-1',
  }
}

/** The same value with the keys of every object, at every depth, in reverse order. */
function reverseKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(reverseKeys)
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value as Record<string, unknown>).reverse().map(([k, v]) => [k, reverseKeys(v)]))
  }
  return value
}

function issuesOf(input: unknown): string[] {
  try {
    parseJobSpec(input)
  } catch (error) {
    expect(error).toBeInstanceOf(JobSpecError)
    return (error as JobSpecError).issues
  }
  throw new Error('parseJobSpec accepted the input')
}

describe('hash helpers', () => {
  it('sha256Hex gives 0x-prefixed lower-case hex (known vector)', () => {
    expect(sha256Hex(new TextEncoder().encode('abc'))).toBe('0xba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad')
    expect(sha256Hex(new Uint8Array())).toBe('0xe3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855')
  })

  it('isHash and hashSchema accept only 0x + 64 lower-case hex digits', () => {
    expect(isHash(h('ab'))).toBe(true)
    expect(isHash(h('AB'))).toBe(false)
    expect(isHash(h('ab').slice(0, -1))).toBe(false)
    expect(isHash(h('ab').slice(2))).toBe(false)
    expect(isHash(42)).toBe(false)
    expect(hashSchema.safeParse(h('ab')).success).toBe(true)
    expect(hashSchema.safeParse(h('AB')).success).toBe(false)
  })
})

describe('canonical JSON', () => {
  it('sorts keys at every depth and drops whitespace', () => {
    expect(canonicalJson({ b: 1, a: { d: [3, { z: 1, y: 2 }], c: 'x' } })).toBe('{"a":{"c":"x","d":[3,{"y":2,"z":1}]},"b":1}')
  })

  it('formats numbers the RFC 8785 way', () => {
    expect(canonicalJson([1.0, 1e21, 0.1, -0, 1e-7])).toBe('[1,1e+21,0.1,0,1e-7]')
  })

  it('is the same for any key order, and so is its hash', () => {
    const a = { x: 1, y: { p: true, q: null }, z: 'three' }
    const b = { z: 'three', y: { q: null, p: true }, x: 1 }
    expect(canonicalJson(a)).toBe(canonicalJson(b))
    expect(canonicalJsonHash(a)).toBe(canonicalJsonHash(b))
    expect(canonicalJsonHash(a)).toBe(sha256Hex(new TextEncoder().encode(canonicalJson(a))))
  })

  it('throws for values with no JSON form', () => {
    expect(() => canonicalJson(undefined)).toThrow(TypeError)
  })
})

describe('job spec', () => {
  it('parses a valid spec', () => {
    const spec = parseJobSpec(validSpecInput())
    expect(spec.name).toBe('test job')
    expect(spec.training.unitsPerRound).toBe(4)
  })

  it('jobSpecHash is stable under key reordering at every depth', () => {
    const spec = parseJobSpec(validSpecInput())
    const reordered = parseJobSpec(reverseKeys(validSpecInput()))
    expect(JSON.stringify(reordered)).not.toBe(JSON.stringify(spec))
    expect(jobSpecHash(reordered)).toBe(jobSpecHash(spec))
    expect(jobSpecJson(reordered)).toBe(jobSpecJson(spec))
    expect(isHash(jobSpecHash(spec))).toBe(true)
  })

  it('jobSpecHash is the SHA-256 of the canonical JSON', () => {
    const spec = parseJobSpec(validSpecInput())
    expect(jobSpecHash(spec)).toBe(sha256Hex(new TextEncoder().encode(jobSpecJson(spec))))
    expect(jobSpecJson(spec).startsWith('{"data":{"classes":10,')).toBe(true)
  })

  it('jobSpecHash changes when any field changes', () => {
    const base = jobSpecHash(parseJobSpec(validSpecInput()))
    const variants: Array<(s: ReturnType<typeof validSpecInput>) => void> = [
      (s) => (s.seed = 43),
      (s) => (s.training.unitsPerRound = 5),
      (s) => (s.training.learningRate = 0.0031),
      (s) => (s.model.initialWeights = h('ab')),
      (s) => (s.data.heldOut.count = 1999),
      (s) => (s.description += ' '),
    ]
    const hashes = variants.map((mutate) => {
      const input = validSpecInput()
      mutate(input)
      return jobSpecHash(parseJobSpec(input))
    })
    expect(hashes).not.toContain(base)
    expect(new Set(hashes).size).toBe(hashes.length)
  })

  it('drops unknown keys, so they do not change the hash', () => {
    const input = { ...validSpecInput(), extra: 'ignored' }
    const spec = parseJobSpec(input)
    expect(spec).not.toHaveProperty('extra')
    expect(jobSpecHash(spec)).toBe(jobSpecHash(parseJobSpec(validSpecInput())))
  })

  it.each([
    ['version', (s: any) => (s.version = 2), /^version: /],
    ['name', (s: any) => (s.name = ''), /^name: /],
    ['seed', (s: any) => (s.seed = -1), /^seed: /],
    ['seed (non-integer)', (s: any) => (s.seed = 1.5), /^seed: /],
    ['model.format', (s: any) => (s.model.format = 'onnx'), /^model\.format: /],
    ['model.initialWeights', (s: any) => (s.model.initialWeights = h('AA')), /^model\.initialWeights: .*32-byte hex digest/],
    ['data.inputShape', (s: any) => (s.data.inputShape = []), /^data\.inputShape: /],
    ['data.inputShape.0', (s: any) => (s.data.inputShape = [0]), /^data\.inputShape\.0: /],
    ['data.scale', (s: any) => (s.data.scale = 0), /^data\.scale: /],
    ['data.train.images', (s: any) => delete s.data.train.images, /^data\.train\.images: /],
    ['data.heldOut.count', (s: any) => (s.data.heldOut.count = 0), /^data\.heldOut\.count: /],
    ['training.innerOptimizer', (s: any) => (s.training.innerOptimizer = 'rmsprop'), /^training\.innerOptimizer: /],
    ['training.batchSize', (s: any) => (s.training.batchSize = 0), /^training\.batchSize: /],
    ['training.learningRate', (s: any) => (s.training.learningRate = '0.1'), /^training\.learningRate: /],
    ['training.unitsPerRound', (s: any) => (s.training.unitsPerRound = 1.5), /^training\.unitsPerRound: /],
    ['training.leaseTtlSeconds', (s: any) => (s.training.leaseTtlSeconds = 24 * 3600 + 1), /^training\.leaseTtlSeconds: /],
    ['training.outerOptimizer', (s: any) => (s.training.outerOptimizer = 'adamw'), /^training\.outerOptimizer: /],
    ['kernelBundle', (s: any) => delete s.kernelBundle, /^kernelBundle: /],
  ])('rejects a bad %s with a message naming the field', (_field, mutate, pattern) => {
    const input = validSpecInput()
    mutate(input)
    const issues = issuesOf(input)
    expect(issues).toHaveLength(1)
    expect(issues[0]).toMatch(pattern)
    expect(() => parseJobSpec(input)).toThrow(/^invalid job spec: /)
  })

  it('names every bad field at once', () => {
    const input = validSpecInput() as any
    input.training.batchSize = -3
    input.data.classes = 0
    delete input.model.topology
    const issues = issuesOf(input)
    expect(issues).toHaveLength(3)
    expect(issues.some((i) => i.startsWith('training.batchSize: '))).toBe(true)
    expect(issues.some((i) => i.startsWith('data.classes: '))).toBe(true)
    expect(issues.some((i) => i.startsWith('model.topology: '))).toBe(true)
  })

  it('takes the optional data set fields of uploads and text sets, and a spec without them hashes as before', () => {
    const base = validSpecInput()
    // The hand-built spec's hash, pinned (the same before the optional fields existed): they change no existing hash.
    expect(jobSpecHash(parseJobSpec(base))).toBe('0xb3607708cbaef9866a5dd11e4d7491a521c659a035d858aea6e3948192857ed7')
    expect(jobSpecJson(parseJobSpec(base))).not.toMatch(/inputEncoding|vocabulary|labelNames|featureNames|standardization/)
    const text = { ...base, data: { ...base.data, inputShape: [24, 65], classes: 65, scale: 1, inputEncoding: { kind: 'one-hot', depth: 65 }, vocabulary: 'abc' } }
    expect(parseJobSpec(text).data.inputEncoding).toEqual({ kind: 'one-hot', depth: 65 })
    const csv = {
      ...base,
      data: { ...base.data, inputShape: [2], classes: 3, scale: 1, labelNames: ['a', 'b', 'c'], featureNames: ['x', 'y'], standardization: { mean: [1, 2], std: [0.5, 3] } },
    }
    expect(parseJobSpec(csv).data.standardization).toEqual({ mean: [1, 2], std: [0.5, 3] })
    expect(jobSpecHash(parseJobSpec(csv))).not.toBe(jobSpecHash(parseJobSpec(base)))
    expect(issuesOf({ ...base, data: { ...base.data, inputEncoding: { kind: 'one-hot', depth: 300 } } })[0]).toMatch(/^data\.inputEncoding\.depth: /)
    expect(issuesOf({ ...base, data: { ...base.data, standardization: { mean: [0], std: [0] } } })[0]).toMatch(/^data\.standardization\.std\.0: /)
  })

  it('names the root when the input is not an object', () => {
    for (const input of [null, 'spec', 42, []]) {
      const issues = issuesOf(input)
      expect(issues[0]).toMatch(/^\(root\): /)
    }
  })

  it('examplesPerUnit is inner steps times batch size', () => {
    const spec: JobSpec = parseJobSpec(validSpecInput())
    expect(examplesPerUnit(spec.training)).toBe(320)
    expect(examplesPerUnit({ ...spec.training, innerSteps: 1, batchSize: 7 })).toBe(7)
  })
})
