import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import semver from 'semver'
import { describe, expect, it } from 'vitest'

/**
 * What README.md promises about set-up holds for what `npm ci` installs: the Node version it names is
 * package.json's `engines.node`, and every installed package (dev ones too: `npm ci` installs them)
 * accepts that version, so nobody on the stated minimum meets EBADENGINE warnings or a package that
 * quietly needs a newer runtime. A dependency bump that raises the floor fails here, not on a user's machine.
 */
const root = join(import.meta.dirname, '..')
const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { engines: { node: string } }
const lock = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8')) as {
  packages: Record<string, { version?: string; engines?: Record<string, string> | string[]; optional?: boolean }>
}
const floor = semver.minVersion(manifest.engines.node)!.version

describe('declared Node version', () => {
  it('is the one README.md names', () => {
    const readme = readFileSync(join(root, 'README.md'), 'utf8')
    const named = /Node\.js (\d+\.\d+(?:\.\d+)?) or newer/.exec(readme)
    expect(named, 'README.md says "Node.js X.Y or newer"').not.toBeNull()
    expect(semver.coerce(named![1])!.version).toBe(floor)
  })

  it('is accepted by every package npm ci installs', () => {
    const refusing = Object.entries(lock.packages)
      .filter(([path, entry]) => path !== '' && !entry.optional && entry.engines && !Array.isArray(entry.engines) && entry.engines.node)
      .filter(([, entry]) => !semver.satisfies(floor, (entry.engines as Record<string, string>).node!))
      .map(([path, entry]) => `${path.replace(/^node_modules\//, '')}@${entry.version} needs node ${(entry.engines as Record<string, string>).node}`)
    expect(refusing).toEqual([])
  })

  it('includes the Node running these tests', () => {
    expect(semver.satisfies(process.version, manifest.engines.node), `${process.version} vs ${manifest.engines.node}`).toBe(true)
  })
})
