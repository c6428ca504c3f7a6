import { readdir, readFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { compileContracts, contractSourceNames, CONTRACTS_DIR, GENERATED_DIR, GENERATED_HEADER, type CompileResult } from './build.ts'

/**
 * Warnings the build accepts, by solc error code. None today: the sources compile cleanly, and a new
 * warning must be looked at (and either fixed or listed here with the reason it is harmless).
 */
const HARMLESS_WARNING_CODES = new Set<string>()

let result: CompileResult

beforeAll(() => {
  result = compileContracts()
})

describe('contracts build', () => {
  it('committed generated files are exactly what the sources compile to (run npm run contracts after editing a .sol file)', async () => {
    const root = resolve(CONTRACTS_DIR, '..')
    for (const [path, content] of result.files) {
      const committed = await readFile(join(root, path), 'utf8').catch(() => null)
      expect(committed, `${path} is missing or stale`).toBe(content)
    }
    const onDisk = (await readdir(GENERATED_DIR)).map((f) => `contracts/generated/${f}`).sort()
    expect(onDisk).toEqual([...result.files.keys()].sort())
  })

  it('compiles without warnings other than the known harmless ones', () => {
    const unexpected = result.warnings.filter((w) => !HARMLESS_WARNING_CODES.has(w.errorCode ?? ''))
    expect(unexpected.map((w) => w.formattedMessage ?? w.message)).toEqual([])
  })

  it('generates one module per contract, each with an ABI and bytecode, plus an index', () => {
    const names = contractSourceNames().map((f) => f.replace(/\.sol$/, ''))
    expect(names).toEqual(['DisputeResolver', 'JobEscrow', 'RewardDistributor', 'StakeManager', 'TabToken'])
    for (const name of names) {
      const text = result.files.get(`contracts/generated/${name}.ts`)!
      const id = name.charAt(0).toLowerCase() + name.slice(1)
      expect(text.startsWith(GENERATED_HEADER)).toBe(true)
      expect(text).toContain(`export const ${id}Abi = [`)
      expect(text).toMatch(new RegExp(`export const ${id}Bytecode = '0x[0-9a-f]+' as const`))
      // EIP-170: deployed code must stay under 24,576 bytes; the creation code is a safe upper bound.
      const bytecode = /Bytecode = '0x([0-9a-f]+)'/.exec(text)![1]!
      expect(bytecode.length / 2, name).toBeLessThan(24_576)
    }
    expect(result.files.get('contracts/generated/index.ts')).toContain("export { tabTokenAbi, tabTokenBytecode } from './TabToken.ts'")
  })
})
