import { createStore, type EIP6963ProviderDetail, type Store } from 'mipd'
import {
  BaseError,
  createWalletClient,
  custom,
  getAddress,
  http,
  type Account,
  type Address,
  type Chain,
  type EIP1193Provider,
  type SignTypedDataParameters,
  type Transport,
  type TypedData,
  type TypedDataDefinition,
  type WalletClient,
} from 'viem'
import type { ChainInfo } from '../../src/protocol/index.ts'
import type { ContributorSigner } from '../../src/worker/scheduler.ts'
import { loadBurnerAccount } from '../../src/worker/wallet.ts'
import { viemChain } from './chainClient.ts'

export type WalletKind = 'burner' | 'injected' | 'walletconnect'

/** A wallet the contributor can pick, before it is connected. `id` is stable across visits (an EIP-6963 rdns for injected wallets). */
export interface WalletChoice {
  kind: WalletKind
  id: string
  name: string
  /** A `data:image/…` URI (EIP-6963 wallets announce one). */
  icon?: string
}

export type ChainWalletClient = WalletClient<Transport, Chain, Account>

export type WalletEvent = 'accountsChanged' | 'chainChanged' | 'disconnect'

export interface ConnectedWallet extends WalletChoice {
  address: Address
  /** Signs work claims and lease requests. */
  signer: ContributorSigner
  /**
   * Sends transactions on the coordinator's chain. Null only for the burner when the coordinator runs
   * without a chain: then nothing is paid and there is nothing to send.
   */
  walletClient: ChainWalletClient | null
  /** Tells the page when the wallet itself changed account or chain, or dropped the connection. */
  subscribe?(listener: (event: WalletEvent) => void): () => void
  disconnect?(): Promise<void>
}

export const BURNER_CHOICE: WalletChoice = { kind: 'burner', id: 'burner', name: 'Burner (this browser)' }
export const WALLETCONNECT_CHOICE: WalletChoice = { kind: 'walletconnect', id: 'walletconnect', name: 'WalletConnect' }

/** Base of every error this module throws on purpose; `message` is meant for the page as it is. */
export class WalletError extends Error {
  override name = 'WalletError'
}

/** The person said no in their wallet (or closed its window). */
export class WalletRejectedError extends WalletError {
  override name = 'WalletRejectedError'
}

/** The wallet has no account to give: locked, or never authorised this site (when connecting silently). */
export class WalletNoAccountError extends WalletError {
  override name = 'WalletNoAccountError'
}

/** The wallet would not switch to (or add) the coordinator's chain. */
export class WalletChainError extends WalletError {
  override name = 'WalletChainError'
}

/** A remembered browser wallet did not announce itself on this visit (extension removed or disabled). */
export class WalletNotFoundError extends WalletError {
  override name = 'WalletNotFoundError'
}

/** The coordinator has no chain, so only the burner can be used. */
export class NoChainError extends WalletError {
  override name = 'NoChainError'
}

export type WalletConnectFailure = 'no-project-id' | 'load-failed' | 'relay-unreachable' | 'timeout' | 'no-session' | 'failed'

export class WalletConnectUnavailableError extends WalletError {
  override name = 'WalletConnectUnavailableError'
  constructor(
    readonly reason: WalletConnectFailure,
    message: string,
  ) {
    super(message)
  }
}

function providerErrorCode(error: unknown): number | undefined {
  // Wallets nest the EIP-1193 code differently (MetaMask mobile wraps 4902 in -32603 data.originalError).
  let found: number | undefined
  const visit = (e: unknown, depth: number) => {
    if (found !== undefined || depth > 5 || typeof e !== 'object' || e === null) return
    const record = e as { code?: unknown; cause?: unknown; data?: { originalError?: unknown } }
    if (typeof record.code === 'number' && [4001, 4100, 4902].includes(record.code)) found = record.code
    visit(record.cause, depth + 1)
    visit(record.data?.originalError, depth + 1)
  }
  visit(error, 0)
  return found
}

function describe(error: unknown): string {
  if (error instanceof BaseError) return error.shortMessage
  return error instanceof Error ? error.message : String(error)
}

/** Turns what a wallet threw into one of this module's errors, so the page can say what happened. */
function walletFailure(error: unknown, doing: string): WalletError {
  if (error instanceof WalletError) return error
  if (providerErrorCode(error) === 4001) return new WalletRejectedError(`You declined ${doing} in your wallet.`)
  return new WalletError(`Could not ${doing}: ${describe(error)}`)
}

