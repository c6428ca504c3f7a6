// Entry of the coordinator's worker threads (pool.ts). The thread runs TypeScript from source like the rest of the
// coordinator, so it registers tsx's loader first. On Node 20 neither a worker's inherited loader nor
// `execArgv: ['--import', 'tsx']` applies to the worker's own modules; registering from inside the thread does,
// the same under `tsx` and under vitest.
import { register } from 'tsx/esm/api'

register()
await import('./thread.ts')
