// The fault suite's Go app: sends COUNT entries through the Go client, PACE per 10 ms, tagged <PREFIX>-<n>.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"time"

	sidelog "sidelog/clients/go"
)

func main() {
	count, _ := strconv.Atoi(os.Getenv("COUNT"))
	pace, err := strconv.Atoi(os.Getenv("PACE"))
	if err != nil || pace <= 0 {
		pace = 10
	}
	client := sidelog.New(sidelog.Options{
		URL: os.Getenv("SIDELOG_URL"), BatchSize: 50, FlushInterval: 100 * time.Millisecond,
		MaxRetryDelay: 500 * time.Millisecond, CloseTimeout: time.Minute,
	})
	for i := 0; i < count; i++ {
		entry, _ := json.Marshal(map[string]any{
			"level": "info", "message": fmt.Sprintf("fault entry %d", i), "time": time.Now().UnixMilli(),
			"tag": fmt.Sprintf("%s-%d", os.Getenv("PREFIX"), i),
		})
		client.Send(entry)
		if i%pace == pace-1 {
			time.Sleep(10 * time.Millisecond)
		}
	}
	client.Close()
	st := client.Stats()
	fmt.Printf("logged %d: %d taken, %d to stderr, %d dropped\n", count, st.Sent, st.Spilled, st.Dropped)
}
