//go:build race

package admin

import "time"

// costBound under the race detector, which makes graphql-go's
// reflection-driven visitor about five times slower: a document at the
// 5,000-field limit takes 1–2 s to validate on a shared 2-core machine.
const costBound = 3 * time.Second
