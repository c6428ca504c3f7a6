import { execFile, execFileSync } from 'node:child_process'
import { existsSync, readdirSync } from 'node:fs'
import { chown, mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import pg from 'pg'

/**
 * A throw-away PostgreSQL server for tests: a fresh cluster in a temporary folder, on a free port,
 * trusting local connections, removed on stop(). Uses the server binaries already on the machine
 * (Debian's postgresql package puts them in /usr/lib/postgresql/<major>/bin); when there are none,
 * `postgresUnavailableReason()` says why and the suites that need it skip.
 */
export interface PostgresServer {
  /** `postgres://postgres@127.0.0.1:<port>/<database>` of the database created at start. */
  url: string
  port: number
  dir: string
  /** Creates another empty database on the same server and returns its URL. */
  createDatabase(name: string): Promise<string>
  stop(): Promise<void>
}

const run = promisify(execFile)

/** The folder holding initdb and pg_ctl: $POSTGRES_BIN_DIR, the newest Debian install, or the PATH. */
export function findPostgresBinDir(): string | null {
  const fromEnv = process.env.POSTGRES_BIN_DIR
  if (fromEnv) return existsSync(join(fromEnv, 'initdb')) ? fromEnv : null
  const debian = '/usr/lib/postgresql'
  if (existsSync(debian)) {
    const majors = readdirSync(debian)
      .filter((v) => existsSync(join(debian, v, 'bin', 'initdb')))
      .sort((a, b) => Number(b) - Number(a))
    if (majors[0]) return join(debian, majors[0], 'bin')
  }
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (dir && existsSync(join(dir, 'initdb')) && existsSync(join(dir, 'pg_ctl'))) return dir
  }
  return null
}

/** PostgreSQL refuses to run as root: as root, the server runs as the `postgres` system user. */
function serverUser(): { uid: number; gid: number; name: string } | null {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return null
  try {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim())
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim())
    return { uid, gid, name: 'postgres' }
  } catch {
    return null
  }
}

/** Null when a server can be started here, else why not. */
export function postgresUnavailableReason(): string | null {
  if (process.platform === 'win32') return 'temporary PostgreSQL servers are only set up on POSIX systems'
  if (!findPostgresBinDir()) return 'no PostgreSQL server binaries (initdb, pg_ctl) found; set POSTGRES_BIN_DIR or install postgresql'
  if (process.getuid?.() === 0) {
    if (!serverUser()) return 'running as root and there is no `postgres` user to run the server as'
    if (!existsSync('/usr/sbin/runuser') && !existsSync('/sbin/runuser') && !existsSync('/usr/bin/runuser')) {
      return 'running as root and runuser is not available'
    }
  }
  return null
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.unref()
    server.on('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      const port = typeof address === 'object' && address ? address.port : 0
      server.close(() => resolve(port))
    })
  })
}

export async function startPostgresServer(options: { database?: string } = {}): Promise<PostgresServer> {
  const reason = postgresUnavailableReason()
  if (reason) throw new Error(`cannot start PostgreSQL: ${reason}`)
  const bin = findPostgresBinDir()!
  const user = serverUser()
  const as = (command: string, args: string[]) =>
    user ? run('runuser', ['-u', user.name, '--', join(bin, command), ...args]) : run(join(bin, command), args)

  const dir = await mkdtemp(join(tmpdir(), 'tabtrain-pg-'))
  if (user) await chown(dir, user.uid, user.gid)
  const data = join(dir, 'data')
  await as('initdb', ['-D', data, '-U', 'postgres', '--auth=trust', '--no-sync', '-E', 'UTF8', '--locale=C'])

  // A port can be taken between choosing and binding it; try a few.
  let port = 0
  for (let attempt = 0; ; attempt++) {
    port = await freePort()
    const serverOptions = [
      `-p ${port}`,
      `-k ${dir}`,
      '-c listen_addresses=127.0.0.1',
      // A test cluster: durability buys nothing, speed does.
      '-c fsync=off',
      '-c synchronous_commit=off',
      '-c full_page_writes=off',
      '-c max_connections=64',
    ].join(' ')
    try {
      await as('pg_ctl', ['-D', data, '-o', serverOptions, '-l', join(dir, 'server.log'), '-w', '-t', '60', 'start'])
      break
    } catch (error) {
      if (attempt >= 2) {
        await rm(dir, { recursive: true, force: true })
        throw error
      }
    }
  }

  let stopped = false
  const stopSync = () => {
    if (stopped) return
    try {
      const args = [join(bin, 'pg_ctl'), '-D', data, '-m', 'immediate', '-w', 'stop']
      if (user) execFileSync('runuser', ['-u', user.name, '--', ...args], { stdio: 'ignore' })
      else execFileSync(args[0]!, args.slice(1), { stdio: 'ignore' })
    } catch {
      // Already gone.
    }
  }
  // Do not leave a server behind when the test process exits without calling stop().
  process.once('exit', stopSync)

  const urlOf = (database: string) => `postgres://postgres@127.0.0.1:${port}/${database}`
  const createDatabase = async (name: string) => {
    if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`database name ${name} is not a plain identifier`)
    const client = new pg.Client({ connectionString: urlOf('postgres') })
    await client.connect()
    try {
      await client.query(`CREATE DATABASE ${name}`)
    } finally {
      await client.end()
    }
    return urlOf(name)
  }

  const database = options.database ?? 'tabtrain_test'
  let url: string
  try {
    url = await createDatabase(database)
  } catch (error) {
    stopSync()
    stopped = true
    await rm(dir, { recursive: true, force: true })
    throw error
  }

  return {
    url,
    port,
    dir,
    createDatabase,
    async stop() {
      if (stopped) return
      process.off('exit', stopSync)
      try {
        await as('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop'])
      } catch {
        // Already stopped.
      }
      stopped = true
      await rm(dir, { recursive: true, force: true })
    },
  }
}
