#!/usr/bin/env bash
# Builds the containers tier's test images with the local container engine, from Debian's
# busybox-static and bash-static packages (no registry is needed or reached). Idempotent: an image
# already present is kept. Usage: tests/containers/images.sh [podman|docker]
#
#   miniwdl-fargate-test/bash:1        root, /bin/bash and busybox
#   miniwdl-fargate-test/nonroot:1     USER 1000:1000 (the named user "worker" in /etc/passwd), bash
#   miniwdl-fargate-test/named:1       USER worker (a name, resolved from the image's /etc/passwd)
#   miniwdl-fargate-test/entrypoint:1  ENTRYPOINT ["/usr/local/bin/aws"], a program that is not a shell
#   miniwdl-fargate-test/sh-only:1     busybox sh, no bash at all
set -euo pipefail
ENGINE="${1:-${MINIWDL_FARGATE_LOCAL_ENGINE:-podman}}"
PREFIX=miniwdl-fargate-test
BUSYBOX=/bin/busybox
BASH_STATIC=/bin/bash-static
for need in "$BUSYBOX" "$BASH_STATIC"; do
  if [ ! -x "$need" ]; then
    echo "images.sh: $need is missing (apt-get install busybox-static bash-static)" >&2
    exit 1
  fi
done

present() { "$ENGINE" image inspect "$1" >/dev/null 2>&1; }

# rootfs DIR [bash]: a minimal root filesystem: busybox with its applets, optionally bash
rootfs() {
  local dir="$1" with_bash="${2:-}"
  mkdir -p "$dir/bin" "$dir/etc" "$dir/tmp" "$dir/root" "$dir/home/worker" "$dir/usr/local/bin"
  chmod 1777 "$dir/tmp"
  cp "$BUSYBOX" "$dir/bin/busybox"
  for applet in $("$BUSYBOX" --list); do
    [ -e "$dir/bin/$applet" ] || ln -s busybox "$dir/bin/$applet"
  done
  if [ -n "$with_bash" ]; then cp "$BASH_STATIC" "$dir/bin/bash"; fi
  printf 'root:x:0:0:root:/root:/bin/sh\nworker:x:1000:1000:worker:/home/worker:/bin/sh\n' > "$dir/etc/passwd"
  printf 'root:x:0:\nworker:x:1000:\n' > "$dir/etc/group"
  chown 1000:1000 "$dir/home/worker"
  # the aws-cli stand-in: not a shell; says so if it is ever run as the task's command
  printf '#!/bin/sh\necho "aws: this is the ENTRYPOINT, not the task command: $*" >&2\nexit 252\n' > "$dir/usr/local/bin/aws"
  chmod 755 "$dir/usr/local/bin/aws"
}

# build NAME [bash] [--change ...]: import a fresh rootfs as NAME unless it exists
build() {
  local name="$PREFIX/$1:1" with_bash="$2"
  shift 2
  if present "$name"; then echo "kept $name"; return; fi
  local dir
  dir=$(mktemp -d)
  chmod 755 "$dir"  # (the image's /, as in any image: mktemp's 0700 kept every other user out of it)
  rootfs "$dir" "$with_bash"
  tar -C "$dir" -c . | "$ENGINE" import "$@" - "$name" >/dev/null
  rm -rf "$dir"
  echo "built $name"
}

build bash bash --change 'CMD ["/bin/sh"]'
build nonroot bash --change 'USER 1000:1000' --change 'CMD ["/bin/sh"]'
build named bash --change 'USER worker' --change 'CMD ["/bin/sh"]'
build entrypoint bash --change 'ENTRYPOINT ["/usr/local/bin/aws"]' --change 'CMD ["--version"]'
build sh-only "" --change 'CMD ["/bin/sh"]'
