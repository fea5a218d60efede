"""SidelogHandler against a scripted HTTP server that the tests start on 127.0.0.1 (standard library only)."""

import http.server
import io
import json
import logging
import os
import subprocess
import sys
import threading
import time
import unittest

from sidelog_handler import SidelogHandler

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE_DIR = os.path.dirname(HERE)


class ScriptedServer:
    """Answers the n-th request with script(lines, n): a status, (status, body), (status, body, headers), or
    "lose" (read the body, then close the connection without an answer). Records every request's key and lines."""

    def __init__(self, script):
        self.script = script
        self.requests = []  # (idempotency key, lines, status or "lose")
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("content-length", 0))
                lines = self.rfile.read(length).decode().split("\n")
                with outer.lock:
                    n = len(outer.requests)
                    answer = outer.script(lines, n)
                    outer.requests.append((self.headers.get("idempotency-key"), lines, answer))
                if answer == "lose":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                status, body, headers = (answer, "{}", {}) if isinstance(answer, int) else (*answer, {})[:3]
                data = body.encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/logs"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def taken(self):
        """Entries of the requests answered 202, parsed, in order."""
        with self.lock:
            return [json.loads(line) for _, lines, answer in self.requests if answer == 202 for line in lines]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def wait_until(condition, timeout=30.0):
    """Polls a condition with a generous deadline (a safety net, not a measure of speed)."""
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


