package cluster

import (
	"fmt"
	"testing"
)

// TestPreferredSpreadsPartitions: the partitions are spread over the live
// members for the names people give nodes (names that differ in one
// character once gave one node all 32), and a member leaving moves only
// its own share.
func TestPreferredSpreadsPartitions(t *testing.T) {
	families := [][]string{
		{"nodeA", "nodeB"},
		{"nodeA", "nodeB", "nodeC"},
		{"node1", "node2"},
		{"node-1", "node-2", "node-3"},
		{"eventtap-0", "eventtap-1"},
		{"eventtap-0", "eventtap-1", "eventtap-2"},
		{"orders-7d9f8b6c5-abcde", "orders-7d9f8b6c5-fghij", "orders-7d9f8b6c5-klmno"},
		{"a", "b", "c", "d"},
	}
	for _, members := range families {
		owned := map[string]int{}
		for p := range Partitions {
			owned[preferred(p, members)]++
		}
		// With 32 partitions a fair share is 32/N; ask for at least a
		// third of it, so that a node is never left (nearly) idle.
		for _, m := range members {
			if min := Partitions / len(members) / 3; owned[m] < min {
				t.Errorf("members %v: %s owns %d partitions (%v), want at least %d", members, m, owned[m], owned, min)
			}
		}
		// One member leaves: only its partitions move.
		rest := members[1:]
		for p := range Partitions {
			before := preferred(p, members)
			if after := preferred(p, rest); before != members[0] && after != before {
				t.Errorf("members %v without %s: partition %d moved from %s to %s", members, members[0], p, before, after)
			}
		}
		t.Log(fmt.Sprint(members, " → ", owned))
	}
}
