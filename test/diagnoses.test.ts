import { readFileSync, readdirSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestkit, type Testkit } from '@bound/testkit'
import { boundInterceptor, cibaStepUp, createBoundFetch, getChallenges } from '@bound/fetch'
import { clientCredentials, clientSecretBasic, createSession, privateKeyJwt, tokenExchange, type Session, type SessionOptions } from '@bound/oauth'
import { createDpop, generateDpopKey } from '@bound/dpop'
import { loadClientCertificate } from '@bound/mtls'
import { boundAdapter } from '@bound/axios'
import { boundHooks } from '@bound/got'
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

describe('one convention for durations, and every option checked (issue 15)', () => {
  const pem = () => readFileSync(join(root, 'package.json'), 'utf8') // any text: the options are checked first
  async function configError(make: () => unknown): Promise<string> {
    let err: unknown
    try {
      await make()
    } catch (e) {
      err = e
    }
    expect(isBoundError(err, 'ERR_INVALID_CONFIG')).toBe(true)
    return (err as Error).message
  }

  it('a duration given without Ms (the old names, in seconds) is refused, naming the option to use', async () => {
    const c = kit.clients.secretBasic
    const base = { issuer: kit.issuer, clientId: c.clientId, clientAuth: clientSecretBasic(c.clientSecret), grant: clientCredentials({ resource: kit.resource }) }
    expect(await configError(() => createSession({ ...base, tokenRequestTimeout: 5000 } as never))).toMatch(/createSession: unknown option "tokenRequestTimeout" — durations are in milliseconds: did you mean tokenRequestTimeoutMs\?/)
    expect(await configError(() => createSession({ ...base, refresh: { minAheadSeconds: 5 } } as never))).toMatch(/createSession: refresh: unknown option "minAheadSeconds" — durations are in milliseconds: did you mean minAheadMs\?/)
    expect(await configError(() => createSession({ ...base, backoff: { maxSeconds: 5 } } as never))).toMatch(/did you mean maxMs\?/)
    expect(await configError(() => privateKeyJwt(pem(), { lifetime: 30 } as never))).toMatch(/privateKeyJwt: unknown option "lifetime" — durations are in milliseconds: did you mean lifetimeMs\?/)
    const s = await session()
    expect(await configError(() => cibaStepUp(s, { loginHint: 'alice', maxWaitSeconds: 60 } as never))).toMatch(/did you mean maxWaitMs\?/)
    expect(await configError(() => createDpop({ key: s.dpop!.key, maxClockSkew: 60 } as never))).toMatch(/did you mean maxClockSkewMs\?/)
  })

  it('a duration out of range names the unit: tokenRequestTimeoutMs: 5 is not five seconds', async () => {
    const c = kit.clients.secretBasic
    expect(await configError(() => createSession({ issuer: kit.issuer, clientId: c.clientId, clientAuth: clientSecretBasic(c.clientSecret), grant: clientCredentials(), tokenRequestTimeoutMs: 5 }))).toBe('createSession: tokenRequestTimeoutMs: must be at least 100 ms')
    expect(await configError(() => createSession({ issuer: kit.issuer, clientId: c.clientId, grant: clientCredentials(), defaultLifetimeMs: 1.5 } as never))).toMatch(/defaultLifetimeMs: must be a whole number of milliseconds/)
  })

  it('misspelt options and wrong types are refused in every factory, naming the option', async () => {
    const s = await session()
    expect(await configError(() => createBoundFetch({ session: s, origins: [kit.api], maxRedirect: 3 } as never))).toMatch(/createBoundFetch: unknown option "maxRedirect" — did you mean maxRedirects\?/)
    expect(await configError(() => createBoundFetch({ session: s, origins: [kit.api], otherOrigins: 'deny' } as never))).toMatch(/createBoundFetch: otherOrigins: /)
    expect(await configError(() => createBoundFetch({ session: s, origins: [kit.api], stepUpPrompts: { max: 3, perSeconds: 60 } } as never))).toMatch(/createBoundFetch: stepUpPrompts: .*perSeconds/)
    expect(await configError(() => boundInterceptor({ session: s, origins: [kit.api], otherOrigin: 'error' } as never))).toMatch(/boundInterceptor: unknown option "otherOrigin" — did you mean otherOrigins\?/)
    expect(await configError(() => boundAdapter({ session: s, origins: [kit.api], resource: 'x' } as never))).toMatch(/boundAdapter: unknown option "resource" — did you mean resources\?/)
    expect(await configError(() => boundHooks({ session: s, origins: [kit.api], onStepup: () => false } as never))).toMatch(/boundHooks: unknown option "onStepup" — did you mean onStepUp\?/)
    expect(await configError(() => clientCredentials({ resurce: kit.resource } as never))).toMatch(/clientCredentials: unknown option "resurce" — did you mean resource\?/)
    expect(await configError(() => tokenExchange({ subjectToken: 'x', audiance: 'api' } as never))).toMatch(/did you mean audience\?/)
    expect(await configError(() => loadClientCertificate({ certFile: 'a', keyFile: 'b', debounce: 5 } as never))).toMatch(/loadClientCertificate: unknown option "debounce" — durations are in milliseconds: did you mean debounceMs\?/)
    expect(await configError(() => generateDpopKey({ algorithm: 'ES256' } as never))).toMatch(/generateDpopKey: unknown option "algorithm"/)
    const c = kit.clients.secretBasic
    expect(await configError(() => createSession({ issuer: kit.issuer, clientId: c.clientId, grant: clientCredentials(), revokeWhenUnhealthy: 'yes' } as never))).toMatch(/createSession: revokeWhenUnhealthy: /)
  })

  it('every duration in an exported options type is named …Ms', () => {
    const offenders: string[] = []
    for (const p of ['core', 'dpop', 'mtls', 'http', 'oauth', 'fetch', 'axios', 'got']) {
      const dir = join(root, 'packages', p, 'src')
      for (const file of readdirSync(dir).filter((f) => f.endsWith('.ts'))) {
        const text = readFileSync(join(dir, file), 'utf8')
        for (const block of text.matchAll(/export interface (\w*Options) [^{]*\{([\s\S]*?)\n\}/g)) {
          for (const prop of block[2]!.matchAll(/^ {2}(?:readonly )?(\w+)\??:/gm)) {
            const name = prop[1]!
            if (/(timeout|interval|lifetime|delay|window|skew|wait|ttl|seconds|debounce|warning|ahead|after)$/i.test(name.replace(/Ms$/, '')) && !name.endsWith('Ms') && name !== 'ahead') offenders.push(`${p}/${file} ${block[1]}.${name}`)
          }
        }
      }
    }
    expect(offenders).toEqual([])
  })
})
