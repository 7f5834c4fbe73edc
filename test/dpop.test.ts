import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startResourceServer, startTestkit, type Testkit } from '@bound/testkit'
import { createBoundFetch } from '@bound/fetch'
import { clientCredentials, clientSecretBasic, createSession, type Session, type SessionOptions } from '@bound/oauth'
import { DPOP_ALGS, generateDpopKey, type DpopAlg } from '@bound/dpop'

let kit: Testkit
const sessions: Session[] = []
beforeAll(async () => {
  kit = await startTestkit()
})
afterAll(async () => {
  await Promise.all(sessions.map((s) => s.close()))
  await kit?.close()
})

async function bound(over: Partial<SessionOptions> = {}, origins = [kit.api]) {
  const c = kit.clients.secretBasic
  const session = createSession({
    issuer: kit.issuer,
    clientId: c.clientId,
    clientAuth: clientSecretBasic(c.clientSecret),
    grant: clientCredentials({ resource: kit.resource }),
    dpop: await generateDpopKey(),
    ca: kit.ca,
    ...over,
  })
  sessions.push(session)
  return { session, fetch: createBoundFetch({ session, origins }) }
}

describe('DPoP end to end (issue 3)', () => {
  it.each(DPOP_ALGS)('DPOP-01/12/14 %s: the AS issues a token bound to the key and the RS verifies the request', async (alg: DpopAlg) => {
    kit.as.resetCounters()
    kit.rs.resetCounters()
    const { session, fetch } = await bound({ dpop: await generateDpopKey({ alg }) })
    const res = await fetch(`${kit.api}/orders`, { method: 'PUT', body: 'x' })
    expect(res.status).toBe(200)
    expect(await res.json()).toMatchObject({ binding: 'dpop', jkt: session.dpop!.jkt, method: 'PUT' })
    expect(kit.as.counters()).toMatchObject({ tokensIssued: 1, byBinding: { dpop: 1 } })
    const rs = kit.rs.counters()
    expect(rs).toMatchObject({ verified: 1, verifierDisagreements: 0, rejectedProofs: 0 })
    expect(rs.lastProof?.header).toMatchObject({ typ: 'dpop+jwt', alg })
  })

  it('DPOP-18/T-7 S3: the RS rotating its nonce mid-run costs one retry per rotation and no token request', async () => {
    const { fetch } = await bound()
    expect((await fetch(`${kit.api}/orders`)).status).toBe(200)
    kit.as.resetCounters()
    kit.rs.resetCounters()
    for (let i = 0; i < 30; i++) {
      if (i % 10 === 5) kit.rs.rotateNonce()
      expect((await fetch(`${kit.api}/orders/${i}`)).status).toBe(200)
    }
    expect(kit.rs.counters()).toMatchObject({ verified: 30, nonceChallenges: 3, rejectedProofs: 0, replayedJti: 0, verifierDisagreements: 0 })
    expect(kit.as.counters().tokenRequests).toBe(0)
  })

  it('DPOP-13 T-7 S8: a Bearer token_type answering a DPoP token request is refused and never sent', async () => {
    const { fetch } = await bound()
    kit.rs.resetCounters()
    kit.as.setTokenResponseFault((body) => ({ ...body, token_type: 'Bearer' }))
    try {
      await expect(fetch(`${kit.api}/orders`)).rejects.toMatchObject({ code: 'ERR_TOKEN_TYPE_MISMATCH' })
    } finally {
      kit.as.setTokenResponseFault(undefined)
    }
    expect(kit.rs.counters().requests).toBe(0)
  })

  it('DPOP-24: an RS that takes only PS256 makes an ES256 session fail with ERR_DPOP_ALG_UNSUPPORTED naming both, with no Bearer fallback', async () => {
    const ps256Only = await startResourceServer({ pki: kit.pki, issuer: kit.issuer, jwks: kit.as.jwks, resource: kit.resource, dpopSigningAlgs: ['PS256'] })
    try {
      const { fetch } = await bound({}, [ps256Only.origin])
      const err = await fetch(`${ps256Only.origin}/orders`).catch((e: unknown) => e)
      expect(err).toMatchObject({ code: 'ERR_DPOP_ALG_UNSUPPORTED' })
      expect((err as Error).message).toMatch(/PS256.*ES256/)
      expect(ps256Only.counters().byBinding).toEqual({ dpop: 0, mtls: 0, bearer: 0 })
      // the same RS works for a PS256 key
      const { fetch: ps } = await bound({ dpop: await generateDpopKey({ alg: 'PS256' }) }, [ps256Only.origin])
      expect((await ps(`${ps256Only.origin}/orders`)).status).toBe(200)
    } finally {
      await ps256Only.close()
    }
  })

  it('key rotation: tokens bound to the old jkt are dropped and never sent again', async () => {
    const { session, fetch } = await bound()
    expect((await fetch(`${kit.api}/orders`)).status).toBe(200)
    const oldJkt = session.dpop!.jkt
    const next = await generateDpopKey({ alg: 'EdDSA' })
    const rotated: unknown[] = []
    session.events.on('key.rotated', (e) => rotated.push(e))
    kit.as.resetCounters()
    kit.rs.resetCounters()
    session.rotateDpopKey(next)
    for (let i = 0; i < 5; i++) expect(await (await fetch(`${kit.api}/orders`)).json()).toMatchObject({ jkt: next.jkt })
    expect(rotated).toEqual([{ previousJkt: oldJkt, jkt: next.jkt, tokensDropped: 1 }])
    expect(kit.as.counters().tokensIssued).toBe(1)
    expect(kit.rs.seen().every((r) => r.jkt === next.jkt)).toBe(true)
    expect(kit.rs.counters().invalidToken).toBe(0)
  })

  it('DPOP-32: a workload clock 4 minutes fast is corrected from the servers\u2019 Date once, bounded', async () => {
    const skewed = { now: () => Date.now() + 240_000 }
    kit.rs.resetCounters()
    const { fetch } = await bound({ clock: skewed })
    const res = await fetch(`${kit.api}/orders`)
    expect(res.status).toBe(200)
    const iat = kit.rs.counters().lastProof!.payload.iat as number
    expect(Math.abs(iat - Date.now() / 1000)).toBeLessThan(60)
  })
})
