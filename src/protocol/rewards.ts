import { StandardMerkleTree } from '@openzeppelin/merkle-tree'
import { getAddress, type Address, type Hex } from 'viem'
import type { Amount } from './amount.ts'

/**
 * The reward tree's leaf: `(account, cumulativeAmount)`, hashed by OpenZeppelin's StandardMerkleTree as
 * keccak256(bytes.concat(keccak256(abi.encode(account, cumulativeAmount)))). RewardDistributor.sol
 * rebuilds exactly this leaf, so the two must change together.
 */
export const REWARD_LEAF_ENCODING = ['address', 'uint256'] as const

export type RewardLeaf = [Address, bigint]

export class RewardTreeError extends Error {
  override name = 'RewardTreeError'
}

/**
 * Builds the cumulative reward tree of one epoch. Entries are sorted by address first, so the same
 * balances give the same root whatever order the store returned them in.
 */
export function buildRewardTree(balances: ReadonlyMap<Address, bigint> | Iterable<readonly [Address, bigint]>) {
  const leaves: RewardLeaf[] = []
  const seen = new Set<Address>()
  for (const [account, amount] of balances) {
    const checksummed = getAddress(account)
    if (seen.has(checksummed)) throw new RewardTreeError(`duplicate account ${checksummed} in reward tree`)
    if (amount <= 0n) continue
    seen.add(checksummed)
    leaves.push([checksummed, amount])
  }
  if (leaves.length === 0) throw new RewardTreeError('a reward tree needs at least one account with a positive amount')
  leaves.sort(([a], [b]) => (a.toLowerCase() < b.toLowerCase() ? -1 : a.toLowerCase() > b.toLowerCase() ? 1 : 0))
  return StandardMerkleTree.of<RewardLeaf>(leaves, [...REWARD_LEAF_ENCODING], { sortLeaves: true })
}

export type RewardTree = ReturnType<typeof buildRewardTree>

/** The proof of `account`'s leaf, or null when the tree has no leaf for it. */
export function rewardProof(tree: RewardTree, account: Address): { cumulativeAmount: bigint; proof: Hex[] } | null {
  const wanted = getAddress(account)
  for (const [index, [leafAccount, amount]] of tree.entries()) {
    if (leafAccount === wanted) return { cumulativeAmount: BigInt(amount), proof: tree.getProof(index) as Hex[] }
  }
  return null
}

/** Checks a proof the coordinator served against a root read from the chain, before spending gas on it. */
export function verifyRewardProof(root: Hex, account: Address, cumulativeAmount: bigint, proof: readonly Hex[]): boolean {
  return StandardMerkleTree.verify(root, [...REWARD_LEAF_ENCODING], [getAddress(account), cumulativeAmount], [...proof])
}

/** One epoch's reward state for one account, as the coordinator serves it (amounts in base units). */
export interface RewardProofRecord {
  epoch: number
  root: Hex
  cumulativeAmount: Amount
  proof: Hex[]
  /** Unix seconds at which the root can be claimed against (posted time + challenge window). */
  claimableAt: number
  txHash: Hex
}

/** The tree as JSON text (amounts as decimal strings), for storing beside the epoch it belongs to. */
export function serializeRewardTree(tree: RewardTree): string {
  return JSON.stringify(tree.dump(), (_key, value: unknown) => (typeof value === 'bigint' ? value.toString() : value))
}

/** Loads a stored tree and checks that its leaves still hash to its nodes. */
export function loadRewardTree(data: unknown): RewardTree {
  const tree = StandardMerkleTree.load<RewardLeaf>(data as ReturnType<RewardTree['dump']>)
  tree.validate()
  return tree
}
