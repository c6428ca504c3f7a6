import type { CoordinatorClient } from '../../src/client/coordinatorClient.ts'
import type { MessageSigner, SignInResult } from '../../src/protocol/index.ts'
import type { ConnectedWallet } from './wallets.ts'

/** A session is asked for again this long before it expires, so an action never starts on a dying token. */
const RENEW_BEFORE_MS = 2 * 60_000

/**
 * Kept for the tab only (sessionStorage): a bearer token is as good as the wallet's signature for an
 * hour, so it should not outlive the tab nor be readable by another origin. Keyed by coordinator and
 * address, so switching wallets never sends one wallet's token for another.
 */
function storageKey(client: CoordinatorClient, address: string): string {
  return `tabtrain-session:${client.baseUrl}:${address.toLowerCase()}`
}

function signerOf(wallet: ConnectedWallet): MessageSigner {
  const walletClient = wallet.walletClient
  if (walletClient) return { address: wallet.address, signMessage: ({ message }) => walletClient.signMessage({ account: walletClient.account, message }) }
  const local = wallet.signer as unknown as Partial<MessageSigner>
  if (typeof local.signMessage !== 'function') throw new Error(`${wallet.name} cannot sign messages`)
  return { address: wallet.address, signMessage: local.signMessage.bind(local) as MessageSigner['signMessage'] }
}

/** Signs in with the wallet (one EIP-4361 message, no gas), reusing this tab's session while it lasts. */
export async function signIn(client: CoordinatorClient, wallet: ConnectedWallet): Promise<SignInResult> {
  const key = storageKey(client, wallet.address)
  try {
    const saved = JSON.parse(sessionStorage.getItem(key) ?? 'null') as SignInResult | null
    if (saved && saved.expiresAt - RENEW_BEFORE_MS > Date.now()) return saved
  } catch {
    // A corrupt entry is as good as none.
  }
  const session = await client.signIn(signerOf(wallet))
  try {
    sessionStorage.setItem(key, JSON.stringify(session))
  } catch {
    // Storage refused (private mode): sign in again next time.
  }
  return session
}

/** Forgets the tab's session for this address, e.g. after the coordinator said it expired. */
export function forgetSession(client: CoordinatorClient, address: string): void {
  sessionStorage.removeItem(storageKey(client, address))
}
