// Google credentials from a service bound on Cloud Foundry (GOOGLE_CREDENTIALS_SERVICE, VCAP_SERVICES): the key's
// fields as `cf create-user-provided-service -p key.json` stores them, or Google's broker's base64 PrivateKeyData;
// the clients are built with it; a missing binding stops start-up naming the setting, without echoing the key.
import { generateKeyPairSync } from 'node:crypto'
import { BigQuery } from '@google-cloud/bigquery'
import { Storage } from '@google-cloud/storage'
import { describe, expect, it } from 'vitest'
import { loadConfig } from '../src/config.js'
import { boundServiceCredentials } from '../src/google/credentials.js'
import { googleAccess } from '../src/google/settings.js'
import { catchError } from './helpers.js'

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
const key = {
  type: 'service_account',
  project_id: 'my-project',
  client_email: 'sidelog@my-project.iam.gserviceaccount.com',
  private_key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
}
const vcap = (credentials: object, name = 'sidelog-gcp') =>
  JSON.stringify({
    'user-provided': [{ name: 'other', credentials: {} }],
    'google-storage': [{ name, label: 'google-storage', credentials }],
  })

describe('credentials from a bound service', () => {
  it("reads the key's own fields (a user-provided service made from key.json)", () => {
    expect(boundServiceCredentials(vcap(key), 'sidelog-gcp')).toEqual({
      credentials: { client_email: key.client_email, private_key: key.private_key },
      projectId: 'my-project',
    })
  })

  it("reads the Google service broker's PrivateKeyData (the key JSON in base64)", () => {
    const broker = {
      PrivateKeyData: Buffer.from(JSON.stringify(key)).toString('base64'),
      ProjectId: 'my-project',
    }
    expect(boundServiceCredentials(vcap(broker), 'sidelog-gcp').credentials.client_email).toBe(
      key.client_email,
    )
  })

  it('says what is missing, never echoing the credentials', () => {
    expect(catchError(() => boundServiceCredentials('', 's')).message).toMatch(/VCAP_SERVICES is not set/)
    expect(catchError(() => boundServiceCredentials(vcap(key), 'nope')).message).toBe(
      'no service named nope is bound to the app (cf bind-service APP nope)',
    )
    const noKey = catchError(() =>
      boundServiceCredentials(vcap({ uri: 'x', secret: 'hunter2' }), 'sidelog-gcp'),
    )
    expect(noKey.message).toMatch(/hold no service-account key/)
    expect(noKey.message).not.toContain('hunter2')
  })

  it('stops start-up naming GOOGLE_CREDENTIALS_SERVICE when the service is not bound', () => {
    const error = catchError(() =>
      loadConfig({ GOOGLE_CREDENTIALS_SERVICE: 'sidelog-gcp', VCAP_SERVICES: vcap(key, 'x') }),
    )
    expect(error.message).toContain(
      'GOOGLE_CREDENTIALS_SERVICE=sidelog-gcp: no service named sidelog-gcp is bound',
    )
    expect(error.message).not.toContain('PRIVATE KEY')
  })

  it('builds the Storage and BigQuery clients with the bound key instead of Application Default Credentials', async () => {
    const config = loadConfig({ GOOGLE_CREDENTIALS_SERVICE: 'sidelog-gcp', VCAP_SERVICES: vcap(key) })
    const options = googleAccess(config).auth
    for (const client of [new Storage(options), new BigQuery(options)]) {
      const credentials = await client.authClient.getCredentials()
      expect(credentials.client_email).toBe(key.client_email)
      expect(await client.authClient.getProjectId()).toBe('my-project')
    }
    expect(googleAccess(loadConfig({})).auth).toEqual({})
  })
})
