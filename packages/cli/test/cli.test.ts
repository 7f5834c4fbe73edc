import { spawn, type ChildProcess } from 'node:child_process'
import { createHash, randomUUID } from 'node:crypto'
import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import { existsSync, realpathSync } from 'node:fs'
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { request } from 'node:https'
import { createServer, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { EmbeddedJWK, SignJWT, calculateJwkThumbprint, importJWK, jwtVerify, type JWK } from 'jose'
import { startTestkit, TESTKIT_SECRET_CHANNEL, type Testkit } from '@bound/testkit'
import { run } from '../src/index.js'

const CLI = fileURLToPath(new URL('../dist/cli.js', import.meta.url))

interface Result {
  code: number | null
  stdout: string
  stderr: string
}

/** Runs the built `bound` binary; killed after 10 s so no test can hang. */
function bound(args: string[], options: { env?: Record<string, string>; stdin?: string } = {}): Promise<Result> {
  const child = spawn(process.execPath, [CLI, ...args], { cwd: dir, env: { ...process.env, ...options.env }, stdio: ['pipe', 'pipe', 'pipe'], timeout: 10_000 })
  child.stdin.end(options.stdin ?? '')
  return outcome(child)
}

/** A child's exit code and everything it wrote. */
function outcome(child: ChildProcess): Promise<Result> {
  return new Promise((resolve, reject) => {
    let stdout = ''
    let stderr = ''
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d))
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d))
    child.on('error', reject)
    child.on('close', (code) => resolve({ code, stdout, stderr }))
  })
}

/**
 * Runs any command (npm, npx) in `cwd`; killed after 30 s. Without the `npm_*` variables an outer
 * npm left in the environment (`npx -p node@22 … vitest` sets npm_config_package, which an inner
 * `npx` would take as its own `-p`).
 */
function spawnIn(command: string, args: string[], cwd: string, env: Record<string, string> = {}): Promise<Result> {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([name]) => !/^npm_/i.test(name)))
  return outcome(spawn(command, args, { cwd, env: { ...clean, ...env }, stdio: ['ignore', 'pipe', 'pipe'], timeout: 30_000 }))
}

/** One HTTPS request trusting only the testkit CA (no client certificate). */
function httpsGet(url: string, headers: Record<string, string>): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'GET', headers, ca: kit.ca, timeout: 5_000 }, (res) => {
      let body = ''
      res.setEncoding('utf8').on('data', (d: string) => (body += d))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }))
    })
    req.on('timeout', () => req.destroy(new Error('timeout')))
    req.on('error', reject)
    req.end()
  })
}

let kit: Testkit
let dir: string
let caFile: string
/** --issuer, --ca and the secret-basic client with its secret in an environment variable. */
let secretBasic: string[]
const secretEnv = () => ({ BOUND_TEST_SECRET: kit.clients.secretBasic.clientSecret })

