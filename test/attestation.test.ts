import { generateKeyPairSync } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestkit, type Testkit } from '@bound/testkit'
import { createBoundFetch } from '@bound/fetch'
import { attestationClientAuth, clientCredentials, createSession, type Session } from '@bound/oauth'
import { generateDpopKey } from '@bound/dpop'

// Posture travels to the AS (issue 9): attestation-based client authentication, verified by the
// testkit AS (oidc-provider's own implementation of the draft).
let kit: Testkit
const sessions: Session[] = []
beforeAll(async () => {
  kit = await startTestkit()
})
afterAll(async () => {
  await Promise.all(sessions.map((s) => s.close()))
  await kit?.close()
})

async function attested(attestationFor: (cnfJwk: object) => Promise<string>, key = generateKeyPairSync('ec', { namedCurve: 'P-256' })) {
  const cnfJwk = key.publicKey.export({ format: 'jwk' })
  const attestation = await attestationFor(cnfJwk)
  const session = createSession({ issuer: kit.issuer, clientId: kit.clients.attested.clientId, clientAuth: attestationClientAuth({ attestation: () => attestation, key: key.privateKey }), grant: clientCredentials({ resource: kit.resource }), dpop: await generateDpopKey(), ca: kit.ca })
  sessions.push(session)
  return { session, fetch: createBoundFetch({ session, origins: [kit.api] }) }
}

describe('attestation-based client authentication (issue 9)', () => {
  it('the AS verifies the attestation and its proof of possession, and issues a DPoP-bound token', async () => {
    const before = kit.as.counters().attestationsVerified
    const { fetch } = await attested((cnfJwk) => kit.attester.issue({ clientId: kit.clients.attested.clientId, cnfJwk: cnfJwk as never }))
    const res = await fetch(`${kit.api}/orders`)
    expect(res.status).toBe(200)
    expect(await res.json()).toMatchObject({ binding: 'dpop', client_id: kit.clients.attested.clientId })
    expect(kit.as.counters().attestationsVerified).toBeGreaterThan(before)
  })

  it('an attestation for another key (the PoP does not match cnf) is refused: invalid_client, no token', async () => {
    const other = generateKeyPairSync('ec', { namedCurve: 'P-256' })
    const { fetch } = await attested(() => kit.attester.issue({ clientId: kit.clients.attested.clientId, cnfJwk: other.publicKey.export({ format: 'jwk' }) as never }))
    await expect(fetch(`${kit.api}/orders`)).rejects.toMatchObject({ code: 'ERR_TOKEN_ENDPOINT', error: 'invalid_client' })
  })
})
