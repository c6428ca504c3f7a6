/**
 * The share of a unit's price that goes to the site whose widget the contributor trained from, in basis
 * points, taken out of the contributor's pay so the requester's escrow is charged the unit price once,
 * referred or not. 10 %: enough that a site owner has a reason to embed the widget and keep it on a page
 * people read, small enough that a contributor who consents to it still earns nine tenths of what the
 * contribute page would pay; a larger share would make self-referral farms (a site that refers its own
 * burners) the better business than the compute itself.
 */
export const REFERRER_SHARE_BPS = 1000n

/** `price` split between contributor and referrer; the two parts always add up to `price`. */
export function splitReferredPrice(price: bigint): { contributor: bigint; referrer: bigint } {
  const referrer = (price * REFERRER_SHARE_BPS) / 10_000n
  return { contributor: price - referrer, referrer }
}
