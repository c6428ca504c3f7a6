import { Writable } from 'node:stream'
import { pino, type Level, type Logger } from 'pino'

/** The coordinator's log function: a message for a person, with optional fields for machines. */
export type Log = (message: string, fields?: Record<string, unknown>) => void

export interface CoordinatorLogger {
  /** The pino logger; fastify's `loggerInstance` takes it, so HTTP logs share the format and the stream. */
  logger: Logger
  /** Logs at the level the message calls for (`levelOf`). */
  log: Log
  /** Always shown, whatever the level: the start-up banner. JSON mode: one `info` line with the URLs as fields. */
  banner(text: string, fields: Record<string, unknown>): void
  format: 'json' | 'text'
}

export interface LoggerOptions {
  /** `json`: pino JSON lines; `text`: short lines for a person. Default: TABTRAIN_LOG_FORMAT, else json unless stdout is a TTY. */
  format?: 'json' | 'text'
  /** Default: TABTRAIN_LOG_LEVEL, else `info` for JSON and `warn` for a person (the banner is always shown). */
  level?: Level
  /** Where lines go; stdout by default. */
  stream?: NodeJS.WritableStream
}

/**
 * The coordinator's messages are plain sentences from many modules (`ctx.log(...)`): their level is read
 * from what they say, so the modules need not change to log structured records. A failure, something retried,
 * an address caught cheating: `warn`; an internal error the client was not told about: `error`; the rest
 * (rounds closed, checks passed, epochs posted): `info`.
 */
export function levelOf(message: string): Level {
  if (/^internal error/i.test(message)) return 'error'
  if (/\b(fail(s|ed|ure)?|errors?|retried|retrying|cannot|could not|unreachable|caught|banned|disagree|inconclusive|not on the chain|discarded)\b/i.test(message)) {
    return 'warn'
  }
  return 'info'
}

const LEVEL_NAMES: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' }

/** pino's JSON lines as a person reads them: `17:21:05 WARN message key=value`. */
function textStream(out: NodeJS.WritableStream): Writable {
  return new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (!line) continue
        try {
          const { level, time, msg, pid: _pid, hostname: _host, reqId: _r, ...fields } = JSON.parse(line) as Record<string, unknown>
          const at = String(time).slice(11, 19)
          const extra = Object.entries(fields)
            .map(([k, v]) => ` ${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
            .join('')
          out.write(`${at} ${LEVEL_NAMES[Number(level)] ?? level} ${String(msg ?? '')}${extra}\n`)
        } catch {
          out.write(`${line}\n`)
        }
      }
      done()
    },
  })
}

export function createLogger(options: LoggerOptions = {}): CoordinatorLogger {
  const env = process.env.TABTRAIN_LOG_FORMAT
  const format = options.format ?? (env === 'json' || env === 'text' ? env : process.stdout.isTTY ? 'text' : 'json')
  const level = options.level ?? (process.env.TABTRAIN_LOG_LEVEL as Level | undefined) ?? (format === 'json' ? 'info' : 'warn')
  const out = options.stream ?? process.stdout
  const logger = pino(
    {
      level,
      base: { pid: process.pid },
      // RFC 3339 time and level names read better in a log viewer than epoch milliseconds and numbers.
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: format === 'json' ? { level: (label) => ({ level: label }) } : {},
      // Lease ids and sessions are their holders' secrets; request logs (when enabled) never show them.
      redact: { paths: ['req.headers.authorization', 'req.headers.cookie'], remove: true },
    },
    format === 'json' ? (out as Writable) : textStream(out),
  )
  const log: Log = (message, fields) => logger[levelOf(message)](fields ?? {}, message)
  return {
    logger,
    log,
    format,
    banner(text, fields) {
      // Above every level but `silent`, so `npm start` shows it while hiding `info`.
      const msg = text.trim().replace(/\s*\n\s*/g, ' ')
      if (format === 'text') out.write(`${text}\n`)
      else if (logger.isLevelEnabled('info')) logger.info({ banner: true, ...fields }, msg)
      else out.write(`${JSON.stringify({ level: 'info', time: new Date().toISOString(), pid: process.pid, banner: true, ...fields, msg })}\n`)
    },
  }
}
