import { parseArgs } from 'node:util'
import { isHash, type Hash } from '../protocol/hash.ts'
// Types only: the help and argument errors come back without loading tfjs.
import type { NodeBackendChoice } from '../worker/nodeBackend.ts'

const NODE_BACKEND_CHOICES: readonly NodeBackendChoice[] = ['auto', 'webgpu', 'cpu']

/** Exit statuses of `tabtrain`: documented in the help text and the README. */
export const EXIT = {
  /** Stopped by Ctrl-C / SIGTERM, or the job finished. */
  ok: 0,
  /** Could not contribute: coordinator unreachable, unknown job, unreadable key file, stake missing... */
  failure: 1,
  /** Bad arguments. */
  usage: 2,
  /** A second Ctrl-C: out at once, as shells report a SIGINT. */
  interrupted: 130,
} as const

/** Bad arguments: the message says which and how to fix it; exit status 2. */
export class UsageError extends Error {
  override name = 'UsageError'
  readonly code = 'usage'
}

export const MAIN_HELP = `Usage: tabtrain <command> [options]

Commands:
  contribute   Train units of a TabTrain job on this machine and earn for them (see: tabtrain contribute --help)

Options:
  -h, --help     Show this help
  -v, --version  Show the version
`

export const CONTRIBUTE_HELP = `Usage: tabtrain contribute --coordinator URL [--job ID] [--key-file FILE] [--backend auto|webgpu|cpu] [--faucet]

Runs the same unit runner and pull loop as a browser tab, in Node: leases units of a job from the
coordinator, trains them, signs each answer with this machine's key and submits it.

Options:
  --coordinator URL   The coordinator, e.g. https://tabtrain.example.org (required)
  --job ID            The job to train (0x followed by 64 hex digits). Default: the first active job the
                      coordinator lists that can issue units; when it finishes, the next one
  --key-file FILE     The contributor's private key. Created on first run (mode 0600) with a fresh key,
                      reused afterwards. Default: $XDG_CONFIG_HOME/tabtrain/contributor.key
                      (~/.config/tabtrain/contributor.key)
  --backend NAME      auto (default): WebGPU through Dawn where it finds an adapter, else tfjs's cpu backend;
                      webgpu: WebGPU or fail; cpu: tfjs's cpu backend
  --faucet            Local chains only: have the coordinator's faucet give this address gas and test
                      tokens and stake the minimum that paid jobs require
  -h, --help          Show this help

Ctrl-C (or SIGTERM) stops cleanly: the unit in flight is handed back to the coordinator, a summary is
printed and the exit status is 0. A second Ctrl-C exits at once.

Exit status: 0 stopped or finished; 1 could not contribute (the message says why); 2 bad arguments.
`

export interface ContributeOptions {
  coordinatorUrl: string
  jobId: Hash | null
  keyFile: string | null
  backend: NodeBackendChoice
  faucet: boolean
}

export type Command = { command: 'help'; text: string } | { command: 'version' } | { command: 'contribute'; options: ContributeOptions }

/** The coordinator's base URL: http(s) only, no query or fragment. */
export function parseCoordinatorUrl(value: string): string {
  let url: URL
  try {
    url = new URL(value)
  } catch {
    throw new UsageError(`--coordinator "${value}" is not a URL; give the coordinator's address, e.g. https://tabtrain.example.org`)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new UsageError(`--coordinator "${value}" is not an http(s) URL; give the coordinator's address, e.g. https://tabtrain.example.org`)
  }
  if (url.search || url.hash) throw new UsageError(`--coordinator "${value}" has a query or fragment; give the coordinator's base address only`)
  return url.href.replace(/\/$/, '')
}

/** `tabtrain` arguments (without `node` and the script) → what to do; throws UsageError. */
export function parseCommand(argv: readonly string[]): Command {
  const [first, ...rest] = argv
  if (first === undefined || first === '-h' || first === '--help' || first === 'help') {
    if (first === 'help' && rest[0] === 'contribute') return { command: 'help', text: CONTRIBUTE_HELP }
    return { command: 'help', text: MAIN_HELP }
  }
  if (first === '-v' || first === '--version') return { command: 'version' }
  if (first !== 'contribute') {
    throw new UsageError(`unknown command "${first}". Run \`tabtrain --help\` for the commands.`)
  }
  const seeHelp = 'Run `tabtrain contribute --help` for the options.'
  let values
  try {
    values = parseArgs({
      args: [...rest],
      strict: true,
      allowPositionals: false,
      options: {
        coordinator: { type: 'string' },
        job: { type: 'string' },
        'key-file': { type: 'string' },
        backend: { type: 'string', default: 'auto' },
        faucet: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }).values
  } catch (error) {
    // Node's sentence names the option; the positional one adds advice meant for script authors.
    const message = (error as Error).message.replace(/\.? ?This command does not take positional arguments/, '')
    throw new UsageError(`${message}. ${seeHelp}`)
  }
  if (values.help) return { command: 'help', text: CONTRIBUTE_HELP }
  if (!values.coordinator) throw new UsageError(`--coordinator URL is required: the coordinator to contribute to. ${seeHelp}`)
  const coordinatorUrl = parseCoordinatorUrl(values.coordinator)
  let jobId: Hash | null = null
  if (values.job !== undefined) {
    const job = values.job.toLowerCase()
    if (!isHash(job)) throw new UsageError(`--job "${values.job}" is not a job id: a job id is 0x followed by 64 hex digits (the job page shows it)`)
    jobId = job
  }
  const backend = values.backend
  if (!(NODE_BACKEND_CHOICES as readonly string[]).includes(backend)) {
    throw new UsageError(`--backend "${backend}" is not one of ${NODE_BACKEND_CHOICES.join(', ')}`)
  }
  const keyFile = values['key-file']
  if (keyFile === '') throw new UsageError('--key-file needs a file name')
  return {
    command: 'contribute',
    options: { coordinatorUrl, jobId, keyFile: keyFile ?? null, backend: backend as NodeBackendChoice, faucet: values.faucet === true },
  }
}
