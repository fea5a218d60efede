// Logging through sidelog from Go with the standard library only: entries are batched on the client (100 entries
// or 1 s), sent as NDJSON, and kept and re-sent after a 429 or 503 (waiting Retry-After) or while sidelog is not up.
//
//	go run examples/go/main.go      sends COUNT entries (default 10), then exits
package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"
)

const batchSize = 100

type Logger struct {
	url    string
	mu     sync.Mutex // guards queue only; sends happen outside it
	queue  []map[string]any
	wake   chan struct{}
	done   chan struct{}
	closed chan struct{}
}

func NewLogger(url string) *Logger {
	l := &Logger{url: url, wake: make(chan struct{}, 1), done: make(chan struct{}), closed: make(chan struct{})}
	go l.run()
	return l
}

func (l *Logger) Log(level, message string, fields map[string]any) {
	entry := map[string]any{"level": level, "message": message, "time": time.Now().UnixMilli()}
	for k, v := range fields {
		entry[k] = v
	}
	l.mu.Lock()
	l.queue = append(l.queue, entry)
	full := len(l.queue) >= batchSize
	l.mu.Unlock()
	if full {
		select {
		case l.wake <- struct{}{}:
		default:
		}
	}
}

// Close sends everything queued and returns when it is accepted.
func (l *Logger) Close() {
	close(l.done)
	<-l.closed
}

func (l *Logger) run() {
	ticker := time.NewTicker(time.Second)
	defer ticker.Stop()
	for {
		closing := false
		select {
		case <-ticker.C:
		case <-l.wake:
		case <-l.done:
			closing = true
		}
		for {
			l.mu.Lock()
			n := len(l.queue)
			if n > batchSize {
				n = batchSize
			}
			batch := append([]map[string]any(nil), l.queue[:n]...)
			l.mu.Unlock()
			if n == 0 {
				break
			}
			l.send(batch)
			l.mu.Lock()
			l.queue = l.queue[n:]
			l.mu.Unlock()
		}
		if closing {
			close(l.closed)
			return
		}
	}
}

func (l *Logger) send(batch []map[string]any) {
	var body bytes.Buffer
	enc := json.NewEncoder(&body) // one JSON object per line: NDJSON
	for _, entry := range batch {
		if err := enc.Encode(entry); err != nil {
			panic(err)
		}
	}
	for attempt := 0; ; attempt++ {
		delay := time.Duration(100<<min(attempt, 6)) * time.Millisecond
		res, err := http.Post(l.url, "application/x-ndjson", bytes.NewReader(body.Bytes()))
		if err == nil {
			text, _ := io.ReadAll(res.Body)
			res.Body.Close()
			switch {
			case res.StatusCode == http.StatusAccepted:
				return
			case res.StatusCode == http.StatusTooManyRequests || res.StatusCode == http.StatusServiceUnavailable:
				if seconds, err := strconv.Atoi(res.Header.Get("Retry-After")); err == nil && seconds > 0 {
					delay = time.Duration(seconds) * time.Second
				}
			default:
				// 400/413/415 name what is wrong with the body; retrying would not change it.
				panic(fmt.Sprintf("sidelog refused the batch: %d %s", res.StatusCode, text))
			}
		} // else: sidelog is not up yet (or restarting): keep the entries and try again
		time.Sleep(delay)
	}
}

func min(a, b int) int {
	if a < b {
		return a
	}
	return b
}

func main() {
	url := os.Getenv("SIDELOG_URL")
	if url == "" {
		url = "http://127.0.0.1:9090/logs"
	}
	runID := os.Getenv("RUN_ID")
	if runID == "" {
		b := make([]byte, 8)
		rand.Read(b)
		runID = hex.EncodeToString(b)
	}
	count := 10
	if c, err := strconv.Atoi(os.Getenv("COUNT")); err == nil {
		count = c
	}
	logger := NewLogger(url)
	for i := 0; i < count; i++ {
		logger.Log("info", fmt.Sprintf("example entry %d", i), map[string]any{"tag": fmt.Sprintf("%s-%d", runID, i), "lang": "go"})
	}
	logger.Close()
	fmt.Printf("sent %d entries tagged %s-*\n", count, runID)
}
