// Package delivery sends webhooks: it owns the in-memory lanes of pending
// deliveries (Dispatcher), the pool of workers that attempts them, the
// retry policy (delivery.retry_schedule, jitter, Retry-After), the HTTP
// sender (Sender) with its SSRF guard, and Standard Webhooks signing
// (package signature).
//
// A Dispatcher is fed from outside with what is due: Add and AddMany take
// an Item (an event sequence and its due time) for the lane (webhook id,
// subject), and StartReload loads a backlog its owner kept on disk. Within
// a lane items are attempted strictly in sequence order, one at a time,
// while lanes never wait for each other; one webhook may use at most half
// of the workers. Run hands due lane heads to the workers, which ask a
// Store (defined here, implemented by the owner) for what to send, send it
// signed, and record the outcome through the same Store before the lane
// moves on.
//
// The package must not know where due work comes from or where outcomes
// are kept: it does not import Badger or the outbox, and holds nothing
// durable. Memory is bounded: at most Options.PendingLimit items are held;
// beyond that the owner's store keeps the backlog until a reload.
//
// Requests go only through Sender, which never uses HTTP(S)_PROXY, refuses
// redirects, and checks every dialed address (after name resolution) with
// the guard, so a host name cannot smuggle a private address past the
// create-time URL check (CheckURL).
package delivery
