// Credentials for the Google Cloud clients from a service bound to the app on Cloud Foundry (VCAP_SERVICES), so that
// no service-account key file sits among the app's files. Without GOOGLE_CREDENTIALS_SERVICE the clients use
// Application Default Credentials (Cloud Run's or GKE's workload identity, GOOGLE_APPLICATION_CREDENTIALS).

export interface ServiceAccountCredentials {
  readonly client_email: string
  readonly private_key: string
}

export interface BoundCredentials {
  readonly credentials: ServiceAccountCredentials
  /** The key's project, when it names one. */
  readonly projectId?: string
}

interface BoundService {
  readonly name?: unknown
  readonly credentials?: Record<string, unknown>
}

/** A service-account key's fields, or undefined if `value` is not one. */
function asKey(value: unknown): BoundCredentials | undefined {
  const key = value as Record<string, unknown> | undefined
  if (typeof key?.client_email !== 'string' || typeof key.private_key !== 'string') return undefined
  return {
    credentials: { client_email: key.client_email, private_key: key.private_key },
    ...(typeof key.project_id === 'string' ? { projectId: key.project_id } : {}),
  }
}

/**
 * The service-account key of the service named `service` in VCAP_SERVICES. Its credentials are either the key's own
 * fields (`cf create-user-provided-service NAME -p key.json` stores them so) or, as Google's service broker binds
 * them, `PrivateKeyData`: the key JSON in base64. Throws saying what is missing; never echoes the credentials.
 */
export function boundServiceCredentials(vcapServices: string, service: string): BoundCredentials {
  if (!vcapServices)
    throw new Error('VCAP_SERVICES is not set: bind the service to the app (cf bind-service)')
  let parsed: Record<string, BoundService[]>
  try {
    parsed = JSON.parse(vcapServices) as Record<string, BoundService[]>
  } catch {
    throw new Error('VCAP_SERVICES is not JSON')
  }
  const bound = Object.values(parsed)
    .flatMap((list) => (Array.isArray(list) ? list : []))
    .find((entry) => entry?.name === service)
  if (!bound)
    throw new Error(`no service named ${service} is bound to the app (cf bind-service APP ${service})`)
  const credentials = bound.credentials ?? {}
  const direct = asKey(credentials)
  if (direct) return direct
  if (typeof credentials.PrivateKeyData === 'string') {
    let decoded: unknown
    try {
      decoded = JSON.parse(Buffer.from(credentials.PrivateKeyData, 'base64').toString('utf8'))
    } catch {
      throw new Error(`the PrivateKeyData of service ${service} is not a base64-encoded key`)
    }
    const key = asKey(decoded)
    if (key) return key
  }
  throw new Error(
    `the credentials of service ${service} hold no service-account key (client_email and private_key, or PrivateKeyData)`,
  )
}
