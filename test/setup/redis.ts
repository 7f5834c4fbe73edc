// vitest globalSetup: the tests of @bound/redis and the token-store contract run a real
// redis-server (test/support/redis-server.ts). Where the binary is missing (a fresh CI machine),
// install Debian's package when this runs as root with apt-get; else fail with one clear line.
// Where it exists, this is one file check.
import { spawnSync } from 'node:child_process'
import { redisServerBinary } from '../support/redis-server.js'

const MISSING = "redis-server is missing and could not be installed: install Debian's redis-server package (apt-get install redis-server)"

function aptGet(args: string[]): boolean {
  // RUNLEVEL=1: the package's maintainer scripts do not start a redis-server service on 6379
  const run = spawnSync('apt-get', args, { stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive', RUNLEVEL: '1' }, timeout: 300_000 })
  return run.status === 0
}

export function setup(): void {
  if (redisServerBinary()) return
  const root = process.getuid?.() === 0
  const hasApt = spawnSync('apt-get', ['--version'], { stdio: 'ignore' }).status === 0
  if (root && hasApt) {
    console.log('redis-server is missing: installing Debian\'s redis-server package (apt-get install -y redis-server)')
    const install = ['install', '-y', '--no-install-recommends', 'redis-server']
    if (!aptGet(install)) {
      if (aptGet(['update'])) aptGet(install)
    }
    if (redisServerBinary()) return
  }
  throw new Error(MISSING)
}
