//go:build soak

package main

// The long versions of the fault suite (fault_test.go), for
// `go test -tags soak -run TestFaultSoak -v .`. They take minutes.

import (
	"math/rand/v2"
	"testing"
	"time"
)

// TestFaultSoakReceiverDown keeps a receiver down for minutes while 20
// subjects keep producing events, then brings it back: the whole backlog is
// delivered, in order per subject.
func TestFaultSoakReceiverDown(t *testing.T) {
	receiverOutage(t, outagePlan{
		outage:   3 * time.Minute,
		every:    2 * time.Second,
		subjects: 20,
		// 4.5 minutes of retries, at most 15 s apart.
		schedule: "[1s, 2s, 5s, 10s, 15s, 15s, 15s, 15s, 15s, 15s, 15s, 15s, 15s, 15s, 15s, 15s, 15s, 15s, 15s, 15s]",
		drain:    2 * time.Minute,
	})
}

// TestFaultSoakOddRequests sends 20,000 odd requests from a new seed each
// run (logged, to replay a failure with oddTraffic).
func TestFaultSoakOddRequests(t *testing.T) {
	oddTraffic(t, rand.Uint64(), 10, 2000)
}
