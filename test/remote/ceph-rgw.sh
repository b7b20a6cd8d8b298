#!/usr/bin/env bash
# A one-node Ceph 16 cluster serving S3 (radosgw) on 127.0.0.1, for the remote tests: one mon, one
# bluestore OSD on a sparse file in the state folder, one radosgw; no mgr (radosgw needs none), no
# systemd, no LVM, no loop device. Every daemon forks, writes its pid file under STATE/run and its
# log under STATE/log; `down` stops them by those pid files and nothing else.
#
#   ceph-rgw.sh up STATE RGW_PORT MON_PORT   build a new cluster in an empty STATE; prints the endpoint
#   ceph-rgw.sh user STATE UID               make an S3 user: its keys, as JSON, in STATE/users/UID.json (0600)
#   ceph-rgw.sh stop-osd STATE | start-osd STATE
#   ceph-rgw.sh down STATE                   stop every daemon of STATE (its pid files)
#
# Keep STATE short: the admin sockets live in STATE/run and a unix socket path has < 108 bytes.
set -Eeuo pipefail

cmd=${1:?usage: ceph-rgw.sh up|user|stop-osd|start-osd|down STATE ...}
S=${2:?need STATE}
CONF=$S/ceph.conf
WAIT=${CEPH_RGW_WAIT:-180}

