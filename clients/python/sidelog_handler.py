"""A logging.Handler that ships records to sidelog, with the standard library only.

Records are turned into JSON entries in the calling thread and queued; a background thread batches them (by count,
bytes and age) into NDJSON bodies and POSTs them to sidelog's /logs, one request at a time, so order is kept. Every
batch carries one Idempotency-Key, reused on every retry of it, so a request whose answer was lost is sent again
without being stored twice. 429 and 503 are waited out (Retry-After), 413 splits the batch, a body sidelog refuses
(400, 415, 422) is written to stderr and dropped, and nothing here ever raises into the application. The queue is
bounded: past it, records are dropped and counted. close() (and logging.shutdown() at exit) sends what is queued,
waiting at most close_timeout seconds; what is still unsent then goes to stderr.

    import logging
    from sidelog_handler import SidelogHandler

    logging.getLogger().addHandler(SidelogHandler())
    logging.getLogger("shop").info("order paid", extra={"order_id": 1234})
"""

import atexit
import collections
import email.utils
import json
import logging
import random
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request
import uuid

__all__ = ["SidelogHandler"]

# Attributes every LogRecord has: anything else on a record came from `extra=` and becomes a field of the entry.
_RECORD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None)).keys() | {"message", "asctime", "taskName"}
)


