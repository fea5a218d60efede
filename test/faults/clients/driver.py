"""The fault suite's Python app: logs COUNT entries through SidelogHandler, PACE per 10 ms, tagged <PREFIX>-<n>."""

import logging
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "clients", "python"))

from sidelog_handler import SidelogHandler  # noqa: E402

count = int(os.environ["COUNT"])
pace = int(os.environ.get("PACE", "10"))
handler = SidelogHandler(
    os.environ["SIDELOG_URL"], batch_size=50, flush_interval=0.1, max_retry_delay=0.5, close_timeout=60
)
log = logging.getLogger("fault")
log.propagate = False
log.setLevel(logging.INFO)
log.addHandler(handler)
for i in range(count):
    log.info("fault entry %d", i, extra={"tag": f"{os.environ['PREFIX']}-{i}"})
    if i % pace == pace - 1:
        time.sleep(0.01)
handler.close()
print(f"logged {count}: {handler.sent} taken, {handler.spilled} to stderr, {handler.dropped} dropped")
