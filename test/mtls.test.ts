import { copyFile, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { inspect } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestkit, type TestCertificate, type Testkit } from '@bound/testkit'
import { boundInterceptor, createBoundFetch } from '@bound/fetch'
import { Agent, request } from 'undici'
import { clientCredentials, createSession, selfSignedTlsClientAuth, tlsClientAuth, type Session } from '@bound/oauth'
import { createTransport } from '@bound/http'
import { clientCertificateFromPem, loadClientCertificate, type ClientCertificate } from '@bound/mtls'

let kit: Testkit
let dir: string
const sessions: Session[] = []
const sources: ClientCertificate[] = []
beforeAll(async () => {
  kit = await startTestkit()
  dir = await mkdtemp(join(tmpdir(), 'bound-mtls-'))
})
afterAll(async () => {
  for (const s of sources) s.close()
  await Promise.all(sessions.map((s) => s.close()))
  await kit?.close()
  await rm(dir, { recursive: true, force: true })
})
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

function mtlsSession(clientCertificate: ClientCertificate | { cert: string; key: string }, selfSigned = false) {
  const c = selfSigned ? kit.clients.selfSignedTlsClientAuth : kit.clients.tlsClientAuth
  const session = createSession({ issuer: kit.issuer, clientId: c.clientId, clientAuth: selfSigned ? selfSignedTlsClientAuth() : tlsClientAuth(), grant: clientCredentials({ resource: kit.resource }), clientCertificate, ca: kit.ca })
  sessions.push(session)
  return { session, fetch: createBoundFetch({ session, origins: [kit.api] }) }
}
const pem = (c: TestCertificate) => ({ cert: c.certPem, key: c.keyPem })
/** The workload's certificate and key copied to `<name>.pem` / `<name>-key.pem`, loaded and watched (closed after the run). */
async function watchedWorkloadCopy(name: string) {
  const certFile = join(dir, `${name}.pem`)
  const keyFile = join(dir, `${name}-key.pem`)
  await copyFile(kit.pki.workload.certFile, certFile)
  await copyFile(kit.pki.workload.keyFile, keyFile)
  const source = await loadClientCertificate({ certFile, keyFile, watch: true, debounceMs: 50 })
  sources.push(source)
  return { certFile, keyFile, source }
}

