import canonicalize from 'canonicalize'
import { sha256Hex, type Hash } from './hash.ts'

/** RFC 8785 (JCS) canonical JSON: sorted keys, no whitespace, fixed number formatting. */
export function canonicalJson(value: unknown): string {
  const text = canonicalize(value)
  if (text === undefined) throw new TypeError('value has no canonical JSON form')
  return text
}

export function canonicalJsonHash(value: unknown): Hash {
  return sha256Hex(new TextEncoder().encode(canonicalJson(value)))
}
