import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

/**
 * Runs `use(origin)` against a plain HTTP server on 127.0.0.1 that answers with `handler`, and
 * closes it afterwards: for hostile or odd servers, whose misbehaviour is the point of a test.
 */
export async function withLoopbackServer<T>(handler: (req: IncomingMessage, res: ServerResponse) => void, use: (origin: string) => Promise<T>): Promise<T> {
  const server = createServer(handler)
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  try {
    return await use(`http://127.0.0.1:${(server.address() as AddressInfo).port}`)
  } finally {
    await new Promise((r) => server.close(r))
  }
}
