package rules

import (
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
)

var jsonSamples = []string{
	`{}`, `[]`, `0`, `-0`, `1.5`, `-12e3`, `1E+2`, `true`, `false`, `null`, `""`, ` "x" `,
	`{"a":1,"b":[1,2,{"c":null}],"d":"e"}`,
	`{"a":1,"a":2}`,
	`{"big":9007199254740993,"huge":123456789012345678901234567890,"neg":-9223372036854775808,"over":9223372036854775808}`,
	`{"esc":"a\"b\\c\/d\b\f\n\r\t\u00e9\ud83d\ude00\ud83d\u0041\udc00x"}`,
	`{"k\u0065y":1, "key":2}`,
	"{\"bad\":\"\xff\xfe\"}",
	"[1,\n 2 ,\t3\r]",
	`{"deep":[[[[[[[[[[{"x":[1]}]]]]]]]]]]}`,
	// Not JSON.
	``, ` `, `{`, `{"a"}`, `{"a":}`, `{"a":1,}`, `[1,]`, `[1 2]`, `01`, `1.`, `.5`, `-`, `1e`, `+1`,
	`tru`, `nul`, `"abc`, "\"a\x01b\"", `"\x"`, `"\u12"`, `"\u12G4"`, `{"a":1}x`, `[1]]`, `1e400`, `-1e400`,
	`{"a":1 "b":2}`, `{1:2}`, `[`, `]`, `NaN`, `Infinity`,
}

// normalize turns encoding/json's output (UseNumber) into parseJSON's types.
func normalize(v any) any {
	switch v := v.(type) {
	case json.Number:
		if i, err := v.Int64(); err == nil && !strings.ContainsAny(string(v), ".eE") {
			return i
		}
		f, _ := v.Float64()
		return f
	case map[string]any:
		for k, e := range v {
			v[k] = normalize(e)
		}
	case []any:
		for i, e := range v {
			v[i] = normalize(e)
		}
	}
	return v
}

func checkAgainstEncodingJSON(t *testing.T, s string) {
	t.Helper()
	got, ok := parseJSON([]byte(s))
	var want any
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	err := dec.Decode(&want)
	if err == nil {
		// encoding/json must reach the end and refuse numbers out of
		// float64's range, as Unmarshal does.
		var v any
		err = json.Unmarshal([]byte(s), &v)
	}
	if (err == nil) != ok {
		t.Fatalf("parseJSON(%q) ok = %v, encoding/json error = %v", s, ok, err)
	}
	if valid := validJSON([]byte(s)); valid != ok {
		t.Fatalf("validJSON(%q) = %v, parseJSON ok = %v", s, valid, ok)
	}
	if !ok {
		return
	}
	if want = normalize(want); !reflect.DeepEqual(got, want) {
		t.Fatalf("parseJSON(%q) = %#v, encoding/json = %#v", s, got, want)
	}
	// The lazy value, encoded canonically, matches the decoded one.
	lazy := bodyValue([]byte(s), false)
	lj, err1 := appendJSON(nil, lazy, true)
	nj, err2 := appendNative(nil, got, 0)
	if err1 != nil || err2 != nil || string(lj) != string(nj) {
		t.Fatalf("%q: lazy %s (%v), decoded %s (%v)", s, lj, err1, nj, err2)
	}
	// Copied text is the same JSON value.
	cj, err := appendJSON(nil, lazy, false)
	var back any
	if err != nil || json.Unmarshal(cj, &back) != nil {
		t.Fatalf("%q: copied text %s is not JSON (%v)", s, cj, err)
	}
}

func TestParseJSON(t *testing.T) {
	for _, s := range jsonSamples {
		checkAgainstEncodingJSON(t, s)
	}
	if _, ok := parseJSON([]byte(strings.Repeat("[", maxJSONDepth) + strings.Repeat("]", maxJSONDepth))); !ok {
		t.Error("refused nesting at the limit")
	}
	if _, ok := parseJSON([]byte(strings.Repeat("[", maxJSONDepth+1) + strings.Repeat("]", maxJSONDepth+1))); ok {
		t.Error("accepted nesting beyond the limit")
	}
}

func FuzzParseJSON(f *testing.F) {
	for _, s := range jsonSamples {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		checkAgainstEncodingJSON(t, s)
	})
}