describe('mTLS-bound sessions (issue 5)', () => {
  it('MTLS-01/03/04: tls_client_auth earns a certificate-bound token over the mTLS alias, sent as Bearer over the same certificate', async () => {
    kit.as.resetCounters()
    const { fetch } = mtlsSession(pem(kit.clients.tlsClientAuth.certificate))
    const res = await fetch(`${kit.api}/orders`)
    expect(await res.json()).toMatchObject({ binding: 'mtls', x5t: kit.clients.tlsClientAuth.certificate.x5tS256 })
    expect(kit.as.counters()).toMatchObject({ byBinding: { mtls: 1 }, byListener: { mtls: 1, main: 0 } })
  })

  it('MTLS-13: self_signed_tls_client_auth earns a certificate-bound token', async () => {
    const { fetch } = mtlsSession(pem(kit.clients.selfSignedTlsClientAuth.certificate), true)
    expect(await (await fetch(`${kit.api}/orders`)).json()).toMatchObject({ binding: 'mtls', x5t: kit.clients.selfSignedTlsClientAuth.certificate.x5tS256 })
  })

  it('the RS accepts the certificate-bound token only over the matching certificate', async () => {
    const { session, fetch } = mtlsSession(pem(kit.pki.workload))
    expect((await fetch(`${kit.api}/orders`)).status).toBe(200)
    const token = await session.token()
    const wrong = createTransport({ ca: kit.ca, clientCertificate: pem(kit.pki.other) })
    try {
      const res = await wrong.fetch(`${kit.api}/orders`, { headers: { authorization: `Bearer ${token.value}` } })
      expect(res.status).toBe(401)
      expect(res.headers.get('www-authenticate')).toMatch(/invalid_token/)
    } finally {
      await wrong.close()
    }
  })

  it('an expired certificate is refused with ERR_MTLS_CERTIFICATE_EXPIRED before any network call', async () => {
    kit.as.resetCounters()
    kit.rs.resetCounters()
    const { fetch } = mtlsSession(clientCertificateFromPem(pem(kit.pki.expired)))
    await expect(fetch(`${kit.api}/orders`)).rejects.toMatchObject({ code: 'ERR_MTLS_CERTIFICATE_EXPIRED' })
    expect(kit.as.counters().tokenRequests).toBe(0)
    expect(kit.rs.counters().requests).toBe(0)
  })

  it('MTLS-06: rotation under load (≥ 100 req/s for 15 s, files replaced in place then by rename): zero failures, the new certificate’s token right after each swap', async () => {
    const certFile = join(dir, 'svid.pem')
    const keyFile = join(dir, 'svid-key.pem')
    await copyFile(kit.pki.workload.certFile, certFile)
    await copyFile(kit.pki.workload.keyFile, keyFile)
    const third = await kit.pki.issueClientCertificate({ name: 'third', commonName: 'orders-worker', uri: kit.pki.workload.spiffeId })
    const source = await loadClientCertificate({ certFile, keyFile, watch: true, debounceMs: 50 })
    sources.push(source)
    const swaps: { at: number; x5t: string }[] = []
    source.events.on('rotated', (e) => swaps.push({ at: Date.now(), x5t: e.current.x5t }))
    const { session, fetch } = mtlsSession(source)
    const dropped: number[] = []
    session.events.on('certificate.rotated', (e) => dropped.push(e.tokensDropped))
    kit.rs.resetCounters()
    const failures: string[] = []
    const log: { started: number; x5t: string }[] = []
    const end = Date.now() + 15_000
    const worker = async () => {
      while (Date.now() < end && log.length < 5000) {
        const started = Date.now()
        const res = await fetch(`${kit.api}/orders`).catch((e: Error) => ({ status: 0, json: async () => ({ error: e.message }) }))
        const body = (await res.json()) as { x5t?: string; error?: string }
        if (res.status !== 200) failures.push(`${res.status} ${body.error ?? ''}`)
        else log.push({ started, x5t: body.x5t! })
        await sleep(15)
      }
    }
    const load = Promise.all([worker(), worker(), worker(), worker()])
    await sleep(5_000)
    // in place: overwrite both files (the way some agents write them)
    await writeFile(certFile, await readFile(kit.pki.workloadRotated.certFile))
    await writeFile(keyFile, await readFile(kit.pki.workloadRotated.keyFile))
    await sleep(5_000)
    // atomic rename: write beside, then rename over
    await writeFile(`${certFile}.tmp`, third.certPem)
    await writeFile(`${keyFile}.tmp`, third.keyPem)
    await rename(`${keyFile}.tmp`, keyFile)
    await rename(`${certFile}.tmp`, certFile)
    await load
    expect(failures).toEqual([])
    expect(log.length).toBeGreaterThanOrEqual(1500) // ≥ 100 requests per second
    expect(swaps.map((s) => s.x5t)).toEqual([kit.pki.workloadRotated.x5tS256, third.x5tS256])
    for (const [i, swap] of swaps.entries()) {
      const after = log.filter((l) => l.started > swap.at + 5 && (swaps[i + 1] === undefined || l.started < swaps[i + 1]!.at))
      expect(after.length).toBeGreaterThan(50)
      expect(after.filter((l) => l.x5t !== swap.x5t)).toEqual([])
    }
    expect(dropped).toEqual([1, 1])
    expect(inspect(session, { depth: 10 })).not.toContain('PRIVATE KEY')
  }, 40_000)

  it('the undici interceptor on the user’s own Agent: credentialed requests go over the current certificate, before and after a rotation on disk', async () => {
    const { certFile, keyFile, source } = await watchedWorkloadCopy('ic')
    const { session } = mtlsSession(source)
    const agent = new Agent({ connect: { ca: kit.ca } }) // presents no certificate
    try {
      const dispatcher = agent.compose(boundInterceptor({ session, origins: [kit.api] }))
      const before = await request(`${kit.api}/orders`, { dispatcher })
      expect(await before.body.json()).toMatchObject({ binding: 'mtls', x5t: kit.pki.workload.x5tS256 })
      const rotated = new Promise((r) => source.events.on('rotated', r))
      await writeFile(certFile, await readFile(kit.pki.workloadRotated.certFile))
      await writeFile(keyFile, await readFile(kit.pki.workloadRotated.keyFile))
      await rotated
      const after = await request(`${kit.api}/orders`, { dispatcher })
      expect(await after.body.json()).toMatchObject({ binding: 'mtls', x5t: kit.pki.workloadRotated.x5tS256 })
    } finally {
      await agent.close()
    }
  })

  it('a half-written rotation (cert now, key a second later) causes no failed request and no mismatched pair', async () => {
    const { certFile, keyFile, source } = await watchedWorkloadCopy('half')
    const errors: string[] = []
    source.events.on('error', (e) => errors.push(e.code))
    const { fetch } = mtlsSession(source)
    const failures: string[] = []
    const seen = new Set<string>()
    let running = true
    const load = (async () => {
      while (running) {
        const res = await fetch(`${kit.api}/orders`)
        const body = (await res.json()) as { x5t?: string }
        if (res.status !== 200) failures.push(String(res.status))
        else seen.add(body.x5t!)
        await sleep(20)
      }
    })()
    await sleep(500)
    await writeFile(certFile, await readFile(kit.pki.workloadRotated.certFile))
    await sleep(1_000)
    expect(source.current().x5t).toBe(kit.pki.workload.x5tS256) // the mismatched pair was not taken
    await writeFile(keyFile, await readFile(kit.pki.workloadRotated.keyFile))
    await sleep(1_000)
    running = false
    await load
    expect(failures).toEqual([])
    expect(errors.length).toBeGreaterThan(0)
    expect(source.current().x5t).toBe(kit.pki.workloadRotated.x5tS256)
    expect([...seen].sort()).toEqual([kit.pki.workload.x5tS256, kit.pki.workloadRotated.x5tS256].sort())
  }, 20_000)
})
