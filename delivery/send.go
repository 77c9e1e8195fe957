package delivery

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime/debug"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/eventtap/eventtap/delivery/signature"
)

// Sender makes signed webhook requests through the SSRF guard. It is safe
// for concurrent use.
type Sender struct {
	client    *http.Client
	transport *http.Transport
	timeout   time.Duration
	maxBody   int
	userAgent string
	guard     *guard
}

// NewSender returns a sender for cfg, which must be valid. rewrite, if
// non-nil, replaces the address of every dial before it is made (the guard
// then checks the replacement); tests use it to reach a local receiver
// under a public host name.
func NewSender(cfg Config, rewrite func(ctx context.Context, network, addr string) (string, error)) (*Sender, error) {
	g, err := newGuard(cfg)
	if err != nil {
		return nil, err
	}
	dialer := &net.Dialer{
		Timeout:   min(cfg.Timeout, 10*time.Second),
		KeepAlive: 30 * time.Second,
		// Control runs on the resolved address of every connection attempt,
		// including each address tried by Happy Eyeballs, so a host name
		// that resolves to a private address is refused here even though
		// it passed the create-time check.
		Control: g.control,
	}
	dial := dialer.DialContext
	if rewrite != nil {
		dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			a, err := rewrite(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return dialer.DialContext(ctx, network, a)
		}
	}
	t := &http.Transport{
		// Never use HTTP(S)_PROXY from the environment: a proxy would dial
		// on our behalf and bypass the address guard.
		Proxy:                  nil,
		DialContext:            dial,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           max(cfg.Workers, 16),
		MaxIdleConnsPerHost:    max(min(cfg.Workers, 64), 2),
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    10 * time.Second,
		ExpectContinueTimeout:  time.Second,
		ResponseHeaderTimeout:  cfg.Timeout,
		MaxResponseHeaderBytes: 64 << 10,
		// Keep the receiver's bytes as sent; the log shows them raw.
		DisableCompression: true,
	}
	return &Sender{
		transport: t,
		client: &http.Client{
			Transport: t,
			// A redirect is a failed attempt: following it could reach an
			// address nobody subscribed, and receivers must answer 2xx.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		timeout:   cfg.Timeout,
		maxBody:   cfg.MaxResponseBytes,
		userAgent: userAgent(),
		guard:     g,
	}, nil
}

// Close closes the idle connections.
func (s *Sender) Close() { s.transport.CloseIdleConnections() }

func userAgent() string {
	v := "dev"
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = bi.Main.Version
	}
	return "eventtap/" + v + " (+https://www.standardwebhooks.com)"
}

// Result is what one attempt produced.
type Result struct {
	Status     int    // 0 when no HTTP response was received
	Body       string // the response body, cut at max_response_bytes
	Err        error
	Duration   time.Duration
	RetryAfter time.Duration // from a Retry-After header, 0 if none
}

// OK reports whether the receiver accepted the request (2xx).
func (r Result) OK() bool { return r.Err == nil && r.Status >= 200 && r.Status < 300 }

// Target is where a request goes and what signs it.
type Target struct {
	URL    string
	Secret string // the current signing secret ("whsec_" + base64)
	// Previous secrets sign alongside Secret, each until its Until.
	Previous []Secret
}

// Secret is a secret replaced by a rotation; it keeps signing until Until.
type Secret struct {
	Secret string
	Until  time.Time
}

// Send POSTs body to the target, signed with its current secret and with
// every previous secret whose time is not over at now.
func (s *Sender) Send(ctx context.Context, hook Target, id string, body []byte, now time.Time) Result {
	keys := make([][]byte, 0, 1+len(hook.Previous))
	if k, err := signature.Key(hook.Secret); err == nil {
		keys = append(keys, k)
	}
	for _, p := range hook.Previous {
		if now.Before(p.Until) {
			if k, err := signature.Key(p.Secret); err == nil {
				keys = append(keys, k)
			}
		}
	}
	if len(keys) == 0 {
		return Result{Err: errors.New("the webhook's secret is not a valid whsec_ secret; rotate it")}
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, hook.URL, bytes.NewReader(body))
	if err != nil {
		return Result{Err: fmt.Errorf("building the request to %s failed; check the webhook's url", RedactURL(hook.URL))}
	}
	ts := now.Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", s.userAgent)
	req.Header.Set(signature.HeaderID, id)
	req.Header.Set(signature.HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(signature.HeaderSignature, signature.Header(keys, id, ts, body))

	start := time.Now()
	resp, err := s.client.Do(req)
	if err != nil {
		// The error reaches logs and webhookLogs.error; tokens in the
		// URL's query must not.
		var ue *url.Error
		if errors.As(err, &ue) {
			ue.URL = RedactURL(ue.URL)
		}
		return Result{Err: describeSendError(err, s.timeout), Duration: time.Since(start)}
	}
	defer resp.Body.Close()
	buf, rerr := io.ReadAll(io.LimitReader(resp.Body, int64(s.maxBody)))
	// Drain a little more so the connection can be reused; give up on
	// receivers that answer with huge bodies.
	_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
	res := Result{Status: resp.StatusCode, Body: validUTF8(buf), Duration: time.Since(start)}
	if rerr != nil && !errors.Is(rerr, context.Canceled) {
		res.Err = fmt.Errorf("reading response body: %w", rerr)
	}
	if !res.OK() {
		res.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), now)
		if res.Err == nil {
			res.Err = fmt.Errorf("receiver answered %s", statusText(resp.StatusCode))
		}
	}
	return res
}

func statusText(code int) string {
	if t := http.StatusText(code); t != "" {
		return strconv.Itoa(code) + " " + t
	}
	return strconv.Itoa(code)
}

func describeSendError(err error, timeout time.Duration) error {
	var ne net.Error
	switch {
	case errors.Is(err, ErrRefusedAddress):
		return err
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		return fmt.Errorf("no response within delivery.timeout (%s): %w", timeout, err)
	}
	return err
}

// validUTF8 keeps a truncated body printable in the log.
func validUTF8(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	return string(bytes.ToValidUTF8(b, []byte("\uFFFD")))
}

// parseRetryAfter reads seconds or an HTTP date; 0 when absent or invalid.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		return time.Duration(min(secs, int64(maxRetryAfter/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0)
	}
	return 0
}

// maxRetryAfter caps how long a receiver may ask us to wait.
const maxRetryAfter = time.Hour

// RedactURL returns raw without what may be a credential: user info is
// dropped and a query is replaced by "REDACTED". Used for every URL that
// reaches a log line or a stored error.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User = nil
	if u.RawQuery != "" || u.ForceQuery {
		u.RawQuery, u.ForceQuery = "REDACTED", false
	}
	u.Fragment, u.RawFragment = "", ""
	return u.String()
}

// CheckURL checks a webhook URL at create and update time: absolute
// http(s), and, unless the configuration allows it, not an address the
// guard refuses. Errors wrap ErrInvalid.
func (s *Sender) CheckURL(raw string) error { return s.guard.checkURL(raw) }
