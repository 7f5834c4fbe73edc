import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, describe, expect, it } from 'vitest'
import { Agent, request } from 'undici'
import { generateDpopKey } from '@bound/dpop'
import { clientCredentials, createSession, type Session } from '@bound/oauth'
import { createChallengeEngine, type EngineExchange } from '../src/internal.js'
import { boundInterceptor } from '../src/index.js'

// Unit behaviour of the challenge engine and the interceptor: a session holding a token it was
// handed (no AS needed), fake exchanges or a plain loopback server.

const sessions: Session[] = []
afterAll(async () => {
  await Promise.all(sessions.map((s) => s.close()))
})

async function sessionWithToken() {
  const session = createSession({ tokenEndpoint: 'http://127.0.0.1:9/token', clientId: 'c', grant: clientCredentials(), dpop: await generateDpopKey() })
  session.adopt({}, { access_token: 'held-token', token_type: 'DPoP', expires_in: 3600 })
  sessions.push(session)
  return session
}

const headers = (h: Record<string, string>) => ({ get: (name: string) => h[name.toLowerCase()] ?? null })

describe('the challenge engine', () => {
  it('DPOP-20: a retry uses the nonce its challenge gave, even when a late response changed the store meanwhile', async () => {
    const session = await sessionWithToken()
    const engine = createChallengeEngine({ session, origins: ['https://api.example.com'] })
    const url = new URL('https://api.example.com/orders')
    const nonces: (string | undefined)[] = []
    const { res } = await engine.run(url, { method: 'GET', replayable: true, signal: undefined }, async (_token, attempt): Promise<EngineExchange> => {
      nonces.push(attempt.nonce)
      if (nonces.length === 1) {
        return {
          status: 401,
          headers: headers({ 'www-authenticate': 'DPoP error="use_dpop_nonce"', 'dpop-nonce': 'n-from-challenge' }),
          // another request's late response stores an older nonce while this one is being answered
          discard: async () => void session.dpop!.observe(url.href, new Headers({ 'DPoP-Nonce': 'n-late-other' })),
        }
      }
      return { status: 200, headers: headers({}), discard: async () => {} }
    })
    expect(res.status).toBe(200)
    expect(nonces).toEqual([undefined, 'n-from-challenge'])
  })
})

describe('the undici interceptor', () => {
  it('a challenge whose body never ends is discarded within its cap: the retry still happens, promptly', async () => {
    let hits = 0
    const server = createServer((_req, res) => {
      hits++
      if (hits === 1) {
        res.writeHead(401, { 'www-authenticate': 'DPoP error="use_dpop_nonce"', 'dpop-nonce': 'n1' })
        const chunk = Buffer.alloc(16_384, 97)
        const timer = setInterval(() => res.write(chunk), 5) // endless
        res.on('close', () => clearInterval(timer))
        return
      }
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok')
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    const agent = new Agent()
    try {
      const session = await sessionWithToken()
      const dispatcher = agent.compose(boundInterceptor({ session, origins: [origin] }))
      const started = Date.now()
      const res = await request(`${origin}/x`, { dispatcher })
      expect(res.statusCode).toBe(200)
      expect(await res.body.text()).toBe('ok')
      expect(hits).toBe(2)
      expect(Date.now() - started).toBeLessThan(4_000) // the 64 KiB cap cut it, not the 5 s timer
    } finally {
      await agent.close()
      server.closeAllConnections()
      await new Promise((r) => server.close(r))
    }
  })
})
