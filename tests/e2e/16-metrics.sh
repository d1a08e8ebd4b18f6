#!/usr/bin/env bash
# 16 metrics: A (fastwire) serves Prometheus metrics on its namespace's loopback (--metrics-listen); B sends
# it traffic through the tunnel. Checked:
#  - GET /metrics answers with text that `promtool check metrics` accepts, with the exporter's series for
#    B's key and fastwire's own;
#  - a real Prometheus server (Debian's, in A's namespace, scraping every second) stores
#    wireguard_received_bytes_total for B with the value `wg show transfer` reports;
#  - `fastwire show --json` reports the same transfer;
#  - a second daemon asking for the same metrics port fails at start with a clear error and leaves no
#    interface behind; after A stops, the port is free.
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "$0")/lib.sh"
require_basics "$IMPL_A" "$IMPL_B"
require ping python3 promtool prometheus
[[ $IMPL_A == fastwire* ]] || { not_checked "metrics endpoint ($IMPL_A has none)"; pass; }

METRICS=127.0.0.1:9586
PROM=127.0.0.1:19090

setup_pair
start_impl a "$IMPL_A" --metrics-listen "$METRICS"
start_impl b "$IMPL_B"
configure a "$PORT_A" b 10.78.0.2/32,fd78::2/128 10.78.0.1/24 fd78::1/64
configure b "$PORT_B" a 10.78.0.1/32,fd78::1/128 10.78.0.2/24 fd78::2/64 "10.77.0.1:$PORT_A"
check_ping b 10.78.0.1
nsx b ping -q -n -c 50 -i 0.01 -s 1200 10.78.0.1 >/dev/null || fail "ping B -> A lost packets"

# scrape FILE: GET /metrics from inside A's namespace into FILE.
scrape() {
	nsx a python3 -c 'import sys, urllib.request
with urllib.request.urlopen("http://" + sys.argv[1] + "/metrics", timeout=5) as r:
    assert r.status == 200, r.status
    sys.stdout.write(r.read().decode())' "$METRICS" >"$1" 2>"$1.err" || fail "GET /metrics failed: $(tail -n 2 "$1.err")"
}
# received_by_a: what `wg show transfer` says A received from B.
received_by_a() { wgc a show "$(ifname a)" transfer | awk -v k="$(pubkey b)" '$1 == k { print $2 }'; }
b_labels="interface=\"$(ifname a)\",public_key=\"$(pubkey b)\",allowed_ips=\"10.78.0.2/32,fd78::2/128\""

step "GET /metrics, checked by promtool"
rx=$(received_by_a)
scrape "$LOG_DIR/metrics.txt"
promtool check metrics <"$LOG_DIR/metrics.txt" >"$LOG_DIR/promtool.txt" 2>&1 ||
	fail "promtool check metrics: $(head -n 5 "$LOG_DIR/promtool.txt")"
grep -qxF "wireguard_received_bytes_total{$b_labels} $rx" "$LOG_DIR/metrics.txt" ||
	fail "no wireguard_received_bytes_total{$b_labels} $rx in $LOG_DIR/metrics.txt: $(grep received_bytes "$LOG_DIR/metrics.txt")"
for series in "wireguard_sent_bytes_total{$b_labels}" "wireguard_latest_handshake_seconds{$b_labels}" \
	"fastwire_peers{interface=\"$(ifname a)\"} 1" 'fastwire_dropped_packets_total{' 'fastwire_rx_packets_total{'; do
	grep -qF "$series" "$LOG_DIR/metrics.txt" || fail "no $series in the metrics"
done
handshake=$(awk -v s="wireguard_latest_handshake_seconds{$b_labels}" '$1 == s { print $2 }' "$LOG_DIR/metrics.txt")
(($(date +%s) - handshake < 60)) || fail "latest handshake $handshake is not within the last minute"
log "promtool accepts $(grep -vc '^#' "$LOG_DIR/metrics.txt") samples; B's received bytes: $rx"

