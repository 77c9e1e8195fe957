package delivery

import (
	"net/http"
	"testing"
	"time"
)

func TestRetryAfterParsing(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"0", 0},
		{"120", 2 * time.Minute},
		{"999999", time.Hour},
		{"soon", 0},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
	}
	for _, tt := range tests {
		if got := parseRetryAfter(tt.in, now); got != tt.want {
			t.Errorf("parseRetryAfter(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
	d := &Dispatcher{cfg: Config{RetrySchedule: []time.Duration{time.Second}}}
	if d := d.retryDelay(1, 3*time.Hour); d != time.Hour {
		t.Errorf("retryDelay with a 3h Retry-After = %s, want the 1h cap", d)
	}
	if d := d.retryDelay(1, 500*time.Millisecond); d != time.Second {
		t.Errorf("retryDelay with a short Retry-After = %s, want the schedule's 1s", d)
	}
	d.cfg.Jitter = 0.2
	for range 100 {
		if d := d.retryDelay(1, 0); d < 800*time.Millisecond || d > 1200*time.Millisecond {
			t.Fatalf("jittered delay %s outside ±20%%", d)
		}
	}
}
