package rules

import (
	"testing"

	"cel.dev/cel-go/common/types"
)

func BenchmarkZZValid(b *testing.B) {
	body := []byte(orderJSON(1024, "SHIPPED"))
	b.ReportAllocs()
	for b.Loop() {
		validJSON(body)
	}
}

func BenchmarkZZExpr(b *testing.B) {
	e := benchEngine(b)
	ex := exch("PATCH", "/invoices/12345", 200, orderJSON(1024, "SHIPPED"), orderJSON(1024, "SHIPPED"))
	var upd, chg *rule
	for _, r := range e.rules {
		switch r.name {
		case "invoices-updated":
			upd = r
		case "invoices-status-changed":
			chg = r
		}
	}
	caps := map[string]string{"id": "12345"}
	run := func(name string, f func(st *evalState, act *activation)) {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				st := &evalState{ex: ex, needs: upd.needs | chg.needs}
				act := &activation{st: st, path: caps}
				f(st, act)
			}
		})
	}
	run("none", func(st *evalState, act *activation) {})
	run("bodies", func(st *evalState, act *activation) { st.body(true); st.body(false) })
	run("match", func(st *evalState, act *activation) { chg.match.eval(act) })
	run("subject", func(st *evalState, act *activation) { chg.subject.eval(act) })
	run("dataraw", func(st *evalState, act *activation) { st.encode(chg.data, act, false) })
	run("changed", func(st *evalState, act *activation) { st.encode(chg.changed, act, true) })
	run("updData", func(st *evalState, act *activation) { st.encode(upd.data, act, false) })
	run("updDataEvalOnly", func(st *evalState, act *activation) { upd.data.eval(act) })
	run("chgRule", func(st *evalState, act *activation) { st.evalRule(chg, caps) })
	run("updRule", func(st *evalState, act *activation) { st.evalRule(upd, caps) })
	_ = types.True
}
