// Settings of the OTLP/HTTP logs receiver (POST /v1/logs), composed into config.ts's schema.
import { Type } from '@sinclair/typebox'
import type { SettingHelpers } from '../../config.js'

export function otlpSettings(_: SettingHelpers) {
  return {
    OTLP_ENABLED: Type.Boolean({
      default: true,
      description:
        'Serve the OTLP/HTTP logs receiver at POST /v1/logs (protobuf or JSON, optionally gzip) on the same listener as /logs.',
      accepts: 'true or false',
    }),
  }
}

/** Relations with other settings; none yet. */
export function checkOtlpSettings(_: { OTLP_ENABLED: boolean }): string[] {
  return []
}
