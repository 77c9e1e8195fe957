package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

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
	resp, err := http.Get(withoutCert.adminURL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	// It says why: a TLS mistake must not look like a server that is down.
	if !strings.Contains(string(body), "certificate required") {
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
