package outbox

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/eventtap/eventtap/delivery/signature"
)

func TestWebhookURLValidation(t *testing.T) {
	strict := func(_ *StorageConfig, d *DeliveryConfig, _ *openHooks) { d.AllowPrivateNetworks = false }
	withAllowed := func(_ *StorageConfig, d *DeliveryConfig, _ *openHooks) {
		d.AllowPrivateNetworks = false
		d.AllowedNetworks = []string{"127.0.0.0/8", "10.1.0.0/16"}
	}
	tests := []struct {
		url     string
		opt     testOpt
		wantErr string // "" = accepted
	}{
		{"https://hooks.example.com/x", strict, ""},
		{"http://93.184.216.34:8080/", strict, ""},
		{"ftp://hooks.example.com/", strict, "http://"},
		{"/relative", strict, "http://"},
		{"hooks.example.com/x", strict, "http://"},
		{"https://", strict, "no host"},
		{"https://user:pw@hooks.example.com/", strict, "credentials"},
		{"http://localhost:8080/", strict, "localhost"},
		{"http://LOCALHOST./", strict, "localhost"},
		{"http://app.localhost/", strict, "localhost"},
		{"http://127.0.0.1/", strict, "loopback"},
		{"http://[::1]/", strict, "loopback"},
		{"http://[::ffff:127.0.0.1]/", strict, "loopback"},
		{"http://10.1.2.3/", strict, "private"},
		{"http://169.254.169.254/latest/meta-data", strict, "link-local"},
		{"http://100.64.1.1/", strict, "CGNAT"},
		{"http://[fd00::1]/", strict, "private"},
		{"http://0.0.0.0/", strict, "unspecified"},
		{"http://127.0.0.1/", withAllowed, ""},
		{"http://localhost/", withAllowed, ""},
		{"http://10.1.2.3/", withAllowed, ""},
		{"http://10.2.0.1/", withAllowed, "private"},
		{"http://127.0.0.1/", nil, ""}, // allow_private_networks
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			var o *testOutbox
			if tt.opt != nil {
				o = openTest(t, tt.opt)
			} else {
				o = openTest(t)
			}
			_, err := o.CreateWebhook(context.Background(), WebhookCreate{URL: tt.url, Type: "ORDER_CREATED"})
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want ErrInvalid mentioning %q", err, tt.wantErr)
			}
		})
	}
}

// TestDialTimeGuard uses a host name that "resolves" to 127.0.0.1 (through
// a dial hook standing in for DNS): it passes the create-time check and must
// be refused when dialing, unless allowed_networks covers it.
func TestDialTimeGuard(t *testing.T) {
	rc := newReceiver(t, nil)
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(rc.URL, "http://"))
	fakeDNS := func(allowed []string) testOpt {
		return func(_ *StorageConfig, d *DeliveryConfig, h *openHooks) {
			d.AllowPrivateNetworks = false
			d.AllowedNetworks = allowed
			d.RetrySchedule = nil
			h.dial = func(_ context.Context, _, addr string) (string, error) {
				host, p, _ := net.SplitHostPort(addr)
				if host == "hooks.internal.test" {
					return net.JoinHostPort("127.0.0.1", p), nil
				}
				return addr, nil
			}
		}
	}
	url := "http://hooks.internal.test:" + port + "/"

	o := openTest(t, fakeDNS(nil))
	hook := o.hook(t, url, "ORDER_CREATED")
	o.commit(t, event("ORDER_CREATED", "1", `{}`))
	var logs []Log
	waitFor(t, 5*time.Second, "refused attempt logged", func() bool {
		logs = o.allLogs(t, LogFilter{WebhookID: hook.ID})
		return len(logs) == 1
	})
	if l := logs[0]; l.Succeeded || l.ResponseStatus != 0 || !strings.Contains(l.Error, "127.0.0.1 is a loopback address") {
		t.Errorf("log %+v", l)
	}
	if rc.count() != 0 {
		t.Fatalf("the receiver was reached")
	}
	waitFor(t, 5*time.Second, "FAILED", func() bool { return o.deliveryState(t, logs[0].EventID, hook.ID).State == Failed })
	tl, err := o.TestWebhook(context.Background(), hook.ID)
	if err != nil || tl.Succeeded || !strings.Contains(tl.Error, "refused address") {
		t.Errorf("TestWebhook = %+v, %v", tl, err)
	}

	o2 := openTest(t, fakeDNS([]string{"127.0.0.0/8"}))
	hook2 := o2.hook(t, url, "ORDER_CREATED")
	o2.commit(t, event("ORDER_CREATED", "1", `{}`))
	waitFor(t, 5*time.Second, "delivered", func() bool { return rc.count() == 1 })
	waitFor(t, 5*time.Second, "SUCCEEDED", func() bool {
		return o2.deliveryState(t, rc.requests()[0].ID, hook2.ID).State == Succeeded
	})
}

