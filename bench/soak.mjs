// npm run soak [-- --requests N --revoke-every S --rotate-every S]: one session — DPoP-bound tokens,
// mTLS client authentication with a certificate watched on disk — N bound requests (default
// 1,000,000) against the testkit with 5-second tokens, the RS rotating its DPoP nonce every second and
// revoking the session every minute, the certificate files replaced every two minutes. Prints
// failures, data-heap growth from the end of the warm-up (the first 25% of the run, which includes a
// revocation and a certificate rotation) to the end, and token requests against the expected ≈ one
// per refresh interval plus one per revocation and rotation.
//
// The heap is measured after two full collections and without V8's code spaces: compiled code grows
// as the JIT optimises the hot path (≈ 0.5 MB over the first tens of thousands of requests, then flat)
// and is not memory the application holds. The first revocation and the first rotation are brought
// forward into the warm-up so that every path has run once before the baseline is taken.
import { fork } from 'node:child_process'
import { copyFile, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { getHeapSpaceStatistics } from 'node:v8'
import { createBoundFetch } from '@bound/fetch'
import { clientCredentials, createSession, tlsClientAuth } from '@bound/oauth'
import { generateDpopKey } from '@bound/dpop'
import { loadClientCertificate } from '@bound/mtls'

const arg = (name, fallback) => Number(process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback)
const total = arg('requests', 1_000_000)
const revokeEvery = arg('revoke-every', 60) * 1000
const rotateEvery = arg('rotate-every', 120) * 1000
const concurrency = 16
const child = fork(new URL('./soak-servers.mjs', import.meta.url), { env: { ...process.env, SOAK_TTL: '5' } })
const ready = await new Promise((resolve) => child.on('message', (m) => m.ready && resolve(m.ready)))
const ask = () => new Promise((resolve) => { child.once('message', (m) => resolve(m.counters)); child.send({ counters: true }) })

const dir = await mkdtemp(join(tmpdir(), 'soak-svid-'))
const certFile = join(dir, 'svid.pem')
const keyFile = join(dir, 'svid-key.pem')
await copyFile(ready.pki.workload.certFile, certFile)
await copyFile(ready.pki.workload.keyFile, keyFile)
const certificate = await loadClientCertificate({ certFile, keyFile, watch: true })
const session = createSession({ issuer: ready.issuer, clientId: ready.client.clientId, clientAuth: tlsClientAuth(), clientCertificate: certificate, grant: clientCredentials({ resource: ready.resource }), dpop: await generateDpopKey(), ca: ready.ca })
let rotations = 0
session.events.on('certificate.rotated', () => rotations++)
const fetch = createBoundFetch({ session, origins: [ready.api] })
let acquired = 0
session.events.on('token.acquired', () => acquired++)

const started = Date.now()
const nonceTimer = setInterval(() => child.send({ rotateNonce: true }), 1_000)
let revocations = 0
const revoke = async () => { revocations++; child.send({ revoke: (await session.token()).value }) }
const revokeTimer = setInterval(revoke, revokeEvery)
let pairIndex = 0
const rotate = async () => {
  const pair = [ready.pki.workloadRotated, ready.pki.workload][pairIndex++ % 2]
  await writeFile(`${keyFile}.tmp`, await readFile(pair.keyFile))
  await writeFile(`${certFile}.tmp`, await readFile(pair.certFile))
  await rename(`${keyFile}.tmp`, keyFile)
  await rename(`${certFile}.tmp`, certFile)
}
const rotateTimer = setInterval(rotate, rotateEvery)
// warm-up: one revocation and one rotation early, before the baseline
const warmRevoke = setTimeout(revoke, 1_000)
const warmRotate = setTimeout(rotate, 2_000)
const CODE_SPACES = new Set(['code_space', 'code_large_object_space'])
const heapAt = () => {
  if (!globalThis.gc) throw new Error('run with node --expose-gc: the heap is measured after full collections')
  globalThis.gc()
  globalThis.gc()
  const spaces = getHeapSpaceStatistics()
  const code = spaces.filter((s) => CODE_SPACES.has(s.space_name)).reduce((n, s) => n + s.space_used_size, 0)
  return { data: spaces.reduce((n, s) => n + s.space_used_size, 0) - code, code }
}
let done = 0
let failed = 0
const failures = new Map()
let early
let late
const warmupEnd = Math.floor(total * 0.25)
await Promise.all(Array.from({ length: concurrency }, async () => {
  while (done < total) {
    done++
    try {
      const res = await fetch(`${ready.api}/orders/${done % 1000}`)
      await res.arrayBuffer()
      if (res.status !== 200) {
        failed++
        failures.set(res.status, (failures.get(res.status) ?? 0) + 1)
      }
    } catch (err) {
      failed++
      failures.set(err.code ?? err.message, (failures.get(err.code ?? err.message) ?? 0) + 1)
    }
    if (done === warmupEnd) early = heapAt()
    if (done % 100_000 === 0) console.log(`  ${done.toLocaleString('en-US')} requests, ${failed} failed, ${((Date.now() - started) / 1000).toFixed(0)} s`)
  }
}))
late = heapAt()
clearInterval(nonceTimer)
clearInterval(revokeTimer)
clearInterval(rotateTimer)
clearTimeout(warmRevoke)
clearTimeout(warmRotate)
const seconds = (Date.now() - started) / 1000
const counters = await ask()
const growth = (late.data - early.data) / early.data
// the manager refreshes a 5 s token with a lead of max(25 %, min(5 s, half the lifetime)) = 2.5 s
const refreshEvery = 5 - Math.max(5 * 0.25, Math.min(5, 5 / 2))
const expectedTokens = Math.ceil(seconds / refreshEvery) + revocations + rotations + 1
console.log(`\n${total.toLocaleString('en-US')} bound requests in ${seconds.toFixed(0)} s (${Math.round(total / seconds)}/s): ${failed} failed${failed ? ` ${JSON.stringify([...failures])}` : ''}`)
console.log(`RS: ${counters.rs.verified} verified, ${counters.rs.nonceChallenges} nonce challenges, ${counters.rs.invalidToken} invalid_token (${revocations} revocations), ${counters.rs.verifierDisagreements} verifier disagreements`)
console.log(`certificate rotations on disk taken by the session: ${rotations}`)
console.log(`AS: ${counters.as.tokensIssued} tokens issued (session saw ${acquired}); expected about ${expectedTokens} (one per ${refreshEvery} s — a 5 s token refreshes at half its life — plus one per revocation and rotation)`)
const mb = (n) => (n / 1e6).toFixed(1)
console.log(`heap (data, after full GC): ${mb(early.data)} MB after the warm-up (25%), ${mb(late.data)} MB at the end: ${(growth * 100).toFixed(1)}%; compiled code ${mb(early.code)} → ${mb(late.code)} MB (not counted)`)
const ok = failed === 0 && growth < 0.05 && counters.as.tokensIssued <= expectedTokens * 2
console.log(`\n${ok ? 'met ' : 'MISS'}  zero failed requests, data-heap growth < 5% after the warm-up, bounded token requests`)
certificate.close()
await session.close()
await rm(dir, { recursive: true, force: true })
child.send({ close: true })
process.exit(ok ? 0 : 1)
