package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/eventtap/eventtap/internal/testkit"
)

func runCLI(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = run(args, &o, &e)
	return code, o.String(), e.String()
}

func TestCLI(t *testing.T) {
	broken := "testdata/config/validate-errors.yaml"
	tests := []struct {
		name     string
		args     []string
		code     int
		stdout   string // substring
		stderrRE string // substring
	}{
		{"version", []string{"version"}, 0, "eventtap ", ""},
		{"no command", nil, 2, "", "Usage:"},
		{"unknown command", []string{"frobnicate"}, 2, "", `unknown command "frobnicate"`},
		{"validate ok", []string{"validate", "--config", "config.example.yaml"}, 0, "config.example.yaml: ok (4 rules from inline)", ""},
		{"validate needs config", []string{"validate"}, 2, "", "--config FILE is required"},
		{"validate broken", []string{"validate", "--config", broken}, 1, "", broken + ":2:3: proxy.listen:"},
		{"validate missing file", []string{"validate", "--config", "nope.yaml"}, 1, "", "nope.yaml:1:1: cannot read the configuration file"},
		{"serve refuses broken", []string{"serve", "--config", broken}, 1, "", "refusing to start"},
		{"rules test", []string{"rules", "test", "--config", "config.example.yaml", "--exchange", "testdata/exchange-create.json"}, 0,
			"rule order-created: emits ORDER_CREATED for subject \"17\"", ""},
		{"rules test no match", []string{"rules", "test", "--config", "config.example.yaml", "--exchange", "testdata/exchange-other.json"}, 0,
			"no rule's method and path match", ""},
		{"rules test keeps an encoded slash in its segment, as the proxy does", []string{"rules", "test", "--config", "config.example.yaml", "--exchange", "testdata/exchange-cancel-encoded.json"}, 0,
			"rule order-canceled: emits ORDER_CANCELED for subject \"a/b\"", ""},
		{"rules test needs exchange", []string{"rules", "test", "--config", "config.example.yaml"}, 2, "", "--exchange EX.json is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runCLI(tt.args...)
			if code != tt.code || !strings.Contains(out, tt.stdout) || !strings.Contains(errOut, tt.stderrRE) {
				t.Errorf("eventtap %v: exit %d, stdout %q, stderr %q; want exit %d, stdout ~ %q, stderr ~ %q",
					tt.args, code, out, errOut, tt.code, tt.stdout, tt.stderrRE)
			}
		})
	}
	// serve prints the same problems validate does.
	_, _, v := runCLI("validate", "--config", broken)
	_, _, s := runCLI("serve", "--config", broken)
	if !strings.HasPrefix(s, v) {
		t.Errorf("serve and validate report differently:\nvalidate:\n%s\nserve:\n%s", v, s)
	}
}

func TestDemo(t *testing.T) {
	// The walkthrough edits orders straight in the demo API and the test
	// sends requests to the proxy, so it binds their listeners (port 0)
	// and passes them; the demo binds the others on port 0 itself.
	o := demoOptions{admin: "127.0.0.1:0", receiver: "127.0.0.1:0"}
	o.ln.proxy, o.ln.api = listen(t), listen(t)
	o.proxy, o.api = o.ln.proxy.Addr().String(), o.ln.api.Addr().String()
	var out, logs testkit.SyncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runDemo(ctx, o, &out, &logs) }()
	waitFor := func(what string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !strings.Contains(out.String(), what) {
			if time.Now().After(deadline) {
				cancel()
				t.Fatalf("demo output lacks %q:\n%s\nlogs:\n%s", what, out.String(), logs.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("Press Ctrl-C to stop.")
	resp, err := http.Post("http://"+o.proxy+"/orders", "application/json", strings.NewReader(`{"customer":"ada"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /orders through the demo: %d", resp.StatusCode)
	}
	waitFor("receiver: verified ORDER_CREATED")
	// The walkthrough the banner prints: OPEN->PAID on the first PATCH, and
	// a change made straight in the API noticed on the next read.
	send := func(method, url, body string) {
		t.Helper()
		req, _ := http.NewRequest(method, url, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s %s: %d", method, url, resp.StatusCode)
		}
	}
	send(http.MethodPatch, "http://"+o.proxy+"/orders/1", `{"status":"PAID"}`)
	waitFor(`"change":{"previous":"OPEN","current":"PAID"}`)
	send(http.MethodPatch, "http://"+o.api+"/orders/1", `{"status":"SHIPPED"}`)
	send(http.MethodGet, "http://"+o.proxy+"/orders/1", "")
	waitFor(`"change":{"previous":"PAID","current":"SHIPPED"}`)
	for _, step := range []string{"/orders -H", "/orders/1 -H", "http://" + o.api + "/orders/1 -H", "curl -s http://" + o.proxy + "/orders/1\n"} {
		if !strings.Contains(out.String(), step) {
			t.Errorf("the banner lacks the walkthrough step %q", step)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("demo stopped with %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("demo did not stop within 30s")
	}
	if strings.Contains(out.String(), "REJECTED") {
		t.Errorf("the demo receiver rejected a delivery:\n%s", out.String())
	}
}

// listen binds a free port of 127.0.0.1 and keeps it: code under test that
// is handed the listener cannot lose the port to a parallel test.
func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}
