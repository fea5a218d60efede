// A protocol-level fake of the Cloud Storage JSON API subset @google-cloud/storage uses: bucket get/insert,
// multipart and resumable uploads (honouring ifGenerationMatch), list, media download, delete. Faults (from
// FakeGoogleServer) target uploads, only the requests carrying an object's data, or metadata calls.
import { createHash } from 'node:crypto'
import type { ServerResponse } from 'node:http'
import { crc32c } from '@node-rs/crc32'
import { type Exchange, FakeGoogleServer, type RecordedRequest, type Send } from './fake-server.js'

export type { Fault, RecordedRequest } from './fake-server.js'

export interface StoredObject {
  readonly bucket: string
  readonly name: string
  readonly data: Buffer
  readonly generation: number
  readonly contentType: string | undefined
  readonly contentEncoding: string | undefined
}

/**
 * Which requests a fault applies to: any upload request (a resumable session's start included), only the requests
 * that carry an object's data (a multipart POST or a resumable PUT), bucket and object metadata calls, or any.
 */
export type FaultTarget = 'upload' | 'upload-data' | 'metadata'

interface ResumableSession {
  readonly bucket: string
  readonly name: string
  readonly metadata: Record<string, unknown>
  readonly ifGenerationMatch: string | null
}

export interface FakeGcsOptions {
  /**
   * Whether objects carry an md5Hash (default true). Cloud Storage leaves it out for composite objects, so clients
   * must do without it; sidelog never reads it. The bench's fake leaves it out: hashing every upload's bytes with MD5
   * took a third of the fake's CPU, on the two cores sidelog is measured on.
   */
  readonly md5Hash?: boolean
}

export class FakeGcsServer extends FakeGoogleServer<FaultTarget> {
  readonly buckets = new Set<string>()
  private readonly md5Hash: boolean
  protected readonly defaultTarget = 'upload'
  private readonly objects = new Map<string, StoredObject>()
  private readonly sessions = new Map<string, ResumableSession>()
  private nextGeneration = 1_700_000_000_000_000
  private nextSession = 1

  constructor(options: FakeGcsOptions = {}) {
    super()
    this.md5Hash = options.md5Hash ?? true
  }

  /** Objects of a bucket, by name. */
  list(bucket: string): StoredObject[] {
    return [...this.objects.values()]
      .filter((o) => o.bucket === bucket)
      .sort((a, b) => a.name.localeCompare(b.name))
  }

  uploads(): RecordedRequest[] {
    return this.requests.filter((r) => r.path.startsWith('/upload/'))
  }

  protected isTarget(target: FaultTarget, { method, path, query }: RecordedRequest): boolean {
    const upload = path.startsWith('/upload/')
    if (target === 'upload') return upload
    if (target === 'upload-data')
      return upload && (query.get('uploadType') === 'multipart' || method === 'PUT')
    return !upload
  }

  /** Dispatches one request; every branch answers (the helpers return true so branches can `return` them). */
  protected route(exchange: Exchange): boolean {
    const { method, path, query, body, res, send } = exchange
    const bucketPath = /^\/storage\/v1\/b\/([^/]+)$/.exec(path)
    const listPath = /^\/storage\/v1\/b\/([^/]+)\/o$/.exec(path)
    const objectPath = /^\/storage\/v1\/b\/([^/]+)\/o\/(.+)$/.exec(path)
    const uploadPath = /^\/upload\/storage\/v1\/b\/([^/]+)\/o$/.exec(path)

    if (method === 'POST' && path === '/storage/v1/b') {
      const { name } = JSON.parse(body.toString()) as { name: string }
      if (this.buckets.has(name)) return this.sendError(res, 409, 'bucket exists', 'conflict')
      this.buckets.add(name)
      return send(200, bucketResource(name))
    }
    if (bucketPath && method === 'GET') {
      const bucket = bucketPath[1] as string
      if (!this.buckets.has(bucket)) return this.sendError(res, 404, 'The specified bucket does not exist.')
      return send(200, bucketResource(bucket))
    }
    if (listPath && method === 'GET') {
      const prefix = query.get('prefix') ?? ''
      const items = this.list(listPath[1] as string).filter((o) => o.name.startsWith(prefix))
      return send(200, { kind: 'storage#objects', items: items.map((o) => this.objectResource(o)) })
    }
    if (objectPath) return this.objectRequest(exchange, `${objectPath[1]}/${objectPath[2]}`)
    if (uploadPath) return this.uploadRequest(exchange, uploadPath[1] as string)
    return this.sendError(res, 404, `fake GCS does not implement ${method} ${path}`)
  }

