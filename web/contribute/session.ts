import type { CoordinatorClient } from '../../src/client/coordinatorClient.ts'
import type { ChainInfo } from '../../src/protocol/index.ts'
import type { ChainReader } from '../lib/chainClient.ts'
import type { ConnectedWallet } from '../lib/wallets.ts'

/** The settlement chain as the page reaches it; null on a coordinator without a chain. */
export interface Settlement {
  chain: ChainInfo
  reader: ChainReader
}

/**
 * What the wallet, rewards and stake cards share, passed to each explicitly: the wallet that signs and earns
 * and whether a wallet switch or transaction is under way (one at a time: each changes what the other would
 * act on). `onBusyChange` lets every card enable or disable its buttons.
 */
export interface WalletSession {
  readonly client: CoordinatorClient
  readonly settlement: Settlement | null
  wallet: ConnectedWallet | null
  busy: boolean
  readonly onBusyChange: Set<() => void>
}

export function createWalletSession(client: CoordinatorClient, settlement: Settlement | null): WalletSession {
  return { client, settlement, wallet: null, busy: false, onBusyChange: new Set() }
}

export function setBusy(session: WalletSession, busy: boolean): void {
  session.busy = busy
  for (const listener of session.onBusyChange) listener()
}

/** Runs `work` as the one wallet action under way; null (and nothing done) when another one is. */
export async function exclusive<T>(session: WalletSession, work: () => Promise<T>): Promise<T | null> {
  if (session.busy) return null
  setBusy(session, true)
  try {
    return await work()
  } finally {
    setBusy(session, false)
  }
}
