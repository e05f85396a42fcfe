#!/usr/bin/env bash
# Roll new code (ACTION=reload) or a new Node/sdserve binary (ACTION=upgrade)
# over a set of sdserve hosts behind a load balancer, one host at a time, so
# that no request fails:
#
#   1. `sdserve ctl drain`: the host's health endpoint answers 503 lame-duck
#      while it still serves everything;
#   2. wait until the balancer has taken it out: with LB_STATE set, until
#      HAProxy's `show servers state` says the server is down; without it,
#      until the health endpoint answers 503 and then FALL * INTER seconds
#      more (the balancer's checks need that long to see it);
#   3. `sdserve ctl reload` (or `upgrade`): answers once the new code serves;
#   4. `sdserve ctl resume`, wait until the health endpoint answers 200 and
#      the balancer has the host back (LB_STATE, else RISE * INTER seconds);
#   5. the next host.
#
# Settings (environment):
#   HOSTS       the hosts, in order (default "h1 h2 h3"); with LB_STATE they
#               are also the HAProxy server names
#   RUN         command prefix that runs a command on a host (default
#               "ssh {host}"; '' runs locally); {host} is replaced by the host
#   CTL         the sdserve ctl command on the host (default "sdserve ctl",
#               which finds /run/<unit>/sdserve.ctl only under the unit's
#               RuntimeDirectory; else add --socket PATH); {host} is replaced
#   ACTION      reload (default) or upgrade
#   HEALTH_URL  the health endpoint, fetched on the host through RUN (default
#               http://127.0.0.1:8000/healthz); {host} is replaced
#   CURL        how to fetch it (default "curl --haproxy-protocol": sdserve
#               behind HAProxy runs with --proxy-protocol and expects the header
#               on every connection, and its --proxy-allow-ips must then include
#               127.0.0.1; drop the flag for an sdserve without --proxy-protocol)
#   LB_STATE    a command that prints HAProxy's `show servers state BACKEND`,
#               e.g. "ssh lb 'echo show servers state app | socat stdio /run/haproxy/admin.sock'"
#               (default: none, wait FALL * INTER and RISE * INTER instead)
#   FALL, RISE, INTER   the balancer's check settings (default 2, 2, 0.5 s,
#               as examples/deploy/haproxy.cfg); MARGIN seconds added (default 1)
#   TIMEOUT     seconds any one wait may take before the deploy stops (default 60)
#
# A failure stops the deploy at that host, drained or not: the message says
# which, and `sdserve ctl resume` puts a drained host back.
set -euo pipefail

HOSTS=${HOSTS-h1 h2 h3}
RUN=${RUN-ssh {host\}}
CTL=${CTL-sdserve ctl}
ACTION=${ACTION:-reload}
HEALTH_URL=${HEALTH_URL:-http://127.0.0.1:8000/healthz}
CURL=${CURL-curl --haproxy-protocol}
LB_STATE=${LB_STATE:-}
FALL=${FALL:-2}
RISE=${RISE:-2}
INTER=${INTER:-0.5}
MARGIN=${MARGIN:-1}
TIMEOUT=${TIMEOUT:-60}

case $ACTION in
  reload | upgrade) ;;
  *) echo "rolling-deploy: ACTION must be reload or upgrade, not '$ACTION'" >&2; exit 2 ;;
esac

log() { echo "rolling-deploy: $*"; }
die() { echo "rolling-deploy: $*" >&2; exit 1; }

# The RUN prefix, CTL and HEALTH_URL for one host ({host} replaced).
for_host() { local s=$1; echo "${s//\{host\}/$host}"; }

# Run a command on the current host (word-split on purpose: RUN and CTL are command lines).
on_host() {
  # shellcheck disable=SC2046
  $(for_host "$RUN") "$@"
}

ctl() {
  # shellcheck disable=SC2046
  on_host $(for_host "$CTL") "$@"
}

# The HTTP status of the host's health endpoint, or 000 when it does not answer.
health() {
  # shellcheck disable=SC2046
  on_host $CURL -s -o /dev/null -w '%{http_code}' --max-time 2 "$(for_host "$HEALTH_URL")" || true
}

# srv_op_state of the host's server in HAProxy: 0 down, 1 starting, 2 up, 3 stopping.
lb_state() {
  bash -c "$LB_STATE" | awk -v name="$host" '$4 == name { print $6; exit }'
}

# Poll "$@" until it succeeds, at most TIMEOUT seconds.
wait_until() {
  local what=$1 deadline=$((SECONDS + TIMEOUT))
  shift
  until "$@"; do
    ((SECONDS < deadline)) || die "$host: gave up after ${TIMEOUT}s waiting until $what"
    sleep 0.2
  done
}

health_is() { [[ $(health) == "$1" ]]; }
lb_is() { [[ $(lb_state) == "$1" ]]; }
seconds() { awk -v n="$1" -v i="$INTER" -v m="$MARGIN" 'BEGIN { print n * i + m }'; }

ctl_retrying() {
  # After an upgrade the new master binds the control socket once promoted: retry briefly.
  local deadline=$((SECONDS + TIMEOUT))
  until ctl "$@"; do
    ((SECONDS < deadline)) || die "$host: 'sdserve ctl $*' kept failing for ${TIMEOUT}s"
    sleep 0.5
  done
}

n=0
total=$(wc -w <<<"$HOSTS")
for host in $HOSTS; do
  n=$((n + 1))
  log "[$n/$total] $host: drain"
  ctl drain >/dev/null || die "$host: 'sdserve ctl drain' failed; nothing changed on this host"
  wait_until "the health endpoint answers 503" health_is 503
  if [[ -n $LB_STATE ]]; then
    wait_until "HAProxy marks it down (show servers state)" lb_is 0
    log "[$n/$total] $host: out of the balancer (HAProxy says down)"
  else
    log "[$n/$total] $host: health answers 503; waiting $(seconds "$FALL") s (FALL * INTER + MARGIN) for the balancer"
    sleep "$(seconds "$FALL")"
  fi
  log "[$n/$total] $host: $ACTION"
  ctl "$ACTION" || die "$host: 'sdserve ctl $ACTION' failed; the host still serves the old version, drained (sdserve ctl resume puts it back)"
  ctl_retrying resume >/dev/null
  wait_until "the health endpoint answers 200" health_is 200
  if [[ -n $LB_STATE ]]; then
    wait_until "HAProxy marks it up (show servers state)" lb_is 2
    log "[$n/$total] $host: back in the balancer (HAProxy says up)"
  else
    log "[$n/$total] $host: healthy; waiting $(seconds "$RISE") s (RISE * INTER + MARGIN) for the balancer"
    sleep "$(seconds "$RISE")"
  fi
done
log "done: $ACTION on $total hosts"
