// The Bound quickstart: an authorization server, a resource server and two workloads, all on
// loopback, telling the story of a bound session. Run it with `npm run demo` from the repository root.
import { copyFile, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createBoundFetch, createSession, clientCredentials, clientSecretBasic, tlsClientAuth, generateDpopKey, loadClientCertificate } from '@bound/fetch'

// oidc-provider warns that Node 20 is past its support window and that its in-memory store is for
// development: both true and expected for a demo; keep the story readable.
const warn = console.warn
console.warn = (...args) => void (String(args[0]).startsWith('oidc-provider WARNING') || warn(...args))
const { startTestkit } = await import('@bound/testkit')

const started = performance.now()
const log = (line) => console.log(`[${((performance.now() - started) / 1000).toFixed(2).padStart(5)}s] ${line}`)
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const short = (s) => `${String(s).slice(0, 10)}…`
let kit
const fail = async (message) => {
  console.error(`\ndemo failed: ${message}`)
  await kit?.close().catch(() => {})
  process.exit(1)
}
setTimeout(() => fail('did not finish within 30 s'), 30_000).unref()

try {
  kit = await startTestkit({ accessTokenTtlSeconds: 4 })
  log(`authorization server (oidc-provider) at ${kit.issuer}: DPoP nonces required, 4-second tokens`)
  log(`resource server at ${kit.api}: verifies every token and proof (oauth4webapi + jose)`)

  // --- 1. a service with a DPoP key ---------------------------------------------------------
  const key = await generateDpopKey()
  log(`DPoP key generated (ES256, non-extractable), jkt ${short(key.jkt)}`)
  const client = kit.clients.secretBasic
  const session = createSession({
    issuer: kit.issuer,
    clientId: client.clientId,
    clientAuth: clientSecretBasic(client.clientSecret),
    grant: clientCredentials({ resource: kit.resource }),
    dpop: key,
    ca: kit.ca,
  })
  session.events.on('nonce.challenge', (e) => log(`  ${e.at === 'authorization-server' ? 'AS' : 'RS'} asked for a DPoP nonce → answered with a fresh proof`))
  session.events.on('token.acquired', (e) =>
    log(`  token ${e.reason === 'refresh' ? 'refreshed in the background' : 'earned'}: ${e.type}-bound, ${e.label}, ${((e.expiresAt - Date.now()) / 1000).toFixed(1)} s to live`))
  session.events.on('challenge.invalid_token', (e) => log(`  RS said invalid_token for ${e.label} → dropped it, earning a new one`))
  session.events.on('token.failed', (e) => log(`  token request failed: ${e.code} ${e.message}`))

  const fetch = createBoundFetch({
    session,
    origins: [kit.api],
    onStepUp: async (challenge) => {
      log(`  step-up needed (${challenge.acrValues?.join(' ')}) → asking a human… approved`)
      return { acr_values: challenge.acrValues.join(' ') }
    },
  })
  const call = async (path, expect = 200) => {
    const res = await fetch(`${kit.api}${path}`)
    const body = await res.json().catch(() => ({}))
    if (res.status !== expect) await fail(`GET ${path} answered ${res.status} ${res.headers.get('www-authenticate') ?? ''}`)
    log(`GET ${path} → ${res.status}, verified by the RS (binding ${body.binding}${body.acr ? `, acr ${body.acr}` : ''})`)
    return body
  }

  log('— a service calls its API')
  await call('/orders')
  await call('/orders/42')

  log('— it keeps calling for 3 s; the token is refreshed before it expires, no call waits')
  const waits = []
  const stopCounting = session.events.on('token.wait', (e) => waits.push(e.ms))
  const until = Date.now() + 3_000
  let calls = 0
  while (Date.now() < until) {
    const res = await fetch(`${kit.api}/orders`)
    if (res.status !== 200) await fail(`a call during refresh answered ${res.status}`)
    await res.arrayBuffer()
    calls++
    await sleep(50)
  }
  stopCounting()
  log(`  ${calls} calls, all 200, ${waits.length} waited on a token`)

  log('— the RS rotates its nonce')
  kit.rs.rotateNonce()
  await call('/orders')

  log('— the RS revokes the session')
  kit.rs.revokeToken((await session.token()).value)
  await call('/orders')

  log('— a sensitive call')
  kit.rs.requireStepUp('/admin', { acr_values: 'urn:bound:mfa' })
  await call('/admin/users')

  // --- 2. a workload with a rotating SPIFFE-style certificate -------------------------------
  log('— a workload with a short-lived client certificate on disk (mTLS-bound tokens)')
  const dir = await mkdtemp(join(tmpdir(), 'bound-demo-'))
  const certFile = join(dir, 'svid.pem')
  const keyFile = join(dir, 'svid-key.pem')
  await copyFile(kit.pki.workload.certFile, certFile)
  await copyFile(kit.pki.workload.keyFile, keyFile)
  const certificate = await loadClientCertificate({ certFile, keyFile, watch: true, debounceMs: 50 })
  log(`  certificate ${certificate.current().spiffeId}, x5t#S256 ${short(certificate.current().x5t)}`)
  const mtls = createSession({
    issuer: kit.issuer,
    clientId: kit.clients.tlsClientAuth.clientId,
    clientAuth: tlsClientAuth(),
    grant: clientCredentials({ resource: kit.resource }),
    clientCertificate: certificate,
    ca: kit.ca,
  })
  mtls.events.on('certificate.rotated', (e) => log(`  certificate rotated on disk → x5t#S256 ${short(e.x5t)}; ${e.tokensDropped} token bound to the old one dropped`))
  mtls.events.on('token.acquired', (e) => log(`  certificate-bound token earned over the ${e.grant} grant, ${e.label}`))
  const mtlsFetch = createBoundFetch({ session: mtls, origins: [kit.api] })
  const before = await (await mtlsFetch(`${kit.api}/orders`)).json()
  log(`GET /orders → 200 (binding ${before.binding}, x5t ${short(before.x5t)})`)
  await writeFile(`${certFile}.new`, await readFile(kit.pki.workloadRotated.certFile))
  await writeFile(`${keyFile}.new`, await readFile(kit.pki.workloadRotated.keyFile))
  await rename(`${keyFile}.new`, keyFile)
  await rename(`${certFile}.new`, certFile)
  for (let i = 0; i < 40 && certificate.current().x5t === before.x5t; i++) await sleep(50)
  const after = await (await mtlsFetch(`${kit.api}/orders`)).json()
  log(`GET /orders → 200 (binding ${after.binding}, x5t ${short(after.x5t)})`)
  if (after.x5t !== kit.pki.workloadRotated.x5tS256) await fail('the rotated certificate was not used')

  const as = kit.as.counters()
  const rs = kit.rs.counters()
  log(`AS: ${as.tokensIssued} tokens issued (${as.byBinding.dpop} DPoP-bound, ${as.byBinding.mtls} certificate-bound), ${as.nonceChallenges} nonce challenges`)
  log(`RS: ${rs.verified} requests verified, ${rs.nonceChallenges} nonce challenges, ${rs.invalidToken} invalid_token, ${rs.stepUpChallenges} step-up, ${rs.verifierDisagreements} verifier disagreements`)
  if (rs.verifierDisagreements !== 0 || waits.length > 0 || rs.byBinding.bearer > 0) await fail(`the servers counted something unexpected (${JSON.stringify({ waits: waits.length, ...rs.byBinding, disagreements: rs.verifierDisagreements })})`)
  certificate.close()
  await Promise.all([session.close(), mtls.close()])
  await rm(dir, { recursive: true, force: true })
  log('done: every request carried a bound token and, for DPoP, a fresh proof')
  await kit.close()
  process.exit(0)
} catch (err) {
  await fail(`${err?.code ?? ''} ${err?.message ?? err}`)
}
