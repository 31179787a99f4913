#!/bin/sh
# make-certs.sh CA_DIR OUT_DIR NAME...
#
# A certificate authority in CA_DIR (made once: ca.key stays there, 0600) and, for each
# NAME without one yet, OUT_DIR/NAME/{cert.pem,key.pem} signed by it, valid for the DNS
# names NAME and localhost and the address 127.0.0.1. OUT_DIR/ca.crt is the CA's
# certificate, the one file every party needs to check the others.
#
# On real machines, run it on the machine that keeps the CA (not a server) and copy each
# host only its own NAME/ folder and ca.crt (deploy/README.md).
set -eu
ca_dir=$1
out=$2
shift 2
umask 077
mkdir -p "$ca_dir" "$out"
if [ ! -s "$ca_dir/ca.key" ]; then
    openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$ca_dir/ca.key" -out "$ca_dir/ca.crt" -days 3650 -sha256 \
        -subj "/CN=DeltaML deployment CA $(date -u +%Y-%m-%d)" \
        -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    echo "make-certs: a new CA in $ca_dir"
fi
cp "$ca_dir/ca.crt" "$out/ca.crt"
chmod 0644 "$out/ca.crt"
for name in "$@"; do
    [ -s "$out/$name/cert.pem" ] && continue
    mkdir -p "$out/$name"
    ext=$(mktemp)
    printf '%s\n' \
        "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature,keyEncipherment" \
        "extendedKeyUsage=serverAuth,clientAuth" \
        "subjectKeyIdentifier=hash" \
        "authorityKeyIdentifier=keyid" \
        "subjectAltName=DNS:$name,DNS:localhost,IP:127.0.0.1" > "$ext"
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$out/$name/key.pem" -subj "/CN=$name" -out "$out/$name/req.csr" 2>/dev/null
    openssl x509 -req -in "$out/$name/req.csr" -CA "$ca_dir/ca.crt" -CAkey "$ca_dir/ca.key" \
        -CAcreateserial -days 825 -sha256 -extfile "$ext" -out "$out/$name/cert.pem" 2>/dev/null
    rm -f "$ext" "$out/$name/req.csr"
    echo "make-certs: a certificate for $name"
done
