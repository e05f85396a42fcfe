#!/usr/bin/env bash
# systemd-container.sh: boot a real systemd as PID 1 in throw-away namespaces, run a
# test command on the host against it, and tear everything down.
#
#   test/e2e/systemd-container.sh [options] -- COMMAND [ARGS...]
#   test/e2e/systemd-container.sh image [--suite S]     build (or find) the image, print its path
#   test/e2e/systemd-container.sh clean                 delete the cached images
#
# Options:
#   --suite S        bookworm (Debian 12, systemd 252) or trixie (Debian 13, systemd 257; default)
#   --bind SRC:DST   bind SRC read-only at DST inside the container (repeatable)
#   --journal FILE   write the container's journal there when the command ends
#   -v, --verbose    say what happens, with timings, on stderr
#
# COMMAND runs on the host with these in its environment:
#   E2E_PID1   host pid of the container's systemd (nsenter -t "$E2E_PID1" -n: its network)
#   E2E_ROOT   /proc/$E2E_PID1/root: the container's file system, writable (an overlay on
#              a tmpfs), e.g. curl --unix-socket "$E2E_ROOT/run/app.sock"
#   E2E_EXEC   a script that runs its arguments inside the container with a clean
#              environment: "$E2E_EXEC" systemctl reload app
#   E2E_SYSTEMD_VERSION   systemd's version number, e.g. 257
#
# How: a minimal Debian image is built once with mmdebstrap (installed with apt-get when
# missing) and cached under $SDSERVE_E2E_CACHE (default /var/tmp/sdserve-e2e). Each run
# mounts it read-only under a tmpfs overlay in new pid, mount, uts, ipc, net and cgroup
# namespaces, inside a cgroup of its own, and execs systemd there. Teardown kills what
# the command left behind, powers the container off, and removes the cgroup and the run
# directory; nothing of a run is left on the host.
#
# Needs root, util-linux (unshare, nsenter, setpriv, findmnt) and a cgroup2 mount.
# Exit status: COMMAND's; 125 when the container could not be built or booted;
# 77 when this machine cannot run it at all (not root, no cgroup2).
set -euo pipefail

CACHE=${SDSERVE_E2E_CACHE:-/var/tmp/sdserve-e2e}
IMAGE_VERSION=1   # bump when the image's content or customisation changes
# Packages of the image: systemd and what the scenarios drive (curl, nginx, logrotate,
# ssl-cert for a TLS nginx, and the process monitors the examples cover: supervisor, runit).
PACKAGES=systemd,systemd-sysv,dbus,procps,iproute2,curl,nginx,ssl-cert,logrotate,supervisor,runit
SELF=$(readlink -f "$0")
VERBOSE=${VERBOSE:-0}
T0=$(date +%s%N)

say() { [ "$VERBOSE" = 1 ] || return 0; printf '[e2e %6ss] %s\n' "$(awk -v t="$(( $(date +%s%N) - T0 ))" 'BEGIN { printf "%.2f", t / 1e9 }')" "$*" >&2; }
warn() { printf '[e2e] %s\n' "$*" >&2; }
die() { printf '[e2e] error: %s\n' "$*" >&2; exit 125; }
cannot() { printf '[e2e] cannot run here: %s\n' "$*" >&2; exit 77; }

