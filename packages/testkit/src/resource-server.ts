import { createServer } from 'node:https'
import { createSecureServer } from 'node:http2'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { decodeJwt, jwtVerify, type JSONWebKeySet, type JWTPayload } from 'jose'
import * as oauth from 'oauth4webapi'
import { DEFAULT_SCOPE, DPOP_SIGNING_ALGS } from './authorization-server.js'
import { announceSecret } from './secrets.js'
import { peerCertificate } from './certificate-identity.js'
import {
  createResourceServerState,
  type Binding,
  type ClaimsRequest,
  type PolicyOutcome,
  type ResourceServerControl,
  type SeenRequest,
} from './control.js'
import { verifyDpopRequestWithJose, type DecodedProof, type ProofVerdict } from './dpop-proof-check.js'
import { createJwksSource } from './jwks-source.js'
import { closeServer, listen, LOOPBACK } from './listen.js'
import { certificateThumbprint, type TestPki } from './pki.js'
import { formatChallenges, type Challenge } from './www-authenticate.js'
import { checkResourceServerQuirks, errorlessChallenge, type ResourceServerQuirks } from './quirks.js'

/**
 * Options of {@link startResourceServer}.
 *
 * @example
 * ```ts
 * const ps256Only = await startResourceServer({ pki: kit.pki, issuer: kit.issuer, jwks: kit.as.jwks, resource: kit.resource, dpopSigningAlgs: ['PS256'] })
 * ```
 */
export interface ResourceServerOptions {
  /** The PKI whose server certificate the listener uses and whose CA it trusts. */
  pki: TestPki
  /** Issuer of the access tokens. */
  issuer: string
  /** The issuer's `jwks_uri`; default `<issuer>/jwks`. Fetched over TLS trusting the PKI CA. */
  jwksUri?: string
  /** A fixed key set instead of fetching {@link ResourceServerOptions.jwksUri}. */
  jwks?: JSONWebKeySet
  /** The audience / resource identifier; default the server's origin `https://127.0.0.1:PORT`. */
  resource?: string
  /** Demand DPoP nonces; default true. */
  requireNonce?: boolean
  /**
   * Accept the nonce from before the last rotation too (a grace window, as busy servers keep, so a
   * retry already on its way when the nonce rotates again is not refused). Default false.
   */
  acceptPreviousNonce?: boolean
  /** Accept tokens without `cnf` sent as `Bearer`; default false. */
  allowUnboundBearer?: boolean
  /** `scopes_supported` in the metadata; default `['orders:read', 'orders:write']`. */
  scopes?: string[]
  /** Accepted |now - iat| of DPoP proofs, seconds; default 60. */
  maxProofAgeSeconds?: number
  /** Clock tolerance for access token `exp`/`nbf`, seconds; default 0. */
  clockTolerance?: number
  /** Serve the JSON control API under `/_testkit/`; default true. */
  controlApi?: boolean
  /**
   * DPoP proof algs this RS accepts (its challenges' `algs` and its metadata's
   * `dpop_signing_alg_values_supported`); proofs with another alg get `invalid_dpop_proof`.
   * Default every alg the testkit supports.
   */
  dpopSigningAlgs?: string[]
  /**
   * Vendor quirks to reproduce (Entra-style challenges without `error`); default none. See
   * {@link ResourceServerQuirks}; {@link ResourceServer.setQuirks} changes them later.
   */
  quirks?: ResourceServerQuirks
  /**
   * Speak HTTP/2 too (ALPN `h2`; HTTP/1.1 clients are still served): default false. Handlers
   * mounted with {@link ResourceServer.route} then get node:http2's compatibility request and
   * response on h2 requests (`req.httpVersion` is `'2.0'`).
   */
  http2?: boolean
  /** Log rejections to stderr; default false. */
  verbose?: boolean
}

