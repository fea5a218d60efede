#!/usr/bin/env sh
# Logging through sidelog from a shell: one entry, then COUNT entries as NDJSON batches of 100, then the same
# gzip-compressed. curl's --retry re-sends after a 429 or 503, waiting the Retry-After sidelog gives, and while
# sidelog is not up yet.
#   sh examples/curl/send.sh          (COUNT defaults to 10; RUN_ID tags the entries)
set -eu
SIDELOG_URL="${SIDELOG_URL:-http://127.0.0.1:9090/logs}"
RUN_ID="${RUN_ID:-$(date +%s)-$$}"
COUNT="${COUNT:-10}"
BATCH=100
RETRY="--retry 20 --retry-connrefused --retry-max-time 120"

# One entry, as a JSON object.
curl --silent --show-error --fail $RETRY -H 'content-type: application/json' \
  --data "{\"level\":\"info\",\"message\":\"single entry\",\"tag\":\"${RUN_ID}-single\",\"lang\":\"curl\"}" \
  "$SIDELOG_URL"
echo

# Entries $1 up to (not including) $2, one JSON object per line, tagged $3-<n>.
entries() {
  i="$1"
  while [ "$i" -lt "$2" ]; do
    printf '{"level":"info","message":"example entry %s","tag":"%s-%s","lang":"curl"}\n' "$i" "$3" "$i"
    i=$((i + 1))
  done
}

# curl re-reads a file on each retry (a pipe could not be re-sent), so each body goes to a temporary file first.
body="$(mktemp)"
trap 'rm -f "$body"' EXIT
start=0
while [ "$start" -lt "$COUNT" ]; do
  end=$((start + BATCH))
  [ "$end" -gt "$COUNT" ] && end="$COUNT"
  entries "$start" "$end" "$RUN_ID" >"$body"
  curl --silent --show-error --fail $RETRY -H 'content-type: application/x-ndjson' --data-binary @"$body" "$SIDELOG_URL"
  echo
  # The same entries again, gzip-compressed, tagged <RUN_ID>-gz-<n>.
  entries "$start" "$end" "$RUN_ID-gz" | gzip >"$body"
  curl --silent --show-error --fail $RETRY -H 'content-type: application/x-ndjson' -H 'content-encoding: gzip' \
    --data-binary @"$body" "$SIDELOG_URL"
  echo
  start="$end"
done
