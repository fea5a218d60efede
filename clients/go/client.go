// Package sidelog ships an application's log entries to the sidelog sidecar.
//
// Client is the dependency-free core: it queues JSON entries (bounded, counting what it drops), batches them by
// count, bytes and age into NDJSON bodies, and POSTs them to sidelog's /logs one request at a time, so order is
// kept. Every batch carries one Idempotency-Key, reused on every retry of it, so a request whose answer was lost is
// sent again without being stored twice. 429 and 503 are waited out (Retry-After), 413 splits the batch, a body
// sidelog refuses (400, 415, 422) is written to stderr and dropped, and nothing here panics into the application.
// Close sends what is queued, waiting at most CloseTimeout; what is still unsent then goes to stderr.
//
// On Go 1.21 and later, NewHandler wraps a Client in a log/slog Handler.
package sidelog

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"math"
	mathrand "math/rand"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"
)

// Options configure a Client. Zero values take the defaults shown.
type Options struct {
	URL            string        // sidelog's endpoint: http://127.0.0.1:9090/logs
	BatchSize      int           // entries per request: 100
	BatchBytes     int           // bytes per request, well under sidelog's MAX_BODY_BYTES: 1 MiB
	FlushInterval  time.Duration // a partial batch is sent this long after its first entry: 1 s
	MaxQueue       int           // entries waiting at most; past it Send drops and counts: 10,000
	MaxRetryDelay  time.Duration // the longest wait between two attempts of one request: 30 s
	RequestTimeout time.Duration // one attempt; then it is sent again under the same key: 10 s
	CloseTimeout   time.Duration // how long Close keeps trying: 5 s
	HTTPClient     *http.Client  // http.DefaultClient
	Stderr         io.Writer     // where refused and unsent entries are written: os.Stderr
}

// Stats counts what a Client has done.
type Stats struct {
	Sent    uint64 // entries sidelog took
	Dropped uint64 // entries refused by Send because the queue was full
	Spilled uint64 // entries written to Stderr instead: refused by sidelog, or unsent at Close
	Retries uint64 // requests sent again after a 429, 503, 5xx or a network error
}

// Client batches entries and sends them to sidelog. It is safe for concurrent use.
type Client struct {
	opts Options

	mu         sync.Mutex
	queue      [][]byte
	queueBytes int
	firstAt    time.Time // when the oldest queued entry came
	sending    int       // entries taken from the queue and not yet sent or spilled
	flushAsked bool
	dropping   bool
	closed     bool
	deadline   time.Time     // set by Close: retries stop there
	progress   chan struct{} // closed (and replaced) whenever a batch is done
	stats      Stats

	wake     chan struct{} // a new entry or a flush: the sender looks at the queue again
	closing  chan struct{} // closed by Close
	stopped  context.Context
	stop     context.CancelFunc // at Close's deadline: requests in flight give up
	done     chan struct{}      // closed when the sender has returned
	stderrMu sync.Mutex
}

// New starts a Client and its sender goroutine. Close it to send what is left.
func New(opts Options) *Client {
	if opts.URL == "" {
		opts.URL = "http://127.0.0.1:9090/logs"
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 100
	}
	if opts.BatchBytes <= 0 {
		opts.BatchBytes = 1 << 20
	}
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = time.Second
	}
	if opts.MaxQueue <= 0 {
		opts.MaxQueue = 10_000
	}
	if opts.MaxRetryDelay <= 0 {
		opts.MaxRetryDelay = 30 * time.Second
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = 10 * time.Second
	}
	if opts.CloseTimeout <= 0 {
		opts.CloseTimeout = 5 * time.Second
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = http.DefaultClient
	}
	if opts.Stderr == nil {
		opts.Stderr = os.Stderr
	}
	stopped, stop := context.WithCancel(context.Background())
	c := &Client{
		opts:     opts,
		progress: make(chan struct{}),
		wake:     make(chan struct{}, 1),
		closing:  make(chan struct{}),
		stopped:  stopped,
		stop:     stop,
		done:     make(chan struct{}),
	}
	go c.run()
	return c
}

// Send queues one entry: a JSON object, without a trailing newline. It never blocks on the network. It returns
// false when the entry was dropped (the queue is full, counted in Stats.Dropped) or written to Stderr (after Close).
func (c *Client) Send(entry []byte) bool {
	line := append([]byte(nil), bytes.TrimSpace(entry)...)
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		c.writeStderr("sidelog client: an entry sent after Close was written here instead", [][]byte{line})
		return false
	}
	if len(c.queue) >= c.opts.MaxQueue {
		c.stats.Dropped++
		first := !c.dropping
		c.dropping = true
		c.mu.Unlock()
		if first {
			c.writeStderr(fmt.Sprintf("sidelog client: queue full (%d entries); dropping entries until it drains", c.opts.MaxQueue), nil)
		}
		return false
	}
	c.dropping = false
	if len(c.queue) == 0 {
		c.firstAt = time.Now()
	}
	c.queue = append(c.queue, line)
	c.queueBytes += len(line) + 1
	c.mu.Unlock()
	c.poke()
	return true
}

