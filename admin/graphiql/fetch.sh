#!/usr/bin/env bash
# Fetches the GraphiQL explorer's third-party files, which the admin server
# embeds (go:embed) and serves at GET /graphql/explorer/: GraphiQL 3's UMD
# build and React 18's UMD builds, with their licences. GraphiQL 3 is the
# last major with a UMD build (later majors are ES modules only).
#
# Every package is pinned by version and by the npm registry's sha512
# integrity of its tarball; the script refuses a tarball that does not
# match, extracts only the files listed, unchanged, and writes SHA256SUMS,
# which a test checks the embedded files against.
#
#   admin/graphiql/fetch.sh          refresh the files here
#   admin/graphiql/fetch.sh --check  fetch again and fail if anything here differs
#
# Needs npm (the ordinary client of registry.npmjs.org) and node.
# To upgrade: change a version, run once, paste the integrity it reports.
set -euo pipefail
cd "$(dirname "$0")"

# name version integrity, then "file-in-tarball:name-here" pairs.
packages=(
  "graphiql 3.8.3 sha512-cuPDYtXVKV86Pu5PHBX642Odi/uVEE2y1Jxq5rGO/Qy1G2lRp7ZZ7a/T30RzxhuLSWo9zUbzq0P3U49//H0Ugw==
   package/graphiql.min.js:graphiql.min.js package/graphiql.min.css:graphiql.min.css package/LICENSE:LICENSE.graphiql"
  "react 18.3.1 sha512-wS+hAgJShR0KhEvPJArfuPVN1+Hz1t0Y6n5jLrGQbkb4urgPE/0Rve+1kMB1v/oWgHgm4WIcV+i7F2pTVj+2iQ==
   package/umd/react.production.min.js:react.production.min.js package/LICENSE:LICENSE.react"
  "react-dom 18.3.1 sha512-5m4nQKp+rZRb09LNH59GM4BxTh9251/ylbKIbpe7TpGxfJ+9kv6BLkLBXIjjspbgbnIBNqlI23tRnTWT0snUIw==
   package/umd/react-dom.production.min.js:react-dom.production.min.js package/LICENSE:LICENSE.react-dom"
)

check=false
[[ "${1:-}" == "--check" ]] && check=true

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/out"
files=()
for p in "${packages[@]}"; do
  # shellcheck disable=SC2086 # word splitting joins the entry's two lines
  set -- $p
  name=$1 version=$2 integrity=$3
  shift 3
  pairs=$*
  (cd "$work" && npm pack --silent "$name@$version" >/dev/null)
  tgz="$work/$name-$version.tgz"
  got="sha512-$(node -e 'const c=require("crypto"),f=require("fs");process.stdout.write(c.createHash("sha512").update(f.readFileSync(process.argv[1])).digest("base64"))' "$tgz")"
  if [[ "$got" != "$integrity" ]]; then
    echo "fetch.sh: $name@$version: tarball integrity $got, pinned $integrity" >&2
    exit 1
  fi
  for pair in $pairs; do
    src=${pair%%:*} dst=${pair##*:}
    tar -xzf "$tgz" -O "$src" >"$work/out/$dst"
    files+=("$dst")
  done
  echo "$name@$version: integrity ok"
done
(cd "$work/out" && sha256sum "${files[@]}" >SHA256SUMS)

if $check; then
  for f in "${files[@]}" SHA256SUMS; do
    cmp -s "$work/out/$f" "$f" || { echo "fetch.sh --check: $f differs from the pinned packages" >&2; exit 1; }
  done
  echo "fetch.sh --check: every file matches"
else
  for f in "${files[@]}" SHA256SUMS; do cp "$work/out/$f" "$f"; done
  echo "wrote ${files[*]} SHA256SUMS"
fi