  private objectRequest({ method, query, res, send }: Exchange, key: string): boolean {
    const object = this.objects.get(key)
    if (!object) return this.sendError(res, 404, 'No such object.')
    if (method === 'DELETE') {
      this.objects.delete(key)
      return send(204, Buffer.alloc(0))
    }
    if (query.get('alt') === 'media') {
      return send(200, object.data, {
        'content-type': object.contentType ?? 'application/octet-stream',
        ...(object.contentEncoding ? { 'content-encoding': object.contentEncoding } : {}),
      })
    }
    return send(200, this.objectResource(object))
  }

  private uploadRequest({ method, query, headers, body, res, send }: Exchange, bucket: string): boolean {
    if (!this.buckets.has(bucket)) return this.sendError(res, 404, 'The specified bucket does not exist.')
    const uploadType = query.get('uploadType')
    if (method === 'POST' && uploadType === 'multipart') {
      const [metaPart, dataPart] = parseMultipart(body, String(headers['content-type']))
      const metadata = JSON.parse(metaPart?.body.toString() ?? '{}') as Record<string, unknown>
      const name = query.get('name') ?? (metadata.name as string)
      const contentType = metadata.contentType ?? dataPart?.contentType
      const data = dataPart?.body ?? Buffer.alloc(0)
      return this.store(
        res,
        send,
        bucket,
        name,
        data,
        { ...metadata, contentType },
        query.get('ifGenerationMatch'),
      )
    }
    if (method === 'POST' && uploadType === 'resumable') {
      // Preconditions are checked when the session starts and again when the data arrives.
      if (this.preconditionFails(bucket, query.get('name') ?? '', query.get('ifGenerationMatch'))) {
        return this.sendError(res, 412, 'At least one of the pre-conditions you specified did not hold.')
      }
      const id = String(this.nextSession++)
      const metadata = body.length > 0 ? (JSON.parse(body.toString()) as Record<string, unknown>) : {}
      const contentType = headers['x-upload-content-type']
      this.sessions.set(id, {
        bucket,
        name: query.get('name') ?? (metadata.name as string),
        metadata: { ...metadata, ...(contentType ? { contentType } : {}) },
        ifGenerationMatch: query.get('ifGenerationMatch'),
      })
      const location = `${this.url}/upload/storage/v1/b/${bucket}/o?uploadType=resumable&upload_id=${id}`
      return send(200, {}, { location })
    }
    const session = method === 'PUT' ? this.sessions.get(query.get('upload_id') ?? '') : undefined
    if (!session) return this.sendError(res, 404, `fake GCS has no ${method} upload like this`)
    return this.store(res, send, bucket, session.name, body, session.metadata, session.ifGenerationMatch)
  }

  private store(
    res: ServerResponse,
    send: Send,
    bucket: string,
    name: string,
    data: Buffer,
    metadata: Record<string, unknown>,
    ifGenerationMatch: string | null,
  ): boolean {
    const key = `${bucket}/${name}`
    if (this.preconditionFails(bucket, name, ifGenerationMatch)) {
      return this.sendError(res, 412, 'At least one of the pre-conditions you specified did not hold.')
    }
    if (this.damageNext > 0) {
      // Damaged on the way: the object holds other bytes than were sent, and its hashes are those of what it holds.
      this.damageNext--
      data = Buffer.from(data)
      data[data.length - 1] = (data.at(-1) ?? 0) ^ 0x20
    }
    // As Cloud Storage does, a hash given with the object is checked before the object is created. Each hash is made
    // once per object: the check's is the one the object's resource gives.
    const hashed: Hashes = {}
    const computed = {
      CRC32C: () => (hashed.crc32c ??= crc32cOf(data)),
      'MD5 hash': () => (hashed.md5Hash ??= md5Of(data)),
    }
    const given = { CRC32C: metadata.crc32c, 'MD5 hash': metadata.md5Hash }
    for (const hash of ['CRC32C', 'MD5 hash'] as const) {
      const value = given[hash]
      if (typeof value === 'string' && value !== computed[hash]()) {
        return this.sendError(
          res,
          400,
          `Provided ${hash} "${value}" doesn't match calculated ${hash} "${computed[hash]()}".`,
        )
      }
    }
    const object: StoredObject = {
      bucket,
      name,
      data,
      generation: this.nextGeneration++,
      contentType: metadata.contentType as string | undefined,
      contentEncoding: metadata.contentEncoding as string | undefined,
    }
    this.objects.set(key, object)
    hashes.set(object, hashed)
    return send(200, this.objectResource(object))
  }

