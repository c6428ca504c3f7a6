import type { CliIo } from './contribute.ts'

/** A CliIo that keeps what the command writes (output and errors, in order), for tests. */
export function capturedIo(options: { isTTY?: boolean; columns?: number } = {}): CliIo & { text(): string } {
  let text = ''
  return {
    out: { write: (chunk) => void (text += chunk), isTTY: options.isTTY ?? false, columns: options.columns },
    error: (line) => void (text += `${line}\n`),
    text: () => text,
  }
}