func TestWebhookCRUD(t *testing.T) {
	o := openTest(t)
	ctx := context.Background()
	desc := "orders to the ERP"
	secret := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	w, err := o.CreateWebhook(ctx, WebhookCreate{URL: "https://erp.example.com/h", Type: "ORDER_CREATED", Secret: secret, Description: &desc})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(w.ID, "wh_") || w.Status != Enabled || w.Secret != secret || *w.Description != desc || w.CreatedAt.IsZero() {
		t.Errorf("created %+v", w)
	}
	gen := o.hook(t, "https://other.example.com/", "SHIPMENT_CREATED")
	if k, err := signature.Key(gen.Secret); err != nil || len(k) != 32 {
		t.Errorf("generated secret %q: %v", gen.Secret, err)
	}

	bad := []WebhookCreate{
		{URL: "https://x.example.com/", Type: "NOPE"},
		{URL: "https://x.example.com/", Type: "ORDER_CREATED", Secret: "whsec_c2hvcnQ="},
		{URL: "https://x.example.com/", Type: "ORDER_CREATED", Secret: "plain"},
		{URL: "https://x.example.com/", Type: "ORDER_CREATED", Status: "PAUSED"},
	}
	for _, in := range bad {
		if _, err := o.CreateWebhook(ctx, in); !errors.Is(err, ErrInvalid) {
			t.Errorf("CreateWebhook(%+v) = %v, want ErrInvalid", in, err)
		}
	}

	newURL, newType, disabled := "https://erp2.example.com/h", "ORDER_CANCELED", Disabled
	u, err := o.UpdateWebhook(ctx, WebhookUpdate{ID: w.ID, URL: &newURL, Type: &newType, Status: &disabled})
	if err != nil {
		t.Fatal(err)
	}
	if u.URL != newURL || u.Type != newType || u.Status != Disabled || u.DisabledReason == nil || *u.Description != desc || !u.UpdatedAt.After(w.UpdatedAt) && !u.UpdatedAt.Equal(w.UpdatedAt) {
		t.Errorf("updated %+v", u)
	}
	badURL := "http://127.0.0.1/"
	o2 := openTest(t, func(_ *StorageConfig, d *DeliveryConfig, _ *openHooks) { d.AllowPrivateNetworks = false })
	w2 := o2.hook(t, "https://a.example.com/", "ORDER_CREATED")
	if _, err := o2.UpdateWebhook(ctx, WebhookUpdate{ID: w2.ID, URL: &badURL}); !errors.Is(err, ErrInvalid) {
		t.Errorf("update to a loopback URL = %v", err)
	}
	if _, err := o.UpdateWebhook(ctx, WebhookUpdate{ID: "wh_nope"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("update unknown = %v", err)
	}

	// Listing: newest first, filters, totals, cursors.
	p, err := o.Webhooks(ctx, WebhookFilter{}, 1, "")
	if err != nil || len(p.Items) != 1 || p.Items[0].ID != gen.ID || !p.HasNext || p.Total != 2 {
		t.Fatalf("page 1 %+v, %v", p, err)
	}
	p2, err := o.Webhooks(ctx, WebhookFilter{}, 1, p.Cursors[0])
	if err != nil || len(p2.Items) != 1 || p2.Items[0].ID != w.ID || p2.HasNext {
		t.Fatalf("page 2 %+v, %v", p2, err)
	}
	if p, _ := o.Webhooks(ctx, WebhookFilter{Status: Disabled}, 10, ""); len(p.Items) != 1 || p.Items[0].ID != w.ID {
		t.Errorf("status filter %+v", p.Items)
	}
	if p, _ := o.Webhooks(ctx, WebhookFilter{Type: "SHIPMENT_CREATED"}, 10, ""); len(p.Items) != 1 || p.Items[0].ID != gen.ID {
		t.Errorf("type filter %+v", p.Items)
	}
	if _, err := o.Webhooks(ctx, WebhookFilter{}, 10, "!!"); !errors.Is(err, ErrBadCursor) {
		t.Errorf("bad cursor = %v", err)
	}
	if _, err := o.Webhooks(ctx, WebhookFilter{}, 501, ""); !errors.Is(err, ErrInvalid) {
		t.Errorf("first=501 = %v", err)
	}

	// Survives a restart.
	o.close(t)
	o = openTestDir(t, o.dir)
	got, err := o.Webhook(ctx, w.ID)
	if err != nil || got.URL != newURL || got.Status != Disabled || *got.DisabledReason != *u.DisabledReason {
		t.Errorf("after restart %+v, %v", got, err)
	}

	if err := o.DeleteWebhook(ctx, w.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := o.Webhook(ctx, w.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleted webhook still there: %v", err)
	}
	if err := o.DeleteWebhook(ctx, w.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("second delete = %v", err)
	}
}

func TestDeleteWebhookRemovesDeliveries(t *testing.T) {
	o := openTest(t)
	rc := newReceiver(t, nil)
	dead := newReceiver(t, nil)
	dead.Close()
	keep := o.hook(t, rc.URL, "ORDER_CREATED")
	gone := o.hook(t, dead.URL, "ORDER_CREATED")
	for i := range 5 {
		o.commit(t, event("ORDER_CREATED", "s"+string(rune('a'+i)), `{}`))
	}
	waitFor(t, 5*time.Second, "deliveries", func() bool { return rc.count() == 5 })
	if err := o.DeleteWebhook(context.Background(), gone.ID); err != nil {
		t.Fatal(err)
	}
	for _, ev := range o.allEvents(t, EventFilter{}) {
		if len(ev.Deliveries) != 1 || ev.Deliveries[0].WebhookID != keep.ID {
			t.Errorf("event %s deliveries %+v", ev.ID, ev.Deliveries)
		}
	}
	waitFor(t, 5*time.Second, "nothing pending", func() bool { return o.metric(t, "eventtap_outbox_pending", nil) == 0 })
	// Nothing of it comes back after a restart.
	o.close(t)
	o = openTestDir(t, o.dir)
	if v := o.metric(t, "eventtap_outbox_pending", nil); v != 0 {
		t.Errorf("pending after restart = %v", v)
	}
}
