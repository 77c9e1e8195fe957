package testkit

import (
	"bytes"
	"log/slog"
	"testing"
	"time"
)

func TestListeningAddr(t *testing.T) {
	var js, text bytes.Buffer
	slog.New(slog.NewJSONHandler(&js, nil)).Info("proxy listening", "addr", "127.0.0.1:4242", "upstream", "x")
	slog.New(slog.NewTextHandler(&text, nil)).Info("admin server listening", "addr", "[::1]:99")
	if a, ok := ListeningAddr("noise\n"+js.String(), "proxy listening"); !ok || a != "127.0.0.1:4242" {
		t.Errorf("JSON: %q %v", a, ok)
	}
	if a, ok := ListeningAddr(text.String(), "admin server listening"); !ok || a != "[::1]:99" {
		t.Errorf("text: %q %v", a, ok)
	}
	if _, ok := ListeningAddr(js.String(), "admin server listening"); ok {
		t.Error("found a message that is not there")
	}
}

func TestListeningHandler(t *testing.T) {
	var out bytes.Buffer
	h := NewListening(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelWarn}))
	log := slog.New(h).With("component", "proxy")
	log.Info("proxy listening", "addr", "127.0.0.1:1")
	log.Warn("w")
	if got := h.Addr(t, time.Second, "proxy listening"); got != "127.0.0.1:1" {
		t.Errorf("addr %q", got)
	}
	if bytes.Contains(out.Bytes(), []byte("listening")) || !bytes.Contains(out.Bytes(), []byte("msg=w")) {
		t.Errorf("passed on %q", out.String())
	}
}
