import { readFileSync, readdirSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestkit, type Testkit } from '@bound/testkit'
import { createBoundFetch, getChallenges } from '@bound/fetch'
import { clientCredentials, clientSecretBasic, createSession, type Session, type SessionOptions } from '@bound/oauth'
import { generateDpopKey } from '@bound/dpop'
import { BoundError, isBoundError, type BoundErrorCode } from '@bound/core'

// Issue 15: the mistakes a new user makes first must explain themselves — each error names what
// to check, and every code has its troubleshooting entry.

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
let kit: Testkit
const sessions: Session[] = []
beforeAll(async () => {
  kit = await startTestkit()
})
afterAll(async () => {
  await Promise.all(sessions.map((s) => s.close()))
  await kit?.close()
})

async function session(over: Partial<SessionOptions> = {}) {
  const c = kit.clients.secretBasic
  const s = createSession({ issuer: kit.issuer, clientId: c.clientId, clientAuth: clientSecretBasic(c.clientSecret), grant: clientCredentials({ resource: kit.resource }), dpop: await generateDpopKey(), ca: kit.ca, ...over })
  sessions.push(s)
  return s
}
/** The message of what `session.token()` rejects with, and of its cause chain. */
async function failureOf(s: Session): Promise<string> {
  const err = await s.token().then(() => undefined, (e: unknown) => e)
  expect(isBoundError(err)).toBe(true)
  let text = ''
  for (let e: unknown = err; e instanceof Error; e = e.cause) text += ` | ${e.message}`
  return text
}

describe('mistakes explain themselves (issue 15)', () => {
  it('an origin typo is reported once, naming the origin and the nearest listed one', async () => {
    const s = await session()
    const seen: unknown[] = []
    s.events.on('origin.unlisted', (e) => seen.push(e))
    const typo = kit.api.replace('127.0.0.1', 'localhost')
    const fetch = createBoundFetch({ session: s, origins: [kit.api, 'https://other.example.com'] })
    for (let i = 0; i < 3; i++) await (await fetch(`${typo}/orders`)).text()
    expect(seen).toEqual([{ origin: typo, nearest: kit.api }])
    await (await fetch(`${kit.api}/orders`)).text() // a listed origin is not reported
    expect(seen).toHaveLength(1)
  })

  it('an origins entry with a path is a configuration error naming the entry and the origin to list', async () => {
    const s = await session()
    for (const entry of [`${kit.api}/v1/`, `${kit.api}/?x=1`, `${kit.api}/#frag`]) {
      let err: unknown
      try {
        createBoundFetch({ session: s, origins: [entry] })
      } catch (e) {
        err = e
      }
      expect(err).toMatchObject({ code: 'ERR_INVALID_CONFIG', message: expect.stringContaining(`list ${kit.api}`) })
    }
    expect(() => createBoundFetch({ session: s, origins: [`${kit.api}/`] })).not.toThrow() // the root path is the origin
  })

  it('a session without a DPoP key calling a DPoP API: ERR_INVALID_CONFIG saying so, not ERR_SESSION_REVOKED', async () => {
    const s = await session({ dpop: undefined })
    const res = await createBoundFetch({ session: s, origins: [kit.api] })(`${kit.api}/orders`)
    expect(res.status).toBe(401)
    const error = getChallenges(res).find((c) => c.boundError)?.boundError
    expect(error?.code).toBe('ERR_INVALID_CONFIG')
    expect(error?.message).toMatch(/accepts only DPoP-bound tokens, and this session has no DPoP key/)
  })

  it('a DPoP-required client without a key: the refusal says the AS requires DPoP', async () => {
    const c = kit.clients.dpopRequired
    const s = await session({ clientId: c.clientId, clientAuth: clientSecretBasic(c.clientSecret), dpop: undefined })
    expect(await failureOf(s)).toMatch(/the AS requires DPoP for this client and the session has no DPoP key/)
  })

  it('a missing ca: the TLS failure says to give the internal CA as `ca`', async () => {
    const s = await session({ ca: undefined })
    expect(await failureOf(s)).toMatch(/not trusted here: if an internal CA issued it, give its PEM to the session as `ca`/)
  })

  it('invalid_client: the refusal says what to check', async () => {
    const s = await session({ clientAuth: clientSecretBasic('not-the-secret') })
    expect(await failureOf(s)).toMatch(/invalid_client.*check clientId, the secret or key/)
  })

  it('an AS on a port the fetch standard blocks: the error says so', async () => {
    const s = await session({ issuer: 'https://127.0.0.1:10080' })
    expect(await failureOf(s)).toMatch(/the port is one the fetch standard blocks/)
  })

  it('an issuer that is really the API: the 401 is explained', async () => {
    const s = await session({ issuer: kit.api })
    expect(await failureOf(s)).toMatch(/HTTP 401 — as a protected API would: is `issuer` the authorization server’s identifier/)
  })

  it('a callback that throws while a token is earned gives a typed error, with its error as the cause and not in the message', async () => {
    const c = kit.clients.secretBasic
    const oops = new RangeError('subject source secret-ish detail')
    const s = await session({ grant: { ...clientCredentials({ resource: kit.resource }), params: () => { throw oops } } as never, clientId: c.clientId })
    const err = await s.token().then(() => undefined, (e: unknown) => e)
    expect(err).toMatchObject({ code: 'ERR_TOKEN_UNAVAILABLE' })
    let chain: unknown = err
    while (chain instanceof BoundError && chain.cause !== undefined && chain.cause !== oops) chain = chain.cause
    expect((chain as BoundError).cause).toBe(oops)
    expect(String((err as Error).message)).not.toContain('secret-ish')
  })
})

describe('every code is documented and raised (issue 15)', () => {
  const codes = [...readFileSync(join(root, 'packages/core/src/errors/bound-error.ts'), 'utf8').matchAll(/^\s+\| '(ERR_[A-Z_]+)'$/gm)].map((m) => m[1]!) as BoundErrorCode[]
  const troubleshooting = readFileSync(join(root, 'docs/troubleshooting.md'), 'utf8')
  const sources = ['core', 'dpop', 'mtls', 'http', 'oauth', 'fetch', 'axios', 'got', 'cli'].flatMap((p) => {
    const dir = join(root, 'packages', p, 'src')
    const walk = (d: string): string[] => readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(d, e.name)) : e.name.endsWith('.ts') ? [readFileSync(join(d, e.name), 'utf8')] : []))
    return walk(dir)
  }).join('\n').replace(/export type BoundErrorCode =[\s\S]*?\n\n/, '')

  it('the union lists the codes', () => {
    expect(codes.length).toBeGreaterThan(15)
    expect(codes).not.toContain('ERR_ABORTED')
  })

  it.each(codes)('%s has its troubleshooting entry, reachable from the error as err.docs', (code) => {
    expect(troubleshooting).toContain(`\n## \`${code}\`\n`)
    const err = new BoundError(code, 'x')
    expect(err.docs).toBe(`docs/troubleshooting.md#${code.toLowerCase()}`)
    expect(err.toJSON()).toMatchObject({ docs: err.docs })
  })

  it.each(codes)('%s is raised somewhere in the packages', (code) => {
    expect(sources).toContain(`'${code}'`)
  })
})