// TestLazyMatchesDecoded evaluates expressions over a body given lazily
// (as Evaluate does) and fully decoded, and requires the same results.
func TestLazyMatchesDecoded(t *testing.T) {
	env, err := newEnv()
	if err != nil {
		t.Fatal(err)
	}
	const body = `{"id": 42, "s": "OPEN", "f": 1.5, "t": true, "n": null, "dup": 1, "dup": 2, "k\u0065y": "v",
		"list": [1, "two", 3.0, {"x": [10, 20]}, [], null], "obj": {"a": {"b": "c"}, "e": {}}, "empty": [], "big": 12345678901234567890}`
	exprs := []string{
		`response.body.id`, `response.body.s`, `response.body.f`, `response.body.t`, `response.body.n`,
		`response.body.dup`, `response.body.key`, `response.body["key"]`, `response.body.big`,
		`response.body.list`, `response.body.list[1]`, `response.body.list[3].x[1]`, `response.body.list[5]`,
		`size(response.body)`, `size(response.body.list)`, `size(response.body.obj)`, `size(response.body.obj.e)`,
		`has(response.body.id)`, `has(response.body.nope)`, `"s" in response.body`, `"nope" in response.body`,
		`1 in response.body.list`, `"two" in response.body.list`, `3 in response.body.list`, `4 in response.body.list`,
		`response.body.list.map(x, type(x))`, `response.body.list.filter(x, x == 1)`,
		`response.body.exists(k, k == "id")`, `response.body.all(k, k != "")`, `response.body.obj.all(k, k in ["a", "e"])`, `response.body.obj.map(k, k).size()`,
		`response.body == response.body`, `response.body.obj == {"a": {"b": "c"}, "e": {}}`,
		`response.body.obj.a == {"b": "c"}`, `response.body.list == [1, "two", 3.0, {"x": [10, 20]}, [], null]`,
		`response.body.empty == []`, `response.body.list + [7]`, `response.body.list[1] + "!"`,
		`response.body.?obj.?a.?b.orValue("none")`, `response.body.?obj.?z.orValue("none")`, `response.body.?list[10].orValue(0)`,
		`response.body.nope`, `response.body.list[10]`, `response.body.list[-1]`, `response.body.list["x"]`, `response.body[1]`,
		`response.body.list[1.0]`, `response.body.list[1u]`, `type(response.body)`, `type(response.body.list)`,
		`dyn(response.body).id`, `response.body.obj.a.b.upperAscii()`, `string(response.body.id)`,
		`response.body.list.exists(x, x == null)`, `response.body.list.size() > 2`,
		`{"copy": response.body.obj}`, `[response.body.list, response.body.obj.e]`,
		`response.body.map(k, k).size()`, `response.body.filter(k, k == "dup")`, `response.body.map(k, response.body[k]).size()`,
		`response.body.list.map(x, x)`, `response.body.list.filter(x, type(x) == int)`, `response.body.list[4].size()`,
		`response.body.obj.a.map(k, k + "=" + response.body.obj.a[k])`, `response.body.exists(k, k == "key")`,
	}
	doc := []byte(body)
	decoded, ok := parseJSON(doc)
	if !ok {
		t.Fatal("sample body is not JSON")
	}
	for _, src := range exprs {
		ast, iss := env.Compile(src)
		if iss.Err() != nil {
			t.Fatalf("%s: %v", src, iss.Err())
		}
		prg, err := env.Program(ast, cel.CostLimit(costLimit))
		if err != nil {
			t.Fatal(err)
		}
		run := func(b ref.Val) string {
			out, _, err := prg.Eval(map[string]any{"response": map[string]any{"status": 200, "body": b}, "request": map[string]any{}, "path": map[string]string{}})
			if err != nil {
				return "error: " + err.Error()
			}
			j, err := appendJSON(nil, out, true)
			if err != nil {
				return "type " + out.Type().TypeName() + ": " + err.Error()
			}
			return string(j)
		}
		lazy := run(bodyValue(doc, false))
		full := run(types.DefaultTypeAdapter.NativeToValue(decoded))
		if lazy != full {
			t.Errorf("%s:\n lazy:    %s\n decoded: %s", src, lazy, full)
		}
	}
}

func TestAppendFloat(t *testing.T) {
	for _, f := range []float64{0, 1, -1, 1.5, 1e20, 1e21, 1e-6, 1e-7, 123456789.125, math.MaxFloat64, math.SmallestNonzeroFloat64} {
		got, err := appendFloat(nil, f)
		want, _ := json.Marshal(f)
		if err != nil || string(got) != string(want) {
			t.Errorf("appendFloat(%v) = %s, %v; encoding/json says %s", f, got, err, want)
		}
	}
	if _, err := appendFloat(nil, math.Inf(1)); err == nil {
		t.Error("encoded +Inf")
	}
}

func TestAppendString(t *testing.T) {
	for _, s := range []string{"", "plain", "quote\" back\\ nl\n cr\r tab\t", "\x00\x1f", "é😀", "\u2028\u2029", "bad\xffutf8", "<>&"} {
		got := appendString(nil, s)
		var back string
		if err := json.Unmarshal(got, &back); err != nil {
			t.Errorf("appendString(%q) = %s: %v", s, got, err)
			continue
		}
		if want := strings.ToValidUTF8(s, "\uFFFD"); back != want {
			t.Errorf("appendString(%q) = %s, decodes to %q", s, got, back)
		}
	}
}
