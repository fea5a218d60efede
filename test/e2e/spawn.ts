// Starts the built sidelog (dist/main.js) as a real process on an ephemeral port and follows its JSON logs.
import { type ChildProcess, spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'

export const MAIN = fileURLToPath(new URL('../../dist/main.js', import.meta.url))

export interface Exit {
  code: number | null
  signal: NodeJS.Signals | null
}

export interface SidelogProcess {
  readonly child: ChildProcess
  readonly url: string
  /** Every JSON line sidelog wrote to stderr so far. */
  readonly logs: Record<string, unknown>[]
  readonly exited: Promise<Exit>
}

export function assertBuilt(): void {
  if (!existsSync(MAIN))
    throw new Error(`${MAIN} is missing: run \`npm run build\` first (\`npm test\` does)`)
}

/**
 * Runs `node dist/main.js` with `env` (and SIDELOG_PORT=0), resolving once it logs that it listens, which it does at
 * LOG_LEVEL info or below. Logs are pino's plain JSON (`msg`) unless `env` sets LOG_FORMAT: some tests set K_SERVICE,
 * which would otherwise switch them to Cloud Logging's format (`message`).
 */
export function spawnSidelog(
  env: Record<string, string>,
  nodeArgs: readonly string[] = [],
): Promise<SidelogProcess> {
  assertBuilt()
  // Node flags go before the script (some, such as --cpu-prof, are refused in NODE_OPTIONS).
  const child = spawn(process.execPath, [...nodeArgs, MAIN], {
    env: { PATH: process.env.PATH, SIDELOG_PORT: '0', LOG_FORMAT: 'json', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const logs: Record<string, unknown>[] = []
  const exited = new Promise<Exit>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  )
  child.stdout?.resume()
  return new Promise((resolve, reject) => {
    createInterface({ input: child.stderr as NodeJS.ReadableStream }).on('line', (line) => {
      let record: Record<string, unknown>
      try {
        record = JSON.parse(line)
      } catch {
        record = { raw: line }
      }
      logs.push(record)
      const message = record.msg ?? record.message
      if (typeof record.port === 'number' && String(message).startsWith('listening')) {
        resolve({ child, url: `http://127.0.0.1:${record.port}`, logs, exited })
      }
    })
    void exited.then((exit) =>
      reject(new Error(`sidelog exited before listening (${JSON.stringify(exit)}): ${JSON.stringify(logs)}`)),
    )
  })
}

/** POSTs `entries` to a running sidelog as one NDJSON body. */
export function postNdjson(url: string, entries: readonly object[]): Promise<Response> {
  return fetch(`${url}/logs`, {
    method: 'POST',
    body: entries.map((e) => JSON.stringify(e)).join('\n'),
    headers: { 'content-type': 'application/x-ndjson' },
  })
}

/**
 * `clients` concurrent clients POST `total` entries between them, tagged `c<client>-<n>` (plus `extra` fields), in
 * NDJSON bodies of `perRequest`; throws unless every answer is 202.
 */
export async function sendTaggedEntries(
  url: string,
  {
    clients,
    total,
    perRequest,
    extra = {},
  }: { clients: number; total: number; perRequest: number; extra?: object },
): Promise<void> {
  await Promise.all(
    Array.from({ length: clients }, async (_, c) => {
      for (let sent = 0; sent < total / clients; sent += perRequest) {
        const entries = Array.from({ length: perRequest }, (_, i) => ({ tag: `c${c}-${sent + i}`, ...extra }))
        const res = await postNdjson(url, entries)
        if (res.status !== 202) throw new Error(`expected 202, got ${res.status}: ${await res.text()}`)
      }
    }),
  )
}