beforeAll(async () => {
  kit = await startTestkit()
  dir = await mkdtemp(join(tmpdir(), 'bound-cli-'))
  caFile = join(dir, 'ca.pem')
  await writeFile(caFile, kit.ca)
  secretBasic = ['--issuer', kit.issuer, '--ca', caFile, '--client-id', kit.clients.secretBasic.clientId, '--client-secret-env', 'BOUND_TEST_SECRET']
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build first`)
})

afterAll(async () => {
  await kit?.close()
  if (dir) await rm(dir, { recursive: true, force: true })
})

describe('bound keygen', () => {
  it('writes a private JWK with mode 0600 and prints its RFC 7638 thumbprint', async () => {
    const r = await bound(['keygen', '--out', 'k1.jwk', '--json'])
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    const out = JSON.parse(r.stdout) as { jkt: string; alg: string; file: string }
    expect(out).toMatchObject({ alg: 'ES256', file: join(dir, 'k1.jwk') })
    const st = await stat(join(dir, 'k1.jwk'))
    expect(st.mode & 0o777).toBe(0o600)
    const jwk = JSON.parse(await readFile(join(dir, 'k1.jwk'), 'utf8')) as JWK
    expect(jwk).toMatchObject({ kty: 'EC', crv: 'P-256', alg: 'ES256', kid: out.jkt })
    expect(typeof jwk.d).toBe('string')
    expect(await calculateJwkThumbprint({ kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y }, 'sha256')).toBe(out.jkt)
  })

  it('plain output is the jkt alone; EdDSA keys too', async () => {
    const r = await bound(['keygen', '--alg', 'EdDSA', '--out', 'ed.jwk'])
    expect(r.code).toBe(0)
    const jwk = JSON.parse(await readFile(join(dir, 'ed.jwk'), 'utf8')) as JWK
    expect(jwk).toMatchObject({ kty: 'OKP', crv: 'Ed25519', alg: 'EdDSA' })
    expect(r.stdout).toBe(`${await calculateJwkThumbprint({ kty: 'OKP', crv: 'Ed25519', x: jwk.x }, 'sha256')}\n`)
  })

  it('refuses to overwrite an existing file unless --force', async () => {
    const file = join(dir, 'keep.jwk')
    await writeFile(file, 'precious')
    const refused = await bound(['keygen', '--out', 'keep.jwk'])
    expect(refused.code).toBe(1)
    expect(refused.stdout).toBe('')
    expect(refused.stderr).toMatch(/^bound: ERR_FILE_EXISTS: .*--force/)
    expect(await readFile(file, 'utf8')).toBe('precious')

    const forced = await bound(['keygen', '--out', 'keep.jwk', '--force', '--alg', 'ES384'])
    expect(forced.code).toBe(0)
    const jwk = JSON.parse(await readFile(file, 'utf8')) as JWK
    expect(jwk).toMatchObject({ crv: 'P-384', alg: 'ES384', kid: forced.stdout.trim() })
    expect((await stat(file)).mode & 0o777).toBe(0o600)
  })

  it('an unknown --alg is a usage error', async () => {
    const r = await bound(['keygen', '--alg', 'HS256', '--out', 'never.jwk'])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/^bound: ERR_USAGE: --alg must be one of ES256, ES384, EdDSA, PS256, RS256/)
    expect(existsSync(join(dir, 'never.jwk'))).toBe(false)
  })
})

describe('bound thumbprint', () => {
  it('prints the x5t#S256, SPIFFE ID, subject and notAfter of the workload certificate', async () => {
    const w = kit.pki.workload
    const json = await bound(['thumbprint', w.certFile, '--json'])
    expect(json.code).toBe(0)
    const info = JSON.parse(json.stdout) as Record<string, unknown>
    expect(info).toMatchObject({ 'x5t#S256': w.x5tS256, spiffeId: w.spiffeId, expired: false, notYetValid: false })
    expect(info.subject).toMatch(/CN=orders-worker/)
    expect(Date.parse(info.notAfter as string)).toBeGreaterThan(Date.now())

    const plain = await bound(['thumbprint', w.certFile])
    expect(plain.code).toBe(0)
    expect(plain.stdout).toContain(`x5t#S256   ${w.x5tS256}\n`)
    expect(plain.stdout).toContain(`spiffe-id  ${w.spiffeId}\n`)
    expect(plain.stdout).toMatch(/^not-after {2}\d{4}-\d\d-\d\dT/m)
  })

  it('an expired certificate: its details on stdout, ERR_MTLS_CERTIFICATE_EXPIRED on stderr, exit 3; --allow-expired exits 0 (issue 15)', async () => {
    const e = kit.pki.expired
    const plain = await bound(['thumbprint', e.certFile])
    expect(plain.code).toBe(3)
    expect(plain.stdout).toContain(`x5t#S256   ${e.x5tS256}\n`)
    expect(plain.stdout).toMatch(/^not-after {2}\S+ \(expired\)$/m)
    expect(plain.stderr).toBe(`bound: ERR_MTLS_CERTIFICATE_EXPIRED: the certificate ${e.certFile} expired at ${e.notAfter.toISOString()} (exit code 3; --allow-expired exits 0)\n`)

    const json = await bound(['thumbprint', '-', '--json'], { stdin: e.certPem })
    expect(json.code).toBe(3)
    expect(JSON.parse(json.stdout)).toMatchObject({ 'x5t#S256': e.x5tS256, expired: true, notYetValid: false })
    expect(json.stderr).toMatch(/^bound: ERR_MTLS_CERTIFICATE_EXPIRED: the certificate on standard input expired at /)

    const allowed = await bound(['thumbprint', e.certFile, '--allow-expired', '--json'])
    expect(allowed).toMatchObject({ code: 0, stderr: '' })
    expect(JSON.parse(allowed.stdout)).toMatchObject({ 'x5t#S256': e.x5tS256, expired: true })

    // (a valid certificate still exits 0, --allow-expired or not)
    expect((await bound(['thumbprint', kit.pki.workload.certFile, '--allow-expired'])).code).toBe(0)
  })

  it('a certificate not yet valid: exit 3 too', async () => {
    const day = 24 * 60 * 60 * 1000
    const future = await kit.pki.issueClientCertificate({ name: 'cli-future', commonName: 'orders-worker', notBefore: new Date(Date.now() + day), notAfter: new Date(Date.now() + 2 * day) })
    const r = await bound(['thumbprint', future.certFile, '--json'])
    expect(r.code).toBe(3)
    expect(JSON.parse(r.stdout)).toMatchObject({ 'x5t#S256': future.x5tS256, expired: false, notYetValid: true })
    expect(r.stderr).toMatch(/^bound: ERR_MTLS_CERTIFICATE_EXPIRED: the certificate .* is not valid before \d{4}-/)
  })

  it('a missing file is ERR_FILE (exit 1); no argument is a usage error (exit 2)', async () => {
    const missing = await bound(['thumbprint', 'nope.pem'])
    expect(missing.code).toBe(1)
    expect(missing.stderr).toMatch(/^bound: ERR_FILE: cannot read the certificate file nope\.pem \(ENOENT\)/)
    const none = await bound(['thumbprint'])
    expect(none.code).toBe(2)
    expect(none.stderr).toMatch(/^bound: ERR_USAGE: /)
  })
})