// Flush asks for what is queued to be sent now, and waits until it is (or ctx ends).
func (c *Client) Flush(ctx context.Context) error {
	for {
		c.mu.Lock()
		if len(c.queue) == 0 && c.sending == 0 {
			c.mu.Unlock()
			return nil
		}
		c.flushAsked = true
		progress := c.progress
		c.mu.Unlock()
		c.poke()
		select {
		case <-progress:
		case <-c.done:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Close sends what is queued, trying for at most CloseTimeout; what is left then is written to Stderr. Entries
// sent after Close go to Stderr too. Calling it again does nothing.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		<-c.done
		return nil
	}
	c.closed = true
	c.deadline = time.Now().Add(c.opts.CloseTimeout)
	c.mu.Unlock()
	close(c.closing)
	timer := time.AfterFunc(c.opts.CloseTimeout, c.stop)
	defer timer.Stop()
	select {
	case <-c.done:
	case <-time.After(c.opts.CloseTimeout + time.Second):
	}
	c.mu.Lock()
	left := c.queue
	c.queue, c.queueBytes = nil, 0
	c.mu.Unlock()
	if len(left) > 0 {
		c.spill(left, "sidelog did not take them before CloseTimeout")
	}
	return nil
}

// Stats returns the counters so far.
func (c *Client) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

func (c *Client) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *Client) run() {
	defer close(c.done)
	for {
		batch, closing := c.next()
		if len(batch) == 0 {
			if closing {
				return
			}
			continue
		}
		c.sendSafely(batch)
		c.mu.Lock()
		c.sending = 0
		close(c.progress)
		c.progress = make(chan struct{})
		c.mu.Unlock()
	}
}

// next waits until a batch is due (full, old enough, asked for by Flush, or Close), and takes it.
func (c *Client) next() ([][]byte, bool) {
	for {
		c.mu.Lock()
		closing := c.closed
		var wait time.Duration
		due := closing || c.flushAsked && len(c.queue) > 0 ||
			len(c.queue) >= c.opts.BatchSize || c.queueBytes >= c.opts.BatchBytes
		if !due && len(c.queue) > 0 {
			wait = c.opts.FlushInterval - time.Since(c.firstAt)
			due = wait <= 0
		}
		if due {
			batch := c.take()
			c.mu.Unlock()
			return batch, closing
		}
		c.flushAsked = false
		empty := len(c.queue) == 0
		c.mu.Unlock()
		var timer <-chan time.Time
		if !empty {
			timer = time.After(wait)
		}
		select {
		case <-c.wake:
		case <-c.closing:
		case <-timer:
		}
	}
}

// take removes the next batch from the queue: at most BatchSize entries and BatchBytes (at least one entry).
// The caller holds c.mu.
func (c *Client) take() [][]byte {
	n, size := 0, 0
	for n < len(c.queue) && n < c.opts.BatchSize {
		lineSize := len(c.queue[n]) + 1
		if n > 0 && size+lineSize > c.opts.BatchBytes {
			break
		}
		n++
		size += lineSize
	}
	batch := c.queue[:n:n]
	c.queue = c.queue[n:]
	c.queueBytes -= size
	c.sending = n
	if len(c.queue) == 0 {
		c.flushAsked = false
	} else {
		// What is left waited at least as long as this batch: it may go as soon as this one is sent.
		c.firstAt = time.Now().Add(-c.opts.FlushInterval)
	}
	return batch
}

// sendSafely sends one batch; the sender survives anything, a panic included: that batch then goes to Stderr.
func (c *Client) sendSafely(batch [][]byte) {
	defer func() {
		if r := recover(); r != nil {
			c.spill(batch, fmt.Sprintf("the client failed sending it (%v)", r))
		}
	}()
	c.send(batch, newKey())
}

