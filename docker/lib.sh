# Shared by docker/up and docker/down (sourced).
MARKER=.mailtun-docker
ALICE_PASSWORD=alice-Pass.123   # as in docker/compose.yaml and docker/provision/kdc.sh
BOB_PASSWORD=bob-Pass.456
COMPOSE_FILE_PATH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/compose.yaml"
log() { echo "docker/$(basename "$0"): $*" >&2; }
die() { log "$*"; exit 1; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
secs() { printf '%d.%01ds' $(($1 / 1000)) $(($1 % 1000 / 100)); }
# compose ARGS...: the compose plugin if installed, else docker-compose.
compose() {
  if docker compose version >/dev/null 2>&1; then
    docker compose -f "$COMPOSE_FILE_PATH" "$@"
  elif command -v docker-compose >/dev/null; then
    docker-compose -f "$COMPOSE_FILE_PATH" "$@"
  else
    log "installing docker-compose (Debian package)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null \
      || die "neither 'docker compose' nor docker-compose is installed (apt-get install docker-compose)"
    docker-compose -f "$COMPOSE_FILE_PATH" "$@"
  fi
}
