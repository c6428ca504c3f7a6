/**
 * The chain's latest block timestamp (unix seconds) by one raw JSON-RPC call: pages that only need the
 * chain's clock (challenge windows run on it, and a test chain's clock may be moved ahead of the wall
 * clock) should not load a whole viem client for it. Null when the node cannot be reached.
 */
export async function latestBlockTime(rpcUrl: string): Promise<number | null> {
  try {
    const response = await fetch(rpcUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'eth_getBlockByNumber', params: ['latest', false] }),
    })
    const body = (await response.json()) as { result?: { timestamp?: string } | null }
    const timestamp = body.result?.timestamp
    return timestamp ? Number(BigInt(timestamp)) : null
  } catch {
    return null
  }
}
