import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { privateKeyToAccount } from 'viem/accounts'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CONTRIBUTE_HELP, parseCommand, UsageError } from './args.ts'
import { defaultKeyFile, KeyFileError, loadOrCreateKey, parseKeyFile } from './keyFile.ts'
import { main } from './main.ts'
import { formatProgress, PLAIN_PROGRESS_EVERY_MS, ProgressReporter, type ProgressState } from './progress.ts'
import { capturedIo } from './testing.ts'

const JOB = `0x${'12'.repeat(32)}`
/** A fixed key and its address (viem), so a change in how the file is read fails here. */
const KEY = '0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d'
const KEY_ADDRESS = '0x70997970C51812dc3A010C7d01b50e0d17dc79C8'

describe('tabtrain arguments', () => {
  it('parses contribute with every option, and defaults the rest', () => {
    expect(parseCommand(['contribute', '--coordinator', 'https://tabtrain.example.org/', '--job', JOB.toUpperCase().replace('0X', '0x'), '--key-file', 'k', '--backend', 'cpu', '--faucet'])).toEqual({
      command: 'contribute',
      options: { coordinatorUrl: 'https://tabtrain.example.org', jobId: JOB, keyFile: 'k', backend: 'cpu', faucet: true },
    })
    expect(parseCommand(['contribute', '--coordinator', 'http://127.0.0.1:8080'])).toEqual({
      command: 'contribute',
      options: { coordinatorUrl: 'http://127.0.0.1:8080', jobId: null, keyFile: null, backend: 'auto', faucet: false },
    })
    expect(parseCommand(['contribute', '--coordinator=http://h/base/'])).toMatchObject({ options: { coordinatorUrl: 'http://h/base' } })
  })

  it('gives help and the version', () => {
    expect(parseCommand([])).toMatchObject({ command: 'help' })
    expect(parseCommand(['--help'])).toMatchObject({ command: 'help' })
    expect(parseCommand(['contribute', '-h'])).toEqual({ command: 'help', text: CONTRIBUTE_HELP })
    expect(parseCommand(['help', 'contribute'])).toEqual({ command: 'help', text: CONTRIBUTE_HELP })
    expect(parseCommand(['--version'])).toEqual({ command: 'version' })
  })

  it.each([
    [['contribute'], '--coordinator URL is required'],
    [['contribute', '--coordinator'], "Option '--coordinator <value>' argument missing"],
    [['contribute', '--coordinator', 'tabtrain.example.org'], 'is not a URL'],
    [['contribute', '--coordinator', 'ftp://example.org'], 'is not an http(s) URL'],
    [['contribute', '--coordinator', 'http://h/?job=1'], 'has a query or fragment'],
    [['contribute', '--coordinator', 'http://h', '--job', '42'], 'is not a job id: a job id is 0x followed by 64 hex digits'],
    [['contribute', '--coordinator', 'http://h', '--backend', 'tpu'], '--backend "tpu" is not one of auto, webgpu, cpu'],
    [['contribute', '--coordinator', 'http://h', '--key-file', ''], '--key-file needs a file name'],
    [['contribute', '--coordinator', 'http://h', '--frobnicate'], "Unknown option '--frobnicate'"],
    [['contribute', 'now', '--coordinator', 'http://h'], "Unexpected argument 'now'"],
    [['frobnicate'], 'unknown command "frobnicate"'],
  ])('refuses %j: %s', (argv, message) => {
    expect(() => parseCommand(argv)).toThrow(UsageError)
    expect(() => parseCommand(argv)).toThrow(message)
  })

  it('exits with status 2 and the sentence on stderr for bad arguments, 0 for help', async () => {
    const bad = capturedIo()
    expect(await main(['contribute', '--coordinator', 'http://h', '--job', 'nope'], bad)).toBe(2)
    expect(bad.text()).toBe('tabtrain: --job "nope" is not a job id: a job id is 0x followed by 64 hex digits (the job page shows it)\n')
    const help = capturedIo()
    expect(await main(['contribute', '--help'], help)).toBe(0)
    expect(help.text()).toBe(CONTRIBUTE_HELP)
  })
})

