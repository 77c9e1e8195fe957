package outbox

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eventtap/eventtap/rules"
)

const crashChildEnv = "OUTBOX_CRASH_CHILD_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		crashChild(dir)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// crashChild commits events under load until it is killed, printing
// "ack SUBJECT N" for every event whose Commit returned nil.
func crashChild(dir string) {
	s, d := testConfigs(dir)
	d.RetrySchedule = []time.Duration{20 * time.Millisecond, 20 * time.Millisecond, 20 * time.Millisecond, 20 * time.Millisecond, 20 * time.Millisecond}
	o, err := Open(context.Background(), s, d, testTypes, nil, prometheus.NewRegistry())
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		os.Exit(2)
	}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			next := map[string]int{}
			for i := 0; ; i++ {
				subject := fmt.Sprintf("s%d", g*4+i%4)
				n := next[subject]
				ev := rules.Event{Rule: "crash", Type: "ORDER_UPDATED", Subject: subject,
					Data: json.RawMessage(fmt.Sprintf(`{"n":%d}`, n)), ObservedAt: time.Now()}
				if err := o.Commit(context.Background(), []rules.Event{ev}); err != nil {
					fmt.Fprintln(os.Stderr, "child commit:", err)
					os.Exit(3)
				}
				next[subject] = n + 1
				mu.Lock()
				fmt.Fprintf(out, "ack %s %d\n", subject, n)
				_ = out.Flush()
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

// TestCrashRecovery kills a committing, delivering child process with
// SIGKILL and checks that every acknowledged event is delivered after the
// store is reopened, in order per subject.
func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	dir := t.TempDir()
	type got struct {
		subject string
		n       int
	}
	var mu sync.Mutex
	var receipts []got
	rc := newReceiver(t, func(n int, r *received, w http.ResponseWriter) {
		var d struct{ N int }
		_ = json.Unmarshal(r.Payload.Data, &d)
		mu.Lock()
		receipts = append(receipts, got{r.Payload.Subject, d.N})
		mu.Unlock()
		if n%7 == 3 {
			w.WriteHeader(http.StatusServiceUnavailable) // some retries too
		}
	})
	o := openTestDir(t, dir)
	o.hook(t, rc.URL, "ORDER_UPDATED")
	o.close(t)

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := map[string]int{} // subject → highest acknowledged n
	ackCount := 0
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	killAt := time.After(4 * time.Second)
	killed := false
	for !killed {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatal("child exited before being killed")
			}
			f := strings.Fields(line)
			if len(f) != 3 || f[0] != "ack" {
				continue
			}
			n, _ := strconv.Atoi(f[2])
			acked[f[1]] = max(acked[f[1]], n)
			ackCount++
			if ackCount == 4000 {
				killed = true
			}
		case <-killAt:
			killed = true
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Acks already written before the kill still count.
	for line := range lines {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "ack" {
			n, _ := strconv.Atoi(f[2])
			acked[f[1]] = max(acked[f[1]], n)
			ackCount++
		}
	}
	_ = cmd.Wait()
	if ackCount < 100 {
		t.Fatalf("only %d acks before the kill", ackCount)
	}
	t.Logf("child acknowledged %d events over %d subjects before SIGKILL; receiver had %d requests", ackCount, len(acked), rc.count())

	openTestDir(t, dir) // delivers what the killed child acknowledged; closed by its cleanup
	waitFor(t, 20*time.Second, "every acknowledged event delivered", func() bool {
		mu.Lock()
		defer mu.Unlock()
		top := map[string]int{}
		for _, r := range receipts {
			top[r.subject] = max(top[r.subject], r.n+1)
		}
		for s, n := range acked {
			if top[s] < n+1 {
				return false
			}
		}
		return true
	})
	mu.Lock()
	defer mu.Unlock()
	last := map[string]int{}
	seen := map[got]bool{}
	for _, r := range receipts {
		if prev, ok := last[r.subject]; ok && r.n < prev {
			t.Fatalf("subject %s: n=%d delivered after n=%d", r.subject, r.n, prev)
		}
		last[r.subject] = r.n
		seen[r] = true
	}
	for s, top := range acked {
		for n := 0; n <= top; n++ {
			if !seen[got{s, n}] {
				t.Errorf("acknowledged event %s/%d never delivered", s, n)
			}
		}
	}
}
