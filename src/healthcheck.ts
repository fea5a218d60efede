#!/usr/bin/env node
// A second process edge, for container health checks on images without a shell or curl (distroless): GET /health on
// the address sidelog listens on (SIDELOG_HOST, SIDELOG_PORT) and exit 0 on a 200, 1 otherwise. The engine starts it
// at every probe, inside the container's memory limit, so it loads as little as it can: node:http rather than fetch
// (undici), and the two settings it needs rather than the whole configuration schema (README, "Container image").
import { request } from 'node:http'
import { DEFAULT_HOST, DEFAULT_PORT, probeHost } from './listen-address.js'

const TIMEOUT_MS = 2000

/** A setting as sidelog reads it: an empty value counts as unset. */
const setting = (name: string): string | undefined => process.env[name] || undefined

function target(): { host: string; port: number } {
  const host = probeHost((setting('SIDELOG_HOST') ?? DEFAULT_HOST).trim())
  const text = setting('SIDELOG_PORT')?.trim()
  const port = text === undefined ? DEFAULT_PORT : Number(text)
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new Error(`SIDELOG_PORT=${JSON.stringify(text)} is not a port sidelog can be reached on`)
  }
  return { host: host.replace(/^\[(.*)\]$/, '$1'), port }
}

function check(): Promise<number> {
  const { host, port } = target()
  return new Promise((resolve, reject) => {
    const req = request({ host, port, path: '/health', timeout: TIMEOUT_MS }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => {
        body += chunk
      })
      res.on('end', () => {
        process.stdout.write(`${res.statusCode} ${body}\n`)
        resolve(res.statusCode === 200 ? 0 : 1)
      })
      res.on('error', reject)
    })
    req.on('timeout', () => req.destroy(new Error(`no answer from ${host}:${port} within ${TIMEOUT_MS} ms`)))
    req.on('error', reject)
    req.end()
  })
}

try {
  process.exitCode = await check()
} catch (err) {
  process.stderr.write(`sidelog healthcheck: ${err instanceof Error ? err.message : String(err)}\n`)
  process.exitCode = 1
}
