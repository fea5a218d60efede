// Settings of the file tail input (TAIL_PATHS).
import { Type } from '@sinclair/typebox'
import type { SettingsOf } from '../../settings/compose.js'
import { bytes, seconds } from '../../settings/fields.js'

export const tailSettings = {
  TAIL_PATHS: Type.Transform(
    Type.String({
      default: '',
      description:
        'Files to tail: comma-separated glob patterns (e.g. /var/log/app/*.log*). JSON lines become entries, other lines {"message": line}. Let the patterns match the rotated names too (app.log*), so that a restart or a copy-truncate rotation finds the rest of a rotated file.',
      accepts: 'a comma-separated list of glob patterns (*, **, ?, [...], {a,b}), or empty for none',
    }),
  )
    .Decode((list) =>
      list
        .split(',')
        .map((p) => p.trim())
        .filter((p) => p !== ''),
    )
    .Encode((patterns) => patterns.join(',')),
  TAIL_MAX_LINE_BYTES: bytes(
    '64KiB',
    256,
    16 * 1024 ** 2,
    'Longest line the tail input keeps; a longer one is cut to this many bytes, sent as {"message": ..., "truncated": true} and counted in /health (truncated_lines).',
  ),
  TAIL_POLL_INTERVAL: seconds(
    0.25,
    60,
    'How often the tail input looks for new, grown, rotated and truncated files (file-system events wake it sooner).',
  ),
  TAIL_ROTATE_WAIT: seconds(
    5,
    3600,
    'How long the tail input keeps reading a file after it left TAIL_PATHS (renamed away or deleted), for lines the app still writes to it.',
  ),
}

export type TailSettings = SettingsOf<typeof tailSettings>

export function checkTailSettings(
  settings: TailSettings,
  shared: { readonly maxEntryBytes: number },
): string[] {
  if (settings.TAIL_MAX_LINE_BYTES * 2 > shared.maxEntryBytes) {
    return [
      `TAIL_MAX_LINE_BYTES (${settings.TAIL_MAX_LINE_BYTES}) must be at most half of MAX_ENTRY_BYTES (${shared.maxEntryBytes}): a line grows when it is escaped into JSON and enriched`,
    ]
  }
  return []
}