describe('bound token', () => {
  it('client_secret_basic + --dpop-key: a DPoP token bound to the key, which the RS accepts with a hand-made proof', async () => {
    const keyFile = join(dir, 'ci.jwk')
    const jkt = (await bound(['keygen', '--out', keyFile])).stdout.trim()
    const r = await bound(['token', ...secretBasic, '--dpop-key', keyFile, '--json'], { env: secretEnv() })
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    const t = JSON.parse(r.stdout) as { access_token: string; token_type: string; expires_at: number; jkt: string; scope: unknown }
    expect(t).toMatchObject({ token_type: 'DPoP', jkt })
    expect(t.expires_at).toBeGreaterThan(Date.now() / 1000)
    expect('scope' in t).toBe(true)

    // use it as a shell step would: the token and a proof signed with the key file
    const jwk = JSON.parse(await readFile(keyFile, 'utf8')) as JWK
    const privateKey = await importJWK(jwk, 'ES256')
    const url = `${kit.api}/orders`
    const proof = (nonce?: string) =>
      new SignJWT({ htm: 'GET', htu: url, jti: randomUUID(), ath: createHash('sha256').update(t.access_token).digest('base64url'), ...(nonce ? { nonce } : {}) })
        .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: { kty: jwk.kty!, crv: jwk.crv!, x: jwk.x!, y: jwk.y! } })
        .setIssuedAt()
        .sign(privateKey)
    let res = await httpsGet(url, { authorization: `DPoP ${t.access_token}`, dpop: await proof() })
    if (res.status === 401 && typeof res.headers['dpop-nonce'] === 'string') {
      res = await httpsGet(url, { authorization: `DPoP ${t.access_token}`, dpop: await proof(res.headers['dpop-nonce']) }) // one nonce retry
    }
    expect(res.status).toBe(200)
    expect(JSON.parse(res.body)).toMatchObject({ ok: true, binding: 'dpop', jkt, client_id: kit.clients.secretBasic.clientId })
  })

  it('plain output is the access token alone', async () => {
    const r = await bound(['token', ...secretBasic, '--auth', 'basic'], { env: secretEnv() })
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+\n$/)
  })

  it('tls_client_auth with --cert/--key: a certificate-bound token (x5t#S256 of the workload certificate)', async () => {
    const w = kit.pki.workload
    const c = kit.clients.tlsClientAuth
    const r = await bound(['token', '--issuer', kit.issuer, '--ca', caFile, '--client-id', c.clientId, '--auth', 'tls', '--cert', w.certFile, '--key', w.keyFile, '--json'])
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(JSON.parse(r.stdout)).toMatchObject({ token_type: 'Bearer', x5t: w.x5tS256 })
  })

  it('private_key_jwt with --client-key (a private JWK file)', async () => {
    const c = kit.clients.privateKeyJwt
    const keyFile = join(dir, 'client-key.jwk')
    await writeFile(keyFile, JSON.stringify({ ...c.privateJwk, kid: c.kid, alg: c.alg }), { mode: 0o600 })
    const r = await bound(['token', '--issuer', kit.issuer, '--ca', caFile, '--client-id', c.clientId, '--client-key', keyFile, '--dpop-key', join(dir, 'k1.jwk'), '--json'])
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(JSON.parse(r.stdout)).toMatchObject({ token_type: 'DPoP' })
  })

  it('token exchange with --subject-token-file: the token carries the subject token\'s sub', async () => {
    const subjectFile = join(dir, 'subject.jwt')
    await writeFile(subjectFile, await kit.workloadIdentity.mintToken({ sub: 'system:serviceaccount:ci:cli' }))
    const r = await bound(['token', ...secretBasic, '--subject-token-file', subjectFile, '--resource', kit.resource, '--json'], { env: secretEnv() })
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    const t = JSON.parse(r.stdout) as { access_token: string }
    const payload = JSON.parse(Buffer.from(t.access_token.split('.')[1]!, 'base64url').toString('utf8')) as Record<string, unknown>
    expect(payload).toMatchObject({ sub: 'system:serviceaccount:ci:cli', aud: kit.resource })
    expect(kit.as.counters().byGrant['urn:ietf:params:oauth:grant-type:token-exchange']).toBeGreaterThanOrEqual(1)
  })

  it('a wrong secret: exit 1, ERR_TOKEN_ENDPOINT on stderr, and the secret printed nowhere', async () => {
    const wrong = 'Wr0ng-S3cret-do-not-print'
    const viaEnv = await bound(['token', ...secretBasic], { env: { BOUND_TEST_SECRET: wrong } })
    expect(viaEnv.code).toBe(1)
    expect(viaEnv.stdout).toBe('')
    expect(viaEnv.stderr).toMatch(/^bound: ERR_TOKEN_ENDPOINT: .*invalid_client/)
    expect(viaEnv.stderr).not.toContain(wrong)

    // on the command line: a warning about ps, and still never echoed
    const viaArgv = await bound(['token', '--issuer', kit.issuer, '--ca', caFile, '--client-id', kit.clients.secretBasic.clientId, '--client-secret', wrong])
    expect(viaArgv.code).toBe(1)
    expect(viaArgv.stderr).toContain('bound: warning: --client-secret')
    expect(viaArgv.stderr).toContain('ERR_TOKEN_ENDPOINT')
    expect(viaArgv.stderr).not.toContain(wrong)
  })

  it('usage errors: exit 2 with the message on stderr, nothing on stdout', async () => {
    const [noClient, unknown, stray, missingEnv] = await Promise.all([
      bound(['token', '--issuer', kit.issuer]),
      bound(['token', '--client-secrt=Sup3rSecretValue', '--client-id', 'x']),
      bound(['token', ...secretBasic, 'Sup3rSecretValue'], { env: secretEnv() }),
      bound(['token', '--issuer', kit.issuer, '--client-id', 'x', '--client-secret-env', 'BOUND_TEST_UNSET_VARIABLE']),
    ])
    expect(noClient).toMatchObject({ code: 2, stdout: '' })
    expect(noClient.stderr).toMatch(/^bound: ERR_USAGE: token: --client-id is required\nRun 'bound token --help' for usage\.\n$/)

    expect(unknown.code).toBe(2)
    expect(unknown.stderr).toMatch(/^bound: ERR_USAGE: token: Unknown option '--client-secrt'/)
    expect(unknown.stderr).not.toContain('Sup3rSecretValue')

    expect(stray.code).toBe(2)
    expect(stray.stderr).not.toContain('Sup3rSecretValue')

    expect(missingEnv.code).toBe(2)
    expect(missingEnv.stderr).toMatch(/BOUND_TEST_UNSET_VARIABLE is not set/)
  })

  it('without --ca the AS certificate is not trusted: exit 1, ERR_NETWORK', async () => {
    const r = await bound(['token', '--issuer', kit.issuer, '--client-id', kit.clients.secretBasic.clientId, '--client-secret-env', 'BOUND_TEST_SECRET'], { env: secretEnv() })
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/^bound: ERR_NETWORK: .*--ca FILE/)
  })
})

