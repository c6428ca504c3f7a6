/**
 * anvil rewrites its `--state` file in place every second (truncate, then write). A process killed in the middle
 * of that write (a crash, a SIGKILL, a power cut) leaves the file empty or cut short, and anvil then refuses to
 * start at all ("failed to parse json file"), taking the coordinator's local chain, and the coordinator, with
 * it. So beside the file a verified copy is kept (`<file>.good`, replaced atomically whenever the live file
 * parses), and a start finds the newest whole state: the file itself, else that copy (a second or two older,
 * which the coordinator recovers from as from any lost block: epochs not on the chain are posted again).
 */
import { readFile, rename, stat, writeFile } from 'node:fs/promises'

/** Where the last whole state is kept. */
export const goodCopyOf = (stateFile: string) => `${stateFile}.good`

async function wholeState(file: string): Promise<string | null> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch {
    return null
  }
  try {
    JSON.parse(text)
    return text
  } catch {
    return null
  }
}

async function replace(file: string, text: string): Promise<void> {
  const tmp = `${file}.${process.pid}.tmp`
  await writeFile(tmp, text)
  await rename(tmp, file)
}

/**
 * Before anvil starts on `stateFile`: `whole` (nothing to do), `absent` (a new chain), `restored` (the file was
 * cut short or missing and the last good copy took its place), or `unrecoverable` (cut short, no good copy:
 * set aside as `<file>.broken`, and anvil starts a new chain).
 */
export async function restoreStateFile(stateFile: string): Promise<'whole' | 'absent' | 'restored' | 'unrecoverable'> {
  if ((await wholeState(stateFile)) !== null) return 'whole'
  const exists = await stat(stateFile).then(() => true, () => false)
  const good = await wholeState(goodCopyOf(stateFile))
  if (good !== null) {
    await replace(stateFile, good)
    return 'restored'
  }
  if (!exists) return 'absent'
  await rename(stateFile, `${stateFile}.broken`)
  return 'unrecoverable'
}

/**
 * Copies `stateFile` to its good copy every `everyMs` while it parses (a read that catches anvil mid-write
 * does not, and is skipped). Stop it before the last copy matters (when anvil stops, it writes a final state).
 */
export function keepGoodCopies(stateFile: string, everyMs = 1000): { stop(): Promise<void> } {
  let lastCopied = -1
  let running: Promise<void> = Promise.resolve()
  const copy = async () => {
    const modified = await stat(stateFile).then((s) => s.mtimeMs, () => -1)
    if (modified < 0 || modified === lastCopied) return
    const text = await wholeState(stateFile)
    if (text === null) return
    await replace(goodCopyOf(stateFile), text)
    lastCopied = modified
  }
  const timer = setInterval(() => {
    running = running.then(copy).catch(() => {})
  }, everyMs)
  timer.unref()
  return {
    async stop() {
      clearInterval(timer)
      await running
    },
  }
}
