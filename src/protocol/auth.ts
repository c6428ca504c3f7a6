import { z } from 'zod'
import type { Address } from 'viem'
import { createSiweMessage } from 'viem/siwe'
import { signatureSchema } from './claim.ts'

/**
 * Sign-In with Ethereum (EIP-4361) for requesters: the pages, the typed client and the coordinator build
 * and read the message with viem's kept implementation (`viem/siwe`), never a format of our own. The
 * coordinator hands out a nonce, the wallet signs a message naming this coordinator's host (`domain`), its
 * chain and that nonce, and the coordinator answers with a bearer token good for an hour. No cookies: a
 * page on another origin (the widget's host) can neither send nor be sent one by accident.
 */

/** What the wallet shows above the fields: says what the signature is for, and that it costs nothing. */
export const SIGN_IN_STATEMENT = 'Sign in to TabTrain to manage the jobs you requested. This costs no gas and moves no funds.'

/** A session token is good for this long after sign-in (or until the message's own expirationTime, if sooner). */
export const SESSION_TTL_MS = 60 * 60_000

/**
 * A nonce must be used, and a message's `issuedAt` be, within this of the coordinator's clock: long enough
 * to read the wallet's prompt, short enough that a stolen unsigned nonce is soon worthless.
 */
export const SIGN_IN_MAX_AGE_MS = 10 * 60_000

/** How far ahead of the coordinator's clock a message may say it was issued (a laptop's drifting clock). */
export const SIGN_IN_MAX_SKEW_MS = 5 * 60_000

/** Body of `POST /api/auth/siwe`. */
export const signInRequestSchema = z.object({
  /** The EIP-4361 message exactly as signed. */
  message: z.string().min(1).max(4000),
  /** EIP-191 personal_sign signature of `message` by the address it names. */
  signature: signatureSchema,
})
export type SignInRequest = z.infer<typeof signInRequestSchema>

/** Answer of `GET /api/auth/nonce`: used once, within SIGN_IN_MAX_AGE_MS. */
export interface AuthNonce {
  nonce: string
}

/** Answer of `POST /api/auth/siwe`: send `token` as `Authorization: Bearer <token>` until `expiresAt` (ms). */
export interface SignInResult {
  token: string
  address: Address
  expiresAt: number
}

/**
 * The message a requester signs to sign in at the coordinator at `origin` (e.g. `http://127.0.0.1:8547`):
 * its host is the EIP-4361 `domain` the coordinator checks against the request's Host header.
 */
export function buildSignInMessage(params: {
  address: Address
  chainId: number
  origin: string
  nonce: string
  now?: number
  expirationTime?: number
  statement?: string
}): string {
  const url = new URL(params.origin)
  return createSiweMessage({
    address: params.address,
    chainId: params.chainId,
    domain: url.host,
    uri: url.origin,
    nonce: params.nonce,
    version: '1',
    statement: params.statement ?? SIGN_IN_STATEMENT,
    issuedAt: new Date(params.now ?? Date.now()),
    ...(params.expirationTime !== undefined ? { expirationTime: new Date(params.expirationTime) } : {}),
  })
}

/** Anything that signs an EIP-191 message: a viem local account, or a wallet client bound to an account. */
export interface MessageSigner {
  address: Address
  signMessage: (args: { message: string }) => Promise<`0x${string}`>
}
