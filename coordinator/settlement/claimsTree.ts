import { StandardMerkleTree } from '@openzeppelin/merkle-tree'
import { zeroHash, type Hex } from 'viem'

/**
 * The claims tree of one epoch: an OpenZeppelin StandardMerkleTree over the EIP-712 digests of every
 * WorkClaim the coordinator settled in it (paid, and refused with evidence). Its root is posted with the
 * epoch's reward root; DisputeResolver.postVerdict rebuilds the leaf as
 * keccak256(bytes.concat(keccak256(abi.encode(digest)))), so the encoding must change with it.
 */
export const CLAIM_LEAF_ENCODING = ['bytes32'] as const

export type ClaimsTree = StandardMerkleTree<[Hex]>

/** Builds the tree of `digests` (duplicates dropped, sorted, so the root does not depend on row order); null when there are none. */
export function buildClaimsTree(digests: Iterable<Hex>): ClaimsTree | null {
  const unique = [...new Set([...digests].map((d) => d.toLowerCase() as Hex))].sort()
  if (unique.length === 0) return null
  return StandardMerkleTree.of<[Hex]>(
    unique.map((d) => [d]),
    [...CLAIM_LEAF_ENCODING],
    { sortLeaves: true },
  )
}

/** The root to post: zero for an epoch that commits no claim (nothing can be proven against it). */
export function claimsRootOf(tree: ClaimsTree | null): Hex {
  return tree ? (tree.root as Hex) : zeroHash
}

/** The proof that `digest` is in the tree, or null when it is not. */
export function claimProof(tree: ClaimsTree | null, digest: Hex): Hex[] | null {
  if (!tree) return null
  const wanted = digest.toLowerCase()
  for (const [index, [leaf]] of tree.entries()) {
    if (leaf.toLowerCase() === wanted) return tree.getProof(index) as Hex[]
  }
  return null
}

export function serializeClaimsTree(tree: ClaimsTree | null): string {
  return JSON.stringify(tree ? tree.dump() : null)
}

/** Loads a stored tree and checks that its leaves still hash to its nodes. */
export function loadClaimsTree(data: unknown): ClaimsTree | null {
  if (data === null || data === undefined) return null
  const tree = StandardMerkleTree.load<[Hex]>(data as ReturnType<ClaimsTree['dump']>)
  tree.validate()
  return tree
}
