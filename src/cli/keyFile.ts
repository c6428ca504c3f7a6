import { randomBytes } from 'node:crypto'
import { link, mkdir, open, readFile, rm, stat } from 'node:fs/promises'
import { homedir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import type { Hex } from 'viem'
import { generatePrivateKey, privateKeyToAccount, type PrivateKeyAccount } from 'viem/accounts'

/**
 * The key file could not be used: `key_file_unreadable` (missing directory rights, a folder in its place,
 * ...) or `key_file_malformed` (it does not hold one private key). The message names the file and what to do.
 */
export class KeyFileError extends Error {
  override name = 'KeyFileError'
  constructor(
    readonly code: 'key_file_unreadable' | 'key_file_malformed',
    message: string,
  ) {
    super(message)
  }
}

export interface ContributorKey {
  account: PrivateKeyAccount
  /** Absolute path of the key file. */
  path: string
  /** True when this run created the file. */
  created: boolean
  /** Set when the file is readable by others than its owner: said once, like ssh does, but not refused. */
  warning: string | null
}

/** `$XDG_CONFIG_HOME/tabtrain/contributor.key`, else `~/.config/tabtrain/contributor.key`. */
export function defaultKeyFile(env: NodeJS.ProcessEnv = process.env, home: string = homedir()): string {
  const config = env.XDG_CONFIG_HOME && env.XDG_CONFIG_HOME.startsWith('/') ? env.XDG_CONFIG_HOME : join(home, '.config')
  return join(config, 'tabtrain', 'contributor.key')
}

const KEY_PATTERN = /^(?:0x)?([0-9a-fA-F]{64})$/

/** The key in a key file's text: one private key as 64 hex digits, `0x` optional, surrounding white space ignored. */
export function parseKeyFile(text: string, path: string): PrivateKeyAccount {
  const match = KEY_PATTERN.exec(text.trim())
  const malformed = () =>
    new KeyFileError(
      'key_file_malformed',
      `the key file ${path} does not hold a private key (expected one line: 0x followed by 64 hex digits). Fix it, or point --key-file at another file (a missing one is created)`,
    )
  if (!match) throw malformed()
  try {
    return privateKeyToAccount(`0x${match[1]!.toLowerCase()}` as Hex)
  } catch {
    // Zero, or not below the curve's order: not a key.
    throw malformed()
  }
}

function unreadable(path: string, error: unknown): KeyFileError {
  const reason = (error as NodeJS.ErrnoException).code === 'EISDIR' ? 'it is a folder' : (error as Error).message
  return new KeyFileError('key_file_unreadable', `cannot use the key file ${path}: ${reason}`)
}

/** The key in the file at `path`; null when there is no such file. */
async function readKey(path: string): Promise<{ account: PrivateKeyAccount; warning: string | null } | null> {
  let text: string
  let mode: number
  try {
    text = await readFile(path, 'utf8')
    mode = (await stat(path)).mode
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw unreadable(path, error)
  }
  const warning =
    (mode & 0o077) !== 0
      ? `the key file ${path} can be read by other users (mode ${(mode & 0o777).toString(8)}); \`chmod 600 ${path}\` keeps it to you`
      : null
  return { account: parseKeyFile(text, path), warning }
}

/**
 * The contributor's key from `path`, created there on first use: a fresh private key, in a file only its
 * owner can read (0600) in a folder only its owner can enter (0700, when this creates the folder). Reused on
 * every later run, so the address keeps what it earned. Two processes starting at once end up with one key.
 */
export async function loadOrCreateKey(file: string): Promise<ContributorKey> {
  const path = resolve(file)
  const existing = await readKey(path)
  if (existing) return { ...existing, path, created: false }
  const key = generatePrivateKey()
  // Written whole under a temporary name, then linked into place: link() fails if the name exists, so a
  // second process never reads a half-written file and never replaces a key that is already there.
  const temporary = `${path}.${process.pid}-${randomBytes(4).toString('hex')}.tmp`
  try {
    await mkdir(dirname(path), { recursive: true, mode: 0o700 })
    const handle = await open(temporary, 'wx', 0o600)
    try {
      await handle.writeFile(`${key}\n`)
      await handle.sync()
    } finally {
      await handle.close()
    }
    await link(temporary, path)
  } catch (error) {
    const winner = (error as NodeJS.ErrnoException).code === 'EEXIST' ? await readKey(path) : null
    if (winner) return { ...winner, path, created: false }
    throw new KeyFileError('key_file_unreadable', `cannot create the key file ${path}: ${(error as Error).message}`)
  } finally {
    await rm(temporary, { force: true })
  }
  return { account: privateKeyToAccount(key), path, created: true, warning: null }
}