// ---------------------------------------------------------------------------------------------------
// Burner

export async function connectBurner(chain: ChainInfo | null): Promise<ConnectedWallet> {
  const account = await loadBurnerAccount()
  return {
    ...BURNER_CHOICE,
    address: account.address,
    signer: account,
    walletClient: chain ? createWalletClient({ account, chain: viemChain(chain), transport: http(chain.rpcUrl) }) : null,
  }
}

// ---------------------------------------------------------------------------------------------------
// Injected wallets (EIP-6963)

let store: Store | null = null

/**
 * The browser wallets that announced themselves (EIP-6963), now and as more announce. Extensions answer
 * the page's request synchronously or soon after, so the list can grow after the first call.
 */
export function discoverInjectedWallets(onChange?: (wallets: readonly EIP6963ProviderDetail[]) => void): {
  wallets: readonly EIP6963ProviderDetail[]
  unsubscribe: () => void
} {
  store ??= createStore()
  const unsubscribe = onChange ? store.subscribe((wallets) => onChange(wallets)) : () => {}
  return { wallets: store.getProviders(), unsubscribe }
}

export function injectedChoice(detail: EIP6963ProviderDetail): WalletChoice {
  const icon = detail.info.icon
  return { kind: 'injected', id: detail.info.rdns, name: detail.info.name, ...(icon.startsWith('data:image/') ? { icon } : {}) }
}

/** A wallet client signs any typed data: claims and lease requests alike. */
function signerFor(walletClient: ChainWalletClient): ContributorSigner {
  const sign = <const T extends TypedData, P extends keyof T & string>(args: TypedDataDefinition<T, P>) =>
    walletClient.signTypedData({ ...args, account: walletClient.account } as SignTypedDataParameters<T, P, Account>)
  return { address: walletClient.account.address, signTypedData: sign }
}

/** Puts the wallet on the coordinator's chain, adding the chain first when the wallet does not know it. */
async function ensureChain(walletClient: ChainWalletClient, chain: ChainInfo, interactive: boolean): Promise<void> {
  const current = await walletClient.getChainId()
  if (current === chain.chainId) return
  if (!interactive) throw new WalletChainError(`The wallet is on chain ${current}, not ${chain.chainId}; choose it again to switch.`)
  try {
    await walletClient.switchChain({ id: chain.chainId })
  } catch (error) {
    const code = providerErrorCode(error)
    if (code === 4001) throw new WalletRejectedError(`You declined switching to chain ${chain.chainId} in your wallet.`)
    if (code !== 4902) throw new WalletChainError(`The wallet could not switch to chain ${chain.chainId}: ${describe(error)}`)
    try {
      await walletClient.addChain({ chain: walletClient.chain })
      // Some wallets add without switching.
      if ((await walletClient.getChainId()) !== chain.chainId) await walletClient.switchChain({ id: chain.chainId })
    } catch (addError) {
      if (providerErrorCode(addError) === 4001) throw new WalletRejectedError(`You declined adding chain ${chain.chainId} to your wallet.`)
      throw new WalletChainError(`The wallet could not add chain ${chain.chainId} (${chain.rpcUrl}): ${describe(addError)}`)
    }
  }
  if ((await walletClient.getChainId()) !== chain.chainId) throw new WalletChainError(`The wallet stayed off chain ${chain.chainId}.`)
}

function subscriber(provider: EIP1193Provider) {
  return (listener: (event: WalletEvent) => void) => {
    const onAccounts = () => listener('accountsChanged')
    const onChain = () => listener('chainChanged')
    const onDisconnect = () => listener('disconnect')
    provider.on('accountsChanged', onAccounts)
    provider.on('chainChanged', onChain)
    provider.on('disconnect', onDisconnect)
    return () => {
      provider.removeListener('accountsChanged', onAccounts)
      provider.removeListener('chainChanged', onChain)
      provider.removeListener('disconnect', onDisconnect)
    }
  }
}

/**
 * `askAccounts` and `switchChain` open wallet windows; both are off when restoring on page load, since a
 * page must not pop a window the person did not ask for.
 */
