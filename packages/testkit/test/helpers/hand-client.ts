// A deliberately small, hand-written OAuth client used only by the testkit's own tests: it speaks
// the protocol with node:crypto, jose and undici, without any Bound package.
import { createHash, generateKeyPairSync, randomUUID, type KeyObject } from 'node:crypto'
import { SignJWT, exportJWK, type JWK } from 'jose'
import { Agent, fetch, type Response } from 'undici'
import type { SecretClient, TestCertificate } from '../../src/index.js'

export interface DpopKey {
  privateKey: KeyObject
  publicJwk: JWK
}

export function newDpopKey(): Promise<DpopKey> {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  return exportJWK(publicKey).then((publicJwk) => ({ privateKey, publicJwk }))
}

export interface ProofClaims {
  htm: string
  htu: string
  nonce?: string
  accessToken?: string
  jti?: string
  iat?: number
}

export function makeProof(key: DpopKey, claims: ProofClaims): Promise<string> {
  const payload: Record<string, unknown> = {
    htm: claims.htm,
    htu: claims.htu,
    jti: claims.jti ?? randomUUID(),
  }
  if (claims.nonce !== undefined) payload['nonce'] = claims.nonce
  if (claims.accessToken !== undefined) {
    payload['ath'] = createHash('sha256').update(claims.accessToken).digest('base64url')
  }
  return new SignJWT(payload)
    .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: key.publicJwk })
    .setIssuedAt(claims.iat ?? Math.floor(Date.now() / 1000))
    .sign(key.privateKey)
}

export function agentFor(ca: string, certificate?: TestCertificate): Agent {
  return new Agent({
    connect: {
      ca,
      ...(certificate === undefined ? {} : { cert: certificate.certPem, key: certificate.keyPem }),
    },
  })
}

/** RFC 6749 §2.3.1: form-url-encode id and secret before Basic encoding. */
export function basicAuthorization(clientId: string, clientSecret: string, encode = true): string {
  const form = (value: string): string => (encode ? encodeURIComponent(value) : value)
  return `Basic ${Buffer.from(`${form(clientId)}:${form(clientSecret)}`).toString('base64')}`
}

export interface TokenResult {
  status: number
  body: Record<string, unknown>
  /** How many use_dpop_nonce answers were handled. */
  nonceRetries: number
  nonce?: string
}

export interface TokenRequest {
  tokenEndpoint: string
  agent: Agent
  /** Sets client authentication on the request. */
  authenticate?: { client: SecretClient; encode?: boolean }
  clientId?: string
  dpopKey?: DpopKey
  /** Extra form parameters; a function is called again for each attempt (fresh client assertions). */
  params?: Record<string, string> | (() => Promise<Record<string, string>>)
}

/** POSTs a client-credentials token request, answering a `use_dpop_nonce` error once. */
export async function requestToken(request: TokenRequest): Promise<TokenResult> {
  let nonce: string | undefined
  let nonceRetries = 0
  for (;;) {
    const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded' }
    const params = typeof request.params === 'function' ? await request.params() : request.params
    const form = new URLSearchParams({ grant_type: 'client_credentials', ...params })
    const auth = request.authenticate
    if (auth !== undefined) {
      if (auth.client.authMethod === 'client_secret_basic') {
        headers['authorization'] = basicAuthorization(auth.client.clientId, auth.client.clientSecret, auth.encode ?? true)
      } else {
        form.set('client_id', auth.client.clientId)
        form.set('client_secret', auth.client.clientSecret)
      }
    } else if (request.clientId !== undefined) {
      form.set('client_id', request.clientId)
    }
    if (request.dpopKey !== undefined) {
      headers['dpop'] = await makeProof(request.dpopKey, {
        htm: 'POST',
        htu: request.tokenEndpoint,
        ...(nonce === undefined ? {} : { nonce }),
      })
    }
    const response = await fetch(request.tokenEndpoint, {
      method: 'POST',
      headers,
      body: form.toString(),
      dispatcher: request.agent,
    })
    const body = (await response.json()) as Record<string, unknown>
    const offered = response.headers.get('dpop-nonce') ?? undefined
    if (response.status === 400 && body['error'] === 'use_dpop_nonce' && offered !== undefined && nonceRetries === 0) {
      nonce = offered
      nonceRetries += 1
      continue
    }
    return { status: response.status, body, nonceRetries, ...(offered === undefined ? {} : { nonce: offered }) }
  }
}

export interface ResourceCall {
  url: string
  agent: Agent
  accessToken: string
  dpopKey?: DpopKey
  method?: string
  body?: string
  nonce?: string
  /** Overrides the proof (e.g. a wrong htu or a replayed proof). */
  proof?: string
  /** Overrides the htu claim of generated proofs. */
  htu?: string
}

export interface ResourceResult {
  response: Response
  status: number
  body: Record<string, unknown>
  wwwAuthenticate: string | null
  nonce?: string
  proof?: string
  nonceRetries: number
}

/** Calls the resource server (DPoP when a key is given, else Bearer), answering one nonce challenge. */
export async function callResource(call: ResourceCall): Promise<ResourceResult> {
  let nonce = call.nonce
  let nonceRetries = 0
  const method = call.method ?? 'GET'
  for (;;) {
    const headers: Record<string, string> = {}
    let proof: string | undefined
    if (call.dpopKey !== undefined) {
      headers['authorization'] = `DPoP ${call.accessToken}`
      proof = call.proof ?? await makeProof(call.dpopKey, {
        htm: method,
        htu: call.htu ?? call.url,
        accessToken: call.accessToken,
        ...(nonce === undefined ? {} : { nonce }),
      })
      headers['dpop'] = proof
    } else {
      headers['authorization'] = `Bearer ${call.accessToken}`
    }
    if (call.body !== undefined) headers['content-type'] = 'text/plain'
    const response = await fetch(call.url, {
      method,
      headers,
      ...(call.body === undefined ? {} : { body: call.body }),
      dispatcher: call.agent,
    })
    const body = (await response.json()) as Record<string, unknown>
    const offered = response.headers.get('dpop-nonce') ?? undefined
    if (
      response.status === 401 && body['error'] === 'use_dpop_nonce' && offered !== undefined
      && call.proof === undefined && nonceRetries === 0
    ) {
      nonce = offered
      nonceRetries += 1
      continue
    }
    return {
      response,
      status: response.status,
      body,
      wwwAuthenticate: response.headers.get('www-authenticate'),
      nonceRetries,
      ...(offered === undefined ? {} : { nonce: offered }),
      ...(proof === undefined ? {} : { proof }),
    }
  }
}
