// Whether a container engine is reachable; the emulator suites skip themselves, saying why, when it is not.
import { getContainerRuntimeClient } from 'testcontainers'

/** null when an engine answers; otherwise the reason none could be used. */
export async function containerEngineUnavailable(): Promise<string | null> {
  try {
    await getContainerRuntimeClient()
    return null
  } catch (err) {
    return (err as Error).message
  }
}
