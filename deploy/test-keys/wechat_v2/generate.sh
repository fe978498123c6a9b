#!/bin/sh
# TEST-ONLY: regenerates the WeChat Pay API v2 mutual-TLS test PKI in this folder
# (a CA, the sandbox's server certificate for 127.0.0.1, localhost and channel-sandbox, the merchant's client
# certificate). Nothing here protects money; production mounts the merchant's real
# API certificate (apiclient_cert.pem + apiclient_key.pem).
set -eu
cd "$(dirname "$0")"
days=36500
ec="-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
openssl req -x509 $ec -keyout ca_key.pem -out ca.pem -days $days \
  -subj "/O=Paywire TEST-ONLY/CN=Paywire TEST-ONLY WeChat Pay v2 CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
openssl req $ec -keyout server_key.pem -out server.csr \
  -subj "/O=Paywire TEST-ONLY/CN=127.0.0.1"
printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost,DNS:channel-sandbox\n' > server.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca_key.pem -CAcreateserial -days $days \
  -extfile server.ext -out server_cert.pem
openssl req $ec -keyout client_key.pem -out client.csr \
  -subj "/O=Paywire TEST-ONLY/CN=1900009192"
printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n' > client.ext
openssl x509 -req -in client.csr -CA ca.pem -CAkey ca_key.pem -CAcreateserial -days $days \
  -extfile client.ext -out client_cert.pem
# reqwest takes the client identity as one PEM: certificate then PKCS#8 key.
cat client_cert.pem client_key.pem > client_identity.pem
# A client certificate the CA never issued (self-signed), for the refusal tests.
openssl req -x509 $ec -keyout stranger_key.pem -out stranger_cert.pem -days $days \
  -subj "/O=Paywire TEST-ONLY stranger/CN=1900009192" \
  -addext "basicConstraints=critical,CA:FALSE" -addext "extendedKeyUsage=clientAuth"
cat stranger_cert.pem stranger_key.pem > stranger_identity.pem
rm -f stranger_cert.pem stranger_key.pem
rm -f server.csr client.csr server.ext client.ext ca.srl
