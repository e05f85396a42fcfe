#!/usr/bin/env bash
# npm run test:e2e: every end-to-end scenario under a real systemd, on Debian 12's
# systemd 252 and Debian 13's 257, each scenario in a freshly booted container.
#
#   test/e2e/run.sh [SCENARIO...]     e.g. test/e2e/run.sh reload stop
#
# E2E_SUITES picks the systemd versions (default "bookworm trixie"); SDSERVE_E2E_NODE
# is the node binary bound as the containers' /usr/bin/node (default: the node on
# PATH); VERBOSE=1 shows the container's boot and teardown. A failed scenario's container journal is kept
# in $E2E_LOGS (default /var/tmp/sdserve-e2e/logs). Needs root and cgroup2; says so
# and exits 77 when this machine cannot run it.
set -euo pipefail
cd "$(dirname "$0")/../.."
HARNESS=test/e2e/systemd-container.sh
SUITES=${E2E_SUITES:-bookworm trixie}
LOGS=${E2E_LOGS:-/var/tmp/sdserve-e2e/logs}

if [ "$(id -u)" != 0 ]; then
    echo "e2e: cannot run: it needs root, to boot systemd in namespaces of its own (try: sudo npm run test:e2e)" >&2
    exit 77
fi
if [ -z "$(findmnt -n -t cgroup2 -o TARGET 2>/dev/null | head -n1)" ]; then
    echo "e2e: cannot run: no cgroup2 file system is mounted, and systemd needs one" >&2
    exit 77
fi

[ -f dist/test/e2e/helpers/container.js ] || npm run build
# A scenario may take minutes on a loaded machine; tap's own default is 30 s.
export TAP_TIMEOUT=${TAP_TIMEOUT:-600}
# The node the containers run (it must run on Debian 12's glibc); scenarios run on the host's.
node=$(readlink -f "${SDSERVE_E2E_NODE:-$(command -v node)}")
[ -x "$node" ] || { echo "e2e: SDSERVE_E2E_NODE=${SDSERVE_E2E_NODE:-} is not an executable node" >&2; exit 2; }
echo "# e2e: node $("$node" --version) in the containers ($node), host node $(node --version)"
if [ $# -gt 0 ]; then scenarios=("$@"); else
    scenarios=(); for f in dist/test/e2e/*.js; do n=${f##*/}; scenarios+=("${n%.js}"); done
fi
mkdir -p "$LOGS"

failed=(); passed=0
for suite in $SUITES; do
    for scenario in "${scenarios[@]}"; do
        file=dist/test/e2e/$scenario.js
        [ -f "$file" ] || { echo "e2e: no scenario $scenario ($file)" >&2; exit 2; }
        echo "# e2e $suite: $scenario"
        log=$LOGS/$suite-$scenario.journal
        # The checkout is the app's node_modules/sdserve; $node is the container's.
        if "$HARNESS" --suite "$suite" --journal "$log" \
            --bind "$PWD:/srv/app/node_modules/sdserve" --bind "$node:/usr/bin/node" \
            -- node --enable-source-maps "$file"; then
            passed=$((passed + 1)); rm -f "$log"
        else
            status=$?
            [ "$status" = 125 ] && { echo "e2e: the container could not be built or booted" >&2; exit 125; }
            failed+=("$suite/$scenario")
            echo "e2e: $suite/$scenario failed (status $status); the container's journal: $log" >&2
            tail -n 40 "$log" >&2 || true
        fi
    done
done

echo "# e2e: $passed passed, ${#failed[@]} failed${failed:+: ${failed[*]}}"
[ ${#failed[@]} = 0 ]