step "a real Prometheus scrapes it"
mkdir -p "$WORK/prometheus"
cat >"$WORK/prometheus/prometheus.yml" <<CONF
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: fastwire
    static_configs:
      - targets: ["$METRICS"]
CONF
ip netns exec "$(nsname a)" prometheus --config.file="$WORK/prometheus/prometheus.yml" \
	--storage.tsdb.path="$WORK/prometheus/data" --web.listen-address="$PROM" >"$LOG_DIR/prometheus.log" 2>&1 &
prom_pid=$!
trap 'kill $prom_pid 2>/dev/null; wait $prom_pid 2>/dev/null; cleanup' EXIT
# prom_value QUERY: the value of the query's first sample, empty while there is none.
prom_value() {
	nsx a python3 -c 'import json, sys, urllib.parse, urllib.request
url = "http://" + sys.argv[1] + "/api/v1/query?" + urllib.parse.urlencode({"query": sys.argv[2]})
try:
    with urllib.request.urlopen(url, timeout=3) as r:
        result = json.load(r)["data"]["result"]
except OSError:
    result = []
print(result[0]["value"][1] if result else "")' "$PROM" "$1"
}
query="wireguard_received_bytes_total{public_key=\"$(pubkey b)\"}"
nsx b ping -q -n -c 20 -i 0.01 -s 1000 10.78.0.1 >/dev/null || fail "ping B -> A lost packets"
rx=$(received_by_a)
stored=
deadline=$(($(now_ms) + 30000))
while (($(now_ms) < deadline)); do
	stored=$(prom_value "$query")
	[[ $stored == "$rx" ]] && break
	sleep 0.5
done
[[ $stored == "$rx" ]] || fail "Prometheus has $query = '${stored:-nothing}' after 30 s, wg show says $rx ($(tail -n 3 "$LOG_DIR/prometheus.log" | tr '\n' ' '))"
up=$(prom_value 'up{job="fastwire"}')
[[ $up == 1 ]] || fail "Prometheus says the target is not up ($up)"
log "Prometheus stored $query = $stored, as wg show"

step "fastwire show --json"
nsx a "$FASTWIRE" show --json "$(ifname a)" >"$LOG_DIR/show.json" || fail "fastwire show --json failed"
json_rx=$(python3 -c 'import json, sys
doc = json.load(open(sys.argv[1]))
peer = [p for p in doc["interfaces"][0]["peers"] if p["public_key"] == sys.argv[2]][0]
assert doc["interfaces"][0]["listen_port"] == int(sys.argv[3])
print(peer["transfer_rx"])' "$LOG_DIR/show.json" "$(pubkey b)" "$PORT_A") || fail "show --json is not what it should be: $(head -c 300 "$LOG_DIR/show.json")"
rx=$(received_by_a)
[[ $json_rx == "$rx" ]] || fail "show --json says $json_rx received from B, wg show $rx"
grep -qF "$(cat "$WORK/a.key")" "$LOG_DIR/show.json" && fail "show --json printed the private key"

step "the metrics port taken: a second daemon fails at start, leaving nothing behind"
if ip netns exec "$(nsname a)" "$FASTWIRE" --metrics-listen "$METRICS" -f fw-$ID-x >"$LOG_DIR/second.log" 2>&1; then
	fail "a second daemon started on the taken metrics port $METRICS"
fi
grep -q "cannot serve metrics on $METRICS" "$LOG_DIR/second.log" || fail "unclear error: $(cat "$LOG_DIR/second.log")"
ip -n "$(nsname a)" link show "fw-$ID-x" >/dev/null 2>&1 && fail "the failed daemon left fw-$ID-x behind"
[[ -e $UAPI_DIR/fw-$ID-x.sock ]] && fail "the failed daemon left its UAPI socket behind"

step "after A stops, the port is free"
kill "$prom_pid" 2>/dev/null
wait "$prom_pid" 2>/dev/null
stop_impl a
tcp_listening a 9586 && fail "port 9586 still listened on after A stopped"
pass
