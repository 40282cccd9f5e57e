#!/bin/sh
# The guide's AWS IoT Core scenario, on one machine: cloudiot-emulator plays
# AWS on a free loopback port with a generated test PKI; the guide's set-up
# steps (aws iot create-thing, create-keys-and-certificate, create-policy,
# attach-policy, attach-thing-principal) are done with the emulator's
# equivalents; the device (aws-device) publishes readings and keeps its
# shadow while the fleet operator (shadow-manager) sends it commands and a
# desired-state change; the guide's temperature-alert rule, deployed from
# its CloudFormation template, runs in the emulator's rules engine on every
# reading and writes its alerts into the emulator's SQLite table
# TemperatureAlerts (the dynamoDBv2 action); the counts are checked at the
# end and nothing is left running.
#
# usage: aws-scenario.sh BUILD_DIR SOURCE_DIR
set -eu
build=$1
src=$2
emu=$build/emulator/cloudiot-emulator
dev=$build/examples/aws-device
mgr=$build/examples/shadow-manager
thing=temperature-sensor-001
work=$(mktemp -d "${TMPDIR:-/tmp}/ciot-aws-scenario.XXXXXX")
emu_pid=
dev_pid=
cleanup() {
    [ -n "$dev_pid" ] && kill "$dev_pid" 2>/dev/null
    if [ -n "$emu_pid" ]; then
        kill "$emu_pid" 2>/dev/null
        wait "$emu_pid" 2>/dev/null
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

say() { printf '%s\n' "$*"; }
fail() { say "aws scenario: $*" >&2; exit 1; }
# The value of a "key": "value" line of the CLI's JSON output.
field() { sed -n "s/.*\"$1\": \"\\([^\"]*\\)\".*/\\1/p" "$2" | head -n 1; }

say "== AWS IoT Core route: cloudiot-emulator"
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
say "1. provisioning, as the guide does with the AWS CLI"
d="--data $work/data"
"$emu" create-thing $d --thing-name "$thing" >"$work/thing.json"
say "  create-thing: $(field thingArn "$work/thing.json")"
"$emu" create-keys-and-certificate $d --tls "$work/pki" --set-as-active \
    --certificate-pem-outfile "$work/device.pem.crt" --public-key-outfile "$work/public.pem.key" \
    --private-key-outfile "$work/private.pem.key" >"$work/cert.json"
cert_arn=$(field certificateArn "$work/cert.json")
say "  create-keys-and-certificate: $cert_arn"
"$emu" create-policy $d --policy-name SensorDevicePolicy \
    --policy-document "file://$src/examples/policies/SensorDevicePolicy.json" >"$work/policy.json"
say "  create-policy: $(field policyArn "$work/policy.json")"
"$emu" attach-policy $d --policy-name SensorDevicePolicy --target "$cert_arn"
"$emu" attach-thing-principal $d --thing-name "$thing" --principal "$cert_arn"
say "  attach-policy, attach-thing-principal: done"
"$emu" deploy $d --template-file "$src/examples/rules/TemperatureAlertRule.yaml" >"$work/deploy.out"
say "  cloudformation deploy TemperatureAlertRule.yaml: $(grep -c '^Rule ' "$work/deploy.out") topic rule"

say ""
say "2. the device: readings, commands, shadow"
"$dev" --endpoint localhost --port "$port" --ca "$work/pki/ca.crt" --cert "$work/device.pem.crt" \
    --key "$work/private.pem.key" --thing "$thing" --readings 30 --speedup 400 \
    --expect-deltas 1 --max-seconds 60 >"$work/device.out" 2>&1 &
dev_pid=$!
i=0
while ! grep -q 'aws-device: ready' "$work/device.out" 2>/dev/null; do
    i=$((i + 1))
    if [ $i -gt 300 ] || ! kill -0 "$dev_pid" 2>/dev/null; then
        cat "$work/device.out" >&2
        fail "the device did not get ready"
    fi
    sleep 0.1
done

mgr_do() {
    "$mgr" --endpoint localhost --port "$port" --ca "$work/pki/ca.crt" \
        --cert "$work/pki/admin.crt" --key "$work/pki/admin.key" "$@"
}
say "  operator: publish commands/$thing/calibrate {\"offset\":-0.5}"
mgr_do publish "commands/$thing/calibrate" '{"offset":-0.5}' >/dev/null
say "  operator: publish commands/$thing/set_interval {\"seconds\":30}"
mgr_do publish "commands/$thing/set_interval" '{"seconds":30}' >/dev/null
say "  operator: update-thing-shadow desired {\"interval\":30,\"led\":\"green\"}"
mgr_do update-thing-shadow "$thing" '{"state":{"desired":{"interval":30,"led":"green"}}}' >/dev/null
dev_rc=0
wait "$dev_pid" || dev_rc=$?
dev_pid=
sed 's/^/  /' "$work/device.out"

say ""
say "3. the operator reads the shadow back"
mgr_do get-thing-shadow "$thing" >"$work/shadow.json"
say "  $(cat "$work/shadow.json")"
mgr_do list-things >"$work/things.json"

say ""
say "4. a connection outside the device's policy"
# The policy lets this certificate connect only with its thing's name as client
# id: the emulator, like AWS, refuses any other.
"$dev" --endpoint localhost --port "$port" --ca "$work/pki/ca.crt" --cert "$work/device.pem.crt" \
    --key "$work/private.pem.key" --thing other-thing --readings 1 --max-seconds 5 \
    >"$work/denied.out" 2>&1 && denied=0 || denied=1
say "  connecting as another thing with this certificate: $([ $denied = 1 ] && echo refused || echo ALLOWED)"

say ""
say "5. the cloud's rule: alerts the emulator's rules engine wrote (dynamoDBv2 -> SQLite)"
# Counted with Python's sqlite3 module (python3 is already a dependency).
alerts=$(python3 -c '
import sqlite3, sys
db = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True)
rows = db.execute("SELECT deviceId, temperature, alertType FROM TemperatureAlerts").fetchall()
print(len(rows), sum(1 for r in rows if r[0] == sys.argv[2] and r[1] > 35 and r[2] == "HIGH_TEMPERATURE"))
' "$work/data/rules.sqlite3" "$thing" 2>"$work/alerts.err") || alerts="0 0"
say "  TemperatureAlerts: ${alerts%% *} rows"
hot=$(sed -n 's/.*, \([0-9]*\) temperature readings above 35 C.*/\1/p' "$work/device.out")

summary=$(grep 'aws-device: summary' "$work/device.out" || true)
ok=1
[ "$dev_rc" = 0 ] || ok=0
echo "$summary" | grep -q '60 readings sent, 60 acknowledged, 0 dropped, 2 commands handled' || ok=0
echo "$summary" | grep -q '1 deltas applied' || ok=0
grep -q '"reported":{[^}]*"interval":30' "$work/shadow.json" || ok=0
grep -q '"delta"' "$work/shadow.json" && ok=0
grep -q "\"thingName\":\"$thing\"" "$work/things.json" || ok=0
[ $denied = 1 ] || ok=0
# Every reading above 35 C raised exactly one alert, with the device's id.
[ -n "$hot" ] && [ "$hot" -gt 0 ] && [ "$alerts" = "$hot $hot" ] || ok=0
say ""
say "aws summary: ${summary#aws-device: summary: }"
say "aws rule: ${hot:-?} readings above 35 C, ${alerts%% *} HIGH_TEMPERATURE alerts from the rules engine"
if [ $ok = 1 ]; then
    say "aws result: every reading, command and desired change arrived; the shadow converged; every hot reading raised one alert"
else
    say "aws result: SOMETHING WAS MISSING"
    exit 1
fi