describe('bound fetch', () => {
  it('GET: 200, the body on stdout (DPoP with a one-time key)', async () => {
    const r = await bound(['fetch', `${kit.api}/orders`, ...secretBasic], { env: secretEnv() })
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: true, method: 'GET', path: '/orders', binding: 'dpop', client_id: kit.clients.secretBasic.clientId })
  })

  it('POST -d with a header, and --dpop-key: the body reaches the RS, the token is bound to the key', async () => {
    const jkt = JSON.parse(await readFile(join(dir, 'k1.jwk'), 'utf8')).kid as string
    const r = await bound(['fetch', `${kit.api}/orders`, ...secretBasic, '--dpop-key', 'k1.jwk', '-d', '{"item":42}', '-H', 'Content-Type: application/json'], { env: secretEnv() })
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(JSON.parse(r.stdout)).toMatchObject({ method: 'POST', binding: 'dpop', jkt, body: '{"item":42}' })
  })

  it('--data-file - reads the body from stdin; -X PUT', async () => {
    const r = await bound(['fetch', `${kit.api}/orders/7`, ...secretBasic, '-X', 'PUT', '--data-file', '-'], { env: secretEnv(), stdin: 'qty=3' })
    expect(r.code).toBe(0)
    expect(JSON.parse(r.stdout)).toMatchObject({ method: 'PUT', path: '/orders/7', body: 'qty=3' })
  })

  it('-i prints the status line and headers before the body', async () => {
    const r = await bound(['fetch', `${kit.api}/orders`, ...secretBasic, '-i'], { env: secretEnv() })
    expect(r.code).toBe(0)
    const [head, body] = r.stdout.split('\n\n') as [string, string]
    expect(head).toMatch(/^HTTP\/1\.1 200 OK\n/)
    expect(head).toMatch(/^content-type: application\/json/m)
    expect(JSON.parse(body)).toMatchObject({ ok: true })
  })

  it('mTLS: tls_client_auth with --cert/--key, a certificate-bound token presented over the same certificate', async () => {
    const w = kit.pki.workload
    const r = await bound(['fetch', `${kit.api}/orders`, '--issuer', kit.issuer, '--ca', caFile, '--client-id', kit.clients.tlsClientAuth.clientId, '--cert', w.certFile, '--key', w.keyFile])
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(JSON.parse(r.stdout)).toMatchObject({ binding: 'mtls', x5t: w.x5tS256 })
  })

  it('token exchange in fetch: the RS sees the subject token\'s sub', async () => {
    const subjectFile = join(dir, 'subject-fetch.jwt')
    await writeFile(subjectFile, await kit.workloadIdentity.mintToken({ sub: 'system:serviceaccount:ci:fetch' }))
    const r = await bound(['fetch', `${kit.api}/orders`, ...secretBasic, '--subject-token-file', subjectFile], { env: secretEnv() })
    expect(r.code).toBe(0)
    expect(JSON.parse(r.stdout)).toMatchObject({ sub: 'system:serviceaccount:ci:fetch' })
  })

  it('HTTP 401 (a step-up the CLI cannot perform) → exit 22, the challenge on stderr', async () => {
    kit.rs.requireStepUp('/cli-admin', { acr_values: 'phr' })
    try {
      const r = await bound(['fetch', `${kit.api}/cli-admin/x`, ...secretBasic], { env: secretEnv() })
      expect(r.code).toBe(22)
      expect(r.stderr).toMatch(/^bound: ERR_STEP_UP_REQUIRED: GET https:\/\/127\.0\.0\.1:\d+\/cli-admin\/x answered HTTP 401 Unauthorized; DPoP error="insufficient_user_authentication"/)
      expect(JSON.parse(r.stdout)).toMatchObject({ error: 'insufficient_user_authentication' })
    } finally {
      kit.rs.clearStepUp()
    }
  })

  it('HTTP 403 from the API → exit 22, body still printed', async () => {
    kit.rs.route('/cli-forbidden', ({ res }) => {
      res.writeHead(403, { 'content-type': 'application/json' })
      res.end('{"error":"forbidden"}')
    })
    const r = await bound(['fetch', `${kit.api}/cli-forbidden?secret=q`, ...secretBasic], { env: secretEnv() })
    expect(r.code).toBe(22)
    expect(r.stdout).toBe('{"error":"forbidden"}')
    expect(r.stderr).toMatch(/^bound: ERR_HTTP_STATUS: GET https:\/\/127\.0\.0\.1:\d+\/cli-forbidden answered HTTP 403 Forbidden\n$/)
  })

  it('usage errors: no URL, a plain-http non-loopback URL, a bad header, Authorization set by hand', async () => {
    const cases = [['fetch'], ['fetch', 'http://api.example.com/x', '--client-id', 'x'], ['fetch', `${kit.api}/x`, '-H', 'no colon'], ['fetch', `${kit.api}/x`, '-H', 'Authorization: Bearer abc']]
    const results = await Promise.all(cases.map((args) => bound(args)))
    results.forEach((r, i) => {
      expect(r.code, cases[i]!.join(' ')).toBe(2)
      expect(r.stderr).toMatch(/^bound: ERR_USAGE: /)
    })
  })
})

describe('bound fetch without --issuer (issue 13)', () => {
  it('a client secret is never sent to an AS the API’s RFC 9728 metadata chose: exit 1, ERR_INVALID_CONFIG naming --issuer, no token request', async () => {
    kit.as.resetCounters()
    const r = await bound(['fetch', `${kit.resource}/`, '--ca', caFile, '--client-id', kit.clients.secretBasic.clientId, '--client-secret-env', 'BOUND_TEST_SECRET'], { env: secretEnv() })
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/ERR_INVALID_CONFIG/)
    expect(r.stderr).toMatch(/--issuer/)
    expect(r.stderr).not.toContain(kit.clients.secretBasic.clientSecret)
    expect(kit.as.counters().tokenRequests).toBe(0)
  })
})

