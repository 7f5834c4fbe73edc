import type { Server } from 'node:https'
import type { AddressInfo, Server as NetServer } from 'node:net'

/** The only address the testkit ever listens on. */
export const LOOPBACK = '127.0.0.1'

/** Listens on 127.0.0.1 (port 0 = ephemeral) and resolves with the bound port. */
export function listen(server: NetServer, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (error: Error): void => {
      server.off('listening', onListening)
      reject(error)
    }
    const onListening = (): void => {
      server.off('error', onError)
      resolve((server.address() as AddressInfo).port)
    }
    server.once('error', onError)
    server.once('listening', onListening)
    server.listen({ port, host: LOOPBACK, exclusive: true })
  })
}

/** Stops accepting connections and destroys every open one (idle or not). */
export async function closeServer(server: Server): Promise<void> {
  if (!server.listening) return
  const closed = new Promise<void>((resolve) => {
    server.close(() => resolve())
  })
  server.closeAllConnections()
  await closed
}
