#!/usr/bin/env bash
# Turns the UEFI variable store at "$1" into qcow2 (in place, once) and prints its path.
# qemu-vm.nix copies a raw template to $NIX_EFI_VARS and attaches it as a writable raw pflash
# drive, which QEMU's savevm refuses; ./nodes/snapshottable.nix attaches it as qcow2 through
# this script instead. Needs qemu-img on PATH.
set -euo pipefail
vars=$1
if ! qemu-img info -f qcow2 "$vars" >/dev/null 2>&1; then
  qemu-img convert -q -f raw -O qcow2 "$vars" "$vars.qcow2-tmp"
  mv -f "$vars.qcow2-tmp" "$vars"
fi
printf '%s\n' "$vars"
