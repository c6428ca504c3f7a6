import { createHash } from 'node:crypto'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import fastifyHelmet from '@fastify/helmet'
import type { FastifyInstance } from 'fastify'
import { isWidgetCall } from './cors.ts'

/** The page the widget frames on other sites: the only page any site may frame (sitePages.ts). */
const EMBED_PATHS = new Set(['/embed.html', '/embed'])

/**
 * WalletConnect (web/lib/wallets.ts, @walletconnect/ethereum-provider and the Reown modal it opens): its
 * relay (WebSocket), RPC, verify and pulse endpoints, the wallet explorer's API and images, its fonts, and
 * the verify/secure pages it frames. Read from the built bundle's URLs.
 */
const WALLETCONNECT = {
  connect: [
    'wss://relay.walletconnect.org',
    'wss://relay.walletconnect.com',
    'https://*.walletconnect.org',
    'https://*.walletconnect.com',
    'https://api.web3modal.org',
    'https://*.reown.com',
  ],
  img: ['https://*.walletconnect.org', 'https://*.walletconnect.com', 'https://api.web3modal.org', 'https://*.reown.com'],
  font: ['https://fonts.reown.com'],
  frame: ['https://verify.walletconnect.org', 'https://verify.walletconnect.com', 'https://secure.walletconnect.org', 'https://secure.walletconnect.com'],
}

export interface SecurityHeaderOptions {
  /** Built site: its pages' inline scripts are allowed by hash (the 404 page has one). */
  siteDir?: string
  /** The chain's JSON-RPC URL the pages talk to (anvil on another port, or an external node); null without a chain. */
  rpcUrl?: string | null
}

/** `'sha256-…'` of every inline `<script>` in the site's pages, so no page needs 'unsafe-inline'. */
export function inlineScriptHashes(siteDir: string | undefined): string[] {
  if (!siteDir || !existsSync(siteDir)) return []
  const hashes = new Set<string>()
  for (const name of readdirSync(siteDir)) {
    if (!name.endsWith('.html')) continue
    const html = readFileSync(join(siteDir, name), 'utf8')
    for (const match of html.matchAll(/<script(?![^>]*\bsrc=)[^>]*>([\s\S]*?)<\/script>/g)) {
      hashes.add(`'sha256-${createHash('sha256').update(match[1]!).digest('base64')}'`)
    }
  }
  return [...hashes].sort()
}

/**
 * The site's content security policy: its own scripts (module workers included) and WebAssembly
 * ('wasm-unsafe-eval': tfjs's wasm backend compiles its kernels, no JS eval), requests to itself, the
 * chain's RPC and WalletConnect, images from itself, data: and the wallet explorer, inline styles (the
 * pages and the wallet modal set style attributes), no plugins, and framing by this origin only, except
 * the widget's page, which any site may frame.
 */
export function contentSecurityPolicy(params: { scriptHashes: readonly string[]; rpcUrl?: string | null; embed: boolean }): string {
  let rpcOrigin: string | null = null
  try {
    rpcOrigin = params.rpcUrl ? new URL(params.rpcUrl).origin : null
  } catch {
    rpcOrigin = null
  }
  const directives: Record<string, string[]> = {
    'default-src': ["'self'"],
    'script-src': ["'self'", "'wasm-unsafe-eval'", ...params.scriptHashes],
    'worker-src': ["'self'", 'blob:'],
    'connect-src': ["'self'", ...(rpcOrigin ? [rpcOrigin] : []), ...WALLETCONNECT.connect],
    'img-src': ["'self'", 'data:', 'blob:', ...WALLETCONNECT.img],
    'font-src': ["'self'", 'data:', ...WALLETCONNECT.font],
    'style-src': ["'self'", "'unsafe-inline'"],
    'frame-src': ["'self'", ...WALLETCONNECT.frame],
    'object-src': ["'none'"],
    'base-uri': ["'self'"],
    'form-action': ["'self'"],
    'frame-ancestors': params.embed ? ['*'] : ["'self'"],
  }
  return Object.entries(directives)
    .map(([name, values]) => `${name} ${values.join(' ')}`)
    .join('; ')
}

/**
 * Security headers on every answer (@fastify/helmet), with the site's content security policy, and:
 * - `embed.html` may be framed by any site (frame-ancestors *, no X-Frame-Options): the widget lives in it;
 * - the widget's calls and `widget.js` itself may be loaded by pages of any origin (Cross-Origin-Resource-Policy: cross-origin).
 * Register after the site pages (sitePages.ts), whose own header on embed.html this replaces with the whole policy.
 */
export async function registerSecurityHeaders(app: FastifyInstance, options: SecurityHeaderOptions): Promise<void> {
  const scriptHashes = inlineScriptHashes(options.siteDir)
  const pagePolicy = contentSecurityPolicy({ scriptHashes, rpcUrl: options.rpcUrl, embed: false })
  const embedPolicy = contentSecurityPolicy({ scriptHashes, rpcUrl: options.rpcUrl, embed: true })
  await app.register(fastifyHelmet, {
    // Set below, per answer: helmet's would be one policy for every path.
    contentSecurityPolicy: false,
    frameguard: false,
    crossOriginResourcePolicy: { policy: 'same-origin' },
    // A wallet's popup (Coinbase, WalletConnect's links) keeps its opener.
    crossOriginOpenerPolicy: { policy: 'same-origin-allow-popups' },
    // The coordinator may share a host name with other services: never pin HTTPS on their behalf.
    strictTransportSecurity: { maxAge: 180 * 24 * 3600, includeSubDomains: false },
    // Browsers' own default: other origins learn the origin only, this origin the whole URL.
    referrerPolicy: { policy: 'strict-origin-when-cross-origin' },
  })
  app.addHook('onSend', async (req, reply) => {
    const path = req.url.split('?')[0]!
    const embed = EMBED_PATHS.has(path)
    void reply.header('content-security-policy', embed ? embedPolicy : pagePolicy)
    if (!embed) void reply.header('x-frame-options', 'SAMEORIGIN')
    if (isWidgetCall(req.method, req.url)) void reply.header('cross-origin-resource-policy', 'cross-origin')
  })
}