###########################################################################
# Stage 2: PID 1 of the new namespaces. Builds the root file system, execs systemd.
###########################################################################
if [ "${1:-}" = __pid1 ]; then
    set -eu
    root=$E2E_RUNDIR/root
    mount --make-rprivate /
    mount -t tmpfs -o mode=0755,size=1g e2e-rw "$E2E_RUNDIR/rw"
    mkdir -p "$E2E_RUNDIR/rw/upper" "$E2E_RUNDIR/rw/work"
    mount -t overlay overlay -o "lowerdir=$E2E_IMAGE,upperdir=$E2E_RUNDIR/rw/upper,workdir=$E2E_RUNDIR/rw/work" "$root"
    od -An -tx1 -N16 /dev/urandom | tr -d ' \n' > "$root/etc/machine-id"; echo >> "$root/etc/machine-id"
    hostname sdserve-e2e
    while IFS='|' read -r src dst; do
        [ -n "$src" ] || continue
        if [ -d "$src" ]; then mkdir -p "$root$dst"; else mkdir -p "$(dirname "$root$dst")"; : > "$root$dst"; fi
        mount --bind "$src" "$root$dst"
        mount -o remount,bind,ro "$root$dst"
    done <<< "$E2E_BINDS"
    # Kernel file systems. /proc/sys and /sys read-only: the container must not change
    # the host's sysctls (systemd raises fs.nr_open when it can).
    mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
    mount --bind "$root/proc/sys" "$root/proc/sys"; mount -o remount,bind,ro "$root/proc/sys"
    mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$root/sys"
    mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 "$root/sys/fs/cgroup"
    # A /dev of its own with fresh device nodes: binding the host's would let the
    # container's systemd chown and chmod the host's /dev/null.
    mount -t tmpfs -o mode=0755,nosuid,size=4m e2e-dev "$root/dev"
    for node in null:1:3 zero:1:5 full:1:7 random:1:8 urandom:1:9 tty:5:0; do
        IFS=: read -r name major minor <<< "$node"
        mknod -m 666 "$root/dev/$name" c "$major" "$minor"
    done
    mkdir -p "$root/dev/pts" "$root/dev/shm"
    mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5 devpts "$root/dev/pts"
    ln -s pts/ptmx "$root/dev/ptmx"
    mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$root/dev/shm"
    ln -s /proc/self/fd "$root/dev/fd"
    for i in 0:stdin 1:stdout 2:stderr; do ln -s "/proc/self/fd/${i%%:*}" "$root/dev/${i#*:}"; done
    : > "$root/dev/console"; mount --bind "$E2E_RUNDIR/console.log" "$root/dev/console"
    cd "$root"; mkdir -p .oldroot; pivot_root . .oldroot; cd /
    umount -l /.oldroot; rmdir /.oldroot
    # No capability that reaches beyond the namespaces (modules, clock, raw I/O, ...).
    exec setpriv --bounding-set -sys_module,-sys_time,-sys_rawio,-syslog,-wake_alarm,-mac_admin,-mac_override,-sys_pacct,-block_suspend \
        -- env -i container=sdserve-e2e SYSTEMD_COLORS=0 TERM=dumb /lib/systemd/systemd
fi

###########################################################################
# Arguments
###########################################################################
MODE=run
case "${1:-}" in image|clean) MODE=$1; shift;; esac
SUITE=trixie; BINDS=""; JOURNAL=""
while [ $# -gt 0 ]; do
    case "$1" in
        --suite) SUITE=$2; shift 2;;
        --bind)
            src=${2%%:*}; dst=${2#*:}
            [ -e "$src" ] || die "--bind: no such file or directory: $src"
            case "$dst" in /*) ;; *) die "--bind $2: the container path must be absolute";; esac
            BINDS+="$(readlink -f "$src")|$dst"$'\n'; shift 2;;
        --journal) JOURNAL=$2; shift 2;;
        -v|--verbose) VERBOSE=1; shift;;
        -h|--help) sed -n '2,/^set -euo/p' "$SELF" | sed '$d; s/^# \{0,1\}//'; exit 0;;
        --) shift; break;;
        *) die "unknown option $1 (see --help)";;
    esac
done
case "$SUITE" in bookworm|trixie) ;; *) die "--suite $SUITE: expected bookworm or trixie";; esac
[ "$(id -u)" = 0 ] || cannot "needs root (it mounts file systems and makes namespaces)"
for tool in unshare nsenter setpriv findmnt; do command -v "$tool" >/dev/null || cannot "$tool (util-linux) is missing"; done

if [ "$MODE" = clean ]; then rm -rf -- "$CACHE/images"; echo "removed $CACHE/images"; exit 0; fi

###########################################################################
# Image: minimal Debian with systemd, built once per suite and package list
###########################################################################
apt_mirror() {   # the Debian archive this machine's apt already uses
    local uri
    uri=$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\/debian\)\/\{0,1\}[[:space:]]*$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1)
    [ -n "$uri" ] || uri=$(sed -n 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\{0,1\}\([^[:space:]]*\/debian\)\/\{0,1\}[[:space:]].*/\2/p' \
        /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | head -n1)
    printf '%s' "${uri:-http://deb.debian.org/debian}"
}
MIRROR=${SDSERVE_E2E_MIRROR:-$(apt_mirror)}
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
KEY=$(printf '%s\n' "$IMAGE_VERSION" "$SUITE" "$MIRROR" "$PACKAGES" | sha256sum | cut -c1-12)
IMAGE=$CACHE/images/$SUITE-$KEY

