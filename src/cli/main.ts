import { EXIT, parseCommand, UsageError } from './args.ts'
import type { CliIo } from './contribute.ts'

/** The version `tabtrain --version` prints: the package's. */
async function version(): Promise<string> {
  const { readFile } = await import('node:fs/promises')
  const pkg = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
  return pkg.version
}

/**
 * `tabtrain`: parses the arguments and runs the command; resolves with the exit status. The contribute
 * command (and with it tfjs) loads only once the arguments are good, so help and argument errors are quick.
 */
export async function main(argv: readonly string[], io: CliIo = processIo()): Promise<number> {
  let command
  try {
    command = parseCommand(argv)
  } catch (error) {
    if (!(error instanceof UsageError)) throw error
    io.error(`tabtrain: ${error.message}`)
    return EXIT.usage
  }
  switch (command.command) {
    case 'help':
      io.out.write(command.text)
      return EXIT.ok
    case 'version':
      io.out.write(`tabtrain ${await version()}\n`)
      return EXIT.ok
    case 'contribute': {
      const { contribute } = await import('./contribute.ts')
      return contribute(command.options, io)
    }
  }
}

/** stdout for output and the progress line (rewritten in place on a terminal), stderr for errors. */
export function processIo(): CliIo {
  return {
    out: {
      write: (text) => void process.stdout.write(text),
      get isTTY() {
        return process.stdout.isTTY === true
      },
      get columns() {
        return process.stdout.columns
      },
    },
    error: (text) => void process.stderr.write(`${text}\n`),
  }
}
