/**
 * Every refusal the coordinator gives, with its HTTP status. `code` is stable for programs (and tests);
 * the message says, for a person, what exactly was wrong.
 */
export const ERROR_STATUS = {
  malformed_request: 400,
  malformed_submission: 400,
  claim_mismatch: 400,
  hash_mismatch: 400,
  bad_signature: 401,
  bad_lease_signature: 401,
  stale_lease_request: 401,
  stake_required: 403,
  address_banned: 403,
  lease_not_yours: 403,
  job_not_found: 404,
  faucet_unavailable: 404,
  no_chain: 404,
  lease_not_found: 404,
  blob_not_found: 404,
  unit_not_found: 404,
  already_submitted: 409,
  replayed_lease_request: 409,
  stale_round: 409,
  wrong_input: 409,
  job_finished: 409,
  lease_expired: 410,
  payload_too_large: 413,
  wrong_shapes: 422,
  non_finite_update: 422,
  too_many_leases: 429,
} as const

export type ErrorCode = keyof typeof ERROR_STATUS

export class CoordinatorError extends Error {
  override name = 'CoordinatorError'
  readonly status: number
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message)
    this.status = ERROR_STATUS[code]
  }
}
