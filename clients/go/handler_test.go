//go:build go1.21

package sidelog

import (
	"context"
	"encoding/json"
	"log/slog"
	"testing"
	"testing/slogtest"
	"time"
)

// The handler against the standard library's own conformance test for slog handlers, with the entries as sidelog
// receives them (slogtest expects the message under "msg", which sidelog's entries call "message").
func TestHandlerConformsToSlogtest(t *testing.T) {
	s := serve(t, func([]string, int) answer { return answer{status: 202} })
	c, _ := newClient(s.URL, Options{FlushInterval: time.Hour})
	h := NewHandler(c, &HandlerOptions{Level: slog.LevelDebug})
	results := func() []map[string]any {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := c.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		var entries []map[string]any
		for _, r := range s.snapshot() {
			for _, line := range r.lines {
				var entry map[string]any
				if err := json.Unmarshal([]byte(line), &entry); err != nil {
					t.Fatalf("bad line %q: %v", line, err)
				}
				entry[slog.MessageKey] = entry["message"]
				delete(entry, "message")
				entries = append(entries, entry)
			}
		}
		return entries
	}
	if err := slogtest.TestHandler(h, results); err != nil {
		t.Fatal(err)
	}
	c.Close()
}

func TestHandlerEntryShape(t *testing.T) {
	s := serve(t, func([]string, int) answer { return answer{status: 202} })
	c, _ := newClient(s.URL, Options{})
	logger := slog.New(NewHandler(c, nil)).With("service", "shop").WithGroup("req")
	logger.Debug("not handled at the default level")
	logger.Warn("order paid", "id", 1234, slog.Duration("took", 1500*time.Millisecond))
	c.Close()
	var entries []map[string]any
	for _, r := range s.snapshot() {
		for _, line := range r.lines {
			var entry map[string]any
			if err := json.Unmarshal([]byte(line), &entry); err != nil {
				t.Fatal(err)
			}
			entries = append(entries, entry)
		}
	}
	if len(entries) != 1 {
		t.Fatalf("entries %v", entries)
	}
	e := entries[0]
	req, _ := e["req"].(map[string]any)
	if e["message"] != "order paid" || e["level"] != "warn" || e["service"] != "shop" ||
		req["id"] != float64(1234) || req["took"] != "1.5s" {
		t.Fatalf("entry %v", e)
	}
	if _, ok := e["time"].(float64); !ok {
		t.Fatalf("time %v", e["time"])
	}
}
