// DPoP proofs per second on one core: Bound against the raw node:crypto sign() floor, jose's
// SignJWT and the `dpop` package, all in this run. Then the heap over 1,000,000 proofs.
//   node --expose-gc bench/dpop.mjs [--quick]
import { KeyObject, createHash, randomBytes, sign, webcrypto } from 'node:crypto'
import { SignJWT } from 'jose'
import * as dpopPackage from 'dpop'
import { createDpop, createProofBuilder, importDpopKey } from '@bound/dpop'

const quick = process.argv.includes('--quick')
const ROUNDS = 3
const SECONDS = quick ? 0.3 : 1
const HEAP_PROOFS = quick ? 100_000 : 1_000_000
const htu = 'https://api.example.com/orders/42'
const accessToken = randomBytes(600).toString('base64url')
const ath = createHash('sha256').update(accessToken).digest('base64url')

async function measure(fn) {
  // proofs per second over SECONDS of wall time, in batches to keep timer reads cheap
  const end = performance.now() + SECONDS * 1000
  let n = 0
  const start = performance.now()
  while (performance.now() < end) {
    for (let i = 0; i < 50; i++) {
      const r = fn()
      if (r instanceof Promise) await r
    }
    n += 50
  }
  return n / ((performance.now() - start) / 1000)
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const fmt = (x) => Math.round(x).toLocaleString('en-US').padStart(8)

async function contenders(alg) {
  const params = alg === 'ES256' ? { name: 'ECDSA', namedCurve: 'P-256' } : { name: 'Ed25519' }
  const pair = await webcrypto.subtle.generateKey(params, false, ['sign', 'verify'])
  const exportable = await webcrypto.subtle.generateKey(params, true, ['sign', 'verify'])
  const privateKey = KeyObject.from(pair.privateKey)
  const publicJwk = await webcrypto.subtle.exportKey('jwk', pair.publicKey)
  const bound = createDpop({ key: await importDpopKey(pair) })
  bound.nonces.set('https://api.example.com', 'eyJ7S_zG.eyJH0-Z.HX4w-7v')

  // the floor: one sign() of a pre-built signing input of the same shape and length
  const header = Buffer.from(JSON.stringify({ typ: 'dpop+jwt', alg, jwk: { kty: publicJwk.kty, crv: publicJwk.crv, x: publicJwk.x, y: publicJwk.y } })).toString('base64url')
  const payload = Buffer.from(JSON.stringify({ jti: randomBytes(16).toString('base64url'), htm: 'GET', htu, iat: Math.floor(Date.now() / 1000), ath, nonce: 'eyJ7S_zG.eyJH0-Z.HX4w-7v' })).toString('base64url')
  const signingInput = Buffer.from(`${header}.${payload}`)
  const rawOpts = alg === 'ES256' ? { key: privateKey, dsaEncoding: 'ieee-p1363' } : privateKey
  const hash = alg === 'ES256' ? 'sha256' : null

  return {
    'raw sign() floor': () => sign(hash, signingInput, rawOpts),
    'Bound': () => bound.proof('GET', htu, { accessToken }),
    'jose SignJWT': () => new SignJWT({ htm: 'GET', htu, ath, nonce: 'eyJ7S_zG.eyJH0-Z.HX4w-7v', jti: randomBytes(16).toString('base64url') })
      .setProtectedHeader({ typ: 'dpop+jwt', alg, jwk: { kty: publicJwk.kty, crv: publicJwk.crv, x: publicJwk.x, y: publicJwk.y } })
      .setIssuedAt()
      .sign(privateKey),
    'dpop package': () => dpopPackage.generateProof(exportable, htu, 'GET', 'eyJ7S_zG.eyJH0-Z.HX4w-7v', accessToken),
  }
}

const targets = []
for (const alg of ['ES256', 'EdDSA']) {
  const c = await contenders(alg)
  const results = Object.fromEntries(Object.keys(c).map((k) => [k, []]))
  for (const fn of Object.values(c)) await measure(fn) // warm up
  for (let r = 0; r < ROUNDS; r++) for (const [name, fn] of Object.entries(c)) results[name].push(await measure(fn))
  const floor = median(results['raw sign() floor'])
  console.log(`\n${alg}: proofs/s on one core (median of ${ROUNDS} × ${SECONDS}s), ratio to the raw sign() floor`)
  for (const [name, xs] of Object.entries(results)) console.log(`  ${name.padEnd(18)} ${fmt(median(xs))}/s  ${(median(xs) / floor).toFixed(2)}×`)
  const bound = median(results['Bound'])
  const dpop = median(results['dpop package'])
  console.log(`  Bound vs dpop package: ${(bound / dpop).toFixed(2)}×`)
  targets.push([`${alg} Bound ≥ 0.85× raw floor`, bound / floor >= 0.85, (bound / floor).toFixed(2)])
  if (alg === 'ES256') targets.push([`${alg} Bound ≥ 2.5× dpop package`, bound / dpop >= 2.5, (bound / dpop).toFixed(2)])
}

// Heap over many proofs: the retained heap after the first 10% against after the last.
{
  const key = await importDpopKey((await webcrypto.subtle.generateKey({ name: 'Ed25519' }, false, ['sign', 'verify'])))
  const d = createDpop({ key })
  d.nonces.set('https://api.example.com', 'n-1')
  const heapAt = () => { globalThis.gc?.(); globalThis.gc?.(); return process.memoryUsage().heapUsed }
  let first = 0
  let sink = 0
  for (let i = 1; i <= HEAP_PROOFS; i++) {
    // a new token every 1,000 proofs, like a refresh, and a new path every proof
    const proof = d.proof(i % 2 ? 'GET' : 'POST', `https://api.example.com/orders/${i}`, { accessToken: `tok-${Math.floor(i / 1000)}` })
    sink += proof.length
    if (i === HEAP_PROOFS / 10) first = heapAt()
  }
  const last = heapAt()
  const growth = (last - first) / first
  console.log(`\nheap over ${HEAP_PROOFS.toLocaleString('en-US')} proofs: ${(first / 1e6).toFixed(1)} MB after 10%, ${(last / 1e6).toFixed(1)} MB at the end (${(growth * 100).toFixed(1)}%) [${sink > 0 ? 'ok' : ''}]`)
  targets.push([`heap flat over ${HEAP_PROOFS} proofs (< 5% growth)`, growth < 0.05, `${(growth * 100).toFixed(1)}%`])
}

console.log('\ntargets:')
for (const [name, ok, value] of targets) console.log(`  ${ok ? 'met ' : 'MISS'}  ${name}: ${value}`)
