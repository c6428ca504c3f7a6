/**
 * The chain's clock as the next transaction will see it, in unix seconds: the latest block's timestamp,
 * or the wall clock when that is later, since an idle local chain mines no blocks and its last timestamp
 * falls behind (the next block still carries the current time). A chain moved ahead of the wall clock,
 * as tests do, keeps its own time. Null when the node cannot be reached.
 *
 * One raw JSON-RPC call: pages that only need the clock should not load a viem client for it.
 */
export async function chainNow(rpcUrl: string): Promise<number | null> {
  try {
    const response = await fetch(rpcUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'eth_getBlockByNumber', params: ['latest', false] }),
    })
    const body = (await response.json()) as { result?: { timestamp?: string } | null }
    const timestamp = body.result?.timestamp
    return timestamp ? Math.max(Number(BigInt(timestamp)), Math.floor(Date.now() / 1000)) : null
  } catch {
    return null
  }
}