say() { printf '[ceph-rgw %s] %s\n' "$(date +%T)" "$*" >&2; }
fail() { say "ERROR: $*"; exit 1; }
# Every ceph CLI call bounded: with the mon not (yet) up it would retry for ever.
cephq() { ceph -c "$CONF" --connect-timeout 20 "$@"; }
running() { [ -f "$S/run/$1.pid" ] && kill -0 "$(cat "$S/run/$1.pid")" 2>/dev/null; }
until_true() { # until_true WHAT CMD...: retry each second, at most WAIT seconds
  local what=$1 i=0; shift
  until "$@" >/dev/null 2>&1; do
    i=$((i + 1))
    [ "$i" -le "$WAIT" ] || fail "$what: not after ${WAIT}s (logs in $S/log)"
    sleep 1
  done
}
osd_up() { cephq osd stat -f json | grep -q '"num_up_osds":1[,}]'; }
rgw_answers() { [ "$(curl -s -o /dev/null -m 5 -w '%{http_code}' "http://127.0.0.1:$(cat "$S/rgw_port")/")" = 200 ]; }

# stop NAME GRACE: SIGTERM by pid file, SIGKILL when it is still there after GRACE seconds.
stop() {
  local name=$1 grace=$2 pid i
  [ -f "$S/run/$name.pid" ] || return 0
  pid=$(cat "$S/run/$name.pid")
  kill -TERM "$pid" 2>/dev/null || { rm -f "$S/run/$name.pid"; return 0; }
  for ((i = 0; i < grace * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    say "$name (pid $pid) still there after ${grace}s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$S/run/$name.pid"
}

conf() {
  local fsid=$1 rgw_port=$2 mon_port=$3
  cat >"$CONF" <<EOF
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$mon_port
mon initial members = a
public addr = 127.0.0.1
# msgr2 only: one port for the mon.
ms bind msgr1 = false
keyring = $S/keyring
run dir = $S/run
admin socket = $S/run/\$name.asok
pid file = $S/run/\$name.pid
log file = $S/log/\$name.log
mon cluster log file = $S/log/cluster.log
crash dir = $S/crash
# One OSD: pools of one copy, few placement groups (2 cores), no autoscaler (it lives in the mgr).
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon warn on pool no redundancy = false
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
auth allow insecure global id reclaim = false
# The mon stops itself below mon data avail crit (5 % by default) of free disk: a shared CI disk
# is often fuller than that.
mon data avail warn = 2
mon data avail crit = 1
[mon]
mon data = $S/mon.\$id
[osd]
osd data = $S/osd.\$id
keyring = $S/osd.\$id/keyring
osd objectstore = bluestore
# bluestore makes the file itself (sparse) in the OSD's folder; setting bluestore block path to
# that same file makes a symlink to itself (ELOOP).
bluestore block create = true
bluestore block size = 8589934592
bluestore fsck on mkfs = false
osd memory target = 939524096
osd op num shards = 2
osd op num threads per shard = 1
[client.rgw.a]
keyring = $S/rgw.a/keyring
rgw data = $S/rgw.a
rgw frontends = beast endpoint=127.0.0.1:$rgw_port
rgw thread pool size = 32
EOF
}

start_osd() {
  running osd.0 || ceph-osd -c "$CONF" -i 0 2>>"$S/log/osd.0.stderr"
  until_true "osd.0 up" osd_up
}

case "$cmd" in
  up)
    rgw_port=${3:?need RGW_PORT}; mon_port=${4:?need MON_PORT}
    mkdir -p "$S"
    [ -z "$(ls -A "$S")" ] || fail "$S is not empty"
    mkdir -p "$S/run" "$S/log" "$S/crash" "$S/mon.a" "$S/osd.0" "$S/rgw.a" "$S/users"
    chmod 700 "$S/users"
    echo "$rgw_port" >"$S/rgw_port"
    conf "$(cat /proc/sys/kernel/random/uuid)" "$rgw_port" "$mon_port"
    ceph-authtool --create-keyring "$S/mon.keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
    ceph-authtool --create-keyring "$S/keyring" --gen-key -n client.admin \
      --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' >/dev/null
    ceph-authtool "$S/mon.keyring" --import-keyring "$S/keyring" >/dev/null
    monmaptool --create --fsid "$(awk '/^fsid/ {print $3}' "$CONF")" \
      --addv a "[v2:127.0.0.1:$mon_port]" "$S/monmap" >/dev/null
    ceph-mon -c "$CONF" --mkfs -i a --monmap "$S/monmap" --keyring "$S/mon.keyring" 2>>"$S/log/mon.a.stderr"
    ceph-mon -c "$CONF" -i a 2>>"$S/log/mon.a.stderr"
    until_true "mon a" cephq mon stat
    say "mon up"
    # The OSD's id comes from the mon (`osd new`, which also stores its cephx key): the first is 0.
    osd_key=$(ceph-authtool --gen-print-key)
    osd_uuid=$(cat /proc/sys/kernel/random/uuid)
    id=$(printf '{"cephx_secret": "%s"}' "$osd_key" | cephq osd new "$osd_uuid" -i -)
    [ "$id" = 0 ] || fail "the mon gave the OSD id $id, not 0"
    ceph-authtool --create-keyring "$S/osd.0/keyring" --name osd.0 --add-key "$osd_key" >/dev/null
    ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$osd_uuid" 2>>"$S/log/osd-mkfs.log"
    start_osd
    say "osd up"
    cephq auth get-or-create client.rgw.a mon 'allow rw' osd 'allow rwx' -o "$S/rgw.a/keyring"
    radosgw -c "$CONF" -n client.rgw.a 2>>"$S/log/rgw.a.stderr"
    until_true "radosgw on 127.0.0.1:$rgw_port" rgw_answers
    say "radosgw up in ${SECONDS}s"
    echo "http://127.0.0.1:$rgw_port"
    ;;
  user)
    uid=${3:?need UID}
    # radosgw-admin makes the keys (none on a command line) and prints the user as JSON.
    (umask 077 && radosgw-admin -c "$CONF" user create --uid="$uid" --display-name="$uid" >"$S/users/$uid.json")
    ;;
  stop-osd) stop osd.0 30 ;;
  start-osd) start_osd ;;
  down)
    # radosgw keeps nothing locally and was seen hanging in its shutdown: 5 s. The mon goes last,
    # a stopping OSD tells it so (and waits for it).
    stop client.rgw.a 5
    stop osd.0 30
    stop mon.a 30
    ;;
  *) fail "unknown command $cmd" ;;
esac