/**
 * The verified identity of a request, passed to {@link ResourceServer.route} handlers.
 *
 * @example
 * ```ts
 * kit.rs.route('/whoami', ({ res, auth }) => void res.end(JSON.stringify({ client: auth.claims.client_id, binding: auth.binding, jkt: auth.jkt })))
 * ```
 */
export interface VerifiedAuth {
  binding: Binding
  /** The access token claims. */
  claims: JWTPayload
  accessToken: string
  jkt?: string
  x5t?: string
  proof?: DecodedProof
}

/**
 * A request that passed every check.
 *
 * @example
 * ```ts
 * kit.rs.route('/echo', ({ res, url, body }: VerifiedRequest) => void res.end(`${url.pathname} ${body.length}`))
 * ```
 */
export interface VerifiedRequest {
  req: IncomingMessage
  res: ServerResponse
  url: URL
  body: Buffer
  auth: VerifiedAuth
}

/**
 * A handler mounted behind verification with {@link ResourceServer.route}.
 *
 * @example
 * ```ts
 * const handler: RouteHandler = async ({ res, auth }) => void res.writeHead(200).end(String(auth.claims.sub))
 * kit.rs.route('/me', handler)
 * ```
 */
export type RouteHandler = (request: VerifiedRequest) => void | Promise<void>

/**
 * A running verifying resource server on 127.0.0.1.
 *
 * @example
 * ```ts
 * const rs: ResourceServer = kit.rs
 * rs.route('/mcp', mcpHandler)
 * rs.rotateNonce()
 * expect(rs.counters().verifierDisagreements).toBe(0)
 * ```
 */
export interface ResourceServer extends ResourceServerControl {
  /** `https://127.0.0.1:PORT` */
  origin: string
  /** The audience string tokens must carry. */
  resource: string
  /** RFC 9728 metadata URL. */
  metadataUrl: string
  /**
   * Mounts a handler for paths starting with `pathPrefix`, called after every check passed
   * (instead of the default JSON echo). A later mount for the same prefix replaces it.
   */
  route(pathPrefix: string, handler: RouteHandler): void
  /** Refetches the authorization server's keys. */
  refreshJwks(): Promise<void>
  /**
   * Replaces the vendor quirks in force (see {@link ResourceServerQuirks}); `{}` or `undefined`
   * goes back to the standard challenges. Checked when set (TypeError for an unknown member).
   */
  setQuirks(quirks: ResourceServerQuirks | undefined): void
  /** The quirks in force (a copy). */
  quirks(): ResourceServerQuirks
  /** Closes the listener and every connection. Idempotent. */
  close(): Promise<void>
}

type Rejection = {
  status: number
  error: string
  description: string
  binding: Binding | 'none'
  challenges: Challenge[]
}

type Authenticated = { ok: true; auth: VerifiedAuth } | ({ ok: false } & Rejection)

const METADATA_PATH = '/.well-known/oauth-protected-resource'
const BODY_LIMIT = 1024 * 1024
const PRIVATE_PATH_PREFIX = '/_testkit/'
const ALGS = [...DPOP_SIGNING_ALGS]

/** The `alg` of a compact JWS header, when it can be read. */
function proofHeaderAlg(proof: string | undefined): string | undefined {
  if (proof === undefined) return undefined
  try {
    const header = JSON.parse(Buffer.from(proof.split('.')[0] ?? '', 'base64url').toString('utf8')) as { alg?: unknown }
    return typeof header.alg === 'string' ? header.alg : undefined
  } catch {
    return undefined
  }
}
const NO_BODY = new Set(['GET', 'HEAD'])

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    req.on('data', (chunk: Buffer) => {
      size += chunk.length
      if (size > BODY_LIMIT) {
        reject(Object.assign(new Error('request body too large'), { status: 413 }))
        req.destroy()
        return
      }
      chunks.push(chunk)
    })
    req.on('end', () => resolve(Buffer.concat(chunks)))
    req.on('error', reject)
  })
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const payload = JSON.stringify(body)
  res.writeHead(status, {
    ...headers,
    'content-type': 'application/json',
    'cache-control': 'no-store',
    'content-length': Buffer.byteLength(payload),
  })
  res.end(res.req.method === 'HEAD' ? undefined : payload)
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}

