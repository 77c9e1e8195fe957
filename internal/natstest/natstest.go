// Package natstest runs a real NATS JetStream server inside a test's
// process, so that `go test` needs nothing installed, and lets the test
// stop it and start it again on the same port and store, as an outage
// does. It is imported only by _test.go files.
package natstest

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Server is an in-process nats-server with JetStream, listening on a
// loopback port and storing in a temporary directory of the test.
type Server struct {
	tb   testing.TB
	opts server.Options
	srv  *server.Server
}

// Start runs a server until the test ends.
func Start(tb testing.TB) *Server {
	tb.Helper()
	return StartWith(tb, nil)
}

// StartWith is Start with configure changing the server's options first
// (TLS, authentication); nil changes nothing.
func StartWith(tb testing.TB, configure func(*server.Options)) *Server {
	tb.Helper()
	s := &Server{tb: tb, opts: server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: tb.TempDir(), NoLog: true, NoSigs: true}}
	if configure != nil {
		configure(&s.opts)
	}
	s.Restart()
	// The port the first start picked is kept for the restarts.
	s.opts.Port = s.srv.Addr().(*net.TCPAddr).Port
	tb.Cleanup(s.Stop)
	return s
}

// Restart starts the server again after Stop, on its port and store.
func (s *Server) Restart() {
	s.tb.Helper()
	opts := s.opts
	srv, err := server.NewServer(&opts)
	if err != nil {
		s.tb.Fatalf("nats-server: %v", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		s.tb.Fatal("nats-server did not start within 10 s")
	}
	s.srv = srv
}

// Stop shuts the server down (clients see an outage); Restart brings it back.
func (s *Server) Stop() {
	if s.srv != nil {
		s.srv.Shutdown()
		s.srv.WaitForShutdown()
		s.srv = nil
	}
}

// URL is the server's client URL, the same across restarts.
func (s *Server) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", s.opts.Port) }

// Server returns the running server, nil while stopped.
func (s *Server) Server() *server.Server { return s.srv }
