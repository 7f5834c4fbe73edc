#!/usr/bin/env node
/**
 * Runs the MCP authorization conformance suite's workload and enterprise-managed authorization scenarios against Bound's MCP client
 * (test/conformance/mcp-client.ts), one scenario at a time, and prints checks passed / total per
 * scenario. Exits non-zero if any check fails that is not in test/conformance/expected-failures.yml
 * (or a listed one passes: a stale baseline), or if the client did not behave as the scenario
 * needs (finish cleanly, or — for the mismatch scenarios — refuse before earning a token).
 *
 *   npm run conformance                            # every scenario below
 *   node scripts/conformance.mjs auth/dpop-nonce   # some of them
 *
 * The runner needs Node 22 (fs.globSync); it is started with `npx -p node@22`. The client runs on
 * this Node (the project's, 20): its command is this process's own executable.
 */
import { spawn } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const RUNNER = '@modelcontextprotocol/conformance@0.2.0-alpha.12'
const SCENARIOS = [
  'auth/client-credentials-basic',
  'auth/client-credentials-jwt',
  'auth/wif-jwt-bearer',
  'auth/dpop',
  'auth/dpop-nonce',
  'auth/metadata-issuer-mismatch',
  'auth/resource-mismatch',
  'auth/enterprise-managed-authorization',
]
/** Scenarios whose correct outcome is a refusal: the client must exit non-zero without requesting a token. */
const REFUSE = new Set(['auth/metadata-issuer-mismatch', 'auth/resource-mismatch'])
/** Of those, the ones that must refuse before contacting the authorization server at all. */
const REFUSE_BEFORE_AS = new Set(['auth/resource-mismatch'])
const CLIENT_TIMEOUT_MS = 30_000
/** The first run downloads node@22 and the runner into the npx cache. */
const SCENARIO_TIMEOUT_MS = 240_000

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const baselinePath = join(root, 'test/conformance/expected-failures.yml')
const clientPath = 'test/conformance/mcp-client.ts'

const wanted = process.argv.slice(2)
const unknown = wanted.filter((s) => !SCENARIOS.includes(s))
if (unknown.length > 0) {
  console.error(`Unknown scenario(s): ${unknown.join(', ')}\nKnown: ${SCENARIOS.join(', ')}`)
  process.exit(2)
}
const scenarios = wanted.length > 0 ? wanted : SCENARIOS

if (/\s/.test(process.execPath)) {
  // the runner splits --command on spaces
  console.error(`The Node executable path has a space (${process.execPath}); the conformance runner cannot run it`)
  process.exit(2)
}
const clientCommand = `${process.execPath} --import tsx ${clientPath}`

/** `client:` entries of the baseline, as `scenario:check-id` or `scenario` (the runner validates the file itself). */
function readBaseline() {
  const entries = new Set()
  let section
  for (const raw of readFileSync(baselinePath, 'utf8').split('\n')) {
    const line = raw.replace(/#.*$/, '').trimEnd()
    if (!line.trim()) continue
    const key = /^(\w+):\s*$/.exec(line)
    if (key) {
      section = key[1]
      continue
    }
    const item = /^\s+-\s+(\S+)$/.exec(line)
    if (item && section === 'client') entries.add(item[1])
  }
  return entries
}

function run(args, timeoutMs) {
  return new Promise((resolvePromise) => {
    const child = spawn('npx', args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], detached: true, env: { ...process.env, FORCE_COLOR: '0', NO_COLOR: '1' } })
    let out = ''
    let timedOut = false
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => (out += d))
    const timer = setTimeout(() => {
      timedOut = true
      try {
        process.kill(-child.pid, 'SIGTERM') // the process group this script started
      } catch {}
    }, timeoutMs)
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolvePromise({ code: code ?? (signal ? 128 : 1), out, timedOut })
    })
  })
}

const rank = { FAILURE: 3, WARNING: 2, SUCCESS: 1 }
/** One entry per check id, the worst status winning (as the runner's baseline comparison does); INFO dropped. */
function distinctChecks(checks) {
  const byId = new Map()
  for (const c of checks) {
    if (c.status === 'INFO') continue
    const held = byId.get(c.id)
    if (!held || (rank[c.status] ?? 0) >= (rank[held.status] ?? 0)) byId.set(c.id, c)
  }
  return [...byId.values()]
}

const headerOf = (jwt) => {
  try {
    return JSON.parse(Buffer.from(String(jwt).split('.')[0], 'base64url').toString('utf8'))
  } catch {
    return undefined
  }
}
const claimsOf = (jwt) => {
  try {
    return JSON.parse(Buffer.from(String(jwt).split('.')[1], 'base64url').toString('utf8'))
  } catch {
    return undefined
  }
}