// send sends one batch under key until sidelog takes it, refuses it for good, or Close's deadline passes.
func (c *Client) send(lines [][]byte, key string) {
	body := bytes.Join(lines, []byte("\n"))
	for attempt := 0; ; attempt++ {
		status, text, retryAfter := c.post(body, key)
		switch {
		case status == http.StatusAccepted:
			c.count(func(s *Stats) { s.Sent += uint64(len(lines)) })
			return
		case status == http.StatusInternalServerError && errorCode(text) == "SPOOL_WRITE_FAILED":
			// sidelog took the entries but could not make them durable, and says not to resend them.
			c.count(func(s *Stats) { s.Sent += uint64(len(lines)) })
			c.writeStderr(fmt.Sprintf("sidelog client: sidelog took %d entries without writing them to its spool (500 SPOOL_WRITE_FAILED); not resending", len(lines)), nil)
			return
		case status == http.StatusRequestEntityTooLarge && len(lines) > 1:
			// Each half is another request, so another key.
			half := (len(lines) + 1) / 2
			c.send(lines[:half], newKey())
			c.send(lines[half:], newKey())
			return
		case status != 0 && status != http.StatusTooManyRequests && status < 500:
			// 400, 413 for one entry, 415, 422: the body is what is wrong, and retrying cannot change it.
			c.spill(lines, fmt.Sprintf("sidelog answered %d %s", status, truncate(text, 300)))
			return
		}
		delay := retryAfter
		if delay < 0 {
			backoff := 100 * time.Millisecond * time.Duration(math.Pow(2, math.Min(float64(attempt), 20)))
			delay = time.Duration(float64(minDuration(backoff, c.opts.MaxRetryDelay)) * (0.5 + mathrand.Float64()/2))
		}
		delay = minDuration(delay, c.opts.MaxRetryDelay)
		c.mu.Lock()
		deadline, closing := c.deadline, c.closed
		c.mu.Unlock()
		if closing && time.Now().Add(delay).After(deadline) {
			c.spill(lines, "sidelog unreachable at Close")
			return
		}
		c.count(func(s *Stats) { s.Retries++ })
		c.sleep(delay, closing)
	}
}

// sleep waits between attempts; Close cuts the wait short, so that the batch is tried once more at once.
func (c *Client) sleep(d time.Duration, closing bool) {
	timer := time.After(d)
	if closing {
		<-timer
		return
	}
	select {
	case <-timer:
	case <-c.closing:
	}
}

// post makes one attempt: the status (0 when no answer came), the body, and Retry-After (-1 when absent).
func (c *Client) post(body []byte, key string) (int, string, time.Duration) {
	ctx, cancel := context.WithTimeout(c.stopped, c.opts.RequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.opts.URL, bytes.NewReader(body))
	if err != nil {
		panic(err) // a bad URL: sendSafely reports it with the batch
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	req.Header.Set("Idempotency-Key", key)
	res, err := c.opts.HTTPClient.Do(req)
	if err != nil {
		// Not up yet, restarting, reset, timed out, or the answer was lost: the same key again.
		return 0, "", -1
	}
	defer res.Body.Close()
	text, err := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	if err != nil {
		return 0, "", -1
	}
	return res.StatusCode, string(text), retryAfter(res.Header.Get("Retry-After"))
}

func (c *Client) count(update func(*Stats)) {
	c.mu.Lock()
	update(&c.stats)
	c.mu.Unlock()
}

// spill writes entries that cannot be delivered to Stderr, where the platform's log collection still sees them.
func (c *Client) spill(lines [][]byte, why string) {
	c.count(func(s *Stats) { s.Spilled += uint64(len(lines)) })
	c.writeStderr(fmt.Sprintf("sidelog client: %s; writing %d entries here instead", why, len(lines)), lines)
}

func (c *Client) writeStderr(message string, lines [][]byte) {
	c.stderrMu.Lock()
	defer c.stderrMu.Unlock()
	var out bytes.Buffer
	out.WriteString(message)
	out.WriteByte('\n')
	for _, line := range lines {
		out.Write(line)
		out.WriteByte('\n')
	}
	_, _ = c.opts.Stderr.Write(out.Bytes())
}

// retryAfter reads Retry-After: seconds (what sidelog sends) or an HTTP date; -1 when absent or unreadable.
func retryAfter(value string) time.Duration {
	if value == "" {
		return -1
	}
	if seconds, err := strconv.ParseFloat(value, 64); err == nil && seconds >= 0 {
		return time.Duration(seconds * float64(time.Second))
	}
	if when, err := http.ParseTime(value); err == nil {
		if d := time.Until(when); d > 0 {
			return d
		}
		return 0
	}
	return -1
}

func errorCode(text string) string {
	var body struct {
		Error string `json:"error"`
	}
	if json.Unmarshal([]byte(text), &body) != nil {
		return ""
	}
	return body.Error
}

// newKey is a random (version 4) UUID: one per batch.
func newKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // the OS's randomness does not fail on the platforms Go supports
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func minDuration(a, b time.Duration) time.Duration {
	if a < b {
		return a
	}
	return b
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
