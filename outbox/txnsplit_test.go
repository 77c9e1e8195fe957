package outbox

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/eventtap/eventtap/rules"
)

// Badger stamps every entry with its transaction's commit version, so
// entries written in one transaction share a version. Writes that belong
// together must never be split between transactions: a crash between the
// parts would keep one without the other (a PENDING delivery record
// without the lane entry that gets it sent, a `changed` state without its
// event).

func versionOf(t *testing.T, db *badger.DB, key []byte) uint64 {
	t.Helper()
	var v uint64
	if err := db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if err != nil {
			return err
		}
		v = item.Version()
		return nil
	}); err != nil {
		t.Fatalf("reading %q: %v", key, err)
	}
	return v
}

func TestTxnWriterKeepsGroupsTogether(t *testing.T) {
	o := openTest(t)
	w, err := o.newTxnWriter()
	if err != nil {
		t.Fatal(err)
	}
	// Groups of three entries of uneven sizes, so that a split made entry
	// by entry falls inside some group; enough for several transactions.
	const groups = 2000
	key := func(part string, i int) []byte { return []byte(fmt.Sprintf("test/%s/%05d", part, i)) }
	for i := range groups {
		if err := w.group(
			write{e: badger.NewEntry(key("a", i), make([]byte, 50+i%97))},
			write{e: badger.NewEntry(key("b", i), make([]byte, 10+i%31))},
			write{del: key("c", i)},
		); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.commit(); err != nil {
		t.Fatal(err)
	}
	if w.pending == 0 {
		t.Fatal("the writes fit in one transaction; the test needs several")
	}
	for i := range groups {
		va, vb := versionOf(t, o.db, key("a", i)), versionOf(t, o.db, key("b", i))
		if va != vb {
			t.Fatalf("group %d split between transactions (versions %d and %d)", i, va, vb)
		}
	}
}

// Concurrent exchanges fill batches larger than one transaction; all of
// one exchange's events and their subject indexes stay in one.
func TestBatchSplitKeepsExchangesTogether(t *testing.T) {
	o := openTest(t)
	const exchanges = 600
	var wg sync.WaitGroup
	errs := make(chan error, exchanges)
	for i := range exchanges {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pad := fmt.Sprintf(`{"pad": %q}`, strings.Repeat("x", 1500+i%1700))
			errs <- o.Commit(context.Background(), []rules.Event{
				event("ORDER_CREATED", fmt.Sprintf("order-%04d-a", i), pad),
				event("ORDER_CREATED", fmt.Sprintf("order-%04d-b", i), pad),
			})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	exchangeVersion := map[string]uint64{}
	transactions := map[uint64]bool{}
	for seq := uint64(1); seq <= 2*exchanges; seq++ {
		var rec eventRecord
		if err := o.db.View(func(txn *badger.Txn) error { return getRecord(txn, eventKey(seq), rec.unmarshal) }); err != nil {
			t.Fatalf("event %d: %v", seq, err)
		}
		ve, vs := versionOf(t, o.db, eventKey(seq)), versionOf(t, o.db, subjectKey(rec.Subject, seq))
		if ve != vs {
			t.Fatalf("event %d (%s) and its subject index in different transactions (versions %d, %d)", seq, rec.Subject, ve, vs)
		}
		exchange := strings.TrimSuffix(strings.TrimSuffix(rec.Subject, "-a"), "-b")
		if v, ok := exchangeVersion[exchange]; ok && v != ve {
			t.Fatalf("the events of exchange %s in different transactions (versions %d, %d)", exchange, v, ve)
		}
		exchangeVersion[exchange] = ve
		transactions[ve] = true
	}
	t.Logf("%d exchanges in %d transactions", exchanges, len(transactions))
	if len(transactions) == exchanges {
		t.Log("no batch held several exchanges; the split was not exercised")
	}
}
