import { describe, expect, it } from 'vitest'
import { CONSENT_DAYS, grantConsent, readConsent, revokeConsent, type ConsentStorage } from './consent.ts'

function memory(): ConsentStorage & { size: () => number } {
  const map = new Map<string, string>()
  return { getItem: (k) => map.get(k) ?? null, setItem: (k, v) => void map.set(k, v), removeItem: (k) => void map.delete(k), size: () => map.size }
}

const given = { host: 'https://blog.example', job: `0x${'ab'.repeat(32)}`, referrer: '0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC' }
const DAY = 86_400_000

describe('widget consent', () => {
  it('is nothing until granted, and reading never writes', () => {
    const storage = memory()
    expect(readConsent(storage, given, 0)).toBeNull()
    expect(storage.size()).toBe(0)
  })

  it(`holds on the same host, job and referrer for ${CONSENT_DAYS} days, then asks again`, () => {
    const storage = memory()
    grantConsent(storage, given, 1000)
    expect(readConsent(storage, given, 1000 + (CONSENT_DAYS - 1) * DAY)).toMatchObject({ host: given.host })
    expect(readConsent(storage, given, 1000 + CONSENT_DAYS * DAY)).toBeNull()
  })

  it('does not carry over to another site, another job or another referrer', () => {
    const storage = memory()
    grantConsent(storage, given, 0)
    expect(readConsent(storage, { ...given, host: 'https://other.example' }, 1)).toBeNull()
    expect(readConsent(storage, { ...given, job: `0x${'cd'.repeat(32)}` }, 1)).toBeNull()
    expect(readConsent(storage, { ...given, referrer: null }, 1)).toBeNull()
  })

  it('is forgotten on request, and a corrupt entry counts as none', () => {
    const storage = memory()
    grantConsent(storage, given, 0)
    revokeConsent(storage, given.host)
    expect(readConsent(storage, given, 1)).toBeNull()
    storage.setItem(`tabtrain-widget-consent:${given.host}`, '{not json')
    expect(readConsent(storage, given, 1)).toBeNull()
  })
})
