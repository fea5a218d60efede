// Settings of the OTLP/HTTP logs receiver (POST /v1/logs).
import { Type } from '@sinclair/typebox'
import type { SettingsOf } from '../../settings/compose.js'

export const otlpSettings = {
  OTLP_ENABLED: Type.Boolean({
    default: true,
    description:
      'Serve the OTLP/HTTP logs receiver at POST /v1/logs (protobuf or JSON, optionally gzip) on the same listener as /logs.',
    accepts: 'true or false',
  }),
}

export type OtlpSettings = SettingsOf<typeof otlpSettings>
