package admin

import (
	"net"
	"net/http"
	"strings"
)

// localOnly guards /graphql when no token is configured. Without a token
// the API trusts whoever can reach the loopback port, and a web page can
// reach it too: it rebinds its own host name to 127.0.0.1 and then reads the
// answers as same-origin, webhook secrets included. The browser still sends
// the page's host name in Host, so refusing any Host that is not a loopback
// literal, localhost or the listen address closes that path. With a token
// the check is not needed (a page cannot know the token) and any Host is
// answered, so that the admin port can sit behind a proxy or a DNS name.
func (s *Server) localOnly(next http.HandlerFunc) http.HandlerFunc {
	if s.hasToken {
		return next
	}
	return func(w http.ResponseWriter, r *http.Request) {
		if s.localHost(r.Host) {
			next(w, r)
			return
		}
		s.logger.WarnContext(r.Context(), "refused a token-less admin request for another host name (DNS rebinding?)",
			"host", r.Host, "remote", r.RemoteAddr)
		msg := "the admin API has no token, so it answers only requests addressed to localhost, a loopback address or its listen address " +
			s.cfg.Listen + `, and this one is addressed to Host "` + r.Host + `" (a web page reaching it by DNS rebinding would look like this): ` +
			"open http://" + s.cfg.Listen + "/graphql, or set admin.token (EVENTTAP_ADMIN_TOKEN) to use other host names"
		a := parseAccept(r)
		if mt := a.responseMediaType(); mt != "" && !a.wantsHTML() {
			s.writeResponse(w, r, mt, requestError(http.StatusForbidden, codeUnauthenticated, "%s", msg))
			return
		}
		h := w.Header()
		h.Set("Content-Type", "text/plain; charset=utf-8")
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte(msg + "\n"))
	}
}

// localHost reports whether host (a request's Host, with or without a
// port) names this machine's loopback interface: any 127.0.0.0/8 or ::1
// literal, localhost, or the host of the listen address. The port is not
// compared: a rebinding page controls the name, not the port.
func (s *Server) localHost(host string) bool {
	name := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		name = h
	} else if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		name = host[1 : len(host)-1]
	}
	if name == "" {
		return false
	}
	if strings.EqualFold(name, "localhost") {
		return true
	}
	if ip := net.ParseIP(name); ip != nil && ip.IsLoopback() {
		return true
	}
	listen, _, err := net.SplitHostPort(s.cfg.Listen)
	return err == nil && listen != "" && strings.EqualFold(name, listen)
}
