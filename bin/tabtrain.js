#!/usr/bin/env node
// `tabtrain` (package.json "bin"): the command is TypeScript (src/cli/); Node 20 cannot run it directly,
// so tsx, a dependency, compiles it on the fly. The project's own tsconfig where it ships, none otherwise.
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { register } from 'tsx/esm/api'

const tsconfig = fileURLToPath(new URL('../tsconfig.json', import.meta.url))
register({ tsconfig: existsSync(tsconfig) ? tsconfig : false })
const { main } = await import('../src/cli/main.ts')
try {
  process.exit(await main(process.argv.slice(2)))
} catch (error) {
  // A bug, not a refusal: the stack helps whoever reports it.
  console.error('tabtrain: unexpected error:', error)
  process.exit(1)
}
