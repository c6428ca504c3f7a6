import { ERROR_STATUS, type ErrorCode } from '../src/protocol/index.ts'

// The list lives in the protocol module, shared with the typed client; re-exported for the server's code.
export { ERROR_STATUS, type ErrorCode } from '../src/protocol/index.ts'

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
