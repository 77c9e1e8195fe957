package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"sync"
)

// responseWriter is what goproxy writes the upstream's response to. It
//
//   - flushes after every write when the response has no Content-Length
//     (chunked NDJSON, long polls, SSE): goproxy flushes only
//     text/event-stream, and only when it sees a Transfer-Encoding header,
//     which the transport never leaves in the response headers;
//   - stops net/http from adding Content-Type or Date headers that the
//     upstream did not send;
//   - tells an upstream body that broke off from a client that went away,
//     so that serve can abort the client's response;
//   - remembers the status for metrics and the hijacked connection of a
//     WebSocket session, which goproxy does not close.
//
// It is used by one handler goroutine only.
type responseWriter struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
	flush       bool
	hijacked    net.Conn
	src         srcReader
	srcErr      error // a read error from the upstream body
	proxy       *Proxy
}

// code returns the status the client got, as the metrics label.
func (w *responseWriter) code() int {
	switch {
	case w.hijacked != nil:
		return http.StatusSwitchingProtocols
	case w.status == 0:
		return http.StatusOK // net/http answers 200 to a handler that wrote nothing
	}
	return w.status
}

func (w *responseWriter) WriteHeader(code int) {
	if code >= 100 && code <= 199 {
		if code == http.StatusSwitchingProtocols {
			w.status, w.wroteHeader = code, true
		}
		w.ResponseWriter.WriteHeader(code)
		return
	}
	if w.wroteHeader {
		w.ResponseWriter.WriteHeader(code) // let net/http report the superfluous call
		return
	}
	w.status, w.wroteHeader = code, true
	h := w.Header()
	// A nil value keeps the header out of the response and stops net/http
	// from sniffing a Content-Type or adding a Date of its own.
	if _, ok := h["Content-Type"]; !ok {
		h["Content-Type"] = nil
	}
	if _, ok := h["Date"]; !ok {
		h["Date"] = nil
	}
	_, hasLength := h["Content-Length"]
	w.flush = !hasLength
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseWriter) Write(b []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	n, err := w.ResponseWriter.Write(b)
	if w.flush && err == nil {
		w.Flush()
	}
	return n, err
}

// ReadFrom is what io.Copy in goproxy uses. Without flushing it hands the
// copy to net/http's own ReadFrom (pooled buffer, direct writes to the
// socket); with flushing it copies with a pooled buffer and flushes after
// each chunk the upstream produced.
func (w *responseWriter) ReadFrom(src io.Reader) (int64, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	w.src = srcReader{r: src}
	defer func() {
		w.srcErr = w.src.err
		w.src = srcReader{}
	}()
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok && !w.flush {
		return rf.ReadFrom(&w.src)
	}
	bp := copyBufPool.Get().(*[]byte)
	defer copyBufPool.Put(bp)
	buf := *bp
	var written int64
	for {
		nr, rerr := w.src.Read(buf)
		if nr > 0 {
			nw, werr := w.ResponseWriter.Write(buf[:nr])
			written += int64(nw)
			if werr != nil {
				return written, werr
			}
			if nw != nr {
				return written, io.ErrShortWrite
			}
			if w.flush {
				w.Flush()
			}
		}
		if rerr == io.EOF {
			return written, nil
		}
		if rerr != nil {
			return written, rerr
		}
	}
}

func (w *responseWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Hijack is used by goproxy for WebSocket sessions; it panics when the
// writer cannot hijack, so the wrapper must offer it.
func (w *responseWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, http.ErrNotSupported
	}
	c, brw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	w.hijacked = c
	if w.proxy != nil {
		w.proxy.trackUpgrade(c)
	}
	return c, brw, nil
}

// Unwrap lets http.ResponseController reach the server's writer.
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// srcReader records the first read error of the upstream body.
type srcReader struct {
	r   io.Reader
	err error
}

func (s *srcReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF && s.err == nil {
		s.err = err
	}
	return n, err
}

var copyBufPool = sync.Pool{New: func() any {
	b := make([]byte, 32<<10)
	return &b
}}
