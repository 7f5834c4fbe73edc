import { spawn, type ChildProcess } from 'node:child_process'
import { accessSync, constants, mkdtempSync, rmSync } from 'node:fs'
import { connect, createServer, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'

/** Where `redis-server` is: `$REDIS_SERVER_BIN`, else the first on `PATH` (or Debian's /usr/bin, /usr/sbin). */
export function redisServerBinary(): string | undefined {
  const candidates = [process.env.REDIS_SERVER_BIN, ...(process.env.PATH ?? '').split(delimiter).filter(Boolean).map((d) => join(d, 'redis-server')), '/usr/bin/redis-server', '/usr/sbin/redis-server']
  for (const c of candidates) {
    if (!c) continue
    try {
      accessSync(c, constants.X_OK)
      return c
    } catch {
      // not there
    }
  }
  return undefined
}

export interface RedisServer {
  /** `redis://127.0.0.1:PORT` */
  url: string
  port: number
  /** Shuts it down (SIGTERM) and waits for it to exit. */
  stop(): Promise<void>
  /** Kills it (SIGKILL), as a crash or an OOM kill would, and waits for it to exit. */
  kill(): Promise<void>
  /** Starts it again on the same port (after stopping it if it still runs); empty, as it saves nothing. */
  restart(): Promise<void>
}

const running = new Set<ChildProcess>()
process.once('exit', () => {
  for (const c of running) c.kill('SIGKILL')
})

/** A free loopback port (bound and released: redis-server takes it right after). */
export async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  await new Promise((resolve) => server.close(resolve))
  return port
}

/** Resolves once `PING` on 127.0.0.1:port answers `+PONG`; false when it does not within `ms`. */
async function pingable(port: number, ms: number, exited: () => boolean): Promise<boolean> {
  const deadline = Date.now() + ms
  while (Date.now() < deadline && !exited()) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1')
      const done = (v: boolean) => {
        s.destroy()
        resolve(v)
      }
      s.setTimeout(500, () => done(false))
      s.once('error', () => done(false))
      s.once('connect', () => s.write('PING\r\n'))
      s.once('data', (d: Buffer) => done(d.toString('latin1').startsWith('+PONG')))
    })
    if (ok) return true
    await new Promise((r) => setTimeout(r, 20))
  }
  return false
}

/**
 * Starts a real `redis-server` on a free loopback port (or `port`), in memory only: no RDB, no AOF,
 * its working directory a fresh temporary folder, protected mode off (loopback, no password), no
 * config file. Resolves once it answers PING. The vitest globalSetup `test/setup/redis.ts` makes
 * sure the binary exists.
 */
export async function startRedisServer(options: { port?: number } = {}): Promise<RedisServer> {
  const bin = redisServerBinary()
  if (!bin) throw new Error('redis-server is missing: install Debian\'s redis-server package (apt-get install redis-server)')
  const port = options.port ?? (await freePort())
  const dir = mkdtempSync(join(tmpdir(), 'bound-redis-'))
  let child: ChildProcess | undefined
  let exit: Promise<void> = Promise.resolve()

  const start = async () => {
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'no', '--daemonize', 'no', '--dir', dir, '--logfile', '', '--loglevel', 'warning']
    const c = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    child = c
    running.add(c)
    let output = ''
    const collect = (d: Buffer) => {
      output = (output + d.toString('utf8')).slice(-4000)
    }
    c.stdout!.on('data', collect)
    c.stderr!.on('data', collect)
    let exited = false
    exit = new Promise<void>((resolve) => {
      c.once('exit', () => {
        exited = true
        running.delete(c)
        resolve()
      })
      c.once('error', (err) => {
        exited = true
        running.delete(c)
        output += String(err)
        resolve()
      })
    })
    if (!(await pingable(port, 10_000, () => exited))) {
      c.kill('SIGKILL')
      await exit
      throw new Error(`redis-server on port ${port} did not answer PING: ${output.trim().slice(-1000)}`)
    }
  }
  const end = async (signal: NodeJS.Signals) => {
    const c = child
    child = undefined
    if (c && c.exitCode === null && c.signalCode === null) c.kill(signal)
    await exit
  }

  await start()
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    async stop() {
      await end('SIGTERM')
      rmSync(dir, { recursive: true, force: true })
    },
    kill: () => end('SIGKILL'),
    async restart() {
      await end('SIGTERM')
      await start()
    },
  }
}