describe('bound fetch --verbose and --json (issue 15)', () => {
  /** Every secret the testkit hands out or sees (issued tokens, received proofs, client secrets) while `task` runs. */
  async function collectingSecrets<T>(task: () => Promise<T>): Promise<{ result: T; secrets: string[] }> {
    const secrets: string[] = []
    const collect = (s: unknown) => void secrets.push(String(s))
    subscribe(TESTKIT_SECRET_CHANNEL, collect)
    try {
      return { result: await task(), secrets }
    } finally {
      unsubscribe(TESTKIT_SECRET_CHANNEL, collect)
    }
  }

  it('--verbose: one stderr line per exchange (method, URL without query, credentials by label, status, nonce received), the challenges answered and the token acquired; no token, proof or secret', async () => {
    const { result: r, secrets } = await collectingSecrets(() => bound(['fetch', `${kit.api}/orders?page=secret-query`, ...secretBasic, '--verbose'], { env: secretEnv() }))
    expect(r.code).toBe(0)
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: true, binding: 'dpop' }) // stdout: the body alone
    const err = r.stderr
    const api = kit.api.replace(/[.]/g, '\\.')
    const as = kit.issuer.replace(/[.]/g, '\\.')
    // the AS: discovery, a nonce challenge at the token endpoint, the token
    expect(err).toMatch(new RegExp(`^\\* POST ${as}/\\S+ with Basic Authorization, a DPoP proof → 400, DPoP-Nonce received$`, 'm'))
    expect(err).toMatch(new RegExp(`^\\* DPoP-Nonce challenge from the authorization server ${as}: `, 'm'))
    const acquired = err.match(/^\* token acquired: DPoP (sha256:\S+) \(client_credentials; expires \S+; cache key .+\)$/m)
    expect(acquired).not.toBeNull()
    const label = acquired![1]!
    // the API: the nonce challenge answered, then 200 — with the same token (by label)
    expect(err).toMatch(new RegExp(`^\\* GET ${api}/orders with DPoP token ${label}, a DPoP proof → 401, DPoP-Nonce received$`, 'm'))
    expect(err).toMatch(new RegExp(`^\\* challenge dpop-nonce from ${api}: answered`, 'm'))
    expect(err).toMatch(new RegExp(`^\\* GET ${api}/orders with DPoP token ${label}, a DPoP proof → 200`, 'm'))
    expect(err.split('\n').filter(Boolean).every((l) => l.startsWith('* '))).toBe(true)
    expect(err).toMatch(/^\* DPoP key [\w-]{43} \(jkt\): /)
    // nothing secret: no query string, no JWT (token or proof), none of what the testkit issued or saw
    expect(err).not.toContain('secret-query')
    expect(err).not.toMatch(/eyJ[\w-]+\.[\w-]+/)
    expect(secrets.length).toBeGreaterThanOrEqual(3) // the access token and the proofs at least
    for (const secret of [...secrets, kit.clients.secretBasic.clientSecret]) expect(err).not.toContain(secret)
  })

  it('token --verbose reports the token request too; stdout stays the token alone', async () => {
    const r = await bound(['token', ...secretBasic, '-v'], { env: secretEnv() })
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+\n$/)
    expect(r.stderr).toMatch(/^\* POST \S+ with Basic Authorization → 200$/m)
    expect(r.stderr).toMatch(/^\* token acquired: Bearer sha256:/m)
    expect(r.stderr).not.toContain(r.stdout.trim())

    // mTLS: the certificate is in the handshake, so said once; the token request has no credential header
    const w = kit.pki.workload
    const tls = await bound(['token', '--issuer', kit.issuer, '--ca', caFile, '--client-id', kit.clients.tlsClientAuth.clientId, '--cert', w.certFile, '--key', w.keyFile, '--verbose'])
    expect(tls.code).toBe(0)
    expect(tls.stderr).toMatch(/^\* client certificate \(--cert\): presented in the TLS handshake/)
    expect(tls.stderr).toMatch(/^\* POST \S+ → 200$/m)
    expect(tls.stderr).not.toContain('PRIVATE KEY')
    expect(tls.stderr).not.toContain(tls.stdout.trim())
  })

  it('--json: one object { status, url, headers, body } on stdout, body parsed when JSON', async () => {
    const r = await bound(['fetch', `${kit.api}/orders`, ...secretBasic, '--json'], { env: secretEnv() })
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(r.stdout.endsWith('}\n')).toBe(true)
    expect(r.stdout.trim().split('\n')).toHaveLength(1)
    const out = JSON.parse(r.stdout) as { status: number; url: string; headers: Record<string, string>; body: unknown }
    expect(Object.keys(out).sort()).toEqual(['body', 'headers', 'status', 'url'])
    expect(out).toMatchObject({ status: 200, url: `${kit.api}/orders`, body: { ok: true, method: 'GET', path: '/orders', binding: 'dpop' } })
    expect(out.headers['content-type']).toMatch(/^application\/json/)
  })

  it('--json: a text body is the text; an HTTP error still exits 22 with the line on stderr; set-cookie is a list', async () => {
    kit.rs.route('/cli-teapot', ({ res }) => {
      res.setHeader('set-cookie', ['a=1', 'b=2'])
      res.writeHead(418, { 'content-type': 'text/plain; charset=utf-8' })
      res.end('short and stout')
    })
    const r = await bound(['fetch', `${kit.api}/cli-teapot`, ...secretBasic, '--json'], { env: secretEnv() })
    expect(r.code).toBe(22)
    expect(JSON.parse(r.stdout)).toMatchObject({ status: 418, url: `${kit.api}/cli-teapot`, headers: { 'content-type': 'text/plain; charset=utf-8', 'set-cookie': ['a=1', 'b=2'] }, body: 'short and stout' })
    expect(r.stderr).toMatch(/^bound: ERR_HTTP_STATUS: GET https:\/\/127\.0\.0\.1:\d+\/cli-teapot answered HTTP 418/)
  })

  it('--json with -i is a usage error', async () => {
    const r = await bound(['fetch', `${kit.api}/orders`, '--json', '-i', '--client-id', 'x'])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/^bound: ERR_USAGE: give -i or --json, not both/)
  })
})

