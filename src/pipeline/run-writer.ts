// How a request's enriched lines become one EventRun, for both ways of enriching them (enrich.ts, enrich-bytes.ts).
import { EventRun } from '../event.js'
import type { SlabPool } from '../slabs.js'

/**
 * A request's ids as its run keeps them: only the first when every entry took the next built-in id, as most do. The
 * list of them is made only once one is not the next.
 */
export class RunIds {
  private first = 0
  count = 0
  private ids: (string | number)[] | undefined

  push(id: string | number): void {
    const { ids, count } = this
    if (ids !== undefined) {
      ids.push(id)
    } else if (count === 0 && typeof id === 'number') {
      this.first = id
    } else if (typeof id !== 'number' || id !== this.first + count) {
      // Not the next built-in id: from now on every id is listed.
      const listed: (string | number)[] = new Array(count)
      for (let k = 0; k < count; k++) listed[k] = this.first + k
      listed.push(id)
      this.ids = listed
    }
    this.count = count + 1
  }

  get keys(): (string | number)[] | number {
    return this.ids ?? this.first
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