/**
 * What the suite does not score in these scenarios but Bound must get right, read from the
 * exchanges the runner logs (INFO entries of checks.json): the PRM `resource` sent verbatim, a
 * fresh client-assertion `jti` per request with `aud` = the issuer, no JWT-bearer request after a
 * refusal, and the DPoP token requests (the AS answers 200 `token_type: DPoP` only to a valid
 * proof; a nonce retry after its 400 `use_dpop_nonce`). Returns [problems, facts verified].
 */
function wireChecks(scenario, checks) {
  const problems = []
  const facts = []
  const prm = checks.find((c) => c.id === 'outgoing-response' && c.details?.method === 'GET' && /oauth-protected-resource/.test(c.details?.path ?? '') && c.details?.statusCode === 200)?.details.body
  const asMeta = checks.find((c) => c.id === 'outgoing-auth-response' && c.details?.method === 'GET' && /\.well-known\//.test(c.details?.path ?? '') && c.details?.statusCode === 200)?.details.body
  const requests = checks.filter((c) => c.id === 'incoming-auth-request' && c.details?.method === 'POST' && c.details?.path === '/token').map((c) => c.details.body ?? {})
  const responses = checks.filter((c) => c.id === 'outgoing-auth-response' && c.details?.method === 'POST' && c.details?.path === '/token').map((c) => c.details)
  if (requests.length === 0) return [problems, facts]

  const resources = requests.map((b) => b.resource)
  if (prm?.resource === undefined) problems.push('wire: a token request without the protected resource metadata being served first')
  else if (resources.every((r) => r === prm.resource)) facts.push(`resource sent verbatim (${JSON.stringify(prm.resource)})`)
  else problems.push(`wire: token request resource ${JSON.stringify(resources)} is not the PRM resource ${JSON.stringify(prm.resource)} verbatim`)

  const assertions = requests.map((b) => b.client_assertion).filter(Boolean).map(claimsOf)
  if (assertions.length > 0) {
    const jtis = assertions.map((a) => a?.jti)
    if (new Set(jtis).size !== jtis.length || jtis.some((j) => typeof j !== 'string')) problems.push(`wire: client assertion jti not fresh per request (${jtis.join(', ')})`)
    else facts.push(`fresh client-assertion jti on each of ${jtis.length} request(s)`)
    const auds = assertions.map((a) => a?.aud)
    if (asMeta?.issuer !== undefined && auds.every((a) => a === asMeta.issuer)) facts.push(`assertion aud = issuer (${asMeta.issuer})`)
    else problems.push(`wire: client assertion aud ${JSON.stringify(auds)} is not the issuer ${JSON.stringify(asMeta?.issuer)}`)
  }

  // enterprise-managed authorization: what was redeemed is an ID-JAG for this AS, this client and this resource
  const idJags = requests.map((b) => b.assertion).filter((a) => typeof a === 'string' && headerOf(a)?.typ === 'oauth-id-jag+jwt')
  for (const idJag of idJags) {
    const claims = claimsOf(idJag)
    const aud = Array.isArray(claims?.aud) ? claims.aud[0] : claims?.aud
    if (asMeta?.issuer !== undefined && aud !== asMeta.issuer) problems.push(`wire: ID-JAG aud ${JSON.stringify(claims?.aud)} is not the AS issuer ${JSON.stringify(asMeta.issuer)}`)
    else if (prm?.resource !== undefined && claims?.resource !== prm.resource) problems.push(`wire: ID-JAG resource ${JSON.stringify(claims?.resource)} is not the PRM resource ${JSON.stringify(prm.resource)}`)
    else facts.push(`ID-JAG (typ oauth-id-jag+jwt) redeemed: aud = the AS issuer, resource = the PRM resource, client_id ${JSON.stringify(claims?.client_id)}`)
  }

  if (requests.some((b) => b.grant_type === 'urn:ietf:params:oauth:grant-type:jwt-bearer')) {
    const refused = responses.findIndex((r) => r.statusCode !== 200)
    if (refused !== -1 && requests.length > refused + 1) problems.push(`wire: ${requests.length - refused - 1} token request(s) after the JWT-bearer refusal (retry or grant fallback)`)
    else facts.push(`JWT bearer: ${requests.length} token request(s), none after a refusal`)
  }

  if (scenario.startsWith('auth/dpop')) {
    const last = responses.at(-1)
    if (last?.statusCode === 200 && String(last.body?.token_type).toLowerCase() === 'dpop') facts.push('the AS accepted the token-request DPoP proof (200, token_type DPoP)')
    else problems.push(`wire: the last token response is ${last?.statusCode} ${JSON.stringify(last?.body?.error ?? last?.body?.token_type)}, not a DPoP token`)
    if (scenario === 'auth/dpop-nonce') {
      const challenged = responses.findIndex((r) => r.statusCode === 400 && r.body?.error === 'use_dpop_nonce')
      if (challenged !== -1 && responses[challenged + 1]?.statusCode === 200 && responses.length === challenged + 2) facts.push('AS use_dpop_nonce (400 JSON) answered by one retry')
      else problems.push(`wire: AS nonce handling: token responses ${responses.map((r) => r.statusCode).join(', ')} (want 400 use_dpop_nonce, then 200)`)
    }
  }
  return [problems, facts]
}

function findChecks(dir) {
  if (!existsSync(dir)) return undefined
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile() && entry.name === 'checks.json') return join(entry.parentPath ?? entry.path, entry.name)
  }
  return undefined
}

