// How a request's enriched lines become one EventRun, for both ways of enriching them (enrich.ts, enrich-bytes.ts).
import { EventRun } from '../event.js'
import type { SlabPool } from '../slabs.js'

/** A request's ids as its run keeps them: only the first when every entry took the next built-in id, as most do. */
export class RunIds {
  private readonly ids: (string | number)[] = []
  private builtIn = true

  push(id: string | number): void {
    const { ids } = this
    if (this.builtIn && (typeof id !== 'number' || (ids.length > 0 && id !== (ids.at(-1) as number) + 1)))
      this.builtIn = false
    ids.push(id)
  }

  get count(): number {
    return this.ids.length
  }

  get keys(): (string | number)[] | number {
    return this.builtIn ? (this.ids[0] as number) : this.ids
  }
}

/**
 * A run of `size` bytes that `write` fills: in a slab that is reused once every request in it is delivered (see
 * slabs.ts), or, for a very large request, in a Buffer of its own; never in Node's shared 8 KiB pool, where a small
 * chunk would keep the whole block (and whatever was made and freed around it, such as a spool's records) alive while
 * its entries wait.
 */
export function writeRun(
  slabs: SlabPool,
  size: number,
  ids: RunIds,
  write: (chunk: Buffer) => void,
): EventRun {
  const taken = slabs.take(size)
  const chunk = taken ? taken.chunk : Buffer.allocUnsafeSlow(size)
  write(chunk)
  return new EventRun(chunk, ids.count, ids.keys, taken?.slab)
}