describe('bound fetch --resource-match (issue 15)', () => {
  it('strict RFC 9728 matching (the default, or exact) refuses the RS\'s metadata for its origin; the hint names --resource-match prefix, not the SDK option', async () => {
    kit.as.resetCounters()
    const args = ['fetch', `${kit.api}/orders`, '--ca', caFile, '--client-id', kit.clients.secretBasic.clientId, '--client-secret-env', 'BOUND_TEST_SECRET']
    const [byDefault, exact] = await Promise.all([bound(args, { env: secretEnv() }), bound([...args, '--resource-match', 'exact'], { env: secretEnv() })])
    for (const r of [byDefault, exact]) {
      expect(r.code).toBe(1)
      expect(r.stderr).toMatch(/^bound: ERR_DISCOVERY: Protected resource metadata at .* is for .*; if that resource covers this URL, allow it with --resource-match prefix\)\n$/)
      expect(r.stderr).not.toContain('resourceMetadata')
    }
    expect(kit.as.counters().tokenRequests).toBe(0)
  })

  it('--resource-match prefix accepts the metadata of a resource whose path is a prefix of the URL (then the AS it names meets the --issuer rule)', async () => {
    kit.as.resetCounters()
    const r = await bound(['fetch', `${kit.api}/orders`, '--resource-match', 'prefix', '--ca', caFile, '--client-id', kit.clients.secretBasic.clientId, '--client-secret-env', 'BOUND_TEST_SECRET'], { env: secretEnv() })
    expect(r.code).toBe(1)
    // past discovery: the document was accepted, and a confidential client still sends its secret only to an AS it names
    expect(r.stderr).toMatch(/^bound: ERR_INVALID_CONFIG: The protected resource .* names the authorization server .*--issuer URL\)\n$/)
    expect(r.stderr).not.toContain(kit.clients.secretBasic.clientSecret)
    expect(kit.as.counters().tokenRequests).toBe(0)
  })

  it('--resource-match takes exact or prefix only', async () => {
    const r = await bound(['fetch', `${kit.api}/orders`, '--resource-match', 'fuzzy', '--client-id', 'x'])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/^bound: ERR_USAGE: --resource-match must be exact or prefix/)
  })
})

describe('--timeout', () => {
  it('a server that never answers: ERR_TIMEOUT (exit 1) soon after the limit, and the process ends', async () => {
    const sockets = new Set<Socket>()
    const server = createServer((s) => void sockets.add(s)) // accepts, never answers (not even TLS)
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const { port } = server.address() as { port: number }
    try {
      const started = Date.now()
      const r = await bound(['token', '--issuer', `https://127.0.0.1:${port}`, '--client-id', 'x', '--client-secret-env', 'BOUND_TEST_SECRET', '--timeout', '0.5'], { env: secretEnv() })
      expect(r.code).toBe(1)
      expect(r.stderr).toMatch(/^bound: ERR_TIMEOUT: no token within 0\.5 s/)
      expect(Date.now() - started).toBeLessThan(5_000)
    } finally {
      for (const s of sockets) s.destroy()
      await new Promise((resolve) => server.close(resolve))
    }
  })
})

