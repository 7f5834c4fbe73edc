import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { fetch, type Agent, type Response } from 'undici'
import { startTestkit, type Testkit } from '../src/index.js'
import { agentFor, basicAuthorization, requestToken } from './helpers/hand-client.js'

let kit: Testkit
let agent: Agent

beforeAll(async () => {
  kit = await startTestkit({ asRequiresNonce: false })
  agent = agentFor(kit.ca)
})

afterAll(async () => {
  await agent?.close()
  await kit?.close()
})

beforeEach(() => {
  kit.as.setFault(undefined)
  kit.as.resetCounters()
})

/** A plain (Bearer) client credentials request, returned unparsed. */
function postToken(options: { endpoint?: string; signal?: AbortSignal; dispatcher?: Agent } = {}): Promise<Response> {
  const client = kit.clients.secretBasic
  return fetch(options.endpoint ?? kit.as.tokenEndpoint, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: basicAuthorization(client.clientId, client.clientSecret),
    },
    body: 'grant_type=client_credentials&scope=orders%3Aread',
    dispatcher: options.dispatcher ?? agent,
    ...(options.signal === undefined ? {} : { signal: options.signal }),
  })
}

function errorCode(error: unknown): string | undefined {
  let current: unknown = error
  // Bounded walk down the `cause` chain.
  for (let depth = 0; depth < 5 && current !== undefined && current !== null; depth += 1) {
    const code = (current as { code?: unknown }).code
    if (typeof code === 'string') return code
    current = (current as { cause?: unknown }).cause
  }
  return undefined
}

