import type { ChainInfo } from '../../src/protocol/index.ts'
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
  type ConnectedWallet,
  type WalletChoice,
} from './wallets.ts'

export interface WalletPicker {
  readonly current: ConnectedWallet | null
  /** Resolves once the wallet remembered from an earlier visit (or the burner) is connected. */
  ready: Promise<ConnectedWallet>
}

/**
 * A compact wallet chooser for requester pages: the current wallet's name and address in `current`,
 * one button per available wallet in `options`. Connecting goes through web/lib/wallets.ts like the
 * contribute page, so a choice made on one page is the one restored on the next.
 */
export function createWalletPicker(
  elements: { current: HTMLElement; options: HTMLElement; status?: HTMLElement },
  chain: ChainInfo | null,
  onChange: (wallet: ConnectedWallet) => void,
): WalletPicker {
  let current: ConnectedWallet | null = null
  const say = (text: string, kind: 'muted' | 'bad' = 'muted') => {
    if (!elements.status) return
    elements.status.textContent = text
    elements.status.className = `small ${kind}`
  }

  const show = () => {
    elements.current.replaceChildren()
    if (!current) return
    const name = document.createElement('span')
    name.className = 'wallet-name'
    name.textContent = current.name
    const address = document.createElement('span')
    address.className = 'mono'
    address.textContent = current.address
    address.dataset.testid = 'wallet-address'
    elements.current.append(name, address)
    const choices: WalletChoice[] = [BURNER_CHOICE, ...discoverInjectedWallets().wallets.map(injectedChoice), WALLETCONNECT_CHOICE]
    elements.options.replaceChildren(
      ...choices.map((choice) => {
        const button = document.createElement('button')
        button.type = 'button'
        button.className = 'secondary'
        button.textContent = choice.name
        button.dataset.walletKind = choice.kind
        const selected = current?.kind === choice.kind && current.id === choice.id
        button.setAttribute('aria-pressed', String(selected))
        if (choice.kind === 'walletconnect' && !walletConnectConfigured()) {
          button.disabled = true
          button.title = 'WalletConnect needs a project id (VITE_WALLETCONNECT_PROJECT_ID) at build time.'
        }
        button.addEventListener('click', () => void pick(choice))
        return button
      }),
    )
  }

  const use = (wallet: ConnectedWallet) => {
    current = wallet
    rememberChoice(wallet)
    show()
    onChange(wallet)
  }

  const pick = async (choice: WalletChoice) => {
    say(choice.kind === 'burner' ? '' : `Connecting ${choice.name}: confirm in the wallet…`)
    try {
      if (choice.kind === 'burner') use(await connectBurner(chain))
      else if (choice.kind === 'walletconnect') use(await connectWalletConnect(chain))
      else {
        const detail = discoverInjectedWallets().wallets.find((w) => w.info.rdns === choice.id)
        if (!detail) throw new Error(`${choice.name} is no longer available.`)
        use(await connectInjected(detail, chain))
      }
      say('')
    } catch (error) {
      say(error instanceof Error ? error.message : String(error), 'bad')
    }
  }

  discoverInjectedWallets(() => show())
  const ready = restoreWallet(chain).then(({ wallet, fallback }) => {
    if (fallback) say(fallback, 'bad')
    use(wallet)
    return wallet
  })
  return {
    get current() {
      return current
    },
    ready,
  }
}