build_image() {
    if ! command -v mmdebstrap >/dev/null || [ ! -r "$KEYRING" ]; then
        say "installing mmdebstrap and debian-archive-keyring with apt-get"
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            mmdebstrap debian-archive-keyring; } >&2 || die "could not install mmdebstrap"
    fi
    local tmp=$IMAGE.tmp.$$ log=$CACHE/images/$SUITE-$KEY.log
    rm -rf -- "$tmp"
    say "building the $SUITE image (once; about a minute): $PACKAGES"
    mmdebstrap --variant=minbase --include="$PACKAGES" \
        --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        "$SUITE" "$tmp" "deb [signed-by=$KEYRING] $MIRROR $SUITE main" > "$log" 2>&1 ||
        { rm -rf -- "$tmp"; die "mmdebstrap failed; its log: $log"; }
    # A quiet, fast boot: no gettys, timers or first-boot questions; the journal in memory;
    # nginx, supervisor and runit installed but started only by the scenarios that use them.
    local units=$tmp/etc/systemd/system
    ln -sf /lib/systemd/system/multi-user.target "$units/default.target"
    for unit in console-getty.service getty@.service systemd-firstboot.service systemd-modules-load.service \
                apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer fstrim.timer logrotate.timer \
                e2scrub_all.timer e2scrub_reap.service systemd-binfmt.service proc-sys-fs-binfmt_misc.automount \
                nginx.service supervisor.service runit.service; do
        ln -sf /dev/null "$units/$unit"
    done
    mkdir -p "$tmp/etc/systemd/journald.conf.d"
    printf '[Journal]\nStorage=volatile\nRateLimitBurst=0\n' > "$tmp/etc/systemd/journald.conf.d/e2e.conf"
    : > "$tmp/etc/machine-id"
    rm -rf "$tmp/var/lib/apt/lists/"* "$tmp/var/cache/apt/"*.bin
    chroot "$tmp" /lib/systemd/systemd --version | sed -n '1s/^systemd \([0-9]*\).*/\1/p' > "$tmp/.systemd-version"
    mv -- "$tmp" "$IMAGE"
}

