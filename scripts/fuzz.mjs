// npm run fuzz [-- --runs N]: property-based fuzzing of everything that parses server-chosen input —
// the WWW-Authenticate parser and classifier, the token-response parser, htu normalisation and the
// claims-challenge decoder — with 100,000 generated cases each (a smaller sample runs in npm test).
// Checks: nothing throws except a typed BoundError, and a 64 KB input costs a bounded multiple of
// a 1 KB one (no super-linear blow-up).
import fc from 'fast-check'
import { BoundError, classifyChallenge, decodeClaimsParameter, parseChallenges } from '@bound/core'
import { parseTokenResponse } from '@bound/oauth'
import { normalizeHtu } from '@bound/dpop'

const runs = Number(process.argv.find((a) => a.startsWith('--runs='))?.slice(7) ?? 100_000)
const typed = (fn) => {
  try {
    fn()
  } catch (err) {
    if (!(err instanceof BoundError)) throw err
  }
}
const headerish = fc.oneof(
  fc.string({ maxLength: 200 }),
  fc.array(fc.constantFrom('Bearer', 'DPoP', ' ', ',', '=', '"', '\\', 'error', 'use_dpop_nonce', 'realm', 'claims', 'max_age', '5', 'abc==', '\t', "'", 'resource_metadata', 'https://a/'), { maxLength: 80 }).map((a) => a.join('')),
)
const jsonish = fc.oneof(fc.jsonValue(), fc.record({ access_token: fc.oneof(fc.string(), fc.integer()), token_type: fc.oneof(fc.constantFrom('DPoP', 'dpop', 'Bearer', 'N_A'), fc.string()), expires_in: fc.oneof(fc.integer(), fc.string(), fc.double()), scope: fc.string(), refresh_token: fc.string() }, { requiredKeys: [] }))
const targets = {
  'WWW-Authenticate parser + classifier': [headerish, (h) => { for (const c of parseChallenges(h)) classifyChallenge(c) }],
  'token-response parser': [jsonish, (j) => typed(() => parseTokenResponse(j, 'fuzz', { dpop: true }))],
  'htu normalisation': [fc.oneof(fc.webUrl({ withQueryParameters: true, withFragments: true }), fc.string({ maxLength: 100 })), (u) => typed(() => normalizeHtu(u))],
  'claims-challenge decoder': [fc.oneof(fc.base64String({ maxLength: 400 }), fc.string({ maxLength: 200 }), fc.json().map((j) => Buffer.from(j).toString('base64url'))), (c) => void decodeClaimsParameter(c)],
}

let failed = false
for (const [name, [arb, check]] of Object.entries(targets)) {
  const started = performance.now()
  try {
    fc.assert(fc.property(arb, (input) => { check(input) }), { numRuns: runs })
    console.log(`ok    ${name}: ${runs.toLocaleString('en-US')} cases in ${((performance.now() - started) / 1000).toFixed(1)} s`)
  } catch (err) {
    failed = true
    console.log(`FAIL  ${name}: ${String(err.message).split('\n').slice(0, 6).join('\n      ')}`)
  }
}

// super-linear check: the same hostile pattern at 1 KB and 64 KB
const time = (fn, input) => {
  for (let i = 0; i < 3; i++) fn(input)
  const t = process.hrtime.bigint()
  for (let i = 0; i < 20; i++) fn(input)
  return Number(process.hrtime.bigint() - t)
}
const unit = 'Bearer realm="' + 'a\\"'.repeat(4) + '", x=y, , DPoP algs=ES256 '
const header = (n) => unit.repeat(Math.ceil(n / unit.length)).slice(0, n)
const claims = (n) => Buffer.from(JSON.stringify({ access_token: { acrs: { essential: true, value: 'x'.repeat(n) } } })).toString('base64url').slice(0, n)
for (const [name, fn, make] of [
  ['WWW-Authenticate parser', (h) => parseChallenges(h, { maxChallenges: 1e9 }), header],
  ['claims decoder', (c) => decodeClaimsParameter(c), claims],
]) {
  const ratio = time(fn, make(65_536)) / Math.max(1, time(fn, make(1_024)))
  const ok = ratio < 64 * 8
  if (!ok) failed = true
  console.log(`${ok ? 'ok  ' : 'FAIL'}  ${name}: 64 KB costs ${ratio.toFixed(0)}× 1 KB (linear would be 64×; bound 512×)`)
}
process.exit(failed ? 1 : 0)
