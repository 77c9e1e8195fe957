//go:build !race

package admin

import "time"

// costBound is how long any document under the body limit may take to be
// answered, whatever its shape (see race_test.go for -race). Before the
// limits, these shapes took from seconds to minutes.
const costBound = 500 * time.Millisecond
