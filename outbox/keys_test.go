package outbox

import (
	"bytes"
	"testing"
)

func TestIDs(t *testing.T) {
	a, b := newID(eventIDPrefix, 41), newID(eventIDPrefix, 42)
	if len(a) != eventIDLen || a == b || a >= b {
		t.Fatalf("ids %s %s: want fixed length and counter order", a, b)
	}
	if seq, ok := parseID(eventIDPrefix, b); !ok || seq != 42 {
		t.Errorf("parseID(%s) = %d, %v", b, seq, ok)
	}
	for _, bad := range []string{"", "evt_", "wh_" + a[4:], a + "0", "evt_" + "!!!!!!!!!!!!!!!!!!!!!!!!!!"} {
		if _, ok := parseID(eventIDPrefix, bad); ok {
			t.Errorf("parseID(%q) accepted", bad)
		}
	}
	wh := newID(webhookIDPrefix, 7)
	k := laneKey(wh, "order/1", 9)
	gotWH, subject, seq, ok := parseLaneKey(k)
	if !ok || gotWH != wh || subject != "order/1" || seq != 9 {
		t.Errorf("parseLaneKey = %s %s %d %v", gotWH, subject, seq, ok)
	}
}

func FuzzParseID(f *testing.F) {
	f.Add(newID(eventIDPrefix, 1))
	f.Add("evt_00000000000000000000000000")
	f.Fuzz(func(t *testing.T, id string) {
		if seq, ok := parseID(eventIDPrefix, id); ok && len(id) != eventIDLen {
			t.Fatalf("accepted %q (seq %d) of the wrong length", id, seq)
		}
	})
}

func FuzzDecodeCursor(f *testing.F) {
	f.Add(encodeCursor(eventKey(5)))
	f.Add("")
	f.Add("%%%")
	f.Fuzz(func(t *testing.T, c string) {
		k, err := decodeCursor(c, prefixEvent, len(prefixEvent)+8)
		if err == nil && (!bytes.HasPrefix(k, prefixEvent) || len(k) != len(prefixEvent)+8) {
			t.Fatalf("accepted %q as %q", c, k)
		}
	})
}

func FuzzParseLaneKey(f *testing.F) {
	f.Add(laneKey(newID(webhookIDPrefix, 1), "s", 3))
	f.Add([]byte("q/"))
	f.Fuzz(func(t *testing.T, k []byte) {
		wh, subject, seq, ok := parseLaneKey(k)
		if ok && !bytes.Equal(laneKey(wh, subject, seq), k) {
			t.Fatalf("%q does not round-trip", k)
		}
	})
}
