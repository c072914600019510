#!/usr/bin/env bash
# Makes the TEST ONLY certificates of the twins' ACME stand-in (docs/twins.md, "Internet-facing
# parts"): a CA that twins trust, and the certificate pebble serves its ACME API with on the twins'
# VLAN, for acme.twins and deployer. Run from anywhere; it rewrites the three files beside it.
# The CA's private key is thrown away: nothing can be signed by this CA afterwards, and running
# this again makes a new CA and a new server certificate (commit all three together).
set -euo pipefail
cd "$(dirname "$0")"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

days=36525 # 100 years: the twins must never meet an expired stand-in.
org="nixos-deploy-harness TEST ONLY, never trust outside twins"

# The CA may only vouch for the stand-in's own names (nameConstraints), so trusting it on a twin
# trusts nothing else even if a copy of its key existed.
openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 \
  -keyout "$work/ca.key" -out twin-acme-test-ca.pem -days "$days" \
  -subj "/O=$org/CN=twins ACME stand-in CA (TEST ONLY)" \
  -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -addext "subjectKeyIdentifier=hash" \
  -addext "nameConstraints=critical,permitted;DNS:acme.twins,permitted;DNS:deployer"

openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 \
  -keyout twin-acme-test-server.key -out "$work/server.csr" \
  -subj "/O=$org/CN=acme.twins"
cat >"$work/server.ext" <<'EXT'
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = DNS:acme.twins, DNS:deployer
EXT
openssl x509 -req -sha256 -in "$work/server.csr" -CA twin-acme-test-ca.pem -CAkey "$work/ca.key" \
  -set_serial "0x$(openssl rand -hex 16)" -days "$days" -extfile "$work/server.ext" \
  -out twin-acme-test-server.pem
chmod 0644 twin-acme-test-ca.pem twin-acme-test-server.pem twin-acme-test-server.key
openssl verify -CAfile twin-acme-test-ca.pem -verify_hostname acme.twins twin-acme-test-server.pem
