// Entry of the headless contributor's unit thread (nodeThreadExecutor.ts). The thread runs TypeScript from
// source, so it registers tsx's loader first: on Node 20 a worker does not inherit the main thread's loader
// (as coordinator/threads/thread.boot.mjs).
import { register } from 'tsx/esm/api'

register()
await import('./nodeUnitThread.ts')
