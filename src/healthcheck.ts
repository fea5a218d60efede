#!/usr/bin/env node
// A second process edge, for container health checks on images without a shell or curl (distroless, Kubernetes exec
// probes): GET /health on the address sidelog listens on, from the same settings, and exit 0 on a 200, 1 otherwise.
import { loadConfig } from './config.js'
import { errorMessage } from './errors.js'
import { probeHost } from './listen-address.js'

const TIMEOUT_MS = 2000

async function check(): Promise<number> {
  const config = loadConfig(process.env)
  const url = `http://${probeHost(config.SIDELOG_HOST)}:${config.SIDELOG_PORT}/health`
  const res = await fetch(url, { signal: AbortSignal.timeout(TIMEOUT_MS) })
  const body = await res.text()
  process.stdout.write(`${res.status} ${body}\n`)
  return res.status === 200 ? 0 : 1
}

try {
  process.exitCode = await check()
} catch (err) {
  process.stderr.write(`sidelog healthcheck: ${errorMessage(err)}\n`)
  process.exitCode = 1
}
