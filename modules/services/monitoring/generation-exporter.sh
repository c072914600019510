#!/usr/bin/env bash
# nixos-generation-exporter: write this host's NixOS generation facts as Prometheus metrics for
# node_exporter's textfile collector. bash + coreutils only; every path it reads can be moved
# with an environment variable, so the tests run it against fake roots.
#
# Definitions (shared with the harness's probes, harness/nixos.py; docs/generations.md):
#   system of a path P   the NixOS toplevel P stands for: the directory holding the file that
#                        P/nixos-version resolves to. A plain toplevel holds that file itself;
#                        deploy-rs puts an "activatable" buildEnv into the profile whose
#                        nixos-version is a symlink to the toplevel's. Without nixos-version,
#                        P's own resolved path.
#   generation of S      the N whose <profiles>/system-N-link has system S; several: the
#                        highest; none (or S unknown): -1.
#   current / booted     generation of /run/current-system, /run/booted-system.
#   boot                 the generation the boot loader starts next:
#                        systemd-boot (a loader.conf exists on the ESP): the entry chosen by, in
#                          systemd-boot's order, the EFI variables LoaderEntryOneShot and
#                          LoaderEntryDefault, then loader.conf's `preferred` and `default`
#                          (`@saved`: LoaderEntryLastBooted). No choice (deploy-rs's
#                          activate.nixos deletes the `default` line) or a glob: the matching
#                          NixOS entry with the highest "version Generation N". The entry's
#                          `init=` names its toplevel, whose generation is the answer; failing
#                          that, N from its version line.
#                        otherwise (GRUB, direct-boot VMs): the generation the `system` profile
#                          link points at (N of its system-N-link target). This is wrong after a test-branch deploy on GRUB
#                          (profile N+1, GRUB still N); our hosts use systemd-boot.
#   reboot pending       1 when the booted kernel or initrd differs from the boot generation's,
#                        0 when both match, -1 when either side cannot be read.
#   config age           seconds since the current generation's profile link was created.
#   profile              N of the `system -> system-N-link` profile link (newest deployed,
#                        whether or not it was activated or made the boot default).
#
# Environment (defaults in brackets):
#   NIXOS_GEN_OUTPUT_DIR       textfile collector directory (required; not under /tmp: node
#                              exporter runs with PrivateTmp)
#   NIXOS_GEN_OUTPUT_NAME      [nixos_generation.prom]
#   NIXOS_GEN_HOST             host label [uname -n]
#   NIXOS_GEN_PROFILES_DIR     [/nix/var/nix/profiles]
#   NIXOS_GEN_CURRENT_SYSTEM   [/run/current-system]  (the activation hook passes $systemConfig,
#                              because /run/current-system is switched after the hooks run)
#   NIXOS_GEN_BOOTED_SYSTEM    [/run/booted-system]
#   NIXOS_GEN_ESP              [/boot] (loader.conf is <ESP>/loader/loader.conf)
#   NIXOS_GEN_BOOT_ENTRIES     [<ESP>/loader/entries] (XBOOTLDR: <xbootldr>/loader/entries)
#   NIXOS_GEN_EFIVARS          [/sys/firmware/efi/efivars]
#   NIXOS_GEN_NOW              seconds since the epoch [date +%s]
#
# The file is written to a temporary name in the output directory and renamed into place, so
# node_exporter never reads half a file (temporary names do not end in .prom).
set -euo pipefail

