package rules

import (
	"bytes"
	"encoding/json"
	"testing"
	"unicode/utf8"
)

// encodingJSON is the reference: encoding/json with HTML escaping off.
func encodingJSON(t testing.TB, s string) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

// TestAppendJSONStringMatchesEncodingJSON checks every rune (control
// characters, quotes, U+2028/2029, surrogates, the last rune) alone and
// between ASCII, and invalid UTF-8 of every shape.
func TestAppendJSONStringMatchesEncodingJSON(t *testing.T) {
	check := func(s string) {
		t.Helper()
		if got, want := AppendJSONString(nil, s), encodingJSON(t, s); !bytes.Equal(got, want) {
			t.Fatalf("AppendJSONString(%q) = %s, encoding/json: %s", s, got, want)
		}
	}
	var buf []byte
	for r := rune(0); r <= utf8.MaxRune; r++ {
		buf = utf8.AppendRune(buf[:0], r) // surrogates become U+FFFD's bytes
		check(string(buf))
		check("a" + string(buf) + "<&>")
	}
	for b := 0x80; b <= 0xFF; b++ {
		check(string([]byte{byte(b)}))
		check("x" + string([]byte{byte(b), 'y'}))
	}
	for _, s := range []string{
		"\xed\xa0\x80",     // an encoded surrogate
		"\xc0\xaf",         // overlong "/"
		"\xe2\x80",         // U+2028 cut short
		"\xf4\x90\x80\x80", // beyond U+10FFFF
		"\xe2\x80\xa8\xff\u2029",
		"",
	} {
		check(s)
	}
}

func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "a\"b\\c", "\u2028\x00\x1f\x7f", "\xff\xfe", "<a&b>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := AppendJSONString(nil, s), encodingJSON(t, s); !bytes.Equal(got, want) {
			t.Fatalf("AppendJSONString(%q) = %s, encoding/json: %s", s, got, want)
		}
	})
}
