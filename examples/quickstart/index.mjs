// The Bound quickstart: an authorization server, a resource server and a workload, all on loopback.
// Run it with `npm run demo` from the repository root.
import { startTestkit } from '@bound/testkit'
import { createBoundFetch } from '@bound/fetch'
import { createSession, clientCredentials, clientSecretBasic } from '@bound/oauth'
import { generateDpopKey } from '@bound/dpop'

const started = performance.now()
const log = (line) => console.log(`[${((performance.now() - started) / 1000).toFixed(2).padStart(6)}s] ${line}`)
const fail = (message) => {
  console.error(`\ndemo failed: ${message}`)
  process.exit(1)
}
const deadline = setTimeout(() => fail('did not finish within 30 s'), 30_000)
deadline.unref()

const kit = await startTestkit()
try {
  log(`authorization server (oidc-provider) at ${kit.issuer}, DPoP nonces required`)
  log(`resource server at ${kit.api}, verifying tokens and proofs with oauth4webapi and jose`)

  const key = await generateDpopKey()
  log(`workload DPoP key generated (ES256, non-extractable), jkt ${key.jkt}`)

  const client = kit.clients.secretBasic
  const session = createSession({
    issuer: kit.issuer,
    clientId: client.clientId,
    clientAuth: clientSecretBasic(client.clientSecret),
    grant: clientCredentials({ resource: kit.resource }),
    dpop: key,
    ca: kit.ca,
  })
  session.events.on('nonce.challenge', (e) => log(`${e.at === 'authorization-server' ? 'AS' : 'RS'} asked for a DPoP nonce → answered with a fresh proof`))
  session.events.on('token.acquired', (e) => log(`token earned: ${e.type}-bound to jkt ${key.jkt.slice(0, 10)}…, ${e.label}, valid ${Math.round((e.expiresAt - Date.now()) / 1000)} s (${e.attempts} token request${e.attempts > 1 ? 's' : ''})`))
  session.events.on('challenge.invalid_token', (e) => log(`RS said invalid_token for ${e.label} → dropped it, earning a new one`))
  session.events.on('token.failed', (e) => log(`token request failed: ${e.code} ${e.message}`))

  const fetch = createBoundFetch({ session, origins: [kit.api] })
  const call = async (path) => {
    const res = await fetch(`${kit.api}${path}`)
    const body = await res.json().catch(() => ({}))
    if (res.status !== 200) fail(`GET ${path} answered ${res.status} ${res.headers.get('www-authenticate') ?? ''}`)
    log(`GET ${path} → 200, verified by the RS (binding ${body.binding}, jkt ${String(body.jkt).slice(0, 10)}…)`)
    return body
  }

  await call('/orders')
  await call('/orders/42')

  kit.rs.rotateNonce()
  log('RS rotated its DPoP nonce')
  await call('/orders')

  const token = await session.token()
  kit.rs.revokeToken(token.value)
  log(`RS revoked the session's token ${token.label}`)
  await call('/orders')

  const as = kit.as.counters()
  const rs = kit.rs.counters()
  log(`AS: ${as.tokenRequests} token requests, ${as.nonceChallenges} nonce challenges, ${as.tokensIssued} DPoP-bound tokens issued`)
  log(`RS: ${rs.verified} requests verified, ${rs.nonceChallenges} nonce challenges, ${rs.invalidToken} invalid_token, ${rs.verifierDisagreements} verifier disagreements`)
  if (rs.verified !== 4 || rs.verifierDisagreements !== 0 || as.tokensIssued !== 2) fail('the servers counted something unexpected')
  await session.close()
  log('done: every request carried a DPoP-bound token and a fresh proof')
} catch (err) {
  fail(`${err?.code ?? ''} ${err?.message ?? err}`)
} finally {
  await kit.close()
}
