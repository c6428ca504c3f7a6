/**
 * Every refusal the coordinator gives, with its HTTP status: one list for the server (which throws them)
 * and the typed client (whose errors carry the code). `code` is stable for programs (and tests); the
 * message says, for a person, what exactly was wrong.
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
  lease_not_live: 409,
  replayed_lease_request: 409,
  stale_round: 409,
  wrong_input: 409,
  job_finished: 409,
  lease_expired: 410,
  payload_too_large: 413,
  wrong_shapes: 422,
  non_finite_update: 422,
  too_many_leases: 429,
  // Sign-In with Ethereum and owner actions (coordinator/auth, coordinator/owner.ts).
  siwe_malformed: 400,
  siwe_wrong_domain: 401,
  siwe_wrong_chain: 401,
  siwe_expired: 401,
  siwe_not_yet_valid: 401,
  siwe_unknown_nonce: 401,
  siwe_replayed_nonce: 409,
  bad_siwe_signature: 401,
  not_signed_in: 401,
  session_expired: 401,
  no_owner: 403,
  not_owner: 403,
  job_paused: 409,
  job_cancelled: 409,
  budget_below_owed: 409,
  escrow_too_small: 409,
  // Model download (coordinator/modelDownload.ts).
  round_not_found: 404,
  round_not_closed: 404,
  no_model_yet: 404,
  // Job creation (coordinator/jobCreation.ts): what was uploaded, and where it is wrong.
  invalid_job_draft: 400,
  missing_file: 400,
  invalid_model: 400,
  invalid_dataset: 400,
  model_data_mismatch: 400,
  unsupported_by_bundle: 400,
  not_requester: 403,
  file_too_large: 413,
  // The HTTP edge (coordinator/http.ts): no such route, a body of a type no route reads, too many requests.
  not_found: 404,
  unsupported_media_type: 415,
  /** A WebSocket route asked for without the upgrade. */
  upgrade_required: 426,
  /** The request line and headers together are larger than the server reads (16 KiB). */
  headers_too_large: 431,
  /** The request did not arrive whole in time. */
  request_timeout: 408,
  rate_limited: 429,
  /** A fault of the coordinator's, never of the request; the details stay in its log. */
  internal: 500,
} as const

export type ErrorCode = keyof typeof ERROR_STATUS

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(ERROR_STATUS, value)
}
