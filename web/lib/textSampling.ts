/**
 * Sampling text from a character-level language model whose input is the last `contextLength`
 * characters as one-hot vectors over `vocabulary` (the Tiny Shakespeare preset): pure functions, so the
 * page's sampling box and its tests share them.
 */

export class UnknownCharacterError extends Error {
  override name = 'UnknownCharacterError'
  readonly code = 'unknown_character'
}

/**
 * The ids of the last `contextLength` characters of `text`, left-padded with the id of the first
 * vocabulary character (the training windows never start before the text does, so any fixed pad is as
 * good; a space where the vocabulary has one reads most naturally).
 */
export function encodeContext(text: string, vocabulary: string, contextLength: number): Int32Array {
  const chars = [...vocabulary]
  const index = new Map(chars.map((c, i) => [c, i]))
  const pad = index.get(' ') ?? 0
  const out = new Int32Array(contextLength).fill(pad)
  const tail = [...text].slice(-contextLength)
  const offset = contextLength - tail.length
  tail.forEach((c, i) => {
    const id = index.get(c)
    if (id === undefined) throw new UnknownCharacterError(`"${c}" is not in the model's vocabulary`)
    out[offset + i] = id
  })
  return out
}

/** One-hot rows for `ids`, flattened row-major: [contextLength, depth]. */
export function oneHot(ids: Int32Array, depth: number): Float32Array {
  const out = new Float32Array(ids.length * depth)
  ids.forEach((id, i) => {
    out[i * depth + id] = 1
  })
  return out
}

/**
 * Draws an index from softmax(logits / temperature) with `random()` in [0, 1). Temperature 0 takes the
 * most likely index; lower temperatures sharpen the distribution, higher ones flatten it.
 */
export function sampleIndex(logits: ArrayLike<number>, temperature: number, random: () => number): number {
  let best = 0
  for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[best]!) best = i
  if (temperature <= 0) return best
  const weights = new Float64Array(logits.length)
  let total = 0
  for (let i = 0; i < logits.length; i++) {
    // Shifted by the maximum so exp never overflows.
    weights[i] = Math.exp((logits[i]! - logits[best]!) / temperature)
    total += weights[i]!
  }
  let r = random() * total
  for (let i = 0; i < weights.length; i++) {
    r -= weights[i]!
    if (r < 0) return i
  }
  return weights.length - 1
}
