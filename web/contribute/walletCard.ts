import type { ChainInfo } from '../../src/protocol/index.ts'
import { explainError } from '../lib/transactions.ts'
import {
  BURNER_CHOICE,
  WALLETCONNECT_CHOICE,
  connectBurner,
  connectInjected,
  connectWalletConnect,
  discoverInjectedWallets,
  injectedChoice,
  rememberChoice,
  restoreWallet,
  walletConnectConfigured,
  WalletNotFoundError,
  type ConnectedWallet,
  type WalletChoice,
  type WalletEvent,
} from '../lib/wallets.ts'
import type { Log } from './activityLog.ts'
import { byId, type Tone } from './dom.ts'
import { exclusive, type WalletSession } from './session.ts'

export interface WalletCard {
  /** Restores the remembered wallet (or the burner) and makes it the session's. */
  restore(chain: ChainInfo | null): Promise<void>
  /** Enables or disables the wallet buttons after a busy change. */
  updateButtons(): void
}

export interface WalletCardOptions {
  session: WalletSession
  log: Log
  /** The session's wallet is now `wallet`: the training loop signs with it, the rewards card reads its address. */
  adopted(wallet: ConnectedWallet): Promise<void>
  /** The chain's token and time, for wallet errors that name amounts or times. */
  explainContext(): Parameters<typeof explainError>[1]
}

/** The wallet card: which wallet signs claims and receives rewards, and switching between them. */
export function createWalletCard({ session, log, adopted, explainContext }: WalletCardOptions): WalletCard {
  const els = {
    current: byId('wallet-current'),
    name: byId('wallet-name'),
    address: byId('address'),
    options: byId('wallet-options'),
    status: byId('wallet-status'),
    note: byId('wallet-note'),
  }
  let unsubscribe: () => void = () => {}

  const status = (message: string, tone: Tone = 'info') => {
    els.status.textContent = message
    els.status.className = tone === 'info' ? 'muted' : tone
  }

  const image = (src: string) => Object.assign(document.createElement('img'), { src, alt: '' })

  const iconOf = (choice: WalletChoice): HTMLElement => {
    const box = document.createElement('span')
    box.className = 'wallet-icon'
    box.id = 'wallet-icon'
    box.setAttribute('aria-hidden', 'true')
    if (choice.icon) box.append(image(choice.icon))
    else box.textContent = choice.name.slice(0, 1)
    return box
  }

  const updateButtons = () => {
    for (const button of els.options.querySelectorAll('button')) {
      if (!button.dataset.unavailable) button.disabled = session.busy
    }
  }

  const renderOptions = () => {
    const chainless = session.settlement === null
    const wallet = session.wallet
    const choices: WalletChoice[] = [BURNER_CHOICE, ...discoverInjectedWallets().wallets.map(injectedChoice), WALLETCONNECT_CHOICE]
    els.options.replaceChildren(
      ...choices.map((choice) => {
        const button = document.createElement('button')
        button.className = 'secondary'
        button.dataset.walletKind = choice.kind
        button.dataset.walletId = choice.id
        const selected = wallet?.kind === choice.kind && (choice.kind !== 'injected' || wallet.id === choice.id)
        button.setAttribute('aria-pressed', String(selected))
        button.append(choice.icon ? image(choice.icon) : '', choice.name)
        if (chainless && choice.kind !== 'burner') {
          button.disabled = true
          button.dataset.unavailable = 'true'
          button.title = 'Rewards are off on this coordinator: only the burner is used.'
        } else if (choice.kind === 'walletconnect' && !walletConnectConfigured()) {
          button.title = 'WalletConnect needs a project id: set VITE_WALLETCONNECT_PROJECT_ID at build time.'
        }
        button.addEventListener('click', () => void switchTo(choice))
        return button
      }),
    )
    updateButtons()
  }

  const showCurrent = (w: ConnectedWallet) => {
    els.current.dataset.walletKind = w.kind
    els.current.dataset.walletId = w.id
    byId('wallet-icon').replaceWith(iconOf(w))
    els.name.textContent = w.name
    els.address.textContent = w.address
    renderOptions()
  }

  const connect = async (choice: WalletChoice, interactive: boolean): Promise<ConnectedWallet> => {
    const chain = session.settlement?.chain ?? null
    switch (choice.kind) {
      case 'burner':
        return connectBurner(chain)
      case 'injected': {
        const detail = discoverInjectedWallets().wallets.find((w) => w.info.rdns === choice.id)
        if (!detail) throw new WalletNotFoundError(`${choice.name} is no longer available in this browser.`)
        return connectInjected(detail, chain, { interactive })
      }
      case 'walletconnect':
        return connectWalletConnect(chain, { restoreOnly: !interactive })
    }
  }

  /** Makes `next` the wallet that signs and earns, following its events from now on. */
  const adopt = async (next: ConnectedWallet) => {
    const previous = session.wallet
    unsubscribe()
    session.wallet = next
    unsubscribe = next.subscribe?.((event) => void onWalletEvent(next, event)) ?? (() => {})
    // A WalletConnect session left behind would keep a relay connection open for nothing.
    if (previous && previous !== next && previous.kind === 'walletconnect' && next.kind !== 'walletconnect') void previous.disconnect?.().catch(() => {})
    showCurrent(next)
    await adopted(next)
  }

  const switchTo = async (choice: WalletChoice) => {
    const current = session.wallet
    if (current && current.kind === choice.kind && current.id === choice.id) return
    await exclusive(session, async () => {
      status(choice.kind === 'burner' ? 'Switching to the burner…' : `Connecting ${choice.name}: confirm in the wallet…`)
      try {
        const next = await connect(choice, true)
        rememberChoice(next)
        await adopt(next)
        status(`Now using ${next.name}.`, 'good')
        log(`Wallet: ${next.name} ${next.address}`)
      } catch (error) {
        status(explainError(error, explainContext()), 'bad')
      }
    })
  }

  /** The wallet changed under the page (another account picked, session ended): follow it, or fall back to the burner. */
  const onWalletEvent = async (source: ConnectedWallet, event: WalletEvent) => {
    if (source !== session.wallet) return
    if (event === 'chainChanged') {
      const expected = session.settlement?.chain.chainId
      const now = await source.walletClient?.getChainId().catch(() => null)
      if (expected !== undefined && now !== expected) {
        status(`${source.name} moved to chain ${now ?? '?'}: signing and transactions need chain ${expected}. Choose the wallet again to switch back.`, 'bad')
      } else {
        status('')
      }
      return
    }
    await exclusive(session, async () => {
      let next: ConnectedWallet
      try {
        next = await connect(source, false)
        status(`${source.name} changed account: now ${next.address}.`)
      } catch (error) {
        next = await connectBurner(session.settlement?.chain ?? null)
        rememberChoice(BURNER_CHOICE)
        status(`${source.name} disconnected (${explainError(error, explainContext())}); using the burner.`, 'bad')
      }
      await adopt(next)
      log(`Wallet: ${next.name} ${next.address}`)
    })
  }

  return {
    async restore(chain) {
      if (!chain) {
        els.note.textContent =
          'Claims are signed by the burner kept in this browser. Rewards are off on this coordinator, so browser wallets and WalletConnect are not offered.'
      }
      const restored = await restoreWallet(chain)
      if (restored.fallback) status(restored.fallback, 'bad')
      discoverInjectedWallets(() => renderOptions())
      await adopt(restored.wallet)
    },
    updateButtons,
  }
}
