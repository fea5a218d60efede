package sidelog

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// answer is what the scripted server does with the n-th request: a status (and body, headers), or lose it (take
// the body, then close the connection without an answer).
type answer struct {
	status  int
	body    string
	headers map[string]string
	lose    bool
}

type request struct {
	key   string
	lines []string
	given answer
}

type scripted struct {
	*httptest.Server
	mu       sync.Mutex
	requests []request
}

func serve(t *testing.T, script func(lines []string, n int) answer) *scripted {
	t.Helper()
	s := &scripted{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		lines := strings.Split(string(body), "\n")
		s.mu.Lock()
		given := script(lines, len(s.requests))
		s.requests = append(s.requests, request{r.Header.Get("Idempotency-Key"), lines, given})
		s.mu.Unlock()
		if given.lose {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		for name, value := range given.headers {
			w.Header().Set(name, value)
		}
		if given.body == "" {
			given.body = "{}"
		}
		w.WriteHeader(given.status)
		_, _ = io.WriteString(w, given.body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *scripted) snapshot() []request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]request(nil), s.requests...)
}

// taken is the "n" field of every entry answered 202, in order.
func (s *scripted) taken(t *testing.T) []int {
	t.Helper()
	var ns []int
	for _, r := range s.snapshot() {
		if r.given.status != http.StatusAccepted {
			continue
		}
		for _, line := range r.lines {
			var entry struct{ N int }
			if err := json.Unmarshal([]byte(line), &entry); err != nil {
				t.Fatalf("bad line %q: %v", line, err)
			}
			ns = append(ns, entry.N)
		}
	}
	return ns
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newClient(url string, opts Options) (*Client, *syncBuffer) {
	stderr := &syncBuffer{}
	opts.URL = url
	opts.Stderr = stderr
	if opts.MaxRetryDelay == 0 {
		opts.MaxRetryDelay = 50 * time.Millisecond
	}
	return New(opts), stderr
}

func entry(n int) []byte { return []byte(fmt.Sprintf(`{"n":%d}`, n)) }

func upTo(n int) []int {
	ns := make([]int, n)
	for i := range ns {
		ns[i] = i
	}
	return ns
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// waitUntil polls a condition with a generous deadline: a safety net, not a measure of speed.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestBatchesInOrder(t *testing.T) {
	s := serve(t, func([]string, int) answer { return answer{status: 202} })
	c, _ := newClient(s.URL, Options{BatchSize: 4})
	for i := 0; i < 10; i++ {
		c.Send(entry(i))
	}
	c.Close()
	if got := s.taken(t); !equalInts(got, upTo(10)) {
		t.Fatalf("taken %v", got)
	}
	var sizes []int
	for _, r := range s.snapshot() {
		sizes = append(sizes, len(r.lines))
	}
	if !equalInts(sizes, []int{4, 4, 2}) {
		t.Fatalf("batch sizes %v", sizes)
	}
	if st := c.Stats(); st.Sent != 10 {
		t.Fatalf("stats %+v", st)
	}
}

func TestSendsAPartialBatchAfterFlushInterval(t *testing.T) {
	s := serve(t, func([]string, int) answer { return answer{status: 202} })
	c, _ := newClient(s.URL, Options{FlushInterval: 20 * time.Millisecond})
	defer c.Close()
	c.Send(entry(0))
	waitUntil(t, "the entry is sent", func() bool { return len(s.taken(t)) == 1 })
}

func TestOneKeyPerBatchReusedOnEveryRetry(t *testing.T) {
	script := []answer{
		{status: 429, headers: map[string]string{"Retry-After": "0"}},
		{lose: true},
		{status: 503},
		{status: 500, body: `{"error":"INTERNAL"}`},
	}
	s := serve(t, func(_ []string, n int) answer {
		if n < len(script) {
			return script[n]
		}
		return answer{status: 202}
	})
	c, _ := newClient(s.URL, Options{BatchSize: 3})
	for i := 0; i < 6; i++ {
		c.Send(entry(i))
	}
	c.Close()
	reqs := s.snapshot()
	if len(reqs) != 6 {
		t.Fatalf("%d requests", len(reqs))
	}
	for _, r := range reqs[1:5] {
		if r.key != reqs[0].key {
			t.Fatalf("a retry changed the key: %q then %q", reqs[0].key, r.key)
		}
	}
	if reqs[5].key == reqs[0].key {
		t.Fatal("the second batch reused the first batch's key")
	}
	if !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(reqs[0].key) {
		t.Fatalf("key %q is not a UUID", reqs[0].key)
	}
	if got := s.taken(t); !equalInts(got, upTo(6)) {
		t.Fatalf("taken %v", got)
	}
	// Go's transport itself resends a request with an Idempotency-Key whose reused connection closed without an
	// answer, so the lost answer may cost no retry of ours.
	if st := c.Stats(); st.Retries < 3 || st.Sent != 6 {
		t.Fatalf("stats %+v", st)
	}
}

func TestWaitsRetryAfter(t *testing.T) {
	s := serve(t, func(_ []string, n int) answer {
		if n == 0 {
			return answer{status: 429, headers: map[string]string{"Retry-After": "1"}}
		}
		return answer{status: 202}
	})
	c, _ := newClient(s.URL, Options{BatchSize: 1, MaxRetryDelay: 30 * time.Second})
	defer c.Close()
	started := time.Now()
	c.Send(entry(0))
	waitUntil(t, "the entry is taken", func() bool { return len(s.taken(t)) == 1 })
	if waited := time.Since(started); waited < 900*time.Millisecond {
		t.Fatalf("resent after %v, before Retry-After", waited)
	}
}

func TestSplitsOn413EachHalfUnderItsOwnKey(t *testing.T) {
	s := serve(t, func(lines []string, _ int) answer {
		if len(lines) > 3 {
			return answer{status: 413}
		}
		return answer{status: 202}
	})
	c, _ := newClient(s.URL, Options{BatchSize: 8})
	for i := 0; i < 8; i++ {
		c.Send(entry(i))
	}
	c.Close()
	if got := s.taken(t); !equalInts(got, upTo(8)) {
		t.Fatalf("taken %v", got)
	}
	keys := map[string]bool{}
	for _, r := range s.snapshot() {
		if keys[r.key] {
			t.Fatalf("key %q used for two bodies", r.key)
		}
		keys[r.key] = true
	}
}

func TestDropsARefusedBatchToStderrAndGoesOn(t *testing.T) {
	s := serve(t, func(_ []string, n int) answer {
		if n == 0 {
			return answer{status: 400, body: `{"error":"INVALID_EVENT_ID","line":1}`}
		}
		return answer{status: 202}
	})
	c, stderr := newClient(s.URL, Options{BatchSize: 2})
	for i := 0; i < 4; i++ {
		c.Send(entry(i))
	}
	c.Close()
	if got := s.taken(t); !equalInts(got, []int{2, 3}) {
		t.Fatalf("taken %v", got)
	}
	out := stderr.String()
	if !strings.Contains(out, `sidelog answered 400 {"error":"INVALID_EVENT_ID","line":1}; writing 2 entries here instead`) ||
		!strings.Contains(out, `{"n":0}`) || !strings.Contains(out, `{"n":1}`) {
		t.Fatalf("stderr: %s", out)
	}
	if st := c.Stats(); st.Spilled != 2 || st.Sent != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestDoesNotResendSpoolWriteFailed(t *testing.T) {
	s := serve(t, func(_ []string, n int) answer {
		if n == 0 {
			return answer{status: 500, body: `{"error":"SPOOL_WRITE_FAILED"}`}
		}
		return answer{status: 202}
	})
	c, stderr := newClient(s.URL, Options{BatchSize: 2})
	for i := 0; i < 4; i++ {
		c.Send(entry(i))
	}
	c.Close()
	if n := len(s.snapshot()); n != 2 {
		t.Fatalf("%d requests, want 2", n)
	}
	if !strings.Contains(stderr.String(), "(500 SPOOL_WRITE_FAILED); not resending") {
		t.Fatalf("stderr: %s", stderr.String())
	}
}

func TestBoundedQueueDropsAndCountsWithoutBlocking(t *testing.T) {
	release := make(chan struct{})
	s := serve(t, func([]string, int) answer {
		<-release
		return answer{status: 202}
	})
	c, stderr := newClient(s.URL, Options{BatchSize: 1, MaxQueue: 5})
	c.Send(entry(0))
	waitUntil(t, "the first entry is in flight", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.sending == 1
	})
	started := time.Now()
	accepted := 0
	for i := 1; i <= 20; i++ {
		if c.Send(entry(i)) {
			accepted++
		}
	}
	if time.Since(started) > 5*time.Second || accepted != 5 || c.Stats().Dropped != 15 {
		t.Fatalf("accepted %d, stats %+v", accepted, c.Stats())
	}
	if !strings.Contains(stderr.String(), "queue full (5 entries)") {
		t.Fatalf("stderr: %s", stderr.String())
	}
	close(release)
	c.Close()
	if got := s.taken(t); !equalInts(got, upTo(6)) {
		t.Fatalf("taken %v", got)
	}
}

func TestCloseWithSidelogUnreachableIsBoundedAndSpills(t *testing.T) {
	s := serve(t, func([]string, int) answer { return answer{status: 202} })
	url := s.URL
	s.Close()
	c, stderr := newClient(url, Options{CloseTimeout: 500 * time.Millisecond, MaxRetryDelay: 100 * time.Millisecond})
	for i := 0; i < 3; i++ {
		c.Send(entry(i))
	}
	started := time.Now()
	c.Close()
	if took := time.Since(started); took > 3*time.Second {
		t.Fatalf("Close took %v", took)
	}
	out := stderr.String()
	if !strings.Contains(out, "writing 3 entries here instead") || !strings.Contains(out, `{"n":2}`) {
		t.Fatalf("stderr: %s", out)
	}
	if c.Send(entry(9)) || !strings.Contains(stderr.String(), "an entry sent after Close") {
		t.Fatal("an entry sent after Close must go to stderr")
	}
}

func TestCloseAbortsARequestThatHangs(t *testing.T) {
	hang := make(chan struct{})
	defer close(hang)
	s := serve(t, func([]string, int) answer {
		<-hang
		return answer{status: 202}
	})
	c, stderr := newClient(s.URL, Options{CloseTimeout: 300 * time.Millisecond, RequestTimeout: time.Minute})
	c.Send(entry(0))
	started := time.Now()
	c.Close()
	if took := time.Since(started); took > 3*time.Second {
		t.Fatalf("Close took %v", took)
	}
	if !strings.Contains(stderr.String(), `{"n":0}`) {
		t.Fatalf("stderr: %s", stderr.String())
	}
}

func TestFlushWaitsUntilSent(t *testing.T) {
	s := serve(t, func([]string, int) answer { return answer{status: 202} })
	c, _ := newClient(s.URL, Options{BatchSize: 1000, FlushInterval: time.Hour})
	defer c.Close()
	for i := 0; i < 5; i++ {
		c.Send(entry(i))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := s.taken(t); !equalInts(got, upTo(5)) {
		t.Fatalf("taken %v", got)
	}
}
