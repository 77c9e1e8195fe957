package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/eventtap/eventtap/internal/natstest"
	"github.com/eventtap/eventtap/internal/testkit"
)

// TestClusterOverMutualTLS: cluster.nats.tls as README documents it, on a
// NATS server that requires TLS and a client certificate. A node with the
// CA, certificate and key joins and delivers; a node with the CA but no
// client certificate is refused by the server and keeps proxying and
// committing (/readyz stays 200 with nats: warn, naming the TLS error), as
// with NATS down.
func TestClusterOverMutualTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("runs cluster sidecars and a NATS server; skipped with -short")
	}
	certs := testkit.NewMutualTLS(t)
	ns := natstest.StartWith(t, func(o *server.Options) {
		o.TLS, o.TLSVerify, o.TLSTimeout, o.TLSConfig = true, true, 2, certs.Server
	})
	url := strings.Replace(ns.URL(), "nats://", "tls://", 1)
	api := httptest.NewServer(newOrderAPI().handler())
	t.Cleanup(api.Close)
	rulesYAML := readFile(t, "docs/examples/orders.rules.yaml")

	withCert := startSidecar(t, api.URL, rulesYAML, fmt.Sprintf("cluster: {nats: {urls: [%q], tls: {ca_file: %q, cert_file: %q, key_file: %q}}, node: with-cert}\n",
		url, certs.CAFile, certs.CertFile, certs.KeyFile))
	waitNATS(t, withCert, "ok")
	withoutCert := startSidecar(t, api.URL, rulesYAML, fmt.Sprintf("cluster: {nats: {urls: [%q], tls: {ca_file: %q}}, node: without-cert}\n", url, certs.CAFile))
	waitNATS(t, withoutCert, "warn")
	// It says why: a TLS mistake must not look like a server that is down.
	if _, body := readyzBody(t, withoutCert); !strings.Contains(body, "certificate required") {
		t.Errorf("/readyz of the node without a client certificate does not say why NATS is unreachable: %s", body)
	}

	rc := newHookReceiver(t)
	rc.registerAt(t, withCert, "ORDER_CREATED", "/created")
	for _, sc := range []*sidecar{withCert, withoutCert} {
		if code, body := do(t, http.MethodPost, sc.proxyURL+"/orders", `{"customer":"tls"}`); code != http.StatusCreated {
			t.Fatalf("POST /orders through %s: %d %s", sc.adminURL, code, body)
		}
	}
	// The event committed on the node with the certificate is delivered
	// over the cluster; the other node's waits in its outbox for NATS.
	testkit.Eventually(t, 15*time.Second, "the ORDER_CREATED committed over mutual TLS delivered", func() bool {
		return len(rc.at("/created")) >= 1
	})
	if v := scrape(t, withoutCert.adminURL)["eventtap_cluster_relay_pending"]; v != 1 {
		t.Errorf("eventtap_cluster_relay_pending = %v on the node without a client certificate, want 1", v)
	}
	if v := scrape(t, withCert.adminURL)["eventtap_cluster_connected"]; v != 1 {
		t.Errorf("eventtap_cluster_connected = %v on the node with a client certificate", v)
	}
}

// TestClusterWithCredentials: cluster.nats.credentials_file with a .creds
// file (a user JWT and its seed) on a server in operator mode, as NATS
// deployments that use accounts run; a node with the file joins and
// delivers, and one without it is refused with the reason in /readyz.
func TestClusterWithCredentials(t *testing.T) {
	if testing.Short() {
		t.Skip("runs cluster sidecars and a NATS server; skipped with -short")
	}
	operator, creds := operatorWithUser(t)
	ns := natstest.StartWith(t, operator)
	api := httptest.NewServer(newOrderAPI().handler())
	t.Cleanup(api.Close)
	rulesYAML := readFile(t, "docs/examples/orders.rules.yaml")

	member := startSidecar(t, api.URL, rulesYAML, fmt.Sprintf("cluster: {nats: {urls: [%q], credentials_file: %q}, node: member}\n", ns.URL(), creds))
	waitNATS(t, member, "ok")
	stranger := startSidecar(t, api.URL, rulesYAML, fmt.Sprintf("cluster: {nats: {urls: [%q]}, node: stranger}\n", ns.URL()))
	waitNATS(t, stranger, "warn")
	if _, body := readyzBody(t, stranger); !strings.Contains(body, "Authorization") {
		t.Errorf("/readyz of the node without credentials does not say why NATS is unreachable: %s", body)
	}
	rc := newHookReceiver(t)
	rc.registerAt(t, member, "ORDER_CREATED", "/created")
	if code, body := do(t, http.MethodPost, member.proxyURL+"/orders", `{"customer":"creds"}`); code != http.StatusCreated {
		t.Fatalf("POST /orders: %d %s", code, body)
	}
	testkit.Eventually(t, 15*time.Second, "the ORDER_CREATED delivered through the account", func() bool {
		return len(rc.at("/created")) == 1
	})
}

// operatorWithUser returns server options for operator mode (an operator,
// a system account, an account with JetStream, in memory) and the path of
// a .creds file for a user of that account.
func operatorWithUser(t *testing.T) (func(*server.Options), string) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	okp, err := nkeys.CreateOperator()
	must(err)
	opub, err := okp.PublicKey()
	must(err)
	account := func(name string, js bool) (nkeys.KeyPair, string, string) {
		kp, err := nkeys.CreateAccount()
		must(err)
		pub, err := kp.PublicKey()
		must(err)
		ac := jwt.NewAccountClaims(pub)
		ac.Name = name
		if js {
			ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
		}
		token, err := ac.Encode(okp)
		must(err)
		return kp, pub, token
	}
	_, sysPub, sysJWT := account("SYS", false)
	akp, appPub, appJWT := account("APP", true)
	oc := jwt.NewOperatorClaims(opub)
	oc.Name, oc.SystemAccount = "eventtap-test", sysPub
	opJWT, err := oc.Encode(okp)
	must(err)
	opClaims, err := jwt.DecodeOperatorClaims(opJWT)
	must(err)

	ukp, err := nkeys.CreateUser()
	must(err)
	upub, err := ukp.PublicKey()
	must(err)
	userJWT, err := jwt.NewUserClaims(upub).Encode(akp)
	must(err)
	seed, err := ukp.Seed()
	must(err)
	creds, err := jwt.FormatUserConfig(userJWT, seed)
	must(err)
	path := filepath.Join(t.TempDir(), "eventtap.creds")
	must(os.WriteFile(path, creds, 0o600))

	return func(o *server.Options) {
		resolver := &server.MemAccResolver{}
		must(resolver.Store(sysPub, sysJWT))
		must(resolver.Store(appPub, appJWT))
		o.TrustedOperators, o.AccountResolver, o.SystemAccount = []*jwt.OperatorClaims{opClaims}, resolver, sysPub
	}, path
}