describe('token endpoint faults', () => {
  it('hang: never answers (the client gives up after 500 ms); discovery keeps working', async () => {
    kit.as.setFault({ kind: 'hang' })
    const started = Date.now()
    await expect(postToken({ signal: AbortSignal.timeout(500) })).rejects.toThrow()
    expect(Date.now() - started).toBeGreaterThanOrEqual(450)
    const metadata = await fetch(kit.as.metadataUrl, { dispatcher: agent })
    expect(metadata.status).toBe(200)
    await metadata.arrayBuffer()
    expect(kit.as.counters().faulted).toBe(1)
  })

  it('hang: a held request is answered for real once the fault is cleared', async () => {
    kit.as.setFault({ kind: 'hang' })
    const pending = postToken()
    await new Promise((resolve) => setTimeout(resolve, 150))
    kit.as.setFault(undefined)
    const response = await pending
    expect(response.status).toBe(200)
    expect(((await response.json()) as Record<string, unknown>)['token_type']).toBe('Bearer')
    expect(kit.as.counters()).toMatchObject({ faulted: 1, tokensIssued: 1 })
  })

  it('slow: answers for real after the delay', async () => {
    kit.as.setFault({ kind: 'slow', ms: 300 })
    const started = Date.now()
    const response = await postToken()
    expect(response.status).toBe(200)
    expect(Date.now() - started).toBeGreaterThanOrEqual(290)
    await response.json()
  })

  it('status: 503 with Retry-After and an OAuth error body, 429 and 500 with custom bodies', async () => {
    kit.as.setFault({ kind: 'status', status: 503, retryAfter: 2 })
    const unavailable = await postToken()
    expect(unavailable.status).toBe(503)
    expect(unavailable.headers.get('retry-after')).toBe('2')
    expect(unavailable.headers.get('content-type')).toBe('application/json')
    expect(await unavailable.json()).toMatchObject({ error: 'temporarily_unavailable' })

    kit.as.setFault({ kind: 'status', status: 429, retryAfter: 'Wed, 21 Oct 2099 07:28:00 GMT', body: 'slow down', contentType: 'text/plain' })
    const limited = await postToken()
    expect(limited.status).toBe(429)
    expect(limited.headers.get('retry-after')).toBe('Wed, 21 Oct 2099 07:28:00 GMT')
    expect(limited.headers.get('content-type')).toBe('text/plain')
    expect(await limited.text()).toBe('slow down')

    kit.as.setFault({ kind: 'status', status: 500 })
    const failed = await postToken()
    expect(failed.status).toBe(500)
    expect(await failed.json()).toMatchObject({ error: 'server_error' })
    expect(kit.as.counters()).toMatchObject({ faulted: 3, tokenRequests: 3, tokensIssued: 0 })
  })

  it('html: 200 text/html', async () => {
    kit.as.setFault({ kind: 'html' })
    const response = await postToken()
    expect(response.status).toBe(200)
    expect(response.headers.get('content-type')).toMatch(/^text\/html/)
    expect(await response.text()).toMatch(/^<!doctype html>/)
  })

  it('truncated: 200 with a cut JSON body', async () => {
    kit.as.setFault({ kind: 'truncated' })
    const response = await postToken()
    expect(response.status).toBe(200)
    const text = await response.text()
    expect(text).toBe('{"access_token":"abc","tok')
    expect(() => JSON.parse(text)).toThrow()
  })

  it('huge: a streamed JSON body of exactly the requested size, chunked or with a Content-Length', async () => {
    const bytes = 3 * 1024 * 1024 + 7
    kit.as.setFault({ kind: 'huge', bytes })
    const chunked = await postToken()
    expect(chunked.status).toBe(200)
    expect(chunked.headers.get('content-length')).toBeNull()
    const body = await chunked.text()
    expect(Buffer.byteLength(body)).toBe(bytes)
    expect((JSON.parse(body) as { access_token: string }).access_token.length).toBe(bytes - 58)

    kit.as.setFault({ kind: 'huge', bytes: 100_000, contentLength: true })
    const sized = await postToken()
    expect(sized.headers.get('content-length')).toBe('100000')
    expect((await sized.arrayBuffer()).byteLength).toBe(100_000)
  })

  it('body: 200 with exactly the given JSON', async () => {
    for (const json of [
      { access_token: 'abc', token_type: 'Bearer', expires_in: 0 },
      { access_token: 'abc', token_type: 'Bearer', expires_in: -1 },
      { access_token: 'abc', token_type: 'Bearer', expires_in: 'soon' },
      { token_type: 'Bearer', expires_in: 300 },
    ]) {
      kit.as.setFault({ kind: 'body', json })
      const response = await postToken()
      expect(response.status).toBe(200)
      expect(response.headers.get('content-type')).toBe('application/json')
      expect(await response.text()).toBe(JSON.stringify(json))
    }
  })

  it('drop: the socket is destroyed without an answer', async () => {
    kit.as.setFault({ kind: 'drop' })
    const error = await postToken().then(() => undefined, (caught: unknown) => caught)
    expect(error).toBeInstanceOf(Error)
    expect(errorCode(error)).toMatch(/^(UND_ERR_SOCKET|ECONNRESET)$/)
  })

  it('applies on the mTLS listener too, and `times` clears the fault after that many requests', async () => {
    kit.as.setFault({ kind: 'status', status: 503 }, { times: 1 })
    const workloadAgent = agentFor(kit.ca, kit.pki.workload)
    try {
      const faulted = await postToken({ endpoint: kit.as.mtlsTokenEndpoint, dispatcher: workloadAgent })
      expect(faulted.status).toBe(503)
      await faulted.arrayBuffer()
      expect(kit.as.fault()).toBeUndefined()
      const real = await postToken({ endpoint: kit.as.mtlsTokenEndpoint, dispatcher: workloadAgent })
      expect(real.status).toBe(200)
      await real.arrayBuffer()
    } finally {
      await workloadAgent.close()
    }
    expect(kit.as.counters()).toMatchObject({ faulted: 1, tokenRequests: 2, byListener: { mtls: 2, main: 0 } })
  })

  it('rejects malformed faults', () => {
    expect(() => kit.as.setFault({ kind: 'slow', ms: -1 })).toThrow(TypeError)
    expect(() => kit.as.setFault({ kind: 'status', status: 99 })).toThrow(TypeError)
    expect(() => kit.as.setFault({ kind: 'nope' } as never)).toThrow(TypeError)
    expect(kit.as.fault()).toBeUndefined()
  })

  it('leaves setTokenResponseFault working', async () => {
    kit.as.setTokenResponseFault((body) => ({ ...body, token_type: 'N_A' }))
    try {
      const result = await requestToken({ tokenEndpoint: kit.as.tokenEndpoint, agent, authenticate: { client: kit.clients.secretBasic } })
      expect(result.body['token_type']).toBe('N_A')
    } finally {
      kit.as.setTokenResponseFault(undefined)
    }
  })
})

describe('outage', () => {
  it('stop(): ECONNREFUSED at once, held requests dropped; start(): the same ports again', async () => {
    const { issuer, mtlsOrigin } = kit.as
    kit.as.setFault({ kind: 'hang' })
    const held = postToken().then(() => undefined, (caught: unknown) => caught)
    await new Promise((resolve) => setTimeout(resolve, 100))
    await kit.as.stop()
    expect(await held).toBeInstanceOf(Error)
    kit.as.setFault(undefined)

    const fresh = agentFor(kit.ca)
    try {
      for (const url of [kit.as.metadataUrl, `${mtlsOrigin}/token`]) {
        const started = Date.now()
        const error = await fetch(url, { dispatcher: fresh }).then(() => undefined, (caught: unknown) => caught)
        expect(errorCode(error)).toBe('ECONNREFUSED')
        expect(Date.now() - started).toBeLessThan(1000)
      }
    } finally {
      await fresh.close()
    }

    await kit.as.start()
    expect(kit.as.issuer).toBe(issuer)
    expect(kit.as.mtlsOrigin).toBe(mtlsOrigin)
    const response = await postToken()
    expect(response.status).toBe(200)
    await response.arrayBuffer()
  })
})
