import { createPublicClient, createWalletClient, http } from 'viem'
import { anvilAccount, anvilChain, startAnvil } from './anvil.ts'
import { DEFAULT_DEPLOY_PARAMETERS, deployTabTrain } from './deploy.ts'
const anvil = await startAnvil()
const chain = anvilChain(anvil)
const publicClient = createPublicClient({ chain, transport: http(anvil.rpcUrl) })
const walletClient = createWalletClient({ chain, account: anvilAccount(0), transport: http(anvil.rpcUrl) })
const ts: number[] = []
for (let i = 0; i < 12; i++) {
  const t = performance.now()
  await deployTabTrain({ walletClient, publicClient, admin: anvilAccount(0).address, coordinator: anvilAccount(1).address, treasury: anvilAccount(2).address, ...DEFAULT_DEPLOY_PARAMETERS })
  ts.push(performance.now() - t)
}
ts.sort((a, b) => a - b)
console.log('median', ts[6]!.toFixed(0), 'min', ts[0]!.toFixed(0), 'max', ts[11]!.toFixed(0))
await anvil.stop()
