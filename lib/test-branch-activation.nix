# The shell scripts of a test-branch (`test-<Host>`) deploy. Builtins only, so the tests can
# evaluate them and run them against real Nix profiles without nixpkgs.
#
#   import ./lib/test-branch-activation.nix { systemProfile ? ..., testProfile ? ..., returnPoint ? ...,
#                                              currentSystem ? ... }   (tests move them to a temp root)
#     => { activate = returnClosure: "<script>"; refuseBoot = returnClosure: "<script>";
#          dryActivate = "<script>"; returnToPrevious = "<script>"; }
#
# The rule they keep (docs/deploy-rules.md): a test branch is active now and gone after a reboot,
# and a reboot always returns to the last `main` deploy, through every rollback path and --boot.
#
# How deploy-rs runs a profile (serokell/deploy-rs src/bin/activate.rs):
#   activate   `nix-env -p <profilePath> --set <closure>`, then <profilePath>/deploy-rs-activate
#              with BOOT and DRY_ACTIVATE set; lib.activate.custom's wrapper picks `boot`,
#              `dryActivate` or the activation script from them.
#   rollback   (activation failed, or no confirmation: magic rollback) `nix-env --rollback`,
#              delete the newest generation, then run the now-current generation's
#              deploy-rs-activate with neither variable set: the activation script of the
#              generation below.
# So whatever sits one generation below a test deploy in its profile decides what a rollback
# does. The fleet's old design put test deploys into the system profile: a rollback of a later
# `main` deploy re-ran a test generation's `switch-to-configuration test`, which never rewrites
# the boot loader, and the failed configuration stayed the boot default.
#
# This design:
#   - test deploys live in their own profile, `testProfile`, never in the system profile. It is
#     not under profiles/system-profiles/, whose generations systemd-boot-builder.py turns into
#     boot entries. The system profile and the boot loader only ever see `main` deploys;
#   - each test closure carries a second, "return" closure. Its activation puts the profile in
#     the shape [return, test] (the return closure right below it), records what runs now in
#     `returnPoint` (under /run: gone after a reboot), then runs `switch-to-configuration test`;
#   - a rollback therefore always runs the return closure: `switch-to-configuration test` of
#     the recorded system (what ran before this deploy), or, without a record, of the system
#     profile (the last `main` deploy). Never `switch` or `boot`: the boot loader is not touched;
#   - `deploy --boot` is refused before anything is activated; the rollback it triggers
#     re-activates what runs (the record was just written).
{
  systemProfile ? "/nix/var/nix/profiles/system",
  testProfile ? "/nix/var/nix/profiles/homelab-test",
  returnPoint ? "/run/homelab-deploy/test-return-point",
  currentSystem ? "/run/current-system",
}:
let
  # Shell-quote a value fixed at evaluation time.
  q = value: "'" + builtins.replaceStrings [ "'" ] [ "'\\''" ] value + "'";

  # Runs under lib.activate.custom's `set -euo pipefail`, with PROFILE set to the profile path
  # (activate-rs's environment otherwise: nix-env is found the way activate-rs finds it, on PATH).
  prepare = returnClosure: ''
    # The generation below this one must be the return closure, so that deploy-rs's rollback
    # (nix-env --rollback, delete the newest, run the one below) returns instead of activating
    # an older test branch. Keep just the two.
    homelab_self=$(readlink -e "$PROFILE")
    nix-env -p "$PROFILE" --set ${q "${returnClosure}"}
    nix-env -p "$PROFILE" --set "$homelab_self"
    nix-env -p "$PROFILE" --delete-generations +2
    # What runs now is where a rollback returns to; /run is empty again after a reboot.
    homelab_running=$(readlink -e ${q currentSystem} || true)
    mkdir -p -m 0700 "$(dirname ${q returnPoint})"
    if [ -n "$homelab_running" ]; then
      printf '%s\n' "$homelab_running" > ${q "${returnPoint}.tmp"}
      mv -f ${q "${returnPoint}.tmp"} ${q returnPoint}
    else
      rm -f ${q returnPoint}
    fi
  '';
in
{
  inherit systemProfile testProfile returnPoint;

  # The test closure's activation: the profile shape and the return point, then `test`.
  activate = returnClosure: ''
    ${prepare returnClosure}
    # Same working directory as deploy-rs's activate.nixos (nixpkgs issue 73404).
    cd /tmp
    "$PROFILE"/bin/switch-to-configuration test
  '';

  # `deploy --boot` of a test branch. activate-rs has already run `nix-env --set`; leave the
  # profile so that the rollback this exit triggers re-activates what runs now.
  refuseBoot = returnClosure: ''
    echo "homelab: a test-<hostname> deploy never changes the boot loader; deploy from main for --boot" >&2
    ${prepare returnClosure}
    exit 1
  '';

  # `deploy --dry-activate`: show what `test` would restart, change nothing.
  dryActivate = ''
    "$PROFILE"/bin/switch-to-configuration dry-activate
  '';

  # The return closure's activation: only ever run by deploy-rs's rollback.
  returnToPrevious = ''
    homelab_target=
    if [ -r ${q returnPoint} ]; then
      homelab_target=$(readlink -e "$(cat ${q returnPoint})" || true)
    fi
    if [ -z "$homelab_target" ] || [ ! -x "$homelab_target/bin/switch-to-configuration" ]; then
      # No record (rebooted since, or never written): the last main deploy.
      homelab_target=$(readlink -e ${q systemProfile})
    fi
    echo "homelab: test-branch rollback: switch-to-configuration test of $homelab_target (the boot loader is not touched)" >&2
    cd /tmp
    "$homelab_target"/bin/switch-to-configuration test
  '';
}
