// Starts GraphiQL on the admin's GET /graphql page. A file of its own, not an
// inline script, so that the page's Content-Security-Policy allows scripts
// from the admin origin only ('self') and never inline ones.
(function () {
  'use strict';
  var mount = document.getElementById('graphiql');
  var tokenRequired = mount.getAttribute('data-token-required') === 'true';
  // POST /graphql is the page's own path (relative, so that the admin also
  // works behind a path prefix).
  var url = location.pathname;
  // The bearer token goes in the headers editor. It is not persisted:
  // GraphiQL's "persist headers" setting is off and hidden, so the token
  // never lands in localStorage.
  var defaultHeaders = tokenRequired ? '{\n  "Authorization": "Bearer "\n}' : '';

  function authorization(text) {
    if (!text || !text.trim()) {
      return '';
    }
    try {
      var h = JSON.parse(text);
      if (h && typeof h === 'object') {
        return String(h.Authorization || h.authorization || '');
      }
    } catch (e) {
      // Being edited: wait for valid JSON.
    }
    return null;
  }

  // makeFetcher sends requests to the admin, except while the admin needs a
  // token and none is in the headers editor: then it answers with what to
  // do instead of letting the request fail with 401.
  function makeFetcher() {
    var send = GraphiQL.createFetcher({ url: url });
    return function (params, opts) {
      var h = (opts && opts.headers) || {};
      if (tokenRequired && !/^Bearer\s+\S/.test(String(h.Authorization || h.authorization || ''))) {
        return Promise.resolve({ errors: [{ message: 'This admin needs its token (admin.token): put ' +
          '{"Authorization": "Bearer TOKEN"} in the Headers tab below. The schema loads once it is there.' }] });
      }
      return send(params, opts);
    };
  }

  var fetcher = makeFetcher();
  var lastAuth = authorization(defaultHeaders);
  var timer = null;
  var root = ReactDOM.createRoot(mount);

  // GraphiQL loads the schema (introspection) when its fetcher changes. A new
  // fetcher once the Authorization header has changed makes the
  // documentation explorer and autocompletion appear as soon as the token is
  // typed, with no reload (which would lose the token).
  function onEditHeaders(text) {
    clearTimeout(timer);
    timer = setTimeout(function () {
      var auth = authorization(text);
      if (auth !== null && auth !== lastAuth) {
        lastAuth = auth;
        fetcher = makeFetcher();
        render();
      }
    }, 500);
  }

  function render() {
    root.render(React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultHeaders: defaultHeaders,
      defaultEditorToolsVisibility: tokenRequired ? 'headers' : false,
      shouldPersistHeaders: false,
      onEditHeaders: onEditHeaders,
      defaultQuery: '# eventtap admin API (SPEC §5). Ctrl-Enter runs the query;\n' +
        '# Ctrl-Space completes; the book icon opens the schema documentation.\n' +
        (tokenRequired ? '# This admin needs its token: put it in the Headers tab below.\n' : '') +
        '{\n  webhooks(first: 20) {\n    totalCount\n    edges { node { id type url status } }\n  }\n}\n'
    }));
  }
  render();
})();