async function fromProvider(
  provider: EIP1193Provider,
  choice: WalletChoice,
  chain: ChainInfo,
  { askAccounts, switchChain }: { askAccounts: boolean; switchChain: boolean },
): Promise<Omit<ConnectedWallet, keyof WalletChoice | 'disconnect'>> {
  let accounts: readonly string[]
  try {
    accounts = (await provider.request({ method: askAccounts ? 'eth_requestAccounts' : 'eth_accounts' })) as string[]
  } catch (error) {
    throw walletFailure(error, `connecting ${choice.name}`)
  }
  const first = accounts[0]
  if (!first) throw new WalletNoAccountError(`${choice.name} gave no account${askAccounts ? '' : ' without asking'}; choose it again to connect.`)
  const walletClient = createWalletClient({ account: getAddress(first), chain: viemChain(chain), transport: custom(provider) })
  await ensureChain(walletClient, chain, switchChain)
  return { address: walletClient.account.address, signer: signerFor(walletClient), walletClient, subscribe: subscriber(provider) }
}

export async function connectInjected(detail: EIP6963ProviderDetail, chain: ChainInfo | null, options: { interactive?: boolean } = {}): Promise<ConnectedWallet> {
  const choice = injectedChoice(detail)
  // A browser wallet signs claims under the claim domain's chain id, which it only accepts while on that chain.
  if (!chain) throw new NoChainError('The coordinator runs without a chain: only the burner wallet can be used.')
  const interactive = options.interactive ?? true
  return { ...choice, ...(await fromProvider(detail.provider, choice, chain, { askAccounts: interactive, switchChain: interactive })) }
}

// ---------------------------------------------------------------------------------------------------
// WalletConnect

const projectId = (): string | undefined => (import.meta.env.VITE_WALLETCONNECT_PROJECT_ID as string | undefined) || undefined

export function walletConnectConfigured(): boolean {
  return projectId() !== undefined
}

function deadline<T>(promise: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(onTimeout()), ms)
    }),
  ]).finally(() => clearTimeout(timer))
}

export interface WalletConnectOptions {
  /** Time for the person to scan the code and approve, once the pairing code is up. */
  timeoutMs?: number
  /** Time for the relay to hand out a pairing code; offline it never does (the provider retries for ~75 s). */
  relayTimeoutMs?: number
  /** Restore a session kept from an earlier visit only; never open the pairing window. */
  restoreOnly?: boolean
}

export async function connectWalletConnect(chain: ChainInfo | null, options: WalletConnectOptions = {}): Promise<ConnectedWallet> {
  const { timeoutMs = 120_000, relayTimeoutMs = 20_000, restoreOnly = false } = options
  const id = projectId()
  if (!id) throw new WalletConnectUnavailableError('no-project-id', 'WalletConnect needs a project id: set VITE_WALLETCONNECT_PROJECT_ID at build time.')
  if (!chain) throw new NoChainError('The coordinator runs without a chain: only the burner wallet can be used.')

  let EthereumProvider: typeof import('@walletconnect/ethereum-provider').EthereumProvider
  try {
    // Kept out of the first page load: the provider and its QR window weigh several hundred kB.
    EthereumProvider = (await import('@walletconnect/ethereum-provider')).EthereumProvider
  } catch (error) {
    throw new WalletConnectUnavailableError('load-failed', `Could not load WalletConnect: ${describe(error)}`)
  }

  let provider: InstanceType<typeof EthereumProvider>
  try {
    provider = await deadline(
      EthereumProvider.init({
        projectId: id,
        optionalChains: [chain.chainId],
        rpcMap: { [chain.chainId]: chain.rpcUrl },
        showQrModal: !restoreOnly,
        metadata: { name: 'TabTrain', description: 'Train ML models in a browser tab and earn for it.', url: location.origin, icons: [] },
      }),
      relayTimeoutMs,
      () => new WalletConnectUnavailableError('relay-unreachable', `WalletConnect did not start within ${relayTimeoutMs / 1000} s: is the network up?`),
    )
  } catch (error) {
    if (error instanceof WalletConnectUnavailableError) throw error
    throw new WalletConnectUnavailableError('failed', `WalletConnect could not start: ${describe(error)}`)
  }

  if (!provider.session) {
    if (restoreOnly) throw new WalletConnectUnavailableError('no-session', 'No WalletConnect session kept from an earlier visit.')
    const abandon = () => {
      try {
        provider.signer.abortPairingAttempt()
        provider.modal?.close()
      } catch {
        // Best effort: the provider may already have torn the attempt down.
      }
    }
    let paired: () => void = () => {}
    const pairingShown = new Promise<void>((resolve) => {
      paired = resolve
    })
    provider.on('display_uri', () => paired())
    const connecting = provider.connect()
    try {
      await deadline(
        Promise.race([pairingShown, connecting]),
        relayTimeoutMs,
        () => new WalletConnectUnavailableError('relay-unreachable', `The WalletConnect relay did not answer within ${relayTimeoutMs / 1000} s: check the network connection.`),
      )
      await deadline(
        connecting,
        timeoutMs,
        () => new WalletConnectUnavailableError('timeout', `No wallet approved the WalletConnect request within ${timeoutMs / 1000} s.`),
      )
    } catch (error) {
      abandon()
      // Keeps the abandoned attempt from surfacing as an unhandled rejection later.
      connecting.catch(() => {})
      if (error instanceof WalletConnectUnavailableError) throw error
      if (/reset|rejected|closed/i.test(describe(error))) throw new WalletRejectedError('The WalletConnect request was closed before a wallet approved it.')
      throw new WalletConnectUnavailableError('failed', `WalletConnect failed: ${describe(error)}`)
    }
  }

  const choice = WALLETCONNECT_CHOICE
  const wallet = await fromProvider(provider as unknown as EIP1193Provider, choice, chain, { askAccounts: false, switchChain: !restoreOnly }).catch((error: unknown) => {
    void provider.disconnect().catch(() => {})
    throw error
  })
  const peer = provider.session?.peer.metadata
  return {
    ...choice,
    ...(peer?.name ? { name: `${peer.name} (WalletConnect)` } : {}),
    ...wallet,
    disconnect: () => provider.disconnect(),
  }
}

