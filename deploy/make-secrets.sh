#!/bin/sh
# Make the site secrets docker-compose.yml mounts from deploy/secrets/ (never committed):
#   secrets/mosquitto/tls/{ca.crt,ca.key,server.crt,server.key}  a private CA and the broker's cert
#   secrets/mosquitto/passwd                                     Mosquitto users (hashed)
#   secrets/mqtt-passwords.env                                   the clear passwords, chmod 600
#
#   deploy/make-secrets.sh [-o DIR] [-H "mosquitto localhost mqtt.city.example"] USER...
#
# USER is a worker name (deploy/mosquitto/acl has a block per worker) or "ioc". Existing files are
# kept (re-running adds missing users only), so certificates and passwords stay stable.
set -eu

OUT="$(dirname "$0")/secrets"
HOSTS="mosquitto localhost"
DAYS="${CERT_DAYS:-825}"
while getopts "o:H:" opt; do
  case "$opt" in
    o) OUT="$OPTARG" ;;
    H) HOSTS="$OPTARG" ;;
    *) echo "usage: $0 [-o DIR] [-H \"host ...\"] USER..." >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
if [ "$#" -eq 0 ]; then
  echo "usage: $0 [-o DIR] [-H \"host ...\"] USER...   (e.g. worker-1 worker-2 ioc)" >&2
  exit 2
fi
command -v openssl >/dev/null || { echo "openssl is not installed" >&2; exit 1; }
command -v mosquitto_passwd >/dev/null || {
  echo "mosquitto_passwd is not installed (apt-get install mosquitto, or run this script in the eclipse-mosquitto image)" >&2
  exit 1
}
for user in "$@"; do
  case "$user" in
    *[!A-Za-z0-9_-]*|"") echo "user name '$user' may only hold A-Z a-z 0-9 _ -" >&2; exit 2 ;;
  esac
done

umask 077
TLS="$OUT/mosquitto/tls"
mkdir -p "$TLS"
printf '*\n' > "$OUT/.gitignore"

if [ ! -f "$TLS/ca.crt" ]; then
  openssl req -x509 -newkey rsa:3072 -nodes -sha256 -days "$DAYS" -subj "/CN=citywatch site CA" \
    -keyout "$TLS/ca.key" -out "$TLS/ca.crt" 2>/dev/null
fi
if [ ! -f "$TLS/server.crt" ]; then
  san=""
  for h in $HOSTS; do
    case "$h" in
      *[!0-9.]*) san="${san:+$san,}DNS:$h" ;;
      *) san="${san:+$san,}IP:$h" ;;
    esac
  done
  openssl req -newkey rsa:3072 -nodes -sha256 -subj "/CN=$(echo "$HOSTS" | cut -d' ' -f1)" \
    -keyout "$TLS/server.key" -out "$TLS/server.csr" 2>/dev/null
  printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\n' "$san" > "$TLS/server.ext"
  openssl x509 -req -in "$TLS/server.csr" -CA "$TLS/ca.crt" -CAkey "$TLS/ca.key" -CAcreateserial \
    -days "$DAYS" -sha256 -extfile "$TLS/server.ext" -out "$TLS/server.crt" 2>/dev/null
  rm -f "$TLS/server.csr" "$TLS/server.ext"
fi
# The broker (uid 1883 in the image) must read its key and the CA; keep the CA key private.
chmod 0644 "$TLS/ca.crt" "$TLS/server.crt" "$TLS/server.key"
chmod 0755 "$OUT" "$OUT/mosquitto" "$TLS"

PASSWD="$OUT/mosquitto/passwd"
CLEAR="$OUT/mqtt-passwords.env"
touch "$PASSWD" "$CLEAR"
for user in "$@"; do
  if grep -q "^$user:" "$PASSWD"; then
    continue
  fi
  password="$(openssl rand -base64 24 | tr -d '/+=' | cut -c1-24)"
  mosquitto_passwd -b "$PASSWD" "$user" "$password" 2>/dev/null
  var="MQTT_PASSWORD_$(echo "$user" | tr 'a-z-' 'A-Z_')"
  echo "$var=$password" >> "$CLEAR"
  echo "added MQTT user $user ($var in $CLEAR)"
done
chmod 0644 "$PASSWD"
chmod 0600 "$CLEAR"
echo "secrets in $OUT: CA $TLS/ca.crt, server cert for: $HOSTS"
