// SPIFFE-style short-lived certificates on disk, rotated by a side process while the workload keeps
// calling its API with certificate-bound tokens: no call fails, and each call after a rotation
// carries a token bound to the new certificate.
import { fork } from 'node:child_process'
import { copyFile, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createBoundFetch, clientCredentials, createSession, tlsClientAuth, loadClientCertificate } from '@bound/fetch'
import { check, log, run, startServers } from '@example/support'

run(async () => {
  const kit = await startServers()
  const dir = await mkdtemp(join(tmpdir(), 'svid-'))
  const certFile = join(dir, 'svid.pem')
  const keyFile = join(dir, 'svid_key.pem')
  await copyFile(kit.pki.workload.certFile, certFile)
  await copyFile(kit.pki.workload.keyFile, keyFile)

  const certificate = await loadClientCertificate({ certFile, keyFile, watch: true })
  log(`workload identity ${certificate.current().spiffeId}`)
  const session = createSession({
    issuer: kit.issuer,
    clientId: kit.clients.tlsClientAuth.clientId,
    clientAuth: tlsClientAuth(),
    grant: clientCredentials({ resource: kit.resource }),
    clientCertificate: certificate,
    ca: kit.ca,
  })
  session.events.on('certificate.rotated', (e) => log(`certificate rotated → x5t#S256 ${e.x5t.slice(0, 12)}…, ${e.tokensDropped} old token dropped`))
  const fetch = createBoundFetch({ session, origins: [kit.api] })

  const rotator = fork(new URL('./rotator.mjs', import.meta.url), [certFile, keyFile, '1500',
    kit.pki.workloadRotated.certFile, kit.pki.workloadRotated.keyFile, kit.pki.workload.certFile, kit.pki.workload.keyFile])
  let failures = 0
  const seen = new Set()
  const end = Date.now() + 5_000
  let calls = 0
  while (Date.now() < end) {
    const res = await fetch(`${kit.api}/orders`)
    const body = await res.json()
    if (res.status !== 200) failures++
    else seen.add(body.x5t)
    calls++
    await new Promise((r) => setTimeout(r, 20))
  }
  rotator.disconnect()
  log(`${calls} calls during the rotations, ${failures} failed, tokens bound to ${seen.size} certificates`)
  check(failures === 0, 'no call may fail during a rotation')
  check(seen.size === 2, 'both certificates should have been used')
  certificate.close()
  await session.close()
  await kit.close()
  await rm(dir, { recursive: true, force: true })
  log('ok')
})
