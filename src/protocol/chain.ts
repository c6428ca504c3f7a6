import { z } from 'zod'
import { addressSchema } from './address.ts'

/**
 * Where TabTrain's contracts live on one chain. The coordinator loads it (from a local deployment or
 * from configuration), serves it in `/api/info`, and the site and contract tests read it; the claim
 * domain's `verifyingContract` is `disputeResolver`, the contract that checks claims for slashing.
 */
export const contractAddressesSchema = z.object({
  token: addressSchema,
  stakeManager: addressSchema,
  jobEscrow: addressSchema,
  rewardDistributor: addressSchema,
  disputeResolver: addressSchema,
})

export type ContractAddresses = z.infer<typeof contractAddressesSchema>

export const chainInfoSchema = z.object({
  chainId: z.number().int().positive(),
  /** JSON-RPC endpoint the browser can reach. */
  rpcUrl: z.string().url(),
  contracts: contractAddressesSchema,
  /** Seconds between a root's posting and the moment it can be claimed against. */
  challengeWindowSeconds: z.number().int().nonnegative(),
  /** Seconds an unstake waits before withdrawal. */
  unstakeDelaySeconds: z.number().int().nonnegative(),
  token: z.object({ symbol: z.string(), decimals: z.number().int().min(0).max(36) }),
  /** True on the embedded local chain, where `/api/faucet` hands out gas and test tokens. */
  faucet: z.boolean(),
})

export type ChainInfo = z.infer<typeof chainInfoSchema>
