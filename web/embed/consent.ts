/**
 * The visitor's consent to lend this tab, kept in the frame's own storage (the coordinator's origin,
 * partitioned per top-level site where the browser partitions third-party storage) under the host
 * origin it was given on. Written only by the click on the consent button, never before.
 *
 * It holds for one host origin, one job and one referrer: the consent text named all three, so a page
 * that later changes the job or who gets the referrer share asks again. It expires after CONSENT_DAYS,
 * so a visitor who forgot about it is asked again rather than computing on an old click.
 */
export const CONSENT_DAYS = 30
const DAY_MS = 86_400_000
const PREFIX = 'tabtrain-widget-consent:'

export interface Consent {
  host: string
  job: string
  referrer: string | null
  grantedAt: number
  expiresAt: number
}

/** The part of `Storage` used here, so tests can pass a Map-backed one. */
export type ConsentStorage = Pick<Storage, 'getItem' | 'setItem' | 'removeItem'>

const key = (host: string) => `${PREFIX}${host}`

/** The consent given on `host` for this job and referrer, or null when none holds now. Reads only. */
export function readConsent(storage: ConsentStorage, wanted: { host: string; job: string; referrer: string | null }, now: number): Consent | null {
  let stored: Consent
  try {
    const raw = storage.getItem(key(wanted.host))
    if (raw === null) return null
    stored = JSON.parse(raw) as Consent
  } catch {
    return null
  }
  if (stored.host !== wanted.host || stored.job !== wanted.job || (stored.referrer ?? null) !== (wanted.referrer ?? null)) return null
  if (!(typeof stored.expiresAt === 'number' && stored.expiresAt > now)) return null
  return stored
}

/** Records the click: the only place the widget writes storage before it starts working. */
export function grantConsent(storage: ConsentStorage, given: { host: string; job: string; referrer: string | null }, now: number): Consent {
  const consent: Consent = { ...given, grantedAt: now, expiresAt: now + CONSENT_DAYS * DAY_MS }
  storage.setItem(key(given.host), JSON.stringify(consent))
  return consent
}

/** Forgets the consent on `host`: the next visit asks again. */
export function revokeConsent(storage: ConsentStorage, host: string): void {
  storage.removeItem(key(host))
}