class SidelogHandler(logging.Handler):
    """Ships log records to sidelog. Safe to use from any thread; never raises into the caller."""

    def __init__(
        self,
        url="http://127.0.0.1:9090/logs",
        *,
        level=logging.NOTSET,
        batch_size=100,
        batch_bytes=1024 * 1024,
        flush_interval=1.0,
        max_queue=10_000,
        max_retry_delay=30.0,
        request_timeout=10.0,
        close_timeout=5.0,
        fields=None,
        stderr=None,
    ):
        super().__init__(level)
        self.url = url
        self.batch_size = batch_size
        self.batch_bytes = batch_bytes
        self.flush_interval = flush_interval
        self.max_queue = max_queue
        self.max_retry_delay = max_retry_delay
        self.request_timeout = request_timeout
        self.close_timeout = close_timeout
        self.fields = dict(fields or {})
        self._stderr = stderr
        # Counters: read them for your own metrics.
        self.sent = 0  # entries sidelog took
        self.dropped = 0  # entries refused because the queue was full
        self.spilled = 0  # entries written to stderr instead (refused by sidelog, or unsent at close)
        self.retries = 0
        self._queue = collections.deque()
        self._queue_bytes = 0
        self._cond = threading.Condition()
        self._closing = False
        self._closed = False
        self._deadline = None  # set by close(): retries stop there
        self._sending = 0  # entries taken from the queue and not yet sent or spilled
        self._dropping = False
        self._first_at = 0.0  # when the oldest queued entry came
        self._flush_requested = False
        self._thread = threading.Thread(target=self._run, name="sidelog-handler", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    # -- the application's side: never blocks on the network, never raises ------------------------------------

    def emit(self, record):
        try:
            line = json.dumps(self._entry(record), default=str, ensure_ascii=False)
        except Exception:
            self.handleError(record)
            return
        size = len(line.encode("utf-8")) + 1
        with self._cond:
            if self._closing:
                self._write_stderr("sidelog handler: a record logged after close() was written here instead", [line])
                return
            if len(self._queue) >= self.max_queue:
                self.dropped += 1
                if not self._dropping:
                    self._dropping = True
                    self._write_stderr(
                        f"sidelog handler: queue full ({self.max_queue} entries); dropping records until it drains"
                    )
                return
            self._dropping = False
            if not self._queue:
                self._first_at = time.monotonic()
                self._cond.notify_all()
            self._queue.append(line)
            self._queue_bytes += size
            if len(self._queue) >= self.batch_size or self._queue_bytes >= self.batch_bytes:
                self._cond.notify_all()

    def _entry(self, record):
        entry = {
            "time": int(record.created * 1000),
            "level": record.levelname.lower(),
            "message": record.getMessage(),
            "logger": record.name,
        }
        entry.update(self.fields)
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = "".join(traceback.format_exception(*record.exc_info))
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return entry

    def flush(self, timeout=None):
        """Sends what is queued now; waits until it is sent, at most `timeout` seconds (close_timeout by default)."""
        wait = self.close_timeout if timeout is None else timeout
        end = time.monotonic() + wait
        with self._cond:
            self._flush_requested = True
            self._cond.notify_all()
            while (self._queue or self._sending) and self._thread.is_alive():
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self):
        """Sends what is queued, for at most close_timeout seconds; what is left then is written to stderr."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._closing = True
            self._deadline = time.monotonic() + self.close_timeout
            self._cond.notify_all()
        # The sender stops retrying at the deadline; the join leaves it a little more to write what is left out.
        self._thread.join(self.close_timeout + 1.0)
        with self._cond:
            left = list(self._queue)
            self._queue.clear()
            self._queue_bytes = 0
        if left:
            self._spill(left, "sidelog did not take them before close_timeout")
        try:
            atexit.unregister(self.close)
        except Exception:
            pass
        super().close()

    # -- the sender thread -------------------------------------------------------------------------------------

    def _run(self):
        while True:
            with self._cond:
                while not self._closing and not self._batch_due():
                    self._cond.wait(self._wait_time())
                batch = self._take()
                if not batch:
                    if self._closing:
                        self._cond.notify_all()
                        return
                    continue
            try:
                self._send(batch, str(uuid.uuid4()))
            except Exception as error:  # the sender survives every error: this batch goes to stderr, not the app
                self._spill(batch, f"the handler failed sending it ({error!r})")
            with self._cond:
                self._sending = 0
                self._cond.notify_all()

    def _batch_due(self):
        """Whether the queue holds a batch to send now: full, old enough, or asked for by flush(). Holds the lock."""
        if not self._queue:
            self._flush_requested = False
            return False
        if self._flush_requested or len(self._queue) >= self.batch_size or self._queue_bytes >= self.batch_bytes:
            return True
        return time.monotonic() - self._first_at >= self.flush_interval

    def _wait_time(self):
        if not self._queue:
            return None
        return max(0.0, self.flush_interval - (time.monotonic() - self._first_at))

    def _take(self):
        """The next batch: at most batch_size entries and batch_bytes (always at least one entry). Holds the lock."""
        batch = []
        size = 0
        while self._queue and len(batch) < self.batch_size:
            line_size = len(self._queue[0].encode("utf-8")) + 1
            if batch and size + line_size > self.batch_bytes:
                break
            batch.append(self._queue.popleft())
            size += line_size
        self._queue_bytes -= size
        self._sending = len(batch)
        # What is left waited at least as long as this batch: it may go as soon as this one is sent.
        self._first_at = time.monotonic() - self.flush_interval if self._queue else 0.0
        return batch

    def _send(self, lines, key):
        """Sends one batch under `key` until sidelog takes it, refuses it for good, or close's deadline passes."""
        body = "\n".join(lines).encode("utf-8")
        attempt = 0
        while True:
            status, text, retry_after = self._post(body, key)
            if status == 202:
                self.sent += len(lines)
                return
            if status == 500 and _error_code(text) == "SPOOL_WRITE_FAILED":
                # sidelog took the entries but could not make them durable, and says not to resend them.
                self.sent += len(lines)
                self._write_stderr(
                    f"sidelog handler: sidelog took {len(lines)} entries without writing them to its spool "
                    "(500 SPOOL_WRITE_FAILED); not resending"
                )
                return
            if status == 413 and len(lines) > 1:
                # Each half is another request, so another key.
                half = (len(lines) + 1) // 2
                self._send(lines[:half], str(uuid.uuid4()))
                self._send(lines[half:], str(uuid.uuid4()))
                return
            if status is not None and status != 429 and status < 500:
                # 400, 413 for one entry, 415, 422: the body is what is wrong, and retrying cannot change it.
                self._spill(lines, f"sidelog answered {status} {text[:300]}")
                return
            if retry_after is not None:
                delay = min(retry_after, self.max_retry_delay)
            else:
                delay = min(0.1 * 2**attempt, self.max_retry_delay) * random.uniform(0.5, 1.0)
            with self._cond:
                deadline = self._deadline
            if deadline is not None and time.monotonic() + delay > deadline:
                self._spill(lines, "sidelog unreachable at close")
                return
            self.retries += 1
            attempt += 1
            self._sleep(delay)

    def _post(self, body, key):
        """(status, text, Retry-After seconds) of one attempt; status None when no answer came."""
        request = urllib.request.Request(
            self.url,
            data=body,
            method="POST",
            headers={"content-type": "application/x-ndjson", "idempotency-key": key},
        )
        timeout = self.request_timeout
        with self._cond:
            if self._deadline is not None:
                timeout = max(0.05, min(timeout, self._deadline - time.monotonic()))
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.read().decode("utf-8", "replace"), None
        except urllib.error.HTTPError as error:
            try:
                text = error.read().decode("utf-8", "replace")
            except Exception:
                text = ""
            return error.code, text, _retry_after(error.headers.get("retry-after"))
        except Exception:
            # Not up yet, restarting, reset, timed out, or the answer was lost: the same key again.
            return None, "", None

    def _sleep(self, seconds):
        """Waits between attempts; close() cuts the wait short, so that the batch is tried once more at once."""
        end = time.monotonic() + seconds
        with self._cond:
            closing = self._closing
            while self._closing == closing:
                left = end - time.monotonic()
                if left <= 0:
                    return
                self._cond.wait(left)

    # -- what cannot be delivered goes to stderr, where the platform's log collection still sees it ------------

    def _spill(self, lines, why):
        self.spilled += len(lines)
        self._write_stderr(f"sidelog handler: {why}; writing {len(lines)} entries here instead", lines)

    def _write_stderr(self, message, lines=()):
        try:
            stream = self._stderr or sys.stderr
            stream.write(message + "\n")
            for line in lines:
                stream.write(line + "\n")
            stream.flush()
        except Exception:
            pass


def _retry_after(value):
    """Retry-After in seconds (sidelog sends seconds; an HTTP date is understood too), or None."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    except Exception:
        return None


def _error_code(text):
    try:
        code = json.loads(text).get("error")
        return code if isinstance(code, str) else None
    except Exception:
        return None
