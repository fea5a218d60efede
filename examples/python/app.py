"""Logging through sidelog from Python with the standard logging module and clients/python's SidelogHandler.

The handler batches records in a background thread, sends them under one Idempotency-Key per batch (reused on every
retry, so a lost answer never stores an entry twice), waits out 429/503, and writes anything sidelog refuses to
stderr instead of raising into the app. logging.shutdown() at exit sends what is left.

    python3 examples/python/app.py      sends COUNT entries (default 10), then exits
"""

import logging
import os
import sys
import uuid

# In an app of your own: pip install ./clients/python (or copy sidelog_handler.py); here, the repository's copy.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "clients", "python"))

from sidelog_handler import SidelogHandler  # noqa: E402


def main():
    # This script logs everything and exits at once, so its entries are sent while closing: give that a minute
    # (the default close_timeout, 5 s, suits an app whose handler sends as it goes).
    handler = SidelogHandler(os.environ.get("SIDELOG_URL", "http://127.0.0.1:9090/logs"), close_timeout=60)
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    log = logging.getLogger("example")
    run_id = os.environ.get("RUN_ID", str(uuid.uuid4()))
    count = int(os.environ.get("COUNT", "10"))
    for i in range(count):
        log.info("example entry %d", i, extra={"tag": f"{run_id}-{i}", "lang": "python"})
    # Optional: logging.shutdown() at exit does the same, each bounded by close_timeout.
    handler.close()
    print(f"sent {count} entries tagged {run_id}-* ({handler.sent} taken, {handler.spilled} to stderr)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
