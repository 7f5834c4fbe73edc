import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestkit, type Testkit } from '@bound/testkit'
import { createBoundFetch } from '@bound/fetch'
import { clientCredentials, clientSecretBasic, createSession, type Session, type SessionOptions } from '@bound/oauth'
import { generateDpopKey } from '@bound/dpop'

// Issue 13, finding 10: posture and revocation reach every token a session obtained — the
// background refresh asks the posture too, and "revoke" means every unexpired token, not only the
// ones held right now. Real AS and RS, 4-second tokens, real time (a few seconds).

let kit: Testkit
const sessions: Session[] = []
const revokedJtis: string[] = []
beforeAll(async () => {
  kit = await startTestkit({ accessTokenTtlSeconds: 4 })
  kit.as.onAccessTokenRevoked((r) => revokedJtis.push(r.jti))
})
afterAll(async () => {
  await Promise.all(sessions.map((s) => s.close()))
  await kit?.close()
})

const jtiOf = (token: string) => JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()).jti as string
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

async function newSession(over: Partial<SessionOptions> = {}) {
  const c = kit.clients.secretBasic
  const session = createSession({ issuer: kit.issuer, clientId: c.clientId, clientAuth: clientSecretBasic(c.clientSecret), grant: clientCredentials({ resource: kit.resource }), dpop: await generateDpopKey(), ca: kit.ca, ...over })
  sessions.push(session)
  return session
}

describe('SEC: posture and revocation reach every token the session obtained', () => {
  it('an unhealthy posture stops the background refresh (no token request), and revokeWhenUnhealthy revokes the token that was in use', async () => {
    let healthy = true
    const session = await newSession({ posture: () => ({ healthy, reason: healthy ? undefined : 'disk encryption off' }), postureIntervalMs: 0, revokeWhenUnhealthy: true })
    const fetch = createBoundFetch({ session, origins: [kit.api] })
    expect((await fetch(`${kit.api}/orders`)).status).toBe(200) // the token is in use: a timer will refresh it
    const inUse = await session.token()
    healthy = false
    kit.as.resetCounters()
    await sleep(4_500) // past the refresh point and the expiry, with no request at all
    expect(kit.as.counters().tokenRequests).toBe(0)
    expect(revokedJtis).toContain(jtiOf(inUse.value))
    await expect(fetch(`${kit.api}/orders`)).rejects.toMatchObject({ code: 'ERR_POSTURE_UNHEALTHY' })
    healthy = true
    expect((await fetch(`${kit.api}/orders`)).status).toBe(200) // resumes by itself
  })

  it('close({ revoke: true }) revokes a token a refresh superseded, not only the one held', async () => {
    const session = await newSession()
    const first = await session.token()
    const second = await session.forceRefresh()
    expect(second.value).not.toBe(first.value)
    kit.as.resetCounters()
    await session.close({ revoke: true })
    expect(kit.as.counters().revocations).toBe(2)
    expect(revokedJtis).toEqual(expect.arrayContaining([jtiOf(first.value), jtiOf(second.value)]))
  })
})
