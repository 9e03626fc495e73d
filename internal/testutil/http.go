package testutil

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// HTTPGet fetches url from the host until it answers 200 or timeout
// passes, and returns the trimmed body.
func HTTPGet(t testing.TB, url string, timeout time.Duration) string {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	deadline := time.Now().Add(timeout)
	for {
		resp, err := client.Get(url)
		if err == nil {
			body, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if rerr == nil && resp.StatusCode == http.StatusOK {
				return strings.TrimSpace(string(body))
			}
			err = fmt.Errorf("status %s, %v", resp.Status, rerr)
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s from the host: %v", url, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
