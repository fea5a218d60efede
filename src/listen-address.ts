// Where sidelog listens by default, and where a client on the same host reaches a listener: a wildcard listen address
// becomes the loopback of its family. Kept free of imports: the healthcheck reads it without loading the config schema.

/** SIDELOG_HOST's default: only the app beside sidelog reaches it. */
export const DEFAULT_HOST = '127.0.0.1'
/** SIDELOG_PORT's default. */
export const DEFAULT_PORT = 9090

/** A wildcard listen address is reached on the loopback of the same family; an IPv6 literal gets brackets. */
export function probeHost(listenHost: string): string {
  if (listenHost === '0.0.0.0') return '127.0.0.1'
  if (listenHost === '::') return '[::1]'
  return listenHost.includes(':') ? `[${listenHost}]` : listenHost
}
