# Every test node snapshot-able by QEMU, so the harness restores the fleet between scenarios
# instead of cold-booting it (docs/snapshots.md). nixpkgs' qemu-vm.nix attaches two drives
# that `savevm` refuses ("is writable but does not support snapshots"), and has no option for
# either, so this module post-processes its lists with `apply` (a second declaration of an
# option may add `apply` when the first has none):
#   - the Nix store image (useNixStoreImage: an erofs image mounted read-only) is attached as
#     a writable raw drive: here it gets `readonly=on`, and QEMU skips read-only drives;
#   - the UEFI variable store (useEFIBoot) is a raw pflash drive on $NIX_EFI_VARS: here it is
#     attached as qcow2, which snapshots. The file is turned into qcow2 (../efi-vars-qcow2.sh)
#     by a statement of the start script right before its `exec` of QEMU: qemu-vm.nix's script
#     has no hook there, so `system.build.vm` gets a copy of the script with that statement
#     inserted (below). A failed conversion stops the script with the reason; QEMU never starts
#     on a half-made file.
# QEMU saves a snapshot's memory to the first drive that snapshots: the root disk, drive1 (the
# harness gives that drive faster I/O by its id, harness/images/nixos.py). Freed guest pages are
# zeroed (init_on_free=1), so snapshots skip them instead of saving stale contents.
# If nixpkgs changes any of these, evaluating or building the VM fails with a message (below)
# rather than falling back to cold boots silently.
{ config, lib, ... }:
let
  cfg = config.virtualisation;
  hostPkgs = cfg.host.pkgs;

  efiVarsToQcow2 = hostPkgs.writeShellScript "ndh-efi-vars-qcow2" ''
    PATH=${cfg.qemu.package}/bin:${hostPkgs.coreutils}/bin:$PATH
    ${builtins.readFile ../efi-vars-qcow2.sh}
  '';

  # Inserted above the start script's `exec`. An explicit check, not `set -e` alone: the
  # message says what failed, after qemu-img's own reason.
  convertEfiVars = ''
    # test/fleet/nodes/snapshottable.nix: the UEFI variable store in qcow2, so QEMU can snapshot it.
    if ! ${efiVarsToQcow2} "$NIX_EFI_VARS" >/dev/null; then
      echo "${config.system.name}: could not turn the UEFI variable store \"$NIX_EFI_VARS\" into qcow2 (the reason is above); QEMU was not started" >&2
      exit 1
    fi
  '';

  isEfiVarsDrive = option: lib.hasInfix "if=pflash" option && lib.hasInfix "$NIX_EFI_VARS" option;
  qcow2EfiVars = option:
    if isEfiVarsDrive option then builtins.replaceStrings [ "format=raw" ] [ "format=qcow2" ] option
    else option;

  readOnlyStore = drive:
    if drive.name == "nix-store" then
      drive // { driveExtraOpts = drive.driveExtraOpts // { readonly = "on"; }; }
    else drive;

  changed = what: ''
    test/fleet/nodes/snapshottable.nix: nixpkgs' qemu-vm.nix no longer attaches ${what} the
    way this module expects, so QEMU may refuse to snapshot this node. Read qemu-vm.nix
    (virtualisation.qemu.options / virtualisation.qemu.drives) and update this module.'';

  scriptChanged = ''
    test/fleet/nodes/snapshottable.nix: the start script of nixpkgs' qemu-vm.nix no longer has
    exactly one line starting with `exec` (its start of QEMU), so the UEFI variable store cannot
    be turned into qcow2 before QEMU starts. Read qemu-vm.nix (startVM) and update this module.'';

  # qemu-vm.nix's `system.build.vm` with the conversion inserted above the one `exec` line of
  # its start script; the build fails with a message when there is not exactly one.
  script = "bin/run-${config.system.name}-vm";
  withEfiVarsConversion = vm: hostPkgs.runCommand vm.name
    {
      preferLocalBuild = true;
      meta.mainProgram = "run-${config.system.name}-vm";
      passthru.withoutEfiVarsConversion = vm;
    }
    ''
      original=${vm}/${script}
      if [ "$(grep -c '^exec ' "$original" || true)" != 1 ]; then
        cat >&2 <<'NDH_CHANGED'
      ${scriptChanged}
      NDH_CHANGED
        exit 1
      fi
      line=$(grep -n '^exec ' "$original" | cut -d: -f1)
      cp -rP ${vm}/. "$out"
      chmod u+w "$out/bin"
      rm "$out/${script}"
      {
        head -n "$((line - 1))" "$original"
        cat <<'NDH_CONVERT'
      ${convertEfiVars}
      NDH_CONVERT
        tail -n "+$line" "$original"
      } > "$out/${script}"
      chmod 0555 "$out/${script}"
    '';
in
{
  options.virtualisation.qemu = {
    options = lib.mkOption {
      apply = options:
        if cfg.useEFIBoot && !lib.any isEfiVarsDrive options then
          throw (changed "the UEFI variable store (a pflash drive on $NIX_EFI_VARS)")
        else map qcow2EfiVars options;
    };
    drives = lib.mkOption {
      apply = drives:
        if cfg.useNixStoreImage && !lib.any (drive: drive.name == "nix-store") drives then
          throw (changed "the Nix store image (a drive named nix-store)")
        else if drives == [ ] || (lib.head drives).name != "root" then
          throw (changed "the root disk as its first drive (drive1)"
            + "\nA node without a root disk (virtualisation.diskImage = null) cannot be snapshotted"
            + " by the harness at all: give it a disk.")
        else map readOnlyStore drives;
    };
  };

  # system.build is a submodule (nixos/modules/system/build.nix): declaring `vm` in it adds the
  # `apply`; the NixOS test driver and the harness both start `system.build.vm`.
  options.system.build = lib.mkOption {
    type = lib.types.submoduleWith {
      modules = [{
        options.vm = lib.mkOption {
          type = lib.types.package;
          internal = true;
          description = "qemu-vm.nix's VM, its start script converting the UEFI variable store to qcow2 first.";
          apply = vm: if cfg.useEFIBoot then withEfiVarsConversion vm else vm;
        };
      }];
    };
  };

  config.boot.kernelParams = [ "init_on_free=1" ];
}