describe('bound proof (issue 15)', () => {
  const keyFile = () => join(dir, 'proof.jwk')
  beforeAll(async () => {
    expect((await bound(['keygen', '--out', keyFile()])).code).toBe(0)
  })

  it('prints one DPoP proof signed with --dpop-key: typ dpop+jwt, the key in jwk, htm, htu without query, iat, jti; ath with --token, nonce with --nonce', async () => {
    const jwk = JSON.parse(await readFile(keyFile(), 'utf8')) as JWK
    const token = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl'
    const r = await bound(['proof', 'POST', `${kit.api}/orders/7?page=2#top`, '--dpop-key', keyFile(), '--token', token, '--nonce', 'n-0S6_WzA2Mj'])
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+\n$/)
    const { payload, protectedHeader } = await jwtVerify(r.stdout.trim(), EmbeddedJWK, { typ: 'dpop+jwt', algorithms: ['ES256'] })
    expect(protectedHeader.jwk).not.toHaveProperty('d')
    expect(await calculateJwkThumbprint(protectedHeader.jwk!, 'sha256')).toBe(jwk.kid)
    expect(payload).toMatchObject({ htm: 'POST', htu: `${kit.api}/orders/7`, ath: createHash('sha256').update(token).digest('base64url'), nonce: 'n-0S6_WzA2Mj' })
    expect(typeof payload.jti).toBe('string')
    expect((payload.jti as string).length).toBeGreaterThanOrEqual(16)
    expect(Math.abs(payload.iat! - Date.now() / 1000)).toBeLessThan(30)

    const plain = await bound(['proof', 'GET', `${kit.api}/orders`, '--dpop-key', keyFile()])
    expect(plain.code).toBe(0)
    const p = await jwtVerify(plain.stdout.trim(), EmbeddedJWK, { typ: 'dpop+jwt' })
    expect(p.payload).toMatchObject({ htm: 'GET', htu: `${kit.api}/orders` })
    expect(p.payload).not.toHaveProperty('ath')
    expect(p.payload).not.toHaveProperty('nonce')
  })

  it('the curl recipe: a token from bound token, proofs from bound proof (--token - and --token-env), the RS nonce answered with --nonce → 200', async () => {
    const t = JSON.parse((await bound(['token', ...secretBasic, '--dpop-key', keyFile(), '--json'], { env: secretEnv() })).stdout) as { access_token: string }
    const url = `${kit.api}/orders`
    const first = await bound(['proof', 'GET', url, '--dpop-key', keyFile(), '--token', '-'], { stdin: `${t.access_token}\n` })
    expect(first.code).toBe(0)
    // (the testkit RS demands nonces: the first proof has none)
    const challenged = await httpsGet(url, { authorization: `DPoP ${t.access_token}`, dpop: first.stdout.trim() })
    expect(challenged.status).toBe(401)
    const nonce = challenged.headers['dpop-nonce']
    expect(typeof nonce).toBe('string')
    const retry = await bound(['proof', 'GET', url, '--dpop-key', keyFile(), '--token-env', 'ACCESS_TOKEN', '--nonce', nonce as string], { env: { ACCESS_TOKEN: t.access_token } })
    expect(retry.code).toBe(0)
    const res = await httpsGet(url, { authorization: `DPoP ${t.access_token}`, dpop: retry.stdout.trim() })
    expect(res.status).toBe(200)
    expect(JSON.parse(res.body)).toMatchObject({ binding: 'dpop', jkt: (JSON.parse(await readFile(keyFile(), 'utf8')) as JWK).kid })
  })

  it('usage errors (exit 2), and the token is never echoed', async () => {
    const secret = 'Sup3r.S3cret-access-token'
    const cases = [
      ['proof', 'GET', `${kit.api}/x`],
      ['proof', 'GET', `${kit.api}/x`, '--dpop-key', keyFile(), '--nonce', 'has space'],
      ['proof', 'GET', `${kit.api}/x`, '--dpop-key', keyFile(), '--token', secret, '--token-env', 'X'],
      ['proof', 'GET', `${kit.api}/x`, secret, '--dpop-key', keyFile()],
      ['proof', 'GET', 'http://api.example.com/x', '--dpop-key', keyFile(), '--token', secret],
      ['proof', 'G ET', `${kit.api}/x`, '--dpop-key', keyFile()],
      ['proof', 'GET', `${kit.api}/x`, '--dpop-key', keyFile(), '--tokn', secret],
      ['proof', 'GET', `${kit.api}/x`, '--dpop-key', keyFile(), `--token=${secret} with space`],
    ]
    const results = await Promise.all(cases.map((args) => bound(args)))
    results.forEach((r, i) => {
      expect(r.code, cases[i]!.join(' ')).toBe(2)
      expect(r.stdout).toBe('')
      expect(r.stderr).toMatch(/^bound: ERR_USAGE: /)
      expect(r.stderr).not.toContain(secret)
    })
    expect(results[0]!.stderr).toMatch(/--dpop-key FILE is required/)
    expect(results[1]!.stderr).toMatch(/--nonce is not a valid DPoP nonce/)
    const missing = await bound(['proof', 'GET', `${kit.api}/x`, '--dpop-key', 'nope.jwk'])
    expect(missing.code).toBe(1)
    expect(missing.stderr).toMatch(/^bound: ERR_FILE: /)
  })
})

