package configerr

import (
	"errors"
	"fmt"
	"testing"
)

func TestErrorText(t *testing.T) {
	for _, tc := range []struct {
		err  *Error
		want string
	}{
		{Field("listen", "is wrong"), "listen: is wrong"},
		{Field("tls.cert", "missing %q", "x"), `tls.cert: missing "x"`},
		{Field("listen", "is wrong").Under("proxy"), "proxy.listen: is wrong"},
		{&Error{Msg: "bare"}, "bare"},
		{At("c.yaml", 3, 7, "YAML syntax error: %s", "x"), "c.yaml:3:7: YAML syntax error: x"},
		{&Error{Path: []string{"proxy", "listen"}, File: "c.yaml", Line: 2, Column: 3, Msg: "m"}, "c.yaml:2:3: proxy.listen: m"},
	} {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
}

func TestUnderCopies(t *testing.T) {
	e := Field("listen", "m")
	u := e.Under("proxy")
	if e.Key() != "listen" || u.Key() != "proxy.listen" {
		t.Fatalf("Under changed the original or did not prefix: %q, %q", e.Key(), u.Key())
	}
}

func TestAsThroughWrapping(t *testing.T) {
	e := Field("listen", "m")
	if As(fmt.Errorf("section: %w", e)) != e {
		t.Fatal("As does not find a wrapped *Error")
	}
	if As(errors.New("listen: m")) != nil {
		t.Fatal("As found an *Error in a plain error")
	}
}
