#!/bin/sh
# The guide's Azure IoT Hub scenario, on one machine: cloudiot-emulator plays
# the hub on a free loopback port with a generated test PKI; the guide's
# set-up steps (az iot hub device-identity create, connection-string show)
# are done with the emulator's equivalents; the device (azure-device) sends
# telemetry with application properties and answers direct methods while
# the operator (shadow-manager, as `az iot hub` would) invokes getStatus,
# reboot and an unknown method, sends a cloud-to-device message with
# properties and changes the twin's desired properties; the counts are
# checked at the end and nothing is left running.
#
# usage: azure-scenario.sh BUILD_DIR SOURCE_DIR
set -eu
build=$1
emu=$build/emulator/cloudiot-emulator
dev=$build/examples/azure-device
mgr=$build/examples/shadow-manager
device=temperature-sensor-001
work=$(mktemp -d "${TMPDIR:-/tmp}/ciot-azure-scenario.XXXXXX")
emu_pid=
dev_pid=
mon_pid=
cleanup() {
    [ -n "$dev_pid" ] && kill "$dev_pid" 2>/dev/null
    [ -n "$mon_pid" ] && kill "$mon_pid" 2>/dev/null
    if [ -n "$emu_pid" ]; then
        kill "$emu_pid" 2>/dev/null
        wait "$emu_pid" 2>/dev/null
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

say() { printf '%s\n' "$*"; }
fail() { say "azure scenario: $*" >&2; exit 1; }
# The value of a "key": "value" line of the CLI's JSON output.
field() { sed -n "s/.*\"$1\": \"\\([^\"]*\\)\".*/\\1/p" "$2" | head -n 1; }

say "== Azure IoT Hub route: cloudiot-emulator"
# In a sanitizer build the plugin is instrumented and mosquitto is not: the
# test suite passes the sanitizer runtimes to preload into the broker.
LD_PRELOAD="${CIOT_EMU_PRELOAD:-}" ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0" \
    "$emu" run --port 0 --data "$work/data" --tls "$work/pki" >"$work/ready" 2>"$work/emu.err" &
emu_pid=$!
i=0
while ! grep -q 'ready on' "$work/ready" 2>/dev/null; do
    i=$((i + 1))
    if [ $i -gt 150 ] || ! kill -0 "$emu_pid" 2>/dev/null; then
        cat "$work/emu.err" >&2
        fail "the emulator did not start"
    fi
    sleep 0.1
done
cat "$work/ready"
port=$(sed -n 's/.*ready on [^:]*:\([0-9]*\) .*/\1/p' "$work/ready")
[ -n "$port" ] || fail "no port in the ready line"

say ""
say "1. provisioning, as the guide does with the Azure CLI"
d="--data $work/data"
"$emu" create-device $d --device-id "$device" >"$work/device.json"
say "  create-device: $(field deviceId "$work/device.json") ($(field type "$work/device.json"))"
"$emu" device-connection-string $d --device-id "$device" >"$work/cs.json"
cs=$(field connectionString "$work/cs.json")
[ -n "$cs" ] || fail "no connection string"
say "  device-connection-string: ${cs%%;SharedAccessKey=*};SharedAccessKey=(hidden)"
# The emulator's TLS listener asks every client for a certificate (real IoT
# Hub does not for SAS devices): the device gets one for the TLS handshake
# only; it still authenticates with its SAS token.
"$emu" create-keys-and-certificate $d --tls "$work/pki" --set-as-active \
    --certificate-pem-outfile "$work/tls.crt" --public-key-outfile "$work/tls.pub" \
    --private-key-outfile "$work/tls.key" >/dev/null

mgr_do() {
    "$mgr" --endpoint localhost --port "$port" --ca "$work/pki/ca.crt" \
        --cert "$work/pki/admin.crt" --key "$work/pki/admin.key" "$@"
}

say ""
say "2. the device: telemetry, methods, C2D, twin"
say "  operator: monitor-events $device (as az iot hub monitor-events)"
mgr_do --timeout-ms 60000 monitor-events "$device" 20 >"$work/events.out" 2>"$work/events.err" &
mon_pid=$!
i=0
while ! grep -q '^monitoring' "$work/events.out" 2>/dev/null; do
    i=$((i + 1))
    if [ $i -gt 150 ] || ! kill -0 "$mon_pid" 2>/dev/null; then
        cat "$work/events.err" >&2
        fail "the operator could not monitor the device's telemetry"
    fi
    sleep 0.1
done
CIOT_AZURE_CONNECTION_STRING=$cs "$dev" --endpoint localhost --port "$port" \
    --ca "$work/pki/ca.crt" --cert "$work/tls.crt" --key "$work/tls.key" \
    --readings 20 --speedup 400 --expect-methods 2 --expect-c2d 1 --expect-desired 1 \
    --max-seconds 60 >"$work/device.out" 2>&1 &
dev_pid=$!
i=0
while ! grep -q 'azure-device: ready' "$work/device.out" 2>/dev/null; do
    i=$((i + 1))
    if [ $i -gt 300 ] || ! kill -0 "$dev_pid" 2>/dev/null; then
        cat "$work/device.out" >&2
        fail "the device did not get ready"
    fi
    sleep 0.1
done
twin=0
grep -q 'azure-device: ready .*twin available' "$work/device.out" && twin=1

say "  operator: invoke-device-method $device getStatus"
mgr_do invoke-device-method "$device" getStatus '{}' >"$work/status.json" || fail "getStatus: no answer"
say "    $(cat "$work/status.json")"
say "  operator: invoke-device-method $device reboot"
mgr_do invoke-device-method "$device" reboot '{"delaySeconds":0}' 10 >"$work/reboot.json" ||
    fail "reboot: no answer"
say "    $(cat "$work/reboot.json")"
say "  operator: invoke-device-method $device selfDestruct (not a method of the device)"
mgr_do invoke-device-method "$device" selfDestruct '{}' >"$work/unknown.json" ||
    fail "unknown method: no answer"
say "    $(cat "$work/unknown.json")"
say "  operator: send-c2d-message $device with properties priority=high, kind=config"
mgr_do send-c2d-message "$device" '{"command":"blink","times":3}' priority=high kind=config \
    >"$work/c2d.json" || fail "send-c2d-message refused"
say "    $(cat "$work/c2d.json")"
say "  operator: update-twin $device desired {\"interval\":30,\"led\":\"green\"}"
mgr_do update-twin "$device" '{"interval":30,"led":"green"}' >/dev/null || fail "update-twin refused"
dev_rc=0
wait "$dev_pid" || dev_rc=$?
dev_pid=
sed 's/^/  /' "$work/device.out"
mon_rc=0
wait "$mon_pid" || mon_rc=$?
mon_pid=
say "  operator: telemetry seen (first 2 of $(grep -c '^devices/' "$work/events.out")):"
grep '^devices/' "$work/events.out" | head -n 2 | sed 's/^/    /'

say ""
say "3. the operator reads the twin back"
mgr_do get-twin "$device" >"$work/twin.json" || fail "get-twin refused"
say "  $(cat "$work/twin.json")"

summary=$(grep 'azure-device: summary' "$work/device.out" || true)
ok=1
check() { # what, then a command that must succeed
    what=$1
    shift
    if "$@"; then :; else say "  MISSING: $what"; ok=0; fi
}
check "the device's exit status 0" [ "$dev_rc" = 0 ]
check "every reading acknowledged" sh -c "echo \"\$1\" | grep -q '20 readings sent ([1-9][0-9]* with temperatureAlert=true), 20 acknowledged, 0 dropped'" - "$summary"
check "20 telemetry messages seen by the operator" [ "$mon_rc" = 0 ]
alerts=$(sed -n 's/.*(\([0-9]*\) with temperatureAlert=true).*/\1/p' "$work/device.out")
check "every message with its properties" [ "$(grep -c "^devices/$device/messages/events/.*&temperatureAlert=\(true\|false\)&deviceType=temperature-sensor&timestamp=[0-9-]*T[0-9]*%3A[0-9]*%3A[0-9]*Z " "$work/events.out")" = 20 ]
say "  telemetry with temperatureAlert=true: $(grep -c '&temperatureAlert=true&' "$work/events.out") seen by the operator, ${alerts:-?} sent"
check "temperatureAlert=true exactly on the readings above 35" [ "$(grep -c '&temperatureAlert=true&' "$work/events.out")" = "${alerts:-x}" ]
check "2 methods answered, 1 C2D message" sh -c "echo \"\$1\" | grep -q '2 methods answered, 1 C2D messages'" - "$summary"
check "getStatus 200 with uptime, memory, load" grep -q '"status":200,"payload":{"uptimeSeconds":[0-9]*,"memory":{"totalKb":[0-9]*,"availableKb":[0-9]*},"cpuLoad":{' "$work/status.json"
check "reboot 200 rebooting" grep -q '"status":200,"payload":{"result":"rebooting"' "$work/reboot.json"
check "unknown method 404 with its message" grep -q '"status":404,"payload":{"message":"method \\"selfDestruct\\" is not registered' "$work/unknown.json"
check "the C2D message with its properties" grep -q 'C2D message {"command":"blink","times":3} properties: .*priority=high kind=config' "$work/device.out"
check "the desired change in the twin" grep -q '"desired":{"interval":30,"led":"green"' "$work/twin.json"
if [ $twin = 1 ]; then
    check "the desired change applied by the device" sh -c "echo \"\$1\" | grep -q '1 desired changes applied'" - "$summary"
    check "the change reported back" grep -q '"reported":{[^}]*"interval":30' "$work/twin.json"
else
    say "  (the library has no twin support for Azure yet: the desired change was not applied by the device)"
fi
say ""
say "azure summary: ${summary#azure-device: summary: }"
if [ $ok = 1 ]; then
    say "azure result: every reading, method call, C2D message$([ $twin = 1 ] && echo ' and desired change') arrived"
else
    say "azure result: SOMETHING WAS MISSING"
    exit 1
fi
