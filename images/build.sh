#!/usr/bin/env bash
# Build the poolgate image from the repository's Dockerfile with buildah (no Docker engine needed), then check that
# its entrypoint starts `poolgate hooks`, `poolgate picker` and `poolgate sim` (their --help, in a chroot of the
# image's filesystem).
#
#   images/build.sh [TAG]        TAG defaults to ghcr.io/poolgate/poolgate:<version in pyproject.toml>
#
#   BASE=python:3.11-slim-bookworm   the Dockerfile's base image (pulled from its registry), or
#   BASE=debootstrap                 a base built here from Debian bookworm packages (python3, python3-venv; kept as
#                                    localhost/poolgate-base:bookworm and reused), for
#                                    machines that reach Debian and PyPI but no container registry
#   OUT=poolgate.tar                 also write the image as an OCI archive (kind load image-archive poolgate.tar)
#   PIP_CA=/etc/ssl/certs/ca-certificates.crt   a CA bundle pip trusts during the build (mounted, not copied into
#                                    the image), for networks that reach PyPI through a TLS-intercepting proxy
#
# Needs root (buildah with chroot isolation; debootstrap). Slow: minutes, and ~1 GB of disk.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
tag=${1:-ghcr.io/poolgate/poolgate:$version}
base=${BASE:-python:3.11-slim-bookworm}
work=$(mktemp -d /tmp/poolgate-image.XXXXXX)
trap 'rm -rf "$work"' EXIT

if [ "$base" = debootstrap ]; then
  base=localhost/poolgate-base:bookworm
fi
if [ "$base" = localhost/poolgate-base:bookworm ] && ! buildah inspect "$base" > /dev/null 2>&1; then
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$work/rootfs" http://deb.debian.org/debian
  rm -rf "$work/rootfs/var/lib/apt/lists/"* "$work/rootfs/var/cache/apt/"*.bin
  tar -C "$work/rootfs" -cf "$work/base.tar" .
  rm -rf "$work/rootfs"
  container=$(buildah from scratch)
  buildah add "$container" "$work/base.tar" /
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$container"
  buildah commit --rm "$container" "$base"
fi

ca_args=()
if [ -n "${PIP_CA:-}" ]; then
  ca_args=(--volume "$PIP_CA:/run/pip-ca.crt:ro" --build-arg PIP_INDEX_CA=/run/pip-ca.crt)
fi
buildah bud --isolation chroot --network host --layers --build-arg "BASE=$base" "${ca_args[@]}" -t "$tag" .

# The entrypoint and its subcommands, run as the image runs them: its PATH, its user, its filesystem.
container=$(buildah from "$tag")
root=$(buildah mount "$container")
entrypoint=$(buildah inspect --format '{{.OCIv1.Config.Entrypoint}}' "$tag")
user=$(buildah inspect --format '{{.OCIv1.Config.User}}' "$tag")
[ "$entrypoint" = '[poolgate]' ] || { echo "unexpected entrypoint $entrypoint" >&2; exit 1; }
for command in hooks picker sim; do
  chroot --userspec="$user" "$root" /usr/bin/env -i PATH=/opt/poolgate/bin:/usr/bin:/bin HOME=/tmp \
    poolgate "$command" --help > "$work/$command.txt"
  head -n 1 "$work/$command.txt"
done
# the uninstall Job's command
chroot --userspec="$user" "$root" /usr/bin/env -i PATH=/opt/poolgate/bin:/usr/bin:/bin HOME=/tmp \
  python -m hooks.uninstall --help | head -n 1
buildah umount "$container" > /dev/null
buildah rm "$container" > /dev/null

if [ -n "${OUT:-}" ]; then
  buildah push "$tag" "oci-archive:$OUT:$tag"
fi
echo "built $tag"