function safeDecode(jwt: string | undefined): JWTPayload | undefined {
  if (jwt === undefined) return undefined
  try {
    return decodeJwt(jwt)
  } catch {
    return undefined
  }
}

function stringClaim(payload: JWTPayload | undefined, name: string): string | undefined {
  const value = payload?.[name]
  return typeof value === 'string' ? value : undefined
}

function numberClaim(payload: JWTPayload | undefined, name: string): number | undefined {
  const value = payload?.[name]
  return typeof value === 'number' ? value : undefined
}

/**
 * Starts a resource server on 127.0.0.1 that accepts DPoP-bound tokens (verified twice: by
 * `oauth4webapi` and independently by `jose`, plus nonce and `jti` replay checks) and
 * certificate-bound tokens sent as `Bearer` over mTLS, publishes RFC 9728 metadata and can be told
 * to demand nonces, revoke tokens, and require step-up or claims.
 *
 * For tests only.
 *
 * @example
 * ```ts
 * const rs = await startResourceServer({ pki, issuer: as.issuer, jwksUri: as.jwksUri })
 * // … rs.origin, rs.counters() …
 * await rs.close()
 * ```
 */
export async function startResourceServer(options: ResourceServerOptions): Promise<ResourceServer> {
  const { pki, issuer } = options
  const verbose = options.verbose ?? false
  const allowUnboundBearer = options.allowUnboundBearer ?? false
  const clockTolerance = options.clockTolerance ?? 0
  const maxProofAgeSeconds = options.maxProofAgeSeconds ?? 60
  const acceptPreviousNonce = options.acceptPreviousNonce ?? false
  const dpopAlgs = options.dpopSigningAlgs ?? ALGS
  const dpopAlgsParam = dpopAlgs.join(' ')
  const controlApi = options.controlApi ?? true
  const scopes = options.scopes ?? DEFAULT_SCOPE.split(' ')
  let quirks = checkResourceServerQuirks(options.quirks)

  const state = createResourceServerState({
    requireNonce: options.requireNonce ?? true,
    // oauth4webapi accepts proofs up to 300 s old: remember jtis at least that long.
    replayWindowSeconds: Math.max(300, maxProofAgeSeconds) + 5,
  })
  const jwks = createJwksSource({
    ...(options.jwks === undefined ? {} : { jwks: options.jwks }),
    jwksUri: options.jwksUri ?? `${issuer}/jwks`,
    ca: pki.caPem,
  })
  const routes = new Map<string, RouteHandler>()

  let origin = ''
  let resource = ''
  let allowedHosts = new Set<string>()
  const authorizationServer: oauth.AuthorizationServer = {
    issuer,
    jwks_uri: options.jwksUri ?? `${issuer}/jwks`,
  }
  const validateOptions: oauth.ValidateJWTAccessTokenOptions = {
    requireDPoP: true,
    signingAlgorithms: ALGS,
    [oauth.clockTolerance]: clockTolerance,
    [oauth.customFetch]: async () => new Response(JSON.stringify(await jwks.refreshIfStale()), {
      status: 200,
      headers: { 'content-type': 'application/json' },
    }),
  }

  const log = (text: string): void => {
    if (verbose) process.stderr.write(`[bound-testkit rs] ${text}\n`)
  }

  const missingCredentials = (): Rejection => ({
    status: 401,
    error: 'invalid_request',
    description: 'no access token',
    binding: 'none',
    challenges: [
      { scheme: 'DPoP', params: [['algs', dpopAlgsParam]] },
      { scheme: 'Bearer', params: [['resource_metadata', `${origin}${METADATA_PATH}`]] },
    ],
  })

  const reject = (binding: Binding, error: string, description: string, extra: Challenge['params'] = []): Rejection => {
    const scheme = binding === 'dpop' ? 'DPoP' : 'Bearer'
    const params: Challenge['params'] = [['error', error], ['error_description', description], ...extra]
    if (scheme === 'DPoP') params.push(['algs', dpopAlgsParam])
    // a Bearer rejection also offers DPoP, as an API that accepts both does (RFC 9449 §7.1)
    const challenges: Challenge[] = scheme === 'DPoP' ? [{ scheme, params }] : [{ scheme, params }, { scheme: 'DPoP', params: [['algs', dpopAlgsParam]] }]
    return { status: 401, error, description, binding, challenges }
  }

  const policyRejection = (binding: Binding, outcome: Exclude<PolicyOutcome, { ok: true }>): Rejection => {
    switch (outcome.error) {
      case 'insufficient_user_authentication':
        return reject(binding, outcome.error, outcome.description, [['acr_values', outcome.acrValues], ['max_age', outcome.maxAge]])
      case 'insufficient_claims':
        return reject(binding, outcome.error, outcome.description, [['claims', outcome.claims]])
      case 'insufficient_scope':
        return { ...reject(binding, outcome.error, outcome.description, [['scope', outcome.scope]]), status: 403 }
      default:
        return reject(binding, outcome.error, outcome.description)
    }
  }

  const requestUrl = (req: IncomingMessage): string => {
    const target = req.url ?? '/'
    if (!target.startsWith('/')) return target
    // (HTTP/2 names the host in the :authority pseudo-header instead)
    const host = req.headers.host ?? (req.headers[':authority'] as string | undefined)
    return `https://${host !== undefined && allowedHosts.has(host) ? host : origin.slice('https://'.length)}${target}`
  }

  const verifyDpop = async (req: IncomingMessage, url: string, accessToken: string): Promise<Authenticated> => {
    const proofHeader = req.headers['dpop']
    announceSecret(accessToken, ...(Array.isArray(proofHeader) ? proofHeader : [proofHeader]))
    const proof = Array.isArray(proofHeader) ? proofHeader.join(',') : proofHeader
    const method = req.method ?? 'GET'
    const proofAlg = proofHeaderAlg(proof)
    if (proofAlg !== undefined && !dpopAlgs.includes(proofAlg)) {
      return { ok: false, ...reject('dpop', 'invalid_dpop_proof', `DPoP proof alg ${proofAlg} is not accepted here`) }
    }

    let request: Request
    try {
      const headers = new Headers({ authorization: `DPoP ${accessToken}` })
      if (proof !== undefined) headers.set('dpop', proof)
      request = new Request(url, { method, headers })
    } catch (error) {
      return { ok: false, ...reject('dpop', 'invalid_request', `unsupported request: ${message(error)}`) }
    }

    const [library, independent] = await Promise.all([
      oauth.validateJwtAccessToken(authorizationServer, request, resource, validateOptions).then(
        (claims) => ({ ok: true as const, claims }),
        (error: unknown) => ({ ok: false as const, error }),
      ),
      verifyDpopRequestWithJose({
        accessToken,
        proof,
        method,
        url,
        issuer,
        audience: resource,
        getKey: jwks.getKey,
        algorithms: ALGS,
        maxProofAgeSeconds,
        clockTolerance,
      }).catch((error: unknown): ProofVerdict => ({ ok: false, stage: 'token', reason: message(error) })),
    ])

    // The jose check is stricter on proof age (60 s against oauth4webapi's 300 s): a proof failing
    // only that window while oauth4webapi accepts it is policy, not a disagreement.
    const policyOnly = library.ok && !independent.ok && independent.iatOnly === true
      && Math.abs(independent.iatSkew ?? Infinity) <= 300
    if (library.ok !== independent.ok && !policyOnly) {
      state.mutableCounters().verifierDisagreements += 1
      const detail = library.ok
        ? `jose rejected (${independent.ok ? '' : independent.reason}) what oauth4webapi accepted`
        : `oauth4webapi rejected (${message(library.error)}) what jose accepted`
      process.stderr.write(`[bound-testkit rs] verifier disagreement on ${method} ${url}: ${detail}\n`)
    }

    if (!independent.ok) {
      const error = independent.stage === 'proof' ? 'invalid_dpop_proof' : 'invalid_token'
      return { ok: false, ...reject('dpop', error, independent.reason) }
    }
    if (!library.ok) {
      const reason = message(library.error)
      const error = /dpop/i.test(reason) ? 'invalid_dpop_proof' : 'invalid_token'
      return { ok: false, ...reject('dpop', error, reason) }
    }

    const { token, proof: decoded, jkt } = independent
    if (state.nonceRequired()) {
      const nonce = decoded.payload['nonce']
      if (nonce === undefined || (nonce !== state.currentNonce() && !(acceptPreviousNonce && nonce === state.previousNonce()))) {
        state.mutableCounters().nonceChallenges += 1
        const description = nonce === undefined
          ? 'resource server requires a nonce in the DPoP proof'
          : 'the DPoP proof nonce is stale'
        return { ok: false, ...reject('dpop', 'use_dpop_nonce', description) }
      }
    }
    if (!state.rememberProofJti(String(decoded.payload.jti), decoded.payload.iat)) {
      state.mutableCounters().replayedJti += 1
      return { ok: false, ...reject('dpop', 'invalid_dpop_proof', 'DPoP proof jti was already used') }
    }
    return { ok: true, auth: { binding: 'dpop', claims: token, accessToken, jkt, proof: decoded } }
  }

  const verifyBearer = async (req: IncomingMessage, accessToken: string): Promise<Authenticated> => {
    let claims: JWTPayload
    try {
      ;({ payload: claims } = await jwtVerify(accessToken, jwks.getKey, {
        issuer,
        audience: resource,
        typ: 'at+jwt',
        algorithms: ALGS,
        requiredClaims: ['exp', 'iat', 'jti', 'sub', 'client_id'],
        clockTolerance,
      }))
    } catch (error) {
      return { ok: false, ...reject('mtls', 'invalid_token', `access token: ${message(error)}`) }
    }
    const cnf = (claims['cnf'] ?? {}) as { jkt?: unknown; 'x5t#S256'?: unknown }
    if (cnf.jkt !== undefined) {
      return { ok: false, ...reject('mtls', 'invalid_token', 'DPoP-bound access token presented as Bearer') }
    }
    const bound = cnf['x5t#S256']
    if (bound === undefined) {
      if (allowUnboundBearer) return { ok: true, auth: { binding: 'bearer', claims, accessToken } }
      return { ok: false, ...reject('mtls', 'invalid_token', 'unbound bearer tokens are not accepted') }
    }
    const certificate = peerCertificate(req.socket)
    if (certificate === undefined) {
      return { ok: false, ...reject('mtls', 'invalid_token', 'certificate-bound token without a client certificate') }
    }
    const x5t = certificateThumbprint(certificate.raw)
    if (x5t !== bound) {
      return { ok: false, ...reject('mtls', 'invalid_token', 'client certificate does not match the token cnf x5t#S256') }
    }
    return { ok: true, auth: { binding: 'mtls', claims, accessToken, x5t } }
  }

  const authenticate = async (req: IncomingMessage, url: string): Promise<Authenticated> => {
    const authorization = req.headers.authorization
    const match = authorization === undefined ? null : /^(\S+) +(\S+)$/.exec(authorization.trim())
    const scheme = match?.[1]?.toLowerCase()
    const accessToken = match?.[2]
    if (accessToken === undefined || (scheme !== 'dpop' && scheme !== 'bearer')) {
      return { ok: false, ...missingCredentials() }
    }
    return scheme === 'dpop' ? verifyDpop(req, url, accessToken) : verifyBearer(req, accessToken)
  }

  const handleControl = async (req: IncomingMessage, res: ServerResponse, path: string): Promise<void> => {
    const action = path.slice(PRIVATE_PATH_PREFIX.length)
    if (req.method === 'GET' && action === 'counters') return sendJson(res, 200, state.counters())
    if (req.method === 'GET' && action === 'seen') return sendJson(res, 200, state.seen())
    if (req.method !== 'POST') return sendJson(res, 405, { error: 'method_not_allowed' })
    let input: Record<string, unknown>
    try {
      const raw = (await readBody(req)).toString('utf8')
      input = raw === '' ? {} : (JSON.parse(raw) as Record<string, unknown>)
    } catch (error) {
      return sendJson(res, 400, { error: 'invalid_request', error_description: message(error) })
    }
    const text = (name: string): string => {
      const value = input[name]
      if (typeof value !== 'string') throw new TypeError(`"${name}" must be a string`)
      return value
    }
    try {
      switch (action) {
        case 'require-nonce':
          state.requireNonce(input['on'] !== false)
          return sendJson(res, 200, { ok: true, nonce: state.currentNonce() })
        case 'rotate-nonce':
          return sendJson(res, 200, { ok: true, nonce: state.rotateNonce() })
        case 'revoke-token':
          if (typeof input['jti'] === 'string') state.revokeJti(input['jti'])
          else state.revokeToken(text('access_token'))
          return sendJson(res, 200, { ok: true })
        case 'revoke-client': {
          const before = input['issued_at_or_before']
          state.revokeClient(text('client_id'), typeof before === 'number' ? before : undefined)
          return sendJson(res, 200, { ok: true })
        }
        case 'clear-revocations':
          state.clearRevocations()
          return sendJson(res, 200, { ok: true })
        case 'step-up': {
          const maxAge = input['max_age']
          state.requireStepUp(text('path_prefix'), {
            acr_values: text('acr_values'),
            ...(typeof maxAge === 'number' ? { max_age: maxAge } : {}),
          })
          return sendJson(res, 200, { ok: true })
        }
        case 'clear-step-up':
          state.clearStepUp()
          return sendJson(res, 200, { ok: true })
        case 'claims':
          state.requireClaims(text('path_prefix'), (input['claims'] ?? {}) as ClaimsRequest)
          return sendJson(res, 200, { ok: true })
        case 'clear-claims':
          state.clearClaims()
          return sendJson(res, 200, { ok: true })
        case 'reset-counters':
          resetCounters()
          return sendJson(res, 200, { ok: true })
        default:
          return sendJson(res, 404, { error: 'not_found' })
      }
    } catch (error) {
      return sendJson(res, 400, { error: 'invalid_request', error_description: message(error) })
    }
  }

  const handleProtected = async (req: IncomingMessage, res: ServerResponse, url: URL, fullUrl: string): Promise<void> => {
    const counters = (): ReturnType<typeof state.mutableCounters> => state.mutableCounters()
    counters().requests += 1
    const method = req.method ?? 'GET'
    const body = NO_BODY.has(method) ? Buffer.alloc(0) : await readBody(req)
    const result = await authenticate(req, fullUrl)

    let outcome: Authenticated = result
    if (result.ok) {
      const policy = state.checkPolicy(url.pathname, result.auth.claims)
      if (!policy.ok) outcome = { ok: false, ...policyRejection(result.auth.binding, policy) }
    }

    // Record what was presented, verified or not.
    const authorization = req.headers.authorization?.trim().split(/ +/)
    const tokenClaims = result.ok ? result.auth.claims : safeDecode(authorization?.[1])
    const proofHeader = req.headers['dpop']
    const proofClaims = result.ok
      ? result.auth.proof?.payload
      : safeDecode(typeof proofHeader === 'string' ? proofHeader : undefined)
    state.noteToken(stringClaim(tokenClaims, 'jti'))
    const jkt = result.ok ? result.auth.jkt : undefined
    const x5t = result.ok ? result.auth.x5t : undefined
    const entry: SeenRequest = {
      method,
      path: url.pathname,
      status: outcome.ok ? 200 : outcome.status,
      binding: outcome.ok ? outcome.auth.binding : outcome.binding,
      at: Date.now(),
    }
    const optional: Partial<SeenRequest> = {
      error: outcome.ok ? undefined : outcome.error,
      tokenJti: stringClaim(tokenClaims, 'jti'),
      exp: numberClaim(tokenClaims, 'exp'),
      tokenIat: numberClaim(tokenClaims, 'iat'),
      clientId: stringClaim(tokenClaims, 'client_id'),
      jkt,
      x5t,
      proofJti: stringClaim(proofClaims, 'jti'),
      iat: numberClaim(proofClaims, 'iat'),
      htu: stringClaim(proofClaims, 'htu'),
    }
    for (const [key, value] of Object.entries(optional)) {
      if (value !== undefined) Object.assign(entry, { [key]: value })
    }

    if (!outcome.ok) {
      const c = counters()
      c.rejected += 1
      if (outcome.error === 'invalid_dpop_proof') c.rejectedProofs += 1
      if (outcome.error === 'invalid_token') c.invalidToken += 1
      if (outcome.error === 'insufficient_user_authentication') c.stepUpChallenges += 1
      if (outcome.error === 'insufficient_claims') c.claimsChallenges += 1
      if (outcome.error === 'insufficient_scope') c.scopeChallenges += 1
      state.noteSeen(entry)
      log(`${outcome.status} ${method} ${url.pathname} ${outcome.error}: ${outcome.description}`)
      const errorless = quirks.errorlessChallenges
      const challenges = errorless ? [errorlessChallenge(errorless, issuer)] : outcome.challenges
      const headers: Record<string, string> = { 'www-authenticate': formatChallenges(challenges) }
      return sendJson(res, outcome.status, { error: outcome.error, error_description: outcome.description }, headers)
    }

    const { auth } = outcome
    const c = counters()
    c.verified += 1
    c.byBinding[auth.binding] += 1
    if (auth.proof !== undefined) c.lastProof = structuredClone(auth.proof)
    state.noteSeen(entry)

    const handler = [...routes.entries()]
      .filter(([prefix]) => url.pathname.startsWith(prefix))
      .sort(([a], [b]) => b.length - a.length)[0]?.[1]
    if (handler !== undefined) {
      await handler({ req, res, url, body, auth })
      return
    }

    const claims = auth.claims
    const response: Record<string, unknown> = {
      ok: true,
      method,
      path: url.pathname,
      sub: claims.sub,
      client_id: claims['client_id'],
      scope: claims['scope'],
      binding: auth.binding,
    }
    if (auth.jkt !== undefined) response['jkt'] = auth.jkt
    if (auth.x5t !== undefined) response['x5t'] = auth.x5t
    if (claims['acr'] !== undefined) response['acr'] = claims['acr']
    if (claims['xms_cc'] !== undefined) response['xms_cc'] = claims['xms_cc']
    if (!NO_BODY.has(method)) response['body'] = body.toString('utf8')
    return sendJson(res, 200, response)
  }

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const nonce = state.currentNonce()
    if (nonce !== undefined) res.setHeader('dpop-nonce', nonce)
    const fullUrl = requestUrl(req)
    let url: URL
    try {
      url = new URL(fullUrl)
    } catch {
      return sendJson(res, 400, { error: 'invalid_request', error_description: 'bad request target' })
    }
    const path = url.pathname
    const resourcePath = new URL(resource).pathname.replace(/\/$/, '')
    if (path === METADATA_PATH || path === `${METADATA_PATH}${resourcePath}`) {
      return sendJson(res, 200, {
        resource,
        authorization_servers: [issuer],
        bearer_methods_supported: ['header'],
        dpop_signing_alg_values_supported: dpopAlgs,
        dpop_bound_access_tokens_required: false,
        tls_client_certificate_bound_access_tokens: true,
        scopes_supported: scopes,
      })
    }
    if (path === '/health') return sendJson(res, 200, { ok: true })
    if (controlApi && path.startsWith(PRIVATE_PATH_PREFIX)) return handleControl(req, res, path)
    return handleProtected(req, res, url, fullUrl)
  }

  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    handle(req, res).catch((error: unknown) => {
      const status = (error as { status?: number }).status ?? 500
      log(`${status} ${req.method ?? ''} ${req.url ?? ''}: ${message(error)}`)
      if (!res.headersSent) sendJson(res, status, { error: status === 500 ? 'server_error' : 'invalid_request', error_description: message(error) })
      else res.destroy()
    })
  }
  const tlsOptions = { key: pki.server.keyPem, cert: pki.server.certPem, ca: pki.caPem, requestCert: true, rejectUnauthorized: false }
  // (h2 requests get the compatibility API's request and response, which the handlers only use as
  // far as it matches IncomingMessage and ServerResponse)
  const server = options.http2
    ? createSecureServer({ ...tlsOptions, allowHTTP1: true }, onRequest as never)
    : createServer(tlsOptions, onRequest)
  // Connections as the server sees them (counted when accepted, before the TLS handshake), so a
  // test can check a client's pool bound from the outside.
  const sockets = new Set<Socket>()
  server.on('connection', (socket: Socket) => {
    sockets.add(socket)
    const c = state.mutableCounters()
    c.connections += 1
    c.openConnections = sockets.size
    c.maxOpenConnections = Math.max(c.maxOpenConnections, sockets.size)
    socket.once('close', () => {
      sockets.delete(socket)
      state.mutableCounters().openConnections = sockets.size
    })
  })
  /** Resets the counters; the connection counts start again from the connections open now. */
  const resetCounters = (): void => {
    state.resetCounters()
    const c = state.mutableCounters()
    c.openConnections = sockets.size
    c.maxOpenConnections = sockets.size
  }
  const port = await listen(server, 0)
  origin = `https://${LOOPBACK}:${port}`
  resource = options.resource ?? origin
  // api.bound.test: the name a test proxy maps to 127.0.0.1 (see the PKI's server certificate)
  allowedHosts = new Set([`${LOOPBACK}:${port}`, `localhost:${port}`, `api.bound.test:${port}`])

  let closed = false
  return {
    origin,
    resource,
    metadataUrl: `${origin}${METADATA_PATH}`,
    requireNonce: state.requireNonce,
    rotateNonce: state.rotateNonce,
    currentNonce: state.currentNonce,
    previousNonce: state.previousNonce,
    nonceRequired: state.nonceRequired,
    revokeToken: state.revokeToken,
    revokeJti: state.revokeJti,
    revokeClient: state.revokeClient,
    clearRevocations: state.clearRevocations,
    requireStepUp: state.requireStepUp,
    clearStepUp: state.clearStepUp,
    requireClaims: state.requireClaims,
    clearClaims: state.clearClaims,
    requireScope: state.requireScope,
    clearScope: state.clearScope,
    counters: state.counters,
    resetCounters,
    seen: state.seen,
    route(pathPrefix, handler) {
      routes.set(pathPrefix, handler)
    },
    async refreshJwks() {
      await jwks.refresh()
    },
    setQuirks(next) {
      quirks = checkResourceServerQuirks(next)
    },
    quirks: () => structuredClone(quirks),
    async close() {
      if (closed) return
      closed = true
      if (!options.http2) return closeServer(server as Parameters<typeof closeServer>[0])
      // an HTTP/2 server has no closeAllConnections(): its sockets are cut here
      const done = new Promise<void>((resolve) => server.close(() => resolve()))
      for (const socket of sockets) socket.destroy()
      await done
    },
  }
}

