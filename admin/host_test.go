package admin

import (
	"bytes"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestHostWithoutToken is the DNS rebinding attack: a page whose host name
// now resolves to 127.0.0.1 sends the admin API requests with its own name
// in Host. Without a token only loopback names may be answered.
func TestHostWithoutToken(t *testing.T) {
	e := newEnv(t, withToken(""))
	e.seedWebhook("https://a.example/hook", "ORDER_CREATED")
	_, port, _ := strings.Cut(strings.TrimPrefix(e.srv.URL, "http://"), ":")
	secrets := `{"query": "{ webhooks { edges { node { secret } } } }"}`

	do := func(method, host, accept, auth string) (int, string) {
		t.Helper()
		var body io.Reader
		target := e.srv.URL + "/graphql"
		if method == http.MethodPost {
			body = strings.NewReader(secrets)
		} else if accept != "text/html" {
			target += "?query=" + url.QueryEscape("{ webhooks { edges { node { secret } } } }")
		}
		req, err := http.NewRequest(method, target, body)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		req.Header.Set("Content-Type", "application/json")
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		resp, err := e.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	for _, host := range []string{
		"attacker.example:" + port, "attacker.example", "127.0.0.1.attacker.example:" + port,
		"localhost.attacker.example:" + port, "0.0.0.0:" + port, "[::2]:" + port, "2130706433:" + port,
	} {
		for _, tc := range []struct{ method, accept string }{
			{http.MethodPost, ""}, {http.MethodPost, mediaGraphQLResponse}, {http.MethodGet, mediaJSON}, {http.MethodGet, "text/html"},
		} {
			status, body := do(tc.method, host, tc.accept, "")
			if status != http.StatusForbidden || strings.Contains(body, "whsec_") ||
				!strings.Contains(body, "admin.token") || !strings.Contains(body, "DNS rebinding") {
				t.Errorf("Host %q, %s Accept %q: HTTP %d %.300s", host, tc.method, tc.accept, status, body)
			}
			if tc.accept != "text/html" && !strings.Contains(body, `"UNAUTHENTICATED"`) {
				t.Errorf("Host %q, %s: not a GraphQL error: %.300s", host, tc.method, body)
			}
		}
	}
	for _, host := range []string{
		"127.0.0.1:" + port, "localhost:" + port, "LocalHost:" + port, "localhost", "127.0.0.1",
		"127.3.4.5:" + port, "[::1]:" + port, "[::1]",
	} {
		for _, m := range []string{http.MethodPost, http.MethodGet} {
			if status, body := do(m, host, mediaJSON, ""); status != http.StatusOK || !strings.Contains(body, "whsec_") {
				t.Errorf("Host %q %s: HTTP %d %.300s", host, m, status, body)
			}
		}
		if status, body := do(http.MethodGet, host, "text/html", ""); status != http.StatusOK {
			t.Errorf("Host %q explorer: HTTP %d %.300s", host, status, body)
		}
	}
	// The other endpoints hold no secret and stay as they were.
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/healthz", nil)
	req.Host = "attacker.example"
	if resp, err := e.srv.Client().Do(req); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("healthz: %v %v", resp, err)
	}
}

// TestHostWithToken: with a token, any Host is answered, given the token.
func TestHostWithToken(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		auth   string
		status int
	}{{"", http.StatusUnauthorized}, {"Bearer " + testToken, http.StatusOK}} {
		req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/graphql", bytes.NewReader([]byte(`{"query": "`+smallQuery+`"}`)))
		req.Host = "admin.internal.example:443"
		req.Header.Set("Content-Type", "application/json")
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		resp, err := e.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("auth %q: HTTP %d, want %d", tc.auth, resp.StatusCode, tc.status)
		}
	}
}

// TestListenHost: a listen address given by another loopback name is
// answered under that name.
func TestListenHost(t *testing.T) {
	s, err := New(Config{Listen: "127.0.0.7:9090"}, nil, newRegistry(), newFakeStore(), builtinTypes, nil)
	if err != nil {
		t.Fatal(err)
	}
	for host, want := range map[string]bool{"127.0.0.7:9090": true, "127.0.0.7": true, "": false, "[": false, "evil:9090": false} {
		if got := s.localHost(host); got != want {
			t.Errorf("localHost(%q) = %v, want %v", host, got, want)
		}
	}
}
