// Whole-file writes off the event loop: one worker thread opens the temp file, writes it, fsyncs it, renames it into
// place and fsyncs the directory in one go, so a batch costs the main thread one message instead of six turns of its
// loop. At saturation a turn answers every connection with a request ready (about 20 ms), so those six turns made a
// 1 MiB file take 100 ms for 1.7 ms of disk work, and capped the file sink far below what requests brought in.
// Same promises as atomic-file.ts: a reader never sees half a file, a failed write leaves no temp file, and an
// attempt aborted before the rename publishes nothing (the worker looks at a shared flag just before renaming).
import { Worker } from 'node:worker_threads'

/** The worker's code: CommonJS, evaluated as a string, so that it runs the same from dist/ and under the tests. */
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads')
const fs = require('node:fs')
parentPort.on('message', (m) => {
  let fd
  try {
    fd = fs.openSync(m.temp, 'wx')
    const data = new Uint8Array(m.data, m.offset, m.length)
    for (let at = 0; at < data.length; ) at += fs.writeSync(fd, data, at, data.length - at)
    fs.fsyncSync(fd)
    fs.closeSync(fd)
    fd = undefined
    if (Atomics.load(m.abort, 0) !== 0) {
      fs.unlinkSync(m.temp)
      parentPort.postMessage({ id: m.id, aborted: true, data: m.data }, [m.data])
      return
    }
    fs.renameSync(m.temp, m.path)
    const dir = fs.openSync(m.dir, 'r')
    try {
      fs.fsyncSync(dir)
    } finally {
      fs.closeSync(dir)
    }
    // The bytes go back to the main thread, to be reused if they were lent, or freed at once by its frequent
    // collections: this thread allocates almost nothing, collects seldom, and would hold every batch until it did.
    parentPort.postMessage({ id: m.id, data: m.data }, [m.data])
  } catch (err) {
    if (fd !== undefined) {
      try { fs.closeSync(fd) } catch {}
    }
    try { fs.unlinkSync(m.temp) } catch {}
    const back = m.data.byteLength > 0 ? [m.data] : []
    parentPort.postMessage({ id: m.id, error: { code: err.code, message: err.message }, data: m.data }, back)
  }
})
`

interface Reply {
  readonly id: number
  /** The bytes handed over, back (detached on the thread's side). */
  readonly data?: ArrayBuffer
  readonly aborted?: true
  readonly error?: { readonly code?: string; readonly message: string }
}

interface Waiting {
  resolve(): void
  reject(err: unknown): void
  readonly signal: AbortSignal | undefined
  /** Who lent the bytes, to have them back. */
  readonly back: ((bytes: ArrayBuffer) => void) | undefined
}

export class FileWorker {
  private worker: Worker | undefined
  private nextId = 0
  private readonly waiting = new Map<number, Waiting>()

  /**
   * Writes `data` to `temp`, fsyncs it, renames it to `path` and fsyncs `path`'s directory `dir`. Rejects with the
   * file system's error (its `code` kept, for classifyFsError), or with `signal`'s reason if it aborted before the
   * rename (nothing published then). `data` may be detached by the call: it is handed to the worker, not copied.
   */
  write(temp: string, path: string, dir: string, data: Buffer, signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted()
    // A batch's Buffer owns its memory (allocUnsafe of more than 4 KiB): hand it over. A small one is a slice of
    // Node's shared pool, which must not be detached: copy it.
    const owned = data.byteOffset === 0 && data.byteLength === data.buffer.byteLength
    const payload = owned
      ? (data.buffer as ArrayBuffer)
      : data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength)
    return this.send(temp, path, dir, payload as ArrayBuffer, 0, data.byteLength, undefined, signal)
  }

  /**
   * As write, for `length` bytes from `offset` of `lent`, memory the caller owns whole and lends: detached here, and
   * given to `back` once the thread is done with it (written, failed or aborted). Lost with a thread that dies.
   * Nothing is lent when `signal` has already aborted (it throws first).
   */
  writeLent(
    temp: string,
    path: string,
    dir: string,
    lent: ArrayBuffer,
    offset: number,
    length: number,
    back: (bytes: ArrayBuffer) => void,
    signal?: AbortSignal,
  ): Promise<void> {
    signal?.throwIfAborted()
    return this.send(temp, path, dir, lent, offset, length, back, signal)
  }

  private send(
    temp: string,
    path: string,
    dir: string,
    payload: ArrayBuffer,
    offset: number,
    length: number,
    back: ((bytes: ArrayBuffer) => void) | undefined,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const worker = this.started()
    const id = this.nextId++
    const abort = new Int32Array(new SharedArrayBuffer(4))
    const onAbort = () => Atomics.store(abort, 0, 1)
    signal?.addEventListener('abort', onAbort, { once: true })
    const done = new Promise<void>((resolve, reject) => {
      this.waiting.set(id, { resolve, reject, signal, back })
    }).finally(() => signal?.removeEventListener('abort', onAbort))
    // While a write is in flight the thread keeps the process alive (a drain may be waiting on nothing else).
    if (this.waiting.size === 1) worker.ref()
    worker.postMessage({ id, temp, path, dir, data: payload, offset, length, abort }, [payload])
    return done
  }

  /** Stops the worker; writes still waiting fail. */
  async close(): Promise<void> {
    const worker = this.worker
    this.worker = undefined
    if (worker) await worker.terminate()
    this.failAll(new Error('the file writer was closed'))
  }

  private started(): Worker {
    if (this.worker) return this.worker
    // A small isolate: the thread runs a dozen lines and keeps nothing.
    const worker = new Worker(WORKER_SOURCE, {
      eval: true,
      resourceLimits: { maxYoungGenerationSizeMb: 1, maxOldGenerationSizeMb: 16, codeRangeSizeMb: 4 },
    })
    // Idle, it must not keep the process alive on its own.
    worker.unref()
    worker.on('message', (reply: Reply) => this.settle(reply))
    worker.on('error', (err) => this.crashed(worker, err))
    worker.on('exit', (code) => this.crashed(worker, new Error(`the file writer thread exited (${code})`)))
    this.worker = worker
    return worker
  }

  private settle(reply: Reply): void {
    const waiting = this.waiting.get(reply.id)
    if (!waiting) return
    this.waiting.delete(reply.id)
    if (this.waiting.size === 0) this.worker?.unref()
    if (reply.data !== undefined && reply.data.byteLength > 0) waiting.back?.(reply.data)
    if (reply.aborted) waiting.reject(waiting.signal?.reason ?? new Error('aborted'))
    else if (reply.error)
      waiting.reject(Object.assign(new Error(reply.error.message), { code: reply.error.code }))
    else waiting.resolve()
  }

  /** A worker that died takes its writes with it: they fail (and are retried), and the next write starts a new one. */
  private crashed(worker: Worker, err: unknown): void {
    if (this.worker !== worker) return
    this.worker = undefined
    this.failAll(err)
  }

  private failAll(err: unknown): void {
    for (const waiting of this.waiting.values()) waiting.reject(err)
    this.waiting.clear()
  }
}
