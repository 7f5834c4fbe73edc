import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestkit, type Testkit } from '@bound/testkit'
import { cibaStepUp, createBoundFetch, getChallenges } from '@bound/fetch'
import { clientCredentials, clientSecretBasic, createSession, type Session } from '@bound/oauth'
import { generateDpopKey } from '@bound/dpop'

// Human approval for agents (issue 9): a sensitive tool call meets the RS's step-up challenge; a
// ready-made CIBA onStepUp asks the AS to get the user's approval; the test plays the user.
let kit: Testkit
let session: Session
const MFA = 'urn:bound:human-approved'
beforeAll(async () => {
  kit = await startTestkit()
  kit.rs.requireStepUp('/refunds', { acr_values: MFA })
  const c = kit.clients.ciba
  session = createSession({ issuer: kit.issuer, clientId: c.clientId, clientAuth: clientSecretBasic(c.clientSecret), grant: clientCredentials({ resource: kit.resource }), dpop: await generateDpopKey(), ca: kit.ca })
})
afterAll(async () => {
  await session?.close()
  await kit?.close()
})

describe('CIBA step-up for agents (issue 9)', () => {
  it('a sensitive tool call → RS step-up challenge → CIBA approval by the user → the call succeeds with the approved acr', async () => {
    const off = kit.ciba.onRequest((request) => {
      expect(request).toMatchObject({ loginHint: 'alice', bindingMessage: 'refund-42', acrValues: [MFA] })
      void kit.ciba.approve(request.authReqId)
    })
    try {
      const fetch = createBoundFetch({ session, origins: [kit.api], onStepUp: cibaStepUp(session, { loginHint: 'alice', bindingMessage: 'refund-42' }) })
      const res = await fetch(`${kit.api}/refunds/42`, { method: 'POST', body: '{}' })
      expect(res.status).toBe(200)
      expect(await res.json()).toMatchObject({ acr: MFA, binding: 'dpop', sub: 'alice' })
    } finally {
      off()
    }
  })

  it('denied → the call gets a typed ERR_STEP_UP_REQUIRED, and nothing loops', async () => {
    kit.rs.requireStepUp('/refunds', { acr_values: 'urn:bound:second-approval' })
    const off = kit.ciba.onRequest((request) => void kit.ciba.deny(request.authReqId))
    const before = kit.as.counters().cibaRequests
    try {
      const fetch = createBoundFetch({ session, origins: [kit.api], onStepUp: cibaStepUp(session, { loginHint: 'bob' }) })
      const res = await fetch(`${kit.api}/refunds/43`, { method: 'POST', body: '{}' })
      expect(res.status).toBe(401)
      expect(getChallenges(res)[0]?.boundError).toMatchObject({ code: 'ERR_STEP_UP_REQUIRED', message: expect.stringContaining('declined') })
      expect(kit.as.counters().cibaRequests - before).toBe(1)
    } finally {
      off()
    }
  })

  it('slow_down is honoured (the poll interval grows), and the approval still lands', async () => {
    kit.rs.requireStepUp('/refunds', { acr_values: 'urn:bound:third' })
    kit.ciba.setSlowDown(1)
    const off = kit.ciba.onRequest((request) => void setTimeout(() => void kit.ciba.approve(request.authReqId), 100))
    try {
      const fetch = createBoundFetch({ session, origins: [kit.api], onStepUp: cibaStepUp(session, { loginHint: 'carol' }) })
      const started = Date.now()
      expect((await fetch(`${kit.api}/refunds/44`, { method: 'POST', body: '{}' })).status).toBe(200)
      expect(Date.now() - started).toBeGreaterThanOrEqual(5_000) // 1 s, then slow_down: +5 s
    } finally {
      off()
    }
  }, 20_000)
})
