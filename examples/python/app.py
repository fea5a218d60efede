"""Logging through sidelog from Python with the standard library only.

Entries are batched on the client (100 entries or 1 s), sent as NDJSON, and kept and re-sent after a 429 or 503
(waiting Retry-After) or while sidelog is not up.

    python3 examples/python/app.py      sends COUNT entries (default 10), then exits
"""

import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid

SIDELOG_URL = os.environ.get("SIDELOG_URL", "http://127.0.0.1:9090/logs")
BATCH_SIZE = 100
FLUSH_SECONDS = 1.0


class SidelogHandler:
    """Queues entries; a background thread sends them in order. The lock only guards the queue, never a send."""

    def __init__(self):
        self._queue = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def log(self, level, message, **fields):
        entry = {"level": level, "message": message, "time": int(time.time() * 1000), **fields}
        with self._lock:
            self._queue.append(entry)
            full = len(self._queue) >= BATCH_SIZE
        if full:
            self._wake.set()

    def close(self):
        self._closed = True
        self._wake.set()
        self._thread.join()

    def _run(self):
        while True:
            self._wake.wait(FLUSH_SECONDS)
            self._wake.clear()
            while True:
                with self._lock:
                    batch = self._queue[:BATCH_SIZE]
                if not batch:
                    break
                self._send(batch)  # outside the lock: logging never waits for the network
                with self._lock:
                    del self._queue[: len(batch)]
            if self._closed:
                return

    def _send(self, batch):
        body = "\n".join(json.dumps(entry) for entry in batch).encode()
        attempt = 0
        while True:
            request = urllib.request.Request(
                SIDELOG_URL, data=body, method="POST", headers={"content-type": "application/x-ndjson"}
            )
            retry_after = None
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    if response.status == 202:
                        return
            except urllib.error.HTTPError as error:
                if error.code not in (429, 503):
                    # 400/413/415 name what is wrong with the body; retrying would not change it.
                    raise RuntimeError(f"sidelog refused the batch: {error.code} {error.read().decode()}")
                retry_after = error.headers.get("retry-after")
            except OSError:
                pass  # sidelog is not up yet (or restarting): keep the entries and try again
            delay = float(retry_after) if retry_after else min(0.1 * 2**attempt, 5.0)
            time.sleep(delay)
            attempt += 1


def main():
    run_id = os.environ.get("RUN_ID", str(uuid.uuid4()))
    count = int(os.environ.get("COUNT", "10"))
    logger = SidelogHandler()
    for i in range(count):
        logger.log("info", f"example entry {i}", tag=f"{run_id}-{i}", lang="python")
    logger.close()
    print(f"sent {count} entries tagged {run_id}-*")
    return 0


if __name__ == "__main__":
    sys.exit(main())
