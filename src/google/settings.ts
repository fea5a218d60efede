// The Google Cloud settings more than one component reads: the bucket (the gcs sink's, load mode's staging, the
// gcs dead-letter store's), how Cloud Storage is reached, the credentials and the project. A component's own
// settings (GCS_PREFIX, BQ_TABLE, ...) live in its folder.
import { Type } from '@sinclair/typebox'
import { bytes } from '../settings/fields.js'
import { boundServiceCredentials } from './credentials.js'

const BUCKET_PATTERN = '^([a-z0-9][a-z0-9._-]{1,220}[a-z0-9])?$'
const BUCKET_ACCEPTS =
  'a Cloud Storage bucket name: 3 to 222 lower-case letters, digits, dots, dashes or underscores'
export const PROJECT_PATTERN = '^([a-z][a-z0-9-]{4,28}[a-z0-9])?$'
export const PROJECT_ACCEPTS =
  'a Google Cloud project id: 6 to 30 lower-case letters, digits or dashes, starting with a letter'

export const googleSettings = {
  LOG_BUCKET: Type.String({
    default: '',
    pattern: BUCKET_PATTERN,
    description:
      "Cloud Storage bucket of the gcs sink, of load mode's staged objects and of DEAD_LETTER=gcs (GCS_BUCKET is the same setting).",
    accepts: BUCKET_ACCEPTS,
  }),
  GCS_BUCKET: Type.String({
    default: '',
    pattern: BUCKET_PATTERN,
    description: 'Same as LOG_BUCKET; set one of them.',
    accepts: BUCKET_ACCEPTS,
  }),
  GCS_ENDPOINT: Type.String({
    default: '',
    pattern: '^(https?://[^\\s/]+)?$',
    description:
      'Cloud Storage API endpoint, for an emulator such as fake-gcs-server (the client library also honours STORAGE_EMULATOR_HOST).',
    accepts: 'an http(s) URL without a path, e.g. http://127.0.0.1:4443',
  }),
  GCS_RESUMABLE_THRESHOLD: bytes(
    '8MiB',
    0,
    5 * 1024 ** 4,
    'Objects larger than this use a resumable upload (an extra request); smaller ones one request.',
  ),
  GOOGLE_CLOUD_PROJECT: Type.String({
    default: '',
    pattern: PROJECT_PATTERN,
    description:
      'Project named in Cloud Logging trace fields (logging.googleapis.com/trace = projects/<project>/traces/<id>); empty: BQ_PROJECT, and without that the bare trace id.',
    accepts: PROJECT_ACCEPTS,
  }),
  GOOGLE_CREDENTIALS_SERVICE: Type.String({
    default: '',
    description:
      "Cloud Foundry: the name of a bound service whose credentials (in VCAP_SERVICES) are the service-account key the Google Cloud clients use, so that no key file ships with the app. Empty: Application Default Credentials (Cloud Run's or GKE's service account, GOOGLE_APPLICATION_CREDENTIALS).",
    accepts: 'the name of a service bound to the app, or empty',
  }),
  VCAP_SERVICES: Type.String({
    default: '',
    description:
      'Set by Cloud Foundry: the services bound to the app, as JSON. Read only for GOOGLE_CREDENTIALS_SERVICE, and never logged.',
    accepts: 'the JSON Cloud Foundry sets',
  }),
}

interface GoogleSettingValues {
  readonly LOG_BUCKET: string
  readonly GCS_BUCKET: string
  readonly GCS_ENDPOINT: string
  readonly GCS_RESUMABLE_THRESHOLD: number
  readonly GOOGLE_CREDENTIALS_SERVICE: string
  readonly VCAP_SERVICES: string
}

/** What the Google Cloud clients are built with besides their endpoint. */
export interface GoogleAuthOptions {
  readonly credentials?: { client_email: string; private_key: string }
  readonly projectId?: string
}

/** How every component reaches Google Cloud: decoded once from the settings above. */
export interface GoogleAccess {
  /** LOG_BUCKET or its alias GCS_BUCKET ('' when neither is set). */
  readonly bucket: string
  /** GCS_ENDPOINT ('' for Google's). */
  readonly storageEndpoint: string
  readonly resumableThreshold: number
  /** The bound service's key on Cloud Foundry (GOOGLE_CREDENTIALS_SERVICE), else nothing: Application Default Credentials. */
  readonly auth: GoogleAuthOptions
}

export function googleAccess(values: GoogleSettingValues): GoogleAccess {
  return {
    bucket: values.GCS_BUCKET || values.LOG_BUCKET,
    storageEndpoint: values.GCS_ENDPOINT,
    resumableThreshold: values.GCS_RESUMABLE_THRESHOLD,
    // Read when a client is built: checkGoogleSettings has reported a bad key by then, and cross-checks never need it.
    get auth(): GoogleAuthOptions {
      if (!values.GOOGLE_CREDENTIALS_SERVICE) return {}
      const { credentials, projectId } = boundServiceCredentials(
        values.VCAP_SERVICES,
        values.GOOGLE_CREDENTIALS_SERVICE,
      )
      return { credentials: { ...credentials }, ...(projectId ? { projectId } : {}) }
    },
  }
}

/** Relations between the settings above. */
export function checkGoogleSettings(values: GoogleSettingValues): string[] {
  const problems: string[] = []
  if (values.LOG_BUCKET && values.GCS_BUCKET && values.LOG_BUCKET !== values.GCS_BUCKET) {
    problems.push(
      `LOG_BUCKET (${values.LOG_BUCKET}) and GCS_BUCKET (${values.GCS_BUCKET}) differ: set one of them`,
    )
  }
  if (values.GOOGLE_CREDENTIALS_SERVICE) {
    try {
      boundServiceCredentials(values.VCAP_SERVICES, values.GOOGLE_CREDENTIALS_SERVICE)
    } catch (err) {
      problems.push(
        `GOOGLE_CREDENTIALS_SERVICE=${values.GOOGLE_CREDENTIALS_SERVICE}: ${(err as Error).message}`,
      )
    }
  }
  return problems
}
