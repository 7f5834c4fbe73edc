import { connect, createServer, type AddressInfo, type Socket } from 'node:net'

export interface LatencyProxy {
  /** The proxy's loopback port (connect here instead of the target). */
  port: number
  /** Delays every chunk relayed from now on by `ms`, in each direction (order kept). */
  setLatency(ms: number): void
  /** Stalls: new connections are accepted, and nothing is relayed (either way) until `resume()`. */
  pause(): void
  /** Relays again, everything held while paused first. */
  resume(): void
  /** Destroys every relayed connection and stops listening. */
  close(): Promise<void>
}

/** One direction of one connection: chunks due at a time, written in order. */
class Lane {
  private queue: { due: number; chunk: Buffer | null }[] = []
  private timer: NodeJS.Timeout | undefined
  constructor(
    private readonly to: Socket,
    private readonly state: { latency: number; paused: boolean },
  ) {}
  push(chunk: Buffer | null): void {
    const last = this.queue.at(-1)?.due ?? 0
    this.queue.push({ due: Math.max(Date.now() + this.state.latency, last), chunk })
    this.pump()
  }
  pump(): void {
    if (this.timer || this.state.paused) return
    const head = this.queue[0]
    if (!head) return
    const wait = head.due - Date.now()
    if (wait > 0) {
      this.timer = setTimeout(() => {
        this.timer = undefined
        this.pump()
      }, wait)
      return
    }
    this.queue.shift()
    if (head.chunk === null) this.to.end()
    else if (!this.to.destroyed) this.to.write(head.chunk)
    this.pump()
  }
  stop(): void {
    clearTimeout(this.timer)
    this.timer = undefined
    this.queue = []
  }
}

/**
 * A TCP proxy on 127.0.0.1 in front of `targetPort`, for a slow or stalled network: each chunk is
 * relayed `latencyMs` late in each direction; `pause()` keeps accepting connections but relays
 * nothing, as a black-holed route or a frozen server would.
 */
export async function startLatencyProxy(targetPort: number, options: { latencyMs?: number; targetHost?: string } = {}): Promise<LatencyProxy> {
  const state = { latency: options.latencyMs ?? 0, paused: false }
  const lanes = new Set<Lane>()
  const sockets = new Set<Socket>()
  const server = createServer((client) => {
    const upstream = connect(targetPort, options.targetHost ?? '127.0.0.1')
    for (const s of [client, upstream]) {
      sockets.add(s)
      s.on('close', () => sockets.delete(s))
    }
    const up = new Lane(upstream, state)
    const down = new Lane(client, state)
    lanes.add(up).add(down)
    client.on('data', (d: Buffer) => up.push(d))
    upstream.on('data', (d: Buffer) => down.push(d))
    client.on('end', () => up.push(null))
    upstream.on('end', () => down.push(null))
    const drop = () => {
      up.stop()
      down.stop()
      lanes.delete(up)
      lanes.delete(down)
      client.destroy()
      upstream.destroy()
    }
    client.on('error', drop).on('close', drop)
    upstream.on('error', drop).on('close', drop)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    port: (server.address() as AddressInfo).port,
    setLatency(ms) {
      state.latency = ms
    },
    pause() {
      state.paused = true
    },
    resume() {
      state.paused = false
      for (const l of lanes) l.pump()
    },
    async close() {
      for (const l of lanes) l.stop()
      for (const s of sockets) s.destroy()
      await new Promise((resolve) => server.close(resolve))
    },
  }
}