const baseline = readBaseline()
const runDir = join(root, '.tmp/conformance', new Date().toISOString().replace(/[:.]/g, '-'))
mkdirSync(runDir, { recursive: true })
console.log(`MCP conformance (${RUNNER}), client: node ${process.version} --import tsx ${clientPath}`)
console.log(`results: ${relative(root, runDir)}\n`)

const rows = []
let failed = false
for (const scenario of scenarios) {
  const outDir = join(runDir, scenario.replace(/\//g, '_'))
  mkdirSync(outDir, { recursive: true })
  const args = ['-y', '-p', 'node@22', '-p', RUNNER, '--', 'conformance', 'client', '--command', clientCommand, '--scenario', scenario, '--expected-failures', baselinePath, '--timeout', String(CLIENT_TIMEOUT_MS), '-o', outDir]
  const started = Date.now()
  const res = await run(args, SCENARIO_TIMEOUT_MS)
  writeFileSync(join(outDir, 'runner.log'), res.out)
  const problems = []
  const checksFile = findChecks(outDir)
  let checks = []
  if (checksFile) checks = JSON.parse(readFileSync(checksFile, 'utf8'))
  else problems.push(res.timedOut ? `the runner did not finish within ${SCENARIO_TIMEOUT_MS / 1000} s` : 'the runner wrote no checks.json')
  const distinct = distinctChecks(checks)
  const passed = distinct.filter((c) => c.status === 'SUCCESS')
  const bad = distinct.filter((c) => c.status === 'FAILURE' || c.status === 'WARNING')
  const expected = bad.filter((c) => baseline.has(`${scenario}:${c.id}`) || baseline.has(scenario))
  const unexpected = bad.filter((c) => !expected.includes(c))
  const stale = [...baseline].filter((e) => e.startsWith(`${scenario}:`) && passed.some((c) => `${scenario}:${c.id}` === e))
  for (const c of unexpected) problems.push(`${c.id} ${c.status}: ${(c.errorMessage ?? c.description ?? '').split('\n')[0]}`)
  for (const e of stale) problems.push(`baseline entry ${e} now passes: remove it`)

  // What the client itself did (the runner reports its exit in the log, not in checks.json).
  const exited = /Client exited with code (-?\d+)/.exec(res.out)
  const clientExit = /Client timed out/.test(res.out) ? 'timeout' : exited ? Number(exited[1]) : 0
  const ids = new Set(checks.map((c) => c.id))
  if (REFUSE.has(scenario)) {
    if (clientExit === 0) problems.push('the client finished instead of refusing')
    if (ids.has('token-request')) problems.push('the client requested a token despite the mismatch')
    if (REFUSE_BEFORE_AS.has(scenario) && ids.has('authorization-server-metadata')) problems.push('the client contacted the authorization server named by mismatched metadata')
  } else if (clientExit !== 0) {
    problems.push(`the client exited with ${clientExit}`)
  }
  if (clientExit === 'timeout') problems.push('the client timed out')
  const [wireProblems, facts] = wireChecks(scenario, checks)
  problems.push(...wireProblems)
  if (res.code !== 0 && unexpected.length === 0 && stale.length === 0 && checksFile) problems.push(`the runner exited with ${res.code} (see runner.log)`)

  const row = { scenario, passed: passed.length, total: distinct.length, expected: expected.map((c) => c.id), problems, facts, clientExit, seconds: ((Date.now() - started) / 1000).toFixed(1) }
  rows.push(row)
  if (problems.length > 0) failed = true
  const mark = problems.length === 0 ? 'ok  ' : 'FAIL'
  console.log(`${mark} ${scenario.padEnd(40)} ${String(row.passed).padStart(2)}/${String(row.total).padEnd(2)} checks passed${expected.length ? `, ${expected.length} baselined (${row.expected.join(', ')})` : ''}; client exit ${clientExit}; ${row.seconds} s`)
  for (const p of problems) console.log(`       - ${p}`)
  if (facts.length > 0) console.log(`       wire: ${facts.join('; ')}`)
}

writeFileSync(join(runDir, 'summary.json'), JSON.stringify(rows, null, 2))
const totalPassed = rows.reduce((n, r) => n + r.passed, 0)
const total = rows.reduce((n, r) => n + r.total, 0)
console.log(`\n${totalPassed}/${total} checks passed over ${rows.length} scenario(s); ${rows.reduce((n, r) => n + r.expected.length, 0)} baselined (authorization-code-only scoring)`)
console.log(failed ? 'FAILED: see the problems above (logs and checks.json under the results folder)' : 'PASSED: every failure is in the baseline')
process.exit(failed ? 1 : 0)
