import { CoordinatorClient } from '../../src/client/coordinatorClient.ts'
import { signLeaseRequest, type LeaseRequestSigner, type LeaseResponse, type SignedLeaseRequest } from '../../src/protocol/index.ts'
import type { DutyGate } from './gate.ts'

/**
 * A signed lease request older than this when the gate opens is signed again: a long rest (a slow unit at
 * a low duty) must not turn into a `stale_lease_request` that reads as a wrong clock.
 */
const RESIGN_AFTER_MS = 30_000

/**
 * The coordinator client the widget's scheduler uses: every lease request first waits at the duty gate
 * (rest between units, paused while the tab is hidden, closed by Stop), so the shared pull loop
 * (src/worker/scheduler.ts) runs unchanged.
 */
export class GatedClient extends CoordinatorClient {
  constructor(
    baseUrl: string,
    private readonly gate: DutyGate,
    private readonly signer: LeaseRequestSigner,
  ) {
    super(baseUrl)
  }

  override async lease(jobId: string, signed: SignedLeaseRequest): Promise<LeaseResponse> {
    const waitedFrom = Date.now()
    await this.gate.wait()
    if (Date.now() - waitedFrom < RESIGN_AFTER_MS) return super.lease(jobId, signed)
    const { request } = signed
    const info = await this.info()
    const fresh = await signLeaseRequest(this.signer, { jobId: request.jobId, audience: request.audience, domain: info, referrer: request.referrer ?? null })
    return super.lease(jobId, fresh)
  }
}
