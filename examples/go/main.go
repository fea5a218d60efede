// Logging through sidelog from Go with clients/go: the client batches entries (100 entries or 1 s), sends them
// under one Idempotency-Key per batch (reused on every retry, so a lost answer never stores an entry twice), waits
// out 429/503, and writes anything sidelog refuses to stderr instead of panicking. On Go 1.21+ use it as a log/slog
// handler: slog.New(sidelog.NewHandler(client, nil)). This example sends JSON entries directly, so that it runs on
// older toolchains too.
//
//	cd examples/go && go run .      sends COUNT entries (default 10), then exits
package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"time"

	sidelog "sidelog/clients/go"
)

func main() {
	url := os.Getenv("SIDELOG_URL")
	if url == "" {
		url = "http://127.0.0.1:9090/logs"
	}
	runID := os.Getenv("RUN_ID")
	if runID == "" {
		b := make([]byte, 8)
		_, _ = rand.Read(b)
		runID = hex.EncodeToString(b)
	}
	count := 10
	if c, err := strconv.Atoi(os.Getenv("COUNT")); err == nil {
		count = c
	}
	// This program logs everything and exits at once, so its entries are sent while closing: give that a minute
	// (the default CloseTimeout, 5 s, suits an app whose client sends as it goes).
	client := sidelog.New(sidelog.Options{URL: url, CloseTimeout: time.Minute})
	for i := 0; i < count; i++ {
		entry, _ := json.Marshal(map[string]any{
			"level": "info", "message": fmt.Sprintf("example entry %d", i), "time": time.Now().UnixMilli(),
			"tag": fmt.Sprintf("%s-%d", runID, i), "lang": "go",
		})
		client.Send(entry)
	}
	client.Close() // sends what is queued, for at most CloseTimeout
	st := client.Stats()
	fmt.Printf("sent %d entries tagged %s-* (%d taken, %d to stderr, %d dropped)\n", count, runID, st.Sent, st.Spilled, st.Dropped)
}
