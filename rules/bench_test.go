package rules

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// orderJSON returns a realistic order of about size bytes.
func orderJSON(size int, status string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `{"id":"ord_8f14e45fceea167a","status":%q,"currency":"USD","total":1234.5,"customer":{"id":"cus_42","email":"ada@example.com","name":"Ada Lovelace"},"shipping_address":{"line1":"12 Analytical Way","city":"London","postal_code":"N1 9GU","country":"GB"},"lines":[`, status)
	for i := 0; b.Len() < size-120; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"sku":"SKU-%04d","name":"Widget %d","qty":%d,"unit_price":19.99,"tax":1.6}`, i, i, i%3+1)
	}
	b.WriteString(`],"created_at":"2026-11-29T13:34:18Z","updated_at":"2026-11-29T13:35:02Z"}`)
	return b.String()
}

// BenchmarkEvaluate20 evaluates a PATCH with two 1 KiB order bodies against
// 20 rules, two of which fire: one `changed`, one building its data. In
// "fields" that data reads fields; in "comprehension" it also maps over
// the order's lines, which CEL interprets element by element under a cost
// limit.
func BenchmarkEvaluate20(b *testing.B) {
	for _, bc := range []struct{ name, data string }{
		{"fields", `'{"id": path.id, "total": response.body.total, "lines": size(response.body.lines)}'`},
		{"comprehension", `'{"id": path.id, "total": response.body.total, "lines": response.body.lines.map(l, l.sku)}'`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			e := benchEngineData(b, bc.data)
			if e.Len() != 20 {
				b.Fatalf("%d rules", e.Len())
			}
			ex := exch("PATCH", "/invoices/12345", 200, orderJSON(1024, "SHIPPED"), orderJSON(1024, "SHIPPED"))
			ex.Request.Header.Set("Content-Type", "application/json")
			ex.Response.Header.Set("Content-Type", "application/json")
			evs, errs := e.Evaluate(ex)
			if len(evs) != 2 || len(errs) != 0 {
				b.Fatalf("events %v, errors %v", evs, errs)
			}
			b.SetBytes(int64(len(ex.Request.Body) + len(ex.Response.Body)))
			b.ReportAllocs()
			cpu := startCPU()
			for b.Loop() {
				e.Evaluate(ex)
			}
			cpu.report(b)
		})
	}
}

// cpuClock measures the process's CPU time, which, unlike ns/op, does not
// grow when other processes share the machine's cores.
type cpuClock time.Duration

func startCPU() cpuClock { return cpuClock(processCPU()) }

func (c cpuClock) report(b *testing.B) {
	b.ReportMetric(float64(processCPU()-time.Duration(c))/float64(b.N), "cpu-ns/op")
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func BenchmarkParseJSON1K(b *testing.B) {
	body := []byte(orderJSON(1024, "SHIPPED"))
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	cpu := startCPU()
	for b.Loop() {
		if _, ok := parseJSON(body); !ok {
			b.Fatal("not JSON")
		}
	}
	cpu.report(b)
}

// BenchmarkScanJSON1K measures what Evaluate does to a body a rule reads:
// validate it and record its tape, into reused buffers.
func BenchmarkScanJSON1K(b *testing.B) {
	body := []byte(orderJSON(1024, "SHIPPED"))
	var sc jsonScanner
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	cpu := startCPU()
	for b.Loop() {
		if !sc.scan(body) {
			b.Fatal("not JSON")
		}
	}
	cpu.report(b)
}

func BenchmarkParseJSON1KEncodingJSON(b *testing.B) {
	body := []byte(orderJSON(1024, "SHIPPED"))
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	cpu := startCPU()
	for b.Loop() {
		var v any
		if err := json.Unmarshal(body, &v); err != nil {
			b.Fatal(err)
		}
	}
	cpu.report(b)
}

// BenchmarkEvaluateOrders evaluates the example rule set on a status
// change, which fires two rules of six.
func BenchmarkEvaluateOrders(b *testing.B) {
	data, err := os.ReadFile("testdata/orders.rules.yaml")
	if err != nil {
		b.Fatal(err)
	}
	e, err := CompileFile("orders.rules.yaml", data, nil)
	if err != nil {
		b.Fatal(err)
	}
	ex := exch("PATCH", "/orders/ord_8f14e45fceea167a", 200, `{"status":"SHIPPED"}`, orderJSON(1024, "SHIPPED"))
	if evs, errs := e.Evaluate(ex); len(evs) != 2 || len(errs) != 0 {
		b.Fatalf("events %v, errors %v", evs, errs)
	}
	b.ReportAllocs()
	cpu := startCPU()
	for b.Loop() {
		e.Evaluate(ex)
	}
	cpu.report(b)
}

func BenchmarkCompileOrders(b *testing.B) {
	data, err := os.ReadFile("testdata/orders.rules.yaml")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := CompileFile("orders.rules.yaml", data, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkNewEnv(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := newEnv(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEvaluateEach1000 evaluates GET /orders answering a list of
// 1,000 orders (about 61 KiB) against the `each` rule of README's list
// example: match, subject, changed and data once per element, 1,000
// candidate events.
func BenchmarkEvaluateEach1000(b *testing.B) {
	e := mustCompile(b, eachRules)
	body := ordersList(MaxEachElements, func(i int) string { return [...]string{"OPEN", "PAID", "SHIPPED"}[i%3] })
	ex := exch("GET", "/orders", 200, "", body)
	evs, errs := e.Evaluate(ex)
	if len(evs) != MaxEachElements || len(errs) != 0 {
		b.Fatalf("%d events, errors %v", len(evs), errs)
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	cpu := startCPU()
	for b.Loop() {
		e.Evaluate(ex)
	}
	cpu.report(b)
}