describe('- for standard input and output (issue 15)', () => {
  it('keygen --out - prints the private JWK (nothing written); fetch --dpop-key - reads it back from stdin', async () => {
    const before = await readdir(dir)
    const r = await bound(['keygen', '--out', '-', '--alg', 'ES384'])
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(await readdir(dir)).toEqual(before)
    expect(existsSync(join(dir, '-'))).toBe(false)
    const jwk = JSON.parse(r.stdout) as JWK
    expect(jwk).toMatchObject({ kty: 'EC', crv: 'P-384', alg: 'ES384', use: 'sig' })
    expect(typeof jwk.d).toBe('string')
    expect(jwk.kid).toBe(await calculateJwkThumbprint({ kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y }, 'sha256'))

    const f = await bound(['fetch', `${kit.api}/orders`, ...secretBasic, '--dpop-key', '-'], { env: secretEnv(), stdin: r.stdout })
    expect(f.stderr).toBe('')
    expect(f.code).toBe(0)
    expect(JSON.parse(f.stdout)).toMatchObject({ binding: 'dpop', jkt: jwk.kid })
  })

  it('keygen --out - with --json is a usage error', async () => {
    const r = await bound(['keygen', '--out', '-', '--json'])
    expect(r).toMatchObject({ code: 2, stdout: '' })
    expect(r.stderr).toMatch(/^bound: ERR_USAGE: --json does not go with --out -/)
  })

  it('thumbprint - reads the certificate from stdin', async () => {
    const w = kit.pki.workload
    const r = await bound(['thumbprint', '-', '--json'], { stdin: w.certPem })
    expect(r.code).toBe(0)
    expect(JSON.parse(r.stdout)).toMatchObject({ 'x5t#S256': w.x5tS256, spiffeId: w.spiffeId })
    const garbage = await bound(['thumbprint', '-'], { stdin: 'not a certificate' })
    expect(garbage.code).toBe(1)
    expect(garbage.stderr).toMatch(/^bound: ERR_MTLS_CERTIFICATE_INVALID: standard input holds no readable X\.509 certificate/)
  })

  it('token: --cert -, --ca - and --subject-token-file - read stdin', async () => {
    const w = kit.pki.workload
    const c = kit.clients.tlsClientAuth
    const cert = await bound(['token', '--issuer', kit.issuer, '--ca', caFile, '--client-id', c.clientId, '--cert', '-', '--key', w.keyFile, '--json'], { stdin: w.certPem })
    expect(cert.stderr).toBe('')
    expect(cert.code).toBe(0)
    expect(JSON.parse(cert.stdout)).toMatchObject({ token_type: 'Bearer', x5t: w.x5tS256 })

    const ca = await bound(['token', '--issuer', kit.issuer, '--ca', '-', '--client-id', kit.clients.secretBasic.clientId, '--client-secret-env', 'BOUND_TEST_SECRET'], { env: secretEnv(), stdin: kit.ca })
    expect(ca.stderr).toBe('')
    expect(ca.code).toBe(0)

    const subject = await kit.workloadIdentity.mintToken({ sub: 'system:serviceaccount:ci:stdin' })
    const exchanged = await bound(['token', ...secretBasic, '--subject-token-file', '-', '--resource', kit.resource, '--json'], { env: secretEnv(), stdin: `${subject}\n` })
    expect(exchanged.stderr).toBe('')
    expect(exchanged.code).toBe(0)
    const t = JSON.parse(exchanged.stdout) as { access_token: string }
    expect(JSON.parse(Buffer.from(t.access_token.split('.')[1]!, 'base64url').toString('utf8'))).toMatchObject({ sub: 'system:serviceaccount:ci:stdin' })
  })

  it('only one option may read stdin: a second - is a usage error, before anything is sent', async () => {
    kit.as.resetCounters()
    const w = kit.pki.workload
    const r = await bound(['token', '--issuer', kit.issuer, '--ca', caFile, '--client-id', kit.clients.tlsClientAuth.clientId, '--cert', '-', '--key', '-'], { stdin: w.certPem + w.keyPem })
    expect(r).toMatchObject({ code: 2, stdout: '' })
    expect(r.stderr).toMatch(/^bound: ERR_USAGE: --key -: standard input is already read for --cert/)
    expect(r.stderr).not.toContain('PRIVATE KEY')
    const f = await bound(['fetch', `${kit.api}/orders`, ...secretBasic, '--data-file', '-', '--dpop-key', '-'], { env: secretEnv(), stdin: 'x=1' })
    expect(f.code).toBe(2)
    expect(f.stderr).toMatch(/^bound: ERR_USAGE: --dpop-key -: standard input is already read for --data-file/)
    expect(kit.as.counters().tokenRequests).toBe(0)
  })
})

describe('bound from the checkout (issue 15)', () => {
  const root = fileURLToPath(new URL('../../../', import.meta.url))

  it('npm links the bin at install time: its file is committed (npm skips a bin whose file is missing, and `npm ci` runs before the build)', async () => {
    const pkg = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8')) as { bin: Record<string, string>; files: string[] }
    const bin = pkg.bin.bound!
    expect(bin).not.toMatch(/^(\.\/)?dist\//)
    const file = fileURLToPath(new URL(`../${bin}`, import.meta.url))
    expect((await readFile(file, 'utf8')).startsWith('#!/usr/bin/env node\n')).toBe(true)
    expect((await stat(file)).mode & 0o111).not.toBe(0)
    expect(pkg.files).toContain(bin.replace(/^\.\//, '').split('/')[0])
    expect(realpathSync(join(root, 'node_modules', '.bin', 'bound')), 'node_modules/.bin/bound (run npm ci or npm install after pulling this change)').toBe(file)
  })

  it('`npm exec bound` and `npx bound` from the repository root run this checkout\'s bound (offline: never the registry)', async () => {
    const pkg = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
    const env = { npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false' }
    const [viaExec, viaNpx] = await Promise.all([
      spawnIn('npm', ['exec', '--offline', 'bound', '--', '--version'], root, env),
      spawnIn('npx', ['--no-install', 'bound', '--version'], root, env),
    ])
    expect(viaExec, viaExec.stderr).toMatchObject({ code: 0, stdout: `${pkg.version}\n` })
    expect(viaNpx, viaNpx.stderr).toMatchObject({ code: 0, stdout: `${pkg.version}\n` })
  })
})

describe('bound itself', () => {
  it('--version, --help, <command> --help', async () => {
    const pkg = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
    expect(await bound(['--version'])).toMatchObject({ code: 0, stdout: `${pkg.version}\n` })
    const help = await bound(['--help'])
    expect(help.code).toBe(0)
    for (const c of ['keygen', 'thumbprint', 'token', 'fetch', 'proof']) expect(help.stdout).toContain(c)
    const fetchHelp = await bound(['fetch', '--help'])
    expect(fetchHelp.code).toBe(0)
    expect(fetchHelp.stdout).toMatch(/^Usage: bound fetch <url>/)
    const none = await bound([])
    expect(none.code).toBe(2)
    expect(none.stderr).toContain('Usage: bound <command>')
  })

  it('run() in-process: captured output and the exit code', async () => {
    let out = ''
    let err = ''
    const io = { stdout: { write: (s: string | Uint8Array) => (out += String(s)) }, stderr: { write: (s: string | Uint8Array) => (err += String(s)) }, cwd: dir }
    expect(await run(['thumbprint', kit.pki.workload.certFile, '--json'], io)).toBe(0)
    expect(JSON.parse(out)).toMatchObject({ 'x5t#S256': kit.pki.workload.x5tS256 })
    expect(await run(['frobnicate'], io)).toBe(2)
    expect(err).toMatch(/^bound: ERR_USAGE: unknown command "frobnicate"/)
  })
})