usage() { # the comment block at the top of this file
  local line printing=0
  while IFS= read -r line; do
    if [[ $line == "# nixos-generation-exporter:"* ]]; then printing=1; fi
    if [[ $line == "set -euo pipefail" ]]; then break; fi
    if (( printing )); then line=${line#\#}; echo "${line# }"; fi
  done < "$0"
}
if [[ ${1:-} == "-h" || ${1:-} == "--help" ]]; then usage; exit 0; fi
if [[ $# -gt 0 ]]; then
  echo "nixos-generation-exporter: unexpected argument '$1'; configure it with NIXOS_GEN_* variables (--help)" >&2
  exit 2
fi

output_dir=${NIXOS_GEN_OUTPUT_DIR:-}
output_name=${NIXOS_GEN_OUTPUT_NAME:-nixos_generation.prom}
host=${NIXOS_GEN_HOST:-$(uname -n)}
profiles_dir=${NIXOS_GEN_PROFILES_DIR:-/nix/var/nix/profiles}
current_link=${NIXOS_GEN_CURRENT_SYSTEM:-/run/current-system}
booted_link=${NIXOS_GEN_BOOTED_SYSTEM:-/run/booted-system}
esp=${NIXOS_GEN_ESP:-/boot}
entries_dir=${NIXOS_GEN_BOOT_ENTRIES:-$esp/loader/entries}
efivars=${NIXOS_GEN_EFIVARS:-/sys/firmware/efi/efivars}
now=${NIXOS_GEN_NOW:-$(date +%s)}

if [[ -z $output_dir ]]; then
  echo "nixos-generation-exporter: NIXOS_GEN_OUTPUT_DIR is not set; point it at node_exporter's textfile directory" >&2
  exit 2
fi
if [[ ! -d $output_dir ]]; then
  echo "nixos-generation-exporter: output directory '$output_dir' does not exist; create it (the NixOS module does, via tmpfiles)" >&2
  exit 1
fi
if [[ ! $now =~ ^[0-9]+$ ]]; then
  echo "nixos-generation-exporter: NIXOS_GEN_NOW='$now' is not a number of seconds" >&2
  exit 2
fi

# The NixOS system a path stands for (see the definitions above); prints nothing if unknown.
system_of() {
  local version
  if version=$(readlink -e -- "$1/nixos-version" 2>/dev/null); then
    dirname -- "$version"
  else
    readlink -e -- "$1" 2>/dev/null || true
  fi
}

# All system-N-link generations, read once: parallel arrays of numbers, systems and links.
gen_numbers=()
gen_systems=()
gen_links=()
for link in "$profiles_dir"/system-*-link; do
  [[ -L $link ]] || continue
  number=${link##*/system-}
  number=${number%-link}
  [[ $number =~ ^[0-9]+$ ]] || continue
  gen_numbers+=("$((10#$number))")
  gen_systems+=("$(system_of "$link")")
  gen_links+=("$link")
done

generation_of() {
  local want=$1 best=-1 i
  if [[ -n $want ]]; then
    for i in "${!gen_numbers[@]}"; do
      if [[ ${gen_systems[$i]} == "$want" ]] && (( gen_numbers[i] > best )); then
        best=${gen_numbers[$i]}
      fi
    done
  fi
  echo "$best"
}

link_of_generation() {
  local want=$1 i
  for i in "${!gen_numbers[@]}"; do
    if (( gen_numbers[i] == want )); then echo "${gen_links[$i]}"; return; fi
  done
}

# An EFI variable of systemd-boot's vendor GUID as text: 4 attribute bytes, then UTF-16LE.
efi_variable() {
  local file="$efivars/$1-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f"
  [[ -r $file ]] || return 0
  tail -c +5 -- "$file" | tr -d '\000'
}

# loader.conf value of a key (the last occurrence wins, as in systemd-boot).
loader_conf_value() {
  local key=$1 line value=""
  while IFS= read -r line || [[ -n $line ]]; do
    line=${line%$'\r'}
    if [[ $line =~ ^[[:space:]]*${key}[[:space:]]+(.*[^[:space:]])[[:space:]]*$ ]]; then
      value=${BASH_REMATCH[1]}
    fi
  done < "$2"
  echo "$value"
}

# An entry file's id as systemd-boot sees it: the file name without a boot counter (+T[-D]).
entry_id() {
  local name=${1##*/}
  name=${name%.conf}
  [[ $name =~ ^(.*)\+[0-9]+(-[0-9]+)?$ ]] && name=${BASH_REMATCH[1]}
  echo "$name.conf"
}

# Reads one boot entry; sets entry_toplevel, entry_version_gen, entry_other_profile.
read_entry() {
  local line word words
  entry_toplevel=""
  entry_version_gen=-1
  entry_other_profile=0
  while IFS= read -r line || [[ -n $line ]]; do
    line=${line%$'\r'}
    if [[ $line =~ ^title[[:space:]].*\ \[.*\] ]]; then
      entry_other_profile=1 # "NixOS [profile]": a system-profiles/<profile> generation
    elif [[ $line =~ ^version[[:space:]]+Generation[[:space:]]+([0-9]+) ]]; then
      entry_version_gen=$((10#${BASH_REMATCH[1]}))
    elif [[ $line =~ ^options[[:space:]] ]]; then
      read -ra words <<< "$line"
      for word in "${words[@]}"; do
        if [[ $word == init=* ]]; then entry_toplevel=$(dirname -- "${word#init=}"); fi
      done
    fi
  done < "$1"
}

# The entry file for an id or glob pattern; for a pattern, the NixOS entry with the highest
# version generation (systemd-boot sorts newest first).
find_entry() {
  local pattern=$1 file id best_file="" best_gen=-1
  [[ -d $entries_dir ]] || return 0
  if [[ $pattern != *[\*\?\[]* ]]; then
    for file in "$entries_dir"/*.conf; do
      [[ -f $file ]] || continue
      id=$(entry_id "$file")
      if [[ $id == "$pattern" || $id == "$pattern.conf" ]]; then echo "$file"; return; fi
    done
    return 0
  fi
  for file in "$entries_dir"/*.conf; do
    [[ -f $file ]] || continue
    id=$(entry_id "$file")
    # shellcheck disable=SC2053 # the pattern is a glob on purpose
    [[ $id == $pattern || ${id%.conf} == $pattern ]] || continue
    read_entry "$file"
    (( entry_other_profile == 0 )) || continue
    if (( entry_version_gen > best_gen )); then best_gen=$entry_version_gen; best_file=$file; fi
  done
  echo "$best_file"
}

profile_generation=-1
if profile_target=$(readlink -- "$profiles_dir/system" 2>/dev/null); then
  profile_target=${profile_target##*/}
  if [[ $profile_target =~ ^system-([0-9]+)-link$ && -L $profiles_dir/$profile_target ]]; then
    profile_generation=$((10#${BASH_REMATCH[1]}))
  fi
fi

current_system=$(system_of "$current_link")
booted_system=$(system_of "$booted_link")
current_generation=$(generation_of "$current_system")
booted_generation=$(generation_of "$booted_system")

boot_generation=-1
boot_system=""
loader_conf="$esp/loader/loader.conf"
if [[ -f $loader_conf ]]; then
  choice=$(efi_variable LoaderEntryOneShot)
  [[ -n $choice ]] || choice=$(efi_variable LoaderEntryDefault)
  [[ -n $choice ]] || choice=$(loader_conf_value preferred "$loader_conf")
  [[ -n $choice ]] || choice=$(loader_conf_value default "$loader_conf")
  [[ $choice != "@saved" ]] || choice=$(efi_variable LoaderEntryLastBooted)
  [[ -n $choice ]] || choice="*"
  entry=$(find_entry "$choice")
  if [[ -n $entry ]]; then
    read_entry "$entry"
    [[ -z $entry_toplevel ]] || boot_system=$(system_of "$entry_toplevel")
    boot_generation=$(generation_of "$boot_system")
    if (( boot_generation < 0 && entry_other_profile == 0 )); then
      boot_generation=$entry_version_gen
    fi
    if [[ -z $boot_system ]] && (( boot_generation >= 0 )); then
      boot_link=$(link_of_generation "$boot_generation")
      [[ -z $boot_link ]] || boot_system=$(system_of "$boot_link")
    fi
  fi
else
  # The link name is exact even when two generations hold the same system.
  boot_system=$(system_of "$profiles_dir/system")
  boot_generation=$profile_generation
  [[ -n $boot_system ]] || boot_generation=-1
fi

reboot_pending=-1
booted_kernel=$(readlink -e -- "$booted_link/kernel" 2>/dev/null || true)
booted_initrd=$(readlink -e -- "$booted_link/initrd" 2>/dev/null || true)
boot_kernel=""
boot_initrd=""
if [[ -n $boot_system ]]; then
  boot_kernel=$(readlink -e -- "$boot_system/kernel" 2>/dev/null || true)
  boot_initrd=$(readlink -e -- "$boot_system/initrd" 2>/dev/null || true)
fi
if [[ -n $booted_kernel && -n $booted_initrd && -n $boot_kernel && -n $boot_initrd ]]; then
  if [[ $booted_kernel == "$boot_kernel" && $booted_initrd == "$boot_initrd" ]]; then
    reboot_pending=0
  else
    reboot_pending=1
  fi
fi

config_age=-1
if (( current_generation >= 0 )); then
  current_gen_link=$(link_of_generation "$current_generation")
  if created=$(stat -c %Y -- "$current_gen_link" 2>/dev/null); then
    config_age=$(( now > created ? now - created : 0 ))
  fi
fi

label=${host//\\/\\\\}
label=${label//\"/\\\"}
label=${label//$'\n'/\\n}

metric() { # name help value
  printf '# HELP %s %s\n# TYPE %s gauge\n%s{host="%s"} %s\n' "$1" "$2" "$1" "$1" "$label" "$3"
}

tmp=$(mktemp -- "$output_dir/.$output_name.XXXXXX")
trap 'rm -f -- "$tmp"' EXIT
{
  metric nixos_current_generation \
    "System profile generation of the running configuration (/run/current-system); -1 if it is in no generation." \
    "$current_generation"
  metric nixos_booted_generation \
    "System profile generation the host booted (/run/booted-system); -1 if it is in no generation." \
    "$booted_generation"
  metric nixos_boot_generation \
    "Generation the boot loader starts next (systemd-boot default entry, else the system profile); -1 if unknown." \
    "$boot_generation"
  metric nixos_profile_generation \
    "Newest generation the system profile points at, activated or not; -1 without a system profile." \
    "$profile_generation"
  metric nixos_reboot_pending \
    "1 if the booted kernel or initrd differs from the boot generation's, 0 if not, -1 if unknown." \
    "$reboot_pending"
  metric nixos_config_age_seconds \
    "Seconds since the running configuration's profile generation was created; -1 if unknown." \
    "$config_age"
} > "$tmp"
chmod 0644 -- "$tmp"
mv -f -- "$tmp" "$output_dir/$output_name"
trap - EXIT
