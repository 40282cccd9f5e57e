#!/bin/sh
# Generates a throw-away test PKI for the broker fixture:
#   ca.crt/key        test CA (RSA-2048)
#   server.crt/key    CN=localhost, SAN DNS:localhost, IP:127.0.0.1, IP:::1
#   <name>.crt/key    one client certificate per extra argument (CN=<name>)
#   rogue-ca.crt, rogue.crt/key   a client certificate from an untrusted CA
#   other-host.crt/key   a server certificate for another host name
# usage: gen-pki.sh DIR [client names...]
set -eu
dir=$1; shift
mkdir -p "$dir"
cd "$dir"
cnf() { # name cn san eku
    cat >"$1.cnf" <<EOT
[req]
distinguished_name = dn
prompt = no
[dn]
CN = $2
[ext]
basicConstraints = CA:FALSE
keyUsage = digitalSignature, keyEncipherment
extendedKeyUsage = $4
$3
EOT
}
ca() { # name
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.crt" -days 3650 \
        -subj "/CN=libcloudiot test $1" -addext basicConstraints=critical,CA:TRUE \
        -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
}
leaf() { # name cn san eku ca
    cnf "$1" "$2" "$3" "$4"
    openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -config "$1.cnf" 2>/dev/null
    openssl x509 -req -in "$1.csr" -CA "$5.crt" -CAkey "$5.key" -CAcreateserial -days 3650 \
        -extfile "$1.cnf" -extensions ext -out "$1.crt" 2>/dev/null
    rm -f "$1.csr" "$1.cnf"
}
ca ca
ca rogue-ca
leaf server localhost "subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1" serverAuth ca
leaf other-host other.example "subjectAltName = DNS:other.example" serverAuth ca
leaf rogue device1 "" clientAuth rogue-ca
for name in "$@"; do
    leaf "$name" "$name" "" clientAuth ca
done
# mosquitto may drop privileges; keys of a throw-away PKI can be world-readable.
chmod 644 ./*.key