describe('the key file', () => {
  let dir: string
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tabtrain-key-'))
  })
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  it('lives under XDG_CONFIG_HOME, else ~/.config', () => {
    expect(defaultKeyFile({ XDG_CONFIG_HOME: '/etc/xdg-me' }, '/home/ann')).toBe('/etc/xdg-me/tabtrain/contributor.key')
    expect(defaultKeyFile({}, '/home/ann')).toBe('/home/ann/.config/tabtrain/contributor.key')
    // A relative XDG_CONFIG_HOME is invalid by the spec: ignored.
    expect(defaultKeyFile({ XDG_CONFIG_HOME: 'rel' }, '/home/ann')).toBe('/home/ann/.config/tabtrain/contributor.key')
  })

  it('is created once, owner-only, and the same key comes back afterwards', async () => {
    const path = join(dir, 'new', 'deeper', 'contributor.key')
    const created = await loadOrCreateKey(path)
    expect(created).toMatchObject({ path, created: true, warning: null })
    expect((await stat(path)).mode & 0o777).toBe(0o600)
    expect((await stat(join(dir, 'new', 'deeper'))).mode & 0o777).toBe(0o700)
    expect(await readFile(path, 'utf8')).toMatch(/^0x[0-9a-f]{64}\n$/)
    const again = await loadOrCreateKey(path)
    expect(again).toMatchObject({ created: false, warning: null })
    expect(again.account.address).toBe(created.account.address)
  })

  it('ends with one key when several runs create it at once', async () => {
    const path = join(dir, 'race.key')
    const keys = await Promise.all(Array.from({ length: 8 }, () => loadOrCreateKey(path)))
    expect(new Set(keys.map((k) => k.account.address)).size).toBe(1)
    expect(keys.filter((k) => k.created)).toHaveLength(1)
  })

  it('reads a key with or without 0x, and warns (without refusing) when others can read it', async () => {
    expect(parseKeyFile(`  ${KEY.slice(2).toUpperCase()}\n`, 'f').address).toBe(KEY_ADDRESS)
    const path = join(dir, 'open.key')
    await writeFile(path, `${KEY}\n`)
    await chmod(path, 0o644)
    const key = await loadOrCreateKey(path)
    expect(key.account.address).toBe(KEY_ADDRESS)
    expect(key.warning).toBe(`the key file ${path} can be read by other users (mode 644); \`chmod 600 ${path}\` keeps it to you`)
  })

  it.each([['not a key'], [''], [`${KEY}${KEY.slice(2)}`], [`0x${'0'.repeat(64)}`], [`0x${'f'.repeat(64)}`]])('refuses %j as malformed', (text) => {
    expect(() => parseKeyFile(text, '/k')).toThrow(KeyFileError)
    expect(() => parseKeyFile(text, '/k')).toThrow('the key file /k does not hold a private key (expected one line: 0x followed by 64 hex digits)')
  })

  it('refuses a folder where the file should be, naming it', async () => {
    await expect(loadOrCreateKey(dir)).rejects.toMatchObject({ code: 'key_file_unreadable', message: `cannot use the key file ${dir}: it is a folder` })
  })

  it('uses the fixed test key as viem does', () => {
    expect(privateKeyToAccount(KEY).address).toBe(KEY_ADDRESS)
  })
})

describe('the progress line', () => {
  const state = (): ProgressState => ({
    job: '"MNIST" (0x12121212…)',
    round: 3,
    rounds: 40,
    accepted: 7,
    refused: 1,
    examples: 2240,
    lastLoss: 0.41234,
    earned: '7 TTT',
    status: 'training',
  })

  it('says job, round, units, speed, loss, earnings, time and what it is doing', () => {
    expect(formatProgress(state(), 70_000)).toBe(
      '"MNIST" (0x12121212…) | round 3/40 | units 8 (7 accepted, 1 refused) | 32.0 examples/s | loss 0.4123 | earned 7 TTT | 1m 10s | training',
    )
    expect(formatProgress({ ...state(), lastLoss: null, earned: null, round: null }, 0)).toBe('"MNIST" (0x12121212…) | units 8 (7 accepted, 1 refused) | 0.0 examples/s | 0s | training')
  })

  it('is rewritten in place on a terminal, cut to its width, with notes above it', () => {
    const io = capturedIo({ isTTY: true, columns: 40 })
    const progress = new ProgressReporter(io.out, state(), () => 0)
    progress.update({ status: 'training' })
    progress.note('handed unit 0 of round 3 back')
    progress.end()
    const line = '\r"MNIST" (0x12121212…) | round 3/40 | u…\x1b[K'
    expect(io.text()).toBe(`${line}\r\x1b[Khanded unit 0 of round 3 back\n${line}\r\x1b[K`)
  })

  it('writes plain lines for logs: forced ones, then at most one per interval', () => {
    const io = capturedIo()
    let now = 0
    const progress = new ProgressReporter(io.out, state(), () => now)
    progress.update({ accepted: 8 })
    expect(io.text()).toBe('')
    progress.update({ accepted: 8 }, { force: true })
    now += PLAIN_PROGRESS_EVERY_MS - 1
    progress.update({ accepted: 9 })
    now += 1
    progress.update({ accepted: 10 })
    progress.end()
    const lines = io.text().split('\n').filter(Boolean)
    expect(lines).toHaveLength(2)
    expect(lines[0]).toContain('units 9 (8 accepted, 1 refused)')
    expect(lines[1]).toContain('units 11 (10 accepted, 1 refused)')
    expect(io.text()).not.toContain('\r')
  })
})