  /** Uploads whose data is stored damaged (a byte changed), as if it had been corrupted on the way. */
  private damageNext = 0
  damageUploads(times: number): void {
    this.damageNext = times
  }

  /** What Cloud Storage answers for an object. */
  private objectResource(o: StoredObject) {
    let hashed = hashes.get(o)
    if (hashed === undefined) {
      hashed = {}
      hashes.set(o, hashed)
    }
    hashed.crc32c ??= crc32cOf(o.data)
    if (this.md5Hash) hashed.md5Hash ??= md5Of(o.data)
    return {
      kind: 'storage#object',
      id: `${o.bucket}/${o.name}/${o.generation}`,
      bucket: o.bucket,
      name: o.name,
      generation: String(o.generation),
      metageneration: '1',
      size: String(o.data.length),
      contentType: o.contentType,
      contentEncoding: o.contentEncoding,
      ...(this.md5Hash ? { md5Hash: hashed.md5Hash } : {}),
      crc32c: hashed.crc32c,
      timeCreated: new Date().toISOString(),
    }
  }

  private preconditionFails(bucket: string, name: string, ifGenerationMatch: string | null): boolean {
    if (ifGenerationMatch === null) return false
    return String(this.objects.get(`${bucket}/${name}`)?.generation ?? 0) !== ifGenerationMatch
  }
}

function bucketResource(name: string) {
  return { kind: 'storage#bucket', id: name, name, location: 'US', storageClass: 'STANDARD' }
}

function md5Of(data: Buffer): string {
  return createHash('md5').update(data).digest('base64')
}

/**
 * CRC32C as Cloud Storage gives it: the big-endian bytes, base64. Native (@node-rs/crc32), as sidelog's uploads are
 * where it loads; test/sinks/crc32c.test.ts holds both of sidelog's CRC32Cs to the storage client's own and to the
 * check value. In the bench the fake's CPU is taken from sidelog's cores: crc-32's JavaScript took 1.3 ms for a
 * 1.6 MiB object, this 0.12 ms.
 */
function crc32cOf(data: Buffer): string {
  const bytes = Buffer.alloc(4)
  bytes.writeUInt32BE(crc32c(data) >>> 0)
  return bytes.toString('base64')
}

/** An object's hashes, each made once, when first needed. */
interface Hashes {
  crc32c?: string
  md5Hash?: string
}
/** Hashes of stored objects, each made once: in the bench, the fake's CPU is taken from the cores sidelog runs on. */
const hashes = new WeakMap<StoredObject, Hashes>()
/** Splits a multipart/related body into parts, binary-safe. */
function parseMultipart(body: Buffer, contentType: string): { contentType?: string; body: Buffer }[] {
  const boundary = /boundary="?([^";]+)"?/.exec(contentType)?.[1]
  if (!boundary) throw new Error(`no boundary in ${contentType}`)
  const delimiter = Buffer.from(`--${boundary}`)
  const parts: { contentType?: string; body: Buffer }[] = []
  let start = body.indexOf(delimiter)
  while (start !== -1) {
    const next = body.indexOf(delimiter, start + delimiter.length)
    if (next === -1) break
    const part = body.subarray(start + delimiter.length, next)
    const headerEnd = part.indexOf('\r\n\r\n')
    if (headerEnd !== -1) {
      const headers = part.subarray(0, headerEnd).toString()
      let content = part.subarray(headerEnd + 4)
      if (content.subarray(-2).toString() === '\r\n') content = content.subarray(0, -2)
      parts.push({ contentType: /content-type:\s*([^\r\n]+)/i.exec(headers)?.[1], body: content })
    }
    start = next
  }
  return parts
}
