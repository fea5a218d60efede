#!/usr/bin/env bash
# Prepares what the container tier needs, doing only what is missing: podman, runc, debootstrap and docker-compose
# from Debian's packages, an engine configuration this kind of machine accepts, and stand-in base images built from
# Debian's packages under the exact names the Dockerfiles' FROM lines use (no image registry is reachable here).
#   test/container/prepare.sh          exits 0 when the engine and the base images are ready, non-zero saying why not
set -euo pipefail
cd "$(dirname "$0")/../.."

# Each line carries the seconds since the start, so that CI's log shows where the time goes.
say() { echo "container tier: [${SECONDS}s] $*" >&2; }

sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"

# --- Packages -------------------------------------------------------------------------------------------------------
# docker-compose (1.29, Debian's) drives podman through its Docker-compatible API: Debian's podman-compose (1.0.3)
# ignores depends_on conditions, runs a CMD healthcheck through /bin/sh (absent on distroless) and does not know
# network_mode service:NAME, so it cannot run this project's compose file as Docker Compose would.
missing=""
for pair in podman:podman runc:runc debootstrap:debootstrap docker-compose:docker-compose; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing="$missing ${pair#*:}"
done
# Compose services find each other by name through this CNI plugin (podman's default network backend here).
[ -x /usr/lib/cni/dnsname ] || missing="$missing golang-github-containernetworking-plugin-dnsname"
if [ -n "$missing" ]; then
  say "installing$missing from Debian's packages"
  # Another apt-get may hold the lock on a shared machine: wait for it rather than fail.
  $sudo apt-get update -qq -o DPkg::Lock::Timeout=300
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq -o DPkg::Lock::Timeout=300 \
    --no-install-recommends $missing >/dev/null
fi

# --- Engine configuration -------------------------------------------------------------------------------------------
# crun (podman's default runtime) refuses hybrid cgroups, and podman's default ulimits exceed these machines' hard
# limits; runc with the process's own limits works. An existing configuration is the machine owner's: keep it.
conf=/etc/containers/containers.conf
if [ ! -e "$conf" ]; then
  say "writing $conf (runtime runc, no default ulimits)"
  $sudo mkdir -p /etc/containers
  printf '%s\n' '[containers]' 'default_ulimits = []' '' '[engine]' 'runtime = "runc"' | $sudo tee "$conf" >/dev/null
fi
if ! podman info >/dev/null 2>&1; then
  say "podman does not work here: $(podman info 2>&1 | tail -n 1)"
  exit 1
fi

# --- Stand-in base images -------------------------------------------------------------------------------------------
# The Dockerfile builds on node:${NODE_MAJOR}-bookworm-slim and runs on gcr.io/distroless/nodejs${NODE_MAJOR}-debian12:
# nonroot. Stand-ins under those names: a Debian bookworm minbase with this machine's own node and npm, and a
# distroless-like root (no shell, no package manager: node, the C/C++ runtime it links, CA certificates, the nonroot
# user 65532). They carry this machine's Node, whatever NODE_MAJOR says (see README, "Container tier").
node_major=$(sed -n 's/^ARG NODE_MAJOR=//p' Dockerfile)
build_image="docker.io/library/node:${node_major}-bookworm-slim"
runtime_image="gcr.io/distroless/nodejs${node_major}-debian12:nonroot"
node_bin=$(readlink -f "$(command -v node)")
npm_dir=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")
node_version=$($node_bin --version)

if podman image exists "$build_image" && podman image exists "$runtime_image"; then
  say "base images present: $build_image, $runtime_image"
  exit 0
fi

cache=${SIDELOG_CONTAINER_CACHE:-/var/cache/sidelog-container}
work=$(mktemp -d "${TMPDIR:-/tmp}/sidelog-base.XXXXXX")
trap '$sudo rm -rf "$work"' EXIT
$sudo mkdir -p "$cache"