class HandlerTest(unittest.TestCase):
    def setUp(self):
        self.stderr = io.StringIO()
        self.servers = []
        self.handlers = []

    def tearDown(self):
        for handler in self.handlers:
            handler.close()
        for server in self.servers:
            server.stop()

    def serve(self, script):
        server = ScriptedServer(script)
        self.servers.append(server)
        return server

    def logger(self, url, **options):
        options.setdefault("max_retry_delay", 0.05)
        options.setdefault("close_timeout", 5.0)
        handler = SidelogHandler(url, stderr=self.stderr, **options)
        self.handlers.append(handler)
        logger = logging.getLogger(f"test-{id(handler)}")
        logger.propagate = False
        logger.setLevel(logging.DEBUG)
        logger.addHandler(handler)
        return logger, handler

    def test_batches_records_in_order_with_level_message_and_extra_fields(self):
        server = self.serve(lambda lines, n: 202)
        log, handler = self.logger(server.url, batch_size=4, fields={"service": "shop"})
        for i in range(10):
            log.warning("entry %d", i, extra={"n": i})
        handler.close()
        taken = server.taken()
        self.assertEqual([e["n"] for e in taken], list(range(10)))
        self.assertEqual([len(lines) for _, lines, _ in server.requests], [4, 4, 2])
        self.assertEqual(taken[3]["message"], "entry 3")
        self.assertEqual(taken[3]["level"], "warning")
        self.assertEqual(taken[3]["service"], "shop")
        self.assertIsInstance(taken[3]["time"], int)
        self.assertEqual(handler.sent, 10)

    def test_sends_a_partial_batch_after_flush_interval(self):
        server = self.serve(lambda lines, n: 202)
        log, _ = self.logger(server.url, batch_size=100, flush_interval=0.05)
        log.info("alone")
        wait_until(lambda: len(server.taken()) == 1)

    def test_reuses_one_key_for_every_retry_of_a_batch_after_429_503_5xx_and_a_lost_answer(self):
        script = [(429, "{}", {"retry-after": "0"}), "lose", 503, (500, '{"error":"INTERNAL"}'), 202]
        server = self.serve(lambda lines, n: script[n] if n < len(script) else 202)
        log, handler = self.logger(server.url, batch_size=3)
        for i in range(6):
            log.info("e%d", i)
        handler.close()
        keys = [key for key, _, _ in server.requests]
        self.assertEqual(len(keys), 6)
        self.assertEqual(len(set(keys[:5])), 1, "every retry of the first batch carries its key")
        self.assertNotEqual(keys[5], keys[0])
        self.assertEqual([e["message"] for e in server.taken()], [f"e{i}" for i in range(6)])
        self.assertEqual(handler.retries, 4)

    def test_waits_retry_after(self):
        server = self.serve(lambda lines, n: (429, "{}", {"retry-after": "1"}) if n == 0 else 202)
        log, handler = self.logger(server.url, batch_size=1, max_retry_delay=30)
        started = time.monotonic()
        log.info("once")
        wait_until(lambda: len(server.taken()) == 1)
        self.assertGreaterEqual(time.monotonic() - started, 0.9)

    def test_splits_a_batch_answered_413_each_half_under_its_own_key(self):
        server = self.serve(lambda lines, n: 413 if len(lines) > 3 else 202)
        log, handler = self.logger(server.url, batch_size=8)
        for i in range(8):
            log.info("e%d", i)
        handler.close()
        self.assertEqual([e["message"] for e in server.taken()], [f"e{i}" for i in range(8)])
        keys = [key for key, _, _ in server.requests]
        self.assertEqual(len(set(keys)), len(keys))

    def test_drops_a_refused_batch_to_stderr_and_goes_on(self):
        server = self.serve(lambda lines, n: (400, '{"error":"INVALID_EVENT_ID","line":1}') if n == 0 else 202)
        log, handler = self.logger(server.url, batch_size=2)
        for i in range(4):
            log.info("e%d", i)
        handler.close()
        self.assertEqual([e["message"] for e in server.taken()], ["e2", "e3"])
        out = self.stderr.getvalue()
        self.assertIn('sidelog answered 400 {"error":"INVALID_EVENT_ID","line":1}; writing 2 entries here', out)
        self.assertIn('"message": "e0"', out)
        self.assertEqual((handler.spilled, handler.sent), (2, 2))

    def test_does_not_resend_a_500_spool_write_failed(self):
        server = self.serve(lambda lines, n: (500, '{"error":"SPOOL_WRITE_FAILED"}') if n == 0 else 202)
        log, handler = self.logger(server.url, batch_size=2)
        for i in range(4):
            log.info("e%d", i)
        handler.close()
        self.assertEqual(len(server.requests), 2)
        self.assertIn("500 SPOOL_WRITE_FAILED); not resending", self.stderr.getvalue())
        self.assertEqual(handler.retries, 0)

    def test_bounded_queue_drops_and_counts_without_blocking_the_app(self):
        release = threading.Event()

        def script(lines, n):
            release.wait(30)
            return 202

        server = self.serve(script)
        log, handler = self.logger(server.url, batch_size=1, max_queue=5)
        started = time.monotonic()
        log.info("in flight")
        wait_until(lambda: handler._sending == 1)
        for i in range(20):
            log.info("e%d", i)
        self.assertLess(time.monotonic() - started, 5.0)
        self.assertEqual(handler.dropped, 15)
        self.assertIn("queue full (5 entries)", self.stderr.getvalue())
        release.set()
        handler.close()
        self.assertEqual([e["message"] for e in server.taken()], ["in flight"] + [f"e{i}" for i in range(5)])

    def test_close_with_sidelog_unreachable_returns_within_close_timeout_and_writes_entries_to_stderr(self):
        server = self.serve(lambda lines, n: 202)
        url = server.url
        server.stop()
        self.servers.remove(server)
        log, handler = self.logger(url, close_timeout=0.5, max_retry_delay=0.1)
        for i in range(3):
            log.info("e%d", i)
        started = time.monotonic()
        handler.close()
        self.assertLess(time.monotonic() - started, 3.0)
        out = self.stderr.getvalue()
        self.assertIn("writing 3 entries here instead", out)
        for i in range(3):
            self.assertIn(f'"message": "e{i}"', out)
        self.assertEqual(handler.spilled, 3)

    def test_never_raises_into_the_app(self):
        server = self.serve(lambda lines, n: 202)
        log, handler = self.logger(server.url, batch_size=1)

        class Unprintable:
            def __str__(self):
                raise RuntimeError("no")

        errors = io.StringIO()
        saved, sys.stderr = sys.stderr, errors
        try:
            log.info("odd", extra={"thing": Unprintable()})  # json default=str raises: handleError reports it
            log.info("fine", extra={"when": object()})  # default=str makes it a string
        finally:
            sys.stderr = saved
        handler.close()
        log.info("after close")  # written to stderr, not raised
        self.assertEqual([e["message"] for e in server.taken()], ["fine"])
        self.assertIn("RuntimeError", errors.getvalue())
        self.assertIn("a record logged after close()", self.stderr.getvalue())

    def test_sends_everything_at_interpreter_exit_without_close(self):
        server = self.serve(lambda lines, n: 202)
        script = (
            "import logging, sys\n"
            "from sidelog_handler import SidelogHandler\n"
            f"handler = SidelogHandler({server.url!r}, batch_size=1000, flush_interval=60)\n"
            "logging.getLogger().addHandler(handler)\n"
            "logging.getLogger().setLevel(logging.INFO)\n"
            "for i in range(250): logging.info('exit %d', i)\n"
        )
        subprocess.run([sys.executable, "-c", script], cwd=PACKAGE_DIR, check=True, timeout=60)
        self.assertEqual([e["message"] for e in server.taken()], [f"exit {i}" for i in range(250)])


if __name__ == "__main__":
    unittest.main()
