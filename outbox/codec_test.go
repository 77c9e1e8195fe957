package outbox

import (
	"reflect"
	"testing"
	"time"
)

// FuzzRecords reads arbitrary bytes as every stored record kind: a record
// read back from disk (damaged, or written by another version) gives a
// value or errCorrupt, never a panic; and what a record encodes to reads
// back the same.
func FuzzRecords(f *testing.F) {
	at := time.Unix(1700000000, 123).UTC()
	desc := "d"
	f.Add((&eventRecord{ID: "evt_1", Type: "ORDER_CREATED", Subject: "order/1", Rule: "r", ObservedAt: at, CommittedAt: at, Payload: []byte(`{}`)}).marshal(nil))
	f.Add((&deliveryRecord{State: Failed, Attempts: 3, NextAttemptAt: at, LastResponseStatus: 500}).marshal())
	f.Add(laneValue{NextAttemptAt: at, ObservedAt: at}.marshal())
	f.Add((&webhookRecord{Webhook: Webhook{ID: "wh_1", URL: "https://r.example", Type: "ORDER_CREATED", Status: Enabled, Secret: "s", Description: &desc,
		PreviousSecrets: []PreviousSecret{{Secret: "a", Until: at}, {Secret: "b", Until: at}}}}).marshal())
	f.Add(marshalLog(&Log{ID: "log_1", WebhookID: "wh_1", EventID: "evt_1", CreatedAt: at, ResponseStatus: 204, Attempt: 1, Succeeded: true}))
	f.Add([]byte{})
	f.Add([]byte{recordVersion, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		var ev eventRecord
		if ev.unmarshal(b) == nil {
			var again eventRecord
			if err := again.unmarshal(ev.marshal(nil)); err != nil || !reflect.DeepEqual(normalEvent(again), normalEvent(ev)) {
				t.Fatalf("event %+v reads back as %+v, %v", ev, again, err)
			}
		}
		var d deliveryRecord
		if d.unmarshal(b) == nil {
			var again deliveryRecord
			if err := again.unmarshal(d.marshal()); err != nil || again != d {
				t.Fatalf("delivery %+v reads back as %+v, %v", d, again, err)
			}
		}
		var lv laneValue
		if lv.unmarshal(b) == nil {
			var again laneValue
			if err := again.unmarshal(lv.marshal()); err != nil || again != lv {
				t.Fatalf("lane %+v reads back as %+v, %v", lv, again, err)
			}
		}
		var w webhookRecord
		_ = w.unmarshal(b)
		if l, err := unmarshalLog(b); err == nil {
			again, err := unmarshalLog(marshalLog(&l))
			if err != nil || !reflect.DeepEqual(again, l) {
				t.Fatalf("log %+v reads back as %+v, %v", l, again, err)
			}
		}
	})
}

// normalEvent makes an empty payload and a nil one compare equal.
func normalEvent(r eventRecord) eventRecord {
	if len(r.Payload) == 0 {
		r.Payload = nil
	}
	return r
}