# debootstrap takes half a minute: keep its result as a tarball for the next time the images must be rebuilt.
minbase="$cache/bookworm-minbase.tar"
if [ ! -s "$minbase" ]; then
  mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n 1)
  say "debootstrap --variant=minbase bookworm from ${mirror:-http://deb.debian.org/debian}"
  $sudo debootstrap --variant=minbase bookworm "$work/minbase" "${mirror:-http://deb.debian.org/debian}" \
    >"$work/debootstrap.log" 2>&1 || { tail -n 20 "$work/debootstrap.log" >&2; exit 1; }
  $sudo rm -rf "$work/minbase/var/cache/apt/archives"/*.deb "$work/minbase/var/lib/apt/lists"/*
  $sudo tar -C "$work/minbase" -cf "$minbase.partial" . && $sudo mv "$minbase.partial" "$minbase"
  $sudo rm -rf "$work/minbase"
fi

# Whatever CA file this machine's npm trusts (a proxy's, say), the stand-ins trust too, so npm ci works inside.
cafile=$(npm config get cafile 2>/dev/null || true)
[ -n "$cafile" ] && [ "$cafile" != null ] && [ -r "$cafile" ] || cafile=/etc/ssl/certs/ca-certificates.crt

if ! podman image exists "$build_image"; then
  say "building $build_image from Debian bookworm minbase and this machine's node $node_version"
  root="$work/build"
  $sudo mkdir -p "$root" && $sudo tar -C "$root" -xf "$minbase"
  $sudo install -D -m 755 "$node_bin" "$root/usr/local/bin/node"
  $sudo mkdir -p "$root/usr/local/lib/node_modules" && $sudo cp -a "$npm_dir" "$root/usr/local/lib/node_modules/npm"
  $sudo ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
  $sudo ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"
  if [ -r "$cafile" ]; then
    $sudo install -D -m 644 "$cafile" "$root/etc/ssl/certs/ca-certificates.crt"
    printf 'cafile=/etc/ssl/certs/ca-certificates.crt\nupdate-notifier=false\n' | $sudo tee "$root/usr/local/etc/npmrc" >/dev/null
  fi
  # The official image's user `node` (1000), which examples/node/Dockerfile runs as.
  echo 'node:x:1000:1000::/home/node:/bin/bash' | $sudo tee -a "$root/etc/passwd" >/dev/null
  echo 'node:x:1000:' | $sudo tee -a "$root/etc/group" >/dev/null
  $sudo install -d -o 1000 -g 1000 "$root/home/node"
  $sudo tar -C "$root" -c . | podman import --quiet \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change "ENV NODE_VERSION=${node_version#v}" \
    --change 'CMD ["node"]' \
    --message "stand-in for node:${node_major}-bookworm-slim: Debian bookworm minbase + node $node_version" \
    - "$build_image" >/dev/null
  $sudo rm -rf "$root"
fi

if ! podman image exists "$runtime_image"; then
  say "building $runtime_image: node $node_version and its runtime libraries, no shell"
  root="$work/runtime" full="$work/full"
  $sudo mkdir -p "$root" "$full" && $sudo tar -C "$full" -xf "$minbase"
  $sudo install -D -m 755 "$node_bin" "$root/nodejs/bin/node"
  # The libraries node links (and the loader), taken from the Debian 12 root under the same paths: /lib and /lib64
  # are links into /usr there, as in distroless.
  for lib in $(ldd "$node_bin" | awk '/=>/ { print $3 } /ld-linux/ { print $1 }'); do
    rel=${lib#/}
    rel=usr/${rel#usr/}
    [ -e "$full/$rel" ] || { say "$lib is not in the Debian root"; exit 1; }
    $sudo install -D -m 755 "$full/$rel" "$root/$rel"
  done
  $sudo cp -a "$full/usr/share/zoneinfo" "$root/usr/share/" 2>/dev/null || true
  $sudo ln -s usr/lib "$root/lib" 2>/dev/null || true
  $sudo ln -s usr/lib64 "$root/lib64" 2>/dev/null || true
  [ -r "$cafile" ] && $sudo install -D -m 644 "$cafile" "$root/etc/ssl/certs/ca-certificates.crt"
  printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' 'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' \
    'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' | $sudo tee "$root/etc/passwd" >/dev/null
  printf '%s\n' 'root:x:0:' 'nobody:x:65534:' 'nonroot:x:65532:' | $sudo tee "$root/etc/group" >/dev/null
  $sudo install -d -m 1777 "$root/tmp"
  $sudo install -d -m 700 "$root/root"
  $sudo install -d -m 700 -o 65532 -g 65532 "$root/home/nonroot"
  $sudo tar -C "$root" -c . | podman import --quiet \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
    --change 'USER 65532' \
    --change 'WORKDIR /home/nonroot' \
    --change 'ENTRYPOINT ["/nodejs/bin/node"]' \
    --message "stand-in for distroless nodejs${node_major}-debian12:nonroot: node $node_version, no shell" \
    - "$runtime_image" >/dev/null
  $sudo rm -rf "$root" "$full"
fi
say "base images ready: $build_image, $runtime_image"