mkdir -p "$CACHE/images" "$CACHE/runs"
exec 9> "$CACHE/images/.lock"; flock 9
[ -s "$IMAGE/.systemd-version" ] || build_image
exec 9>&-
SYSTEMD_VERSION=$(cat "$IMAGE/.systemd-version")
say "image $IMAGE (systemd $SYSTEMD_VERSION)"
if [ "$MODE" = image ]; then echo "$IMAGE"; exit 0; fi
[ $# -gt 0 ] || die "no command given (usage: $0 [options] -- COMMAND ...)"

###########################################################################
# Run: a cgroup of our own, the namespaces, boot, COMMAND, teardown
###########################################################################
CGROUP_FS=$(findmnt -n -t cgroup2 -o TARGET | head -n1)
[ -n "$CGROUP_FS" ] || cannot "no cgroup2 file system is mounted (systemd needs one)"
RUN_ID=$$-$(date +%N)
CGROUP=$CGROUP_FS$(sed -n 's/^0:://p' /proc/self/cgroup | sed 's:/$::')/sdserve-e2e-$RUN_ID
RUNDIR=$CACHE/runs/$RUN_ID
OUTER=""; PID1=""; COMMAND_PID=""; TORN_DOWN=0

cgroup_kill() {   # kill every process in cgroup $1 and wait until it is empty
    grep -q '^populated 1' "$1/cgroup.events" 2>/dev/null || return 0
    echo 1 > "$1/cgroup.kill" 2>/dev/null || true
    for _ in $(seq 200); do grep -q '^populated 0' "$1/cgroup.events" && return 0; sleep 0.05; done
    warn "processes of $1 did not die"
}

teardown() {
    [ "$TORN_DOWN" = 1 ] && return; TORN_DOWN=1
    set +e; trap '' INT TERM HUP
    # What COMMAND left running goes first. Processes entered with nsenter must be gone
    # before the poweroff: systemd's final SIGSTOP of the pid namespace would stop them
    # mid-wait, and the namespace would never finish dying.
    cgroup_kill "$CGROUP/command"
    [ -n "$COMMAND_PID" ] && { wait "$COMMAND_PID"; } 2>/dev/null
    if [ -n "$PID1" ] && kill -0 "$PID1" 2>/dev/null; then
        say "powering off (SIGRTMIN+4 to the container's systemd)"
        kill -s SIGRTMIN+4 "$PID1"
        for _ in $(seq 150); do kill -0 "$OUTER" 2>/dev/null || break; sleep 0.1; done
    fi
    cgroup_kill "$CGROUP"
    [ -n "$OUTER" ] && { wait "$OUTER"; } 2>/dev/null
    [ -d "$CGROUP" ] && find "$CGROUP" -depth -type d -exec rmdir {} + 2>/dev/null
    [ -d "$CGROUP" ] && warn "could not remove the cgroup $CGROUP"
    rm -rf -- "$RUNDIR"
    say "torn down"
}
trap teardown EXIT
trap 'exit 130' INT TERM HUP

# Left by a run that was killed before its teardown: empty cgroups, run directories.
for dir in "${CGROUP%/*}"/sdserve-e2e-*; do
    [ -d "$dir" ] || continue
    id=${dir##*/sdserve-e2e-}; kill -0 "${id%%-*}" 2>/dev/null && continue
    cgroup_kill "$dir"; find "$dir" -depth -type d -exec rmdir {} + 2>/dev/null
    rm -rf -- "${CACHE:?}/runs/$id"
done

mkdir -p "$RUNDIR/rw" "$RUNDIR/root" "$CGROUP/container" "$CGROUP/outer" "$CGROUP/command"
: > "$RUNDIR/console.log"
say "starting the namespaces (cgroup $CGROUP)"
# The first process moves itself into the container's cgroup, then becomes unshare, whose
# child (PID 1 inside) runs stage 2 of this script. --kill-child and the parent-death
# signal make sure nothing outlives this script.
E2E_RUNDIR=$RUNDIR E2E_IMAGE=$IMAGE E2E_BINDS=$BINDS setsid bash -c '
    echo $$ > "$0/container/cgroup.procs"
    exec setpriv --pdeathsig KILL unshare --pid --fork --kill-child --mount --propagation private \
        --uts --ipc --net --cgroup -- "$1" __pid1' "$CGROUP" "$SELF" < /dev/null > "$RUNDIR/unshare.log" 2>&1 &
OUTER=$!
for _ in $(seq 200); do
    PID1=$(cut -d' ' -f1 "/proc/$OUTER/task/$OUTER/children" 2>/dev/null || true)
    [ -n "$PID1" ] && break; kill -0 "$OUTER" 2>/dev/null || break; sleep 0.05
done
[ -n "$PID1" ] || { cat "$RUNDIR/unshare.log" >&2; die "the container's PID 1 did not start"; }
# unshare itself stays outside the container's cgroup tree, which systemd then owns.
echo "$OUTER" > "$CGROUP/outer/cgroup.procs"

cat > "$RUNDIR/exec" <<EOF
#!/bin/sh
# Run a command inside the sdserve e2e container, with a clean environment.
exec nsenter -t $PID1 -a -- env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    HOME=/root LANG=C.UTF-8 TERM=dumb SYSTEMD_COLORS=0 SYSTEMD_PAGER= "\$@"
EOF
chmod +x "$RUNDIR/exec"

state=""; deadline=$(( $(date +%s) + 60 ))
while :; do
    kill -0 "$PID1" 2>/dev/null || { cat "$RUNDIR/unshare.log" "$RUNDIR/console.log" >&2; die "the container died while booting"; }
    # /proc/PID1/root is the container's root only once PID 1 is systemd (after pivot_root).
    exe=$(readlink "/proc/$PID1/exe" 2>/dev/null || true)
    if [ "${exe##*/}" = systemd ] && [ -S "/proc/$PID1/root/run/systemd/private" ]; then
        state=$("$RUNDIR/exec" systemctl is-system-running 2>/dev/null || true)
        case "$state" in running|degraded) break;; esac
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
        "$RUNDIR/exec" systemctl list-jobs >&2 || true
        "$RUNDIR/exec" journalctl -b --no-pager -n 50 >&2 || true
        die "systemd did not finish booting within 60 s (state: ${state:-unknown})"
    fi
    sleep 0.05
done
say "booted systemd $SYSTEMD_VERSION ($state)"
[ "$state" = degraded ] && { warn "the container booted degraded; failed units:"; "$RUNDIR/exec" systemctl --failed --no-legend >&2 || true; }

say "running: $*"
set +e
( echo "$BASHPID" > "$CGROUP/command/cgroup.procs"
  export E2E_PID1=$PID1 E2E_ROOT=/proc/$PID1/root E2E_EXEC=$RUNDIR/exec E2E_SYSTEMD_VERSION=$SYSTEMD_VERSION
  exec "$@" ) < /dev/null &
COMMAND_PID=$!
wait "$COMMAND_PID"; status=$?
COMMAND_PID=""
set -e
say "command exited with status $status"
if [ -n "$JOURNAL" ]; then "$RUNDIR/exec" journalctl -b --no-pager -o short-monotonic > "$JOURNAL" 2>&1 || true; fi
exit "$status"