// ---------------------------------------------------------------------------------------------------
// Remembering the choice

const STORAGE_KEY = 'tabtrain:wallet'

export function rememberChoice(choice: Pick<WalletChoice, 'kind' | 'id'>): void {
  try {
    localStorage.setItem(STORAGE_KEY, JSON.stringify({ kind: choice.kind, id: choice.id }))
  } catch {
    // Storage off (private mode, quota): the choice just is not remembered.
  }
}

export function rememberedChoice(): Pick<WalletChoice, 'kind' | 'id'> {
  try {
    const saved = JSON.parse(localStorage.getItem(STORAGE_KEY) ?? 'null') as { kind?: unknown; id?: unknown } | null
    if (saved && (saved.kind === 'injected' || saved.kind === 'walletconnect' || saved.kind === 'burner') && typeof saved.id === 'string') {
      return { kind: saved.kind, id: saved.id }
    }
  } catch {
    // Unreadable: fall back to the default.
  }
  return BURNER_CHOICE
}

/** How long a remembered browser wallet gets to announce itself on page load. */
const ANNOUNCE_WAIT_MS = 600

function waitForInjected(rdns: string, ms: number): Promise<EIP6963ProviderDetail | undefined> {
  return new Promise((resolve) => {
    const found = (wallets: readonly EIP6963ProviderDetail[]) => wallets.find((w) => w.info.rdns === rdns)
    let done = false
    const finish = (detail: EIP6963ProviderDetail | undefined) => {
      if (done) return
      done = true
      clearTimeout(timer)
      queueMicrotask(() => unsubscribe())
      resolve(detail)
    }
    const timer = setTimeout(() => finish(undefined), ms)
    const { wallets, unsubscribe } = discoverInjectedWallets((wallets) => {
      const detail = found(wallets)
      if (detail) finish(detail)
    })
    const now = found(wallets)
    if (now) finish(now)
  })
}

/**
 * Reconnects the wallet chosen on an earlier visit without asking anything of the person; on any
 * failure the burner takes over and `fallback` says why.
 */
export async function restoreWallet(chain: ChainInfo | null, timeoutMs = 15_000): Promise<{ wallet: ConnectedWallet; fallback: string | null }> {
  const saved = rememberedChoice()
  if (saved.kind === 'burner') return { wallet: await connectBurner(chain), fallback: null }
  try {
    const restoring = async () => {
      if (saved.kind === 'injected') {
        const detail = await waitForInjected(saved.id, ANNOUNCE_WAIT_MS)
        if (!detail) throw new WalletNotFoundError(`The browser wallet ${saved.id} is not available on this visit.`)
        return connectInjected(detail, chain, { interactive: false })
      }
      return connectWalletConnect(chain, { restoreOnly: true, relayTimeoutMs: Math.min(10_000, timeoutMs) })
    }
    const wallet = await deadline(restoring(), timeoutMs, () => new WalletError(`The wallet chosen on an earlier visit did not answer within ${timeoutMs / 1000} s.`))
    return { wallet, fallback: null }
  } catch (error) {
    return { wallet: await connectBurner(chain), fallback: `${describe(error)} Using the burner wallet.` }
  }
}
