package main

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
)

//go:embed docs/examples/orders.rules.yaml
var demoRules []byte

// demoOptions are the addresses and data directory of `eventtap demo`.
type demoOptions struct {
	proxy, admin, api, receiver string
	dataDir                     string
	// ln holds listeners the caller bound for the addresses above (a test
	// on port 0); runDemo binds the nil ones itself.
	ln struct{ proxy, admin, api, receiver net.Listener }
}

// demoHooks are the webhooks the demo registers, one receiver path each.
var demoHooks = []struct{ typ, path string }{
	{"ORDER_CREATED", "/hooks/order-created"},
	{"ORDER_STATUS_CHANGED", "/hooks/order-status-changed"},
	{"ORDER_CANCELED", "/hooks/order-canceled"},
	{"SHIPMENT_CREATED", "/hooks/shipment-created"},
	{"SHIPMENT_CANCELED", "/hooks/shipment-canceled"},
}

func cmdDemo(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("eventtap demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o demoOptions
	fs.StringVar(&o.proxy, "listen", "127.0.0.1:8080", "the sidecar's proxy address (send your requests here)")
	fs.StringVar(&o.admin, "admin", "127.0.0.1:9090", "the admin address (GraphQL, /metrics)")
	fs.StringVar(&o.api, "api", "127.0.0.1:3000", "the built-in order API's address")
	fs.StringVar(&o.receiver, "receiver", "127.0.0.1:3001", "the built-in webhook receiver's address")
	fs.StringVar(&o.dataDir, "data", "", "outbox directory (default: a temporary directory removed on exit)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := runDemo(ctx, o, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "eventtap demo: %v\n", err)
		return 1
	}
	return 0
}

// runDemo starts the order API, the receiver and the sidecar, registers the
// webhooks through the admin API like a user would, and runs until ctx ends.
func runDemo(ctx context.Context, o demoOptions, stdout, stderr io.Writer) error {
	// Every server's listener is bound before anything starts, and the
	// addresses bound are used from then on, so that port 0 (any free
	// port) works for each of them.
	for _, l := range []struct {
		ln         *net.Listener
		addr       *string
		what, flag string
	}{
		{&o.ln.api, &o.api, "the order API", "--api"},
		{&o.ln.receiver, &o.receiver, "the receiver", "--receiver"},
		{&o.ln.proxy, &o.proxy, "the proxy", "--listen"},
		{&o.ln.admin, &o.admin, "the admin API", "--admin"},
	} {
		if *l.ln == nil {
			ln, err := net.Listen("tcp", *l.addr)
			if err != nil {
				return fmt.Errorf("%s cannot listen on %s (pass %s ADDR): %w", l.what, *l.addr, l.flag, err)
			}
			*l.ln = ln
		}
		defer (*l.ln).Close() // in case the servers never start; closing twice is harmless
		*l.addr = (*l.ln).Addr().String()
	}
	apiLn, rcvLn := o.ln.api, o.ln.receiver
	if o.dataDir == "" {
		dir, err := os.MkdirTemp("", "eventtap-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		o.dataDir = dir
	}
	cfgPath, err := writeDemoConfig(o, o.api)
	if err != nil {
		return err
	}
	cfg, eng, err := loadAll(cfgPath)
	if err != nil {
		return fmt.Errorf("demo configuration: %w", err)
	}
	logger := newLogger(cfg.Log, stderr)
	rc := newReceiver(stdout)

	g, gctx := errgroup.WithContext(ctx)
	for _, s := range []struct {
		ln net.Listener
		h  http.Handler
	}{{apiLn, newOrderAPI().handler()}, {rcvLn, rc}} {
		srv := &http.Server{Handler: s.h, ReadHeaderTimeout: 5 * time.Second}
		ln := s.ln
		g.Go(func() error {
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
		g.Go(func() error {
			<-gctx.Done()
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return srv.Shutdown(sctx)
		})
	}
	g.Go(func() error { return serveOn(gctx, cfg, eng, logger, listeners{proxy: o.ln.proxy, admin: o.ln.admin}) })
	g.Go(func() error {
		if err := registerDemoHooks(gctx, o, cfg.Admin.Token, rc); err != nil {
			return err
		}
		printDemoBanner(stdout, o, cfgPath)
		return nil
	})
	return g.Wait()
}

func writeDemoConfig(o demoOptions, api string) (string, error) {
	rulesPath := filepath.Join(o.dataDir, "orders.rules.yaml")
	if err := os.WriteFile(rulesPath, demoRules, 0o644); err != nil {
		return "", err
	}
	cfg := fmt.Sprintf(`# Written by eventtap demo. Edit %[5]s while the demo runs: the rules reload.
proxy:
  listen: %[1]q
  upstream: "http://%[2]s"
admin:
  listen: %[3]q
storage:
  dir: %[4]q
delivery:
  # The demo's receiver is on loopback, which production refuses by default.
  allow_private_networks: true
  retry_schedule: [1s, 5s, 30s]
rules_file: %[5]q
log:
  level: warn
  format: text
`, o.proxy, api, o.admin, filepath.Join(o.dataDir, "outbox"), rulesPath)
	path := filepath.Join(o.dataDir, "eventtap.yaml")
	return path, os.WriteFile(path, []byte(cfg), 0o644)
}

// registerDemoHooks waits for the admin API and creates one webhook per
// event type with the same GraphQL document a user would send.
func registerDemoHooks(ctx context.Context, o demoOptions, token string, rc *receiver) error {
	client := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := client.Get("http://" + o.admin + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the admin API on %s did not come up", o.admin)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(50 * time.Millisecond):
		}
	}
	for _, h := range demoHooks {
		q := fmt.Sprintf(`mutation { webhookCreate(input: {url: "http://%s%s", type: %s, description: "eventtap demo"}) { id secret } }`,
			o.receiver, h.path, h.typ)
		body, _ := json.Marshal(map[string]string{"query": q})
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+o.admin+"/graphql", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("register %s webhook: %w", h.typ, err)
		}
		var out struct {
			Data struct {
				WebhookCreate struct{ ID, Secret string }
			}
			Errors []struct{ Message string }
		}
		err = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if err != nil || len(out.Errors) > 0 || out.Data.WebhookCreate.Secret == "" {
			return fmt.Errorf("register %s webhook: %v %v", h.typ, err, out.Errors)
		}
		rc.setSecret(h.path, out.Data.WebhookCreate.Secret)
	}
	return nil
}

func printDemoBanner(w io.Writer, o demoOptions, cfgPath string) {
	p, a, api := "http://"+o.proxy, "http://"+o.admin, "http://"+o.api
	lines := []string{
		"",
		"eventtap demo is running.",
		"  order API (upstream)  http://" + o.api,
		"  sidecar proxy         " + p + "   <- send requests here",
		"  admin API             " + a + "/graphql   (explorer in a browser), " + a + "/metrics",
		"  webhook receiver      http://" + o.receiver + "   (verifies signatures, prints deliveries)",
		"  config                " + cfgPath,
		"",
		"Try (the receiver prints each delivery):",
		"  # ORDER_CREATED; the status OPEN is recorded for order 1",
		"  curl -s -X POST " + p + "/orders -H 'content-type: application/json' -d '{\"customer\":\"ada\",\"total\":42}'",
		"  # ORDER_STATUS_CHANGED OPEN -> PAID, on the first update",
		"  curl -s -X PATCH " + p + "/orders/1 -H 'content-type: application/json' -d '{\"status\":\"PAID\"}'",
		"  # change the order straight in the API, behind the sidecar's back: nothing yet...",
		"  curl -s -X PATCH " + api + "/orders/1 -H 'content-type: application/json' -d '{\"status\":\"SHIPPED\"}'",
		"  # ...the next read through the sidecar notices it: ORDER_STATUS_CHANGED PAID -> SHIPPED",
		"  curl -s " + p + "/orders/1",
		"  # reading again, or listing, fires nothing: nothing changed",
		"  curl -s " + p + "/orders",
		"  # a list shows many orders: one event per order whose status changed",
		"  curl -s -X POST " + p + "/orders -H 'content-type: application/json' -d '{\"customer\":\"bob\"}'",
		"  curl -s -X PATCH " + api + "/orders/2 -H 'content-type: application/json' -d '{\"status\":\"PAID\"}'",
		"  curl -s " + p + "/orders",
		"  curl -s -X POST " + p + "/orders/1/shipments",
		"  curl -s -X DELETE " + p + "/shipments/shp_1",
		"  curl -s -X POST " + p + "/orders/1/cancel",
		"  curl -s " + a + "/graphql -H 'content-type: application/json' \\",
		"    -d '{\"query\":\"{ webhookLogs(first: 5) { edges { node { type url responseStatus succeeded } } } }\"}'",
		"",
		"Press Ctrl-C to stop.",
		"",
	}
	fmt.Fprintln(w, strings.Join(lines, "\n"))
}
