// A CI job: exchanges the job's identity token (a file the runner writes, or an env var) for a
// DPoP-bound API token (RFC 8693), deploys with it, and revokes everything at the end (RFC 7009).
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createBoundFetch, clientSecretBasic, createSession, fromEnv, fromFile, tokenExchange, generateDpopKey } from '@bound/fetch'
import { check, log, run, startServers } from '@example/support'

run(async () => {
  const kit = await startServers()
  // the CI runner gives the job an identity token (here minted by the testkit's workload issuer)
  const dir = await mkdtemp(join(tmpdir(), 'ci-job-'))
  const tokenFile = join(dir, 'job-token')
  await writeFile(tokenFile, await kit.workloadIdentity.mintToken({ sub: 'repo:acme/shop:ref:refs/heads/main' }))
  const subjectToken = process.env.CI_JOB_JWT ? fromEnv('CI_JOB_JWT') : fromFile(tokenFile)

  const client = kit.clients.secretBasic
  const session = createSession({
    issuer: kit.issuer,
    clientId: client.clientId,
    clientAuth: clientSecretBasic(client.clientSecret),
    grant: tokenExchange({ subjectToken, resource: kit.resource }),
    dpop: await generateDpopKey(),
    ca: kit.ca,
  })
  const fetch = createBoundFetch({ session, origins: [kit.api] })
  let token
  try {
    const deploy = await fetch(`${kit.api}/deployments`, { method: 'POST', body: JSON.stringify({ version: '1.2.3' }) })
    const body = await deploy.json()
    log(`deployed as ${body.sub} with a ${body.binding}-bound token`)
    check(deploy.ok, 'the deployment call should succeed')
    token = await session.token()
  } finally {
    await session.close({ revoke: true }) // the job's session ends with the job
    log('job finished: tokens revoked, DPoP key discarded')
  }
  // proof that the job's token is dead: the RS refuses it now
  const { createTransport } = await import('@bound/fetch')
  const probe = createTransport({ ca: kit.ca })
  const after = await probe.fetch(`${kit.api}/deployments`, { headers: { authorization: `DPoP ${token.value}`, dpop: await session.dpop.proof('GET', `${kit.api}/deployments`, { accessToken: token.value }) } })
  log(`the revoked token now gets HTTP ${after.status}`)
  check(after.status === 401, 'the revoked token must be refused')
  await probe.close()
  await kit.close()
  await rm(dir, { recursive: true, force: true })
  log('ok')
})
